//! Runs the ipvlan VM harness (tests/vm) end to end: fetch the cloud kernel once, boot it under
//! qemu TCG with tests/vm/guest-smoke.sh, which checks with busybox udhcpc alone that three ipvlan
//! L2 slaves get three leases by client id. No project binary is involved: this proves the harness
//! that the ipvlan plugin's VM tests stand on. Needs root, qemu-system-x86, busybox-static, cpio,
//! iproute2, dnsmasq-base and apt access to Debian's archive for the first kernel download.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root".into());
    }
    for t in [
        "qemu-system-x86_64",
        "busybox",
        "cpio",
        "ip",
        "dnsmasq",
        "apt-get",
        "dpkg",
    ] {
        if common::which(t).is_none() {
            return Some(format!("`{t}` not found"));
        }
    }
    None
}

#[test]
fn vm_guest_smoke() {
    if let Some(why) = unavailable() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("vm_smoke: {why}");
        }
        eprintln!("SKIP vm_smoke: {why}");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let t0 = Instant::now();
    let k = Command::new(root.join("tests/vm/kernel.sh"))
        .stdin(Stdio::null())
        .output()
        .expect("run kernel.sh");
    let t_kernel = t0.elapsed();
    assert!(
        k.status.success(),
        "kernel.sh failed: {}",
        String::from_utf8_lossy(&k.stderr)
    );

    let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vm-guest-smoke.log");
    let out = Command::new(root.join("tests/vm/run.sh"))
        .arg(root.join("tests/vm/guest-smoke.sh"))
        .arg("none")
        .env("CNI_DHCP_VM_LOG", &log)
        .env("CNI_DHCP_VM_TIMEOUT", "240")
        .current_dir(root)
        .stdin(Stdio::null())
        .output()
        .expect("run run.sh");
    let console = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{console}\n{stderr}");
    eprintln!(
        "vm_smoke: kernel.sh {:.1}s, whole test {:.1}s",
        t_kernel.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success(),
        "guest-smoke failed ({}); console log {}",
        out.status,
        log.display()
    );
    assert!(console.contains("PASS: three client IDs in the lease file"));
    assert!(console.contains("PASS: no dadfailed"));
    assert!(
        !console.lines().any(|l| l.starts_with("FAIL")),
        "a FAIL line in the console"
    );
    assert!(console.contains(" passed, 0 failed"));
}
