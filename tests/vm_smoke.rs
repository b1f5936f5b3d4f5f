//! Runs the ipvlan VM harness (tests/vm) end to end: fetch the cloud kernel once, boot it under
//! qemu TCG with a guest script, assert its exit status and its PASS/FAIL lines.
//! - guest-smoke.sh: busybox udhcpc alone on three ipvlan L2 slaves (no project binary): proves
//!   the harness that the ipvlan plugin's VM tests stand on.
//! - guest-ref.sh: the reference plugins (containernetworking-plugins) on ipvlan L2, the baseline
//!   we replace, and an example of a guest script driving CNI plugins.
//!
//! Needs root, qemu-system-x86, busybox-static, cpio, iproute2, dnsmasq-base,
//! containernetworking-plugins (scripts/deps.sh installs them) and apt access to Debian's archive
//! for the first kernel download. Outside CI a missing prerequisite skips; under CI=true it fails.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

fn skip(test: &str, extra: &[&str]) -> bool {
    let mut why = None;
    if !nix::unistd::geteuid().is_root() {
        why = Some("needs root".to_string());
    }
    for t in [
        "qemu-system-x86_64",
        "busybox",
        "cpio",
        "ip",
        "dnsmasq",
        "apt-get",
        "dpkg",
    ]
    .iter()
    .chain(extra)
    {
        let found = if t.starts_with('/') {
            Path::new(t).exists()
        } else {
            common::which(t).is_some()
        };
        if why.is_none() && !found {
            why = Some(format!("`{t}` not found (scripts/deps.sh installs it)"));
        }
    }
    match why {
        None => false,
        Some(w) if std::env::var("CI").as_deref() == Ok("true") => panic!("{test}: {w}"),
        Some(w) => {
            eprintln!("SKIP {test}: {w}");
            true
        }
    }
}

/// kernel.sh, then run.sh GUEST none; returns the console. Panics unless the guest exits 0.
fn run_guest(name: &str) -> String {
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

    let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("vm-{name}.log"));
    let out = Command::new(root.join("tests/vm/run.sh"))
        .arg(root.join(format!("tests/vm/{name}.sh")))
        .arg("none")
        .env("CNI_DHCP_VM_LOG", &log)
        .env("CNI_DHCP_VM_TIMEOUT", "240")
        .current_dir(root)
        .stdin(Stdio::null())
        .output()
        .expect("run run.sh");
    let console = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{console}\n{}", String::from_utf8_lossy(&out.stderr));
    eprintln!(
        "{name}: kernel.sh {:.1}s, whole test {:.1}s",
        t_kernel.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success(),
        "{name} failed ({}); console log {}",
        out.status,
        log.display()
    );
    assert!(
        !console.lines().any(|l| l.starts_with("FAIL")),
        "a FAIL line in the console"
    );
    assert!(console.contains(" passed, 0 failed"));
    console
}

#[test]
fn vm_guest_smoke() {
    if skip("vm_guest_smoke", &[]) {
        return;
    }
    let console = run_guest("guest-smoke");
    assert!(console.contains("PASS: three client IDs in the lease file"));
    assert!(console.contains("PASS: no dadfailed"));
    assert!(console.contains("PASS: c1 pings c2"));
}

#[test]
fn vm_reference_plugins_on_ipvlan() {
    if skip(
        "vm_reference_plugins_on_ipvlan",
        &["/usr/lib/cni/ipvlan", "/usr/lib/cni/dhcp"],
    ) {
        return;
    }
    let console = run_guest("guest-ref");
    assert!(console.contains("PASS: two leases with the reference's client ids"));
}
