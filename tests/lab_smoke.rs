//! Proves the netns + dnsmasq lab of tests/common on its own, with busybox udhcpc as the client
//! (no project code involved): if these fail, integration tests that use the lab cannot be trusted.
//! Needs root, iproute2, dnsmasq-base, busybox-static.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::{Lab, SERVER_IP, skip_unless_available, which};

/// udhcpc event script: configure the leased address so we can ping with it.
fn udhcpc_script(dir: &Path) -> String {
    let p = dir.join("udhcpc.script");
    fs::write(
        &p,
        "#!/bin/sh\ncase \"$1\" in\n  bound|renew) ip addr add \"$ip/${mask:-24}\" dev \"$interface\" ;;\nesac\nexit 0\n",
    )
    .unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p.to_string_lossy().into_owned()
}

fn udhcpc(lab: &Lab, ns: &Path, ifname: &str, client_id_hex: &str, script: &str) {
    lab.exec_ok(ns, &["ip", "link", "set", ifname, "up"]);
    let opt = format!("0x3d:{client_id_hex}");
    lab.exec_ok(
        ns,
        &[
            "busybox", "udhcpc", "-i", ifname, "-f", "-q", "-n", "-B", "-t", "5", "-T", "2", "-x",
            &opt, "-s", script,
        ],
    );
}

#[test]
fn udhcpc_in_macvlan_containers_gets_leases_by_client_id() {
    if skip_unless_available("lab_smoke") {
        return;
    }
    assert!(
        which("busybox").is_some(),
        "busybox missing (apt-get install busybox-static)"
    );
    let lab = Lab::builder("smoke").no_ping(true).build();
    let script = udhcpc_script(lab.dir());

    let c1 = lab.container("c1");
    let c2 = lab.container("c2");
    let mac1 = lab.add_macvlan(&c1, "eth0");
    let mac2 = lab.add_macvlan(&c2, "eth0");
    assert_ne!(mac1, mac2, "macvlan slaves get their own MACs");
    // The plugin's job, not the lab's: the slave starts down with no address.
    assert!(lab.ipv4_of(&c1, "eth0").is_empty());

    // 0x00 "cid-1" / "cid-2", the reference's client-id shape.
    udhcpc(&lab, &c1, "eth0", "00636964", &script);
    udhcpc(&lab, &c2, "eth0", "006369642d32", &script);

    let leases = lab.leases();
    eprintln!("lease file:\n{}", lab.lease_file());
    assert_eq!(leases.len(), 2, "two leases: {leases:?}");
    let l1 = leases
        .iter()
        .find(|l| l.client_id == "00:63:69:64")
        .expect("c1's client id in the lease file");
    let l2 = leases
        .iter()
        .find(|l| l.client_id == "00:63:69:64:2d:32")
        .expect("c2's client id in the lease file");
    assert_eq!(l1.mac, mac1);
    assert_eq!(l2.mac, mac2);
    assert_ne!(l1.ip, l2.ip);
    assert_eq!(lab.ipv4_of(&c1, "eth0"), vec![format!("{}/24", l1.ip)]);

    assert!(
        lab.wait_for_log_count("DHCPACK(s0)", 2, Duration::from_secs(2)),
        "{}",
        lab.dnsmasq_log()
    );
    assert!(
        lab.dnsmasq_log().contains("broadcast response"),
        "udhcpc -B asked for broadcast replies"
    );

    lab.exec_ok(&c1, &["busybox", "ping", "-c", "1", "-W", "2", SERVER_IP]);
    lab.exec_ok(&c2, &["busybox", "ping", "-c", "1", "-W", "2", &l1.ip]);
}

#[test]
fn drop_kills_dnsmasq_and_deletes_its_namespaces() {
    if skip_unless_available("lab_smoke") {
        return;
    }
    let lab = Lab::new("drop");
    lab.container("x");
    let names = lab.netns_names();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with(lab.prefix())));
    let pid = lab.dnsmasq_pid().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    let dir = lab.dir().to_path_buf();
    drop(lab);
    for n in &names {
        assert!(
            !Path::new("/var/run/netns").join(n).exists(),
            "{n} left behind"
        );
    }
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "dnsmasq {pid} still running"
    );
    assert!(!dir.exists(), "temp dir left behind");
}
