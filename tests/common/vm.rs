//! Booting the ipvlan VM from a test or benchmark: `tests/vm/kernel.sh` (fetches the Debian
//! cloud kernel once into its cache), then `tests/vm/run.sh GUEST BIN_DIR`, which boots it under
//! qemu with the guest script and our binaries and prints the serial console. One place for
//! what every VM test does before it reads the console (tests/vm/README.md).

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs kernel.sh (panics if it fails), then run.sh with the guest script `guest` (a file name
/// under tests/vm), the binaries of `bin_dir` (`none`: none) and the extra environment `env`
/// (run.sh's `CNI_DHCP_VM_*` settings), stdin closed. Returns run.sh's output: the console on
/// stdout, its own messages on stderr; the exit status is the guest's (124: qemu timed out).
pub fn boot<K: AsRef<OsStr>, V: AsRef<OsStr>>(
    guest: &str,
    bin_dir: &Path,
    env: impl IntoIterator<Item = (K, V)>,
) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let k = Command::new(root.join("tests/vm/kernel.sh"))
        .stdin(Stdio::null())
        .status()
        .expect("run tests/vm/kernel.sh");
    assert!(k.success(), "kernel.sh failed");
    Command::new(root.join("tests/vm/run.sh"))
        .arg(root.join("tests/vm").join(guest))
        .arg(bin_dir)
        .envs(env)
        .stdin(Stdio::null())
        .output()
        .expect("run tests/vm/run.sh")
}
