//! ipvlan for real: boots the Debian cloud kernel under qemu (this host kernel has no
//! CONFIG_IPVLAN) with our `dhcp`, `ipvlan` and `dhcp-leases` binaries (the ones cargo built for
//! this test run) and runs tests/vm/guest-ipvlan.sh inside: three containers on one ipvlan L2
//! master get three leases, distinct client IDs, distinct IPv6 link-locals without DAD failure,
//! ping each other; `"broadcast": false` fails naming the cause; L3 mode is refused; DEL leaves
//! no link and dnsmasq sees the releases; our ipvlan works with the reference host-local and
//! static IPAM. A second VM runs the same plugins behind busybox udhcpd, a server that keys
//! leases by MAC; a third the dual-stack (DHCPv6) scenario of tests/vm/guest-ipvlan6.sh.
//! A fourth runs 802.1q trunk parents (tests/vm/guest-vlan.sh): VLAN links made and deleted by
//! our `ipvlan` on the trunk, two VLANs with their own dnsmasq.
//! Needs root and scripts/deps.sh's packages; under CI=true missing ones fail.

mod common;

use std::path::Path;
use std::time::Instant;

/// Boots the VM with `guest` (under tests/vm) and our binaries; asserts no FAIL line, a clean
/// exit and at least `min_passed` PASS lines.
fn run_guest(guest: &str, min_passed: u32) {
    for tool in ["qemu-system-x86_64", "busybox", "cpio", "dnsmasq", "ip"] {
        if common::which(tool).is_none() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{tool} missing under CI: scripts/deps.sh installs it"
            );
            eprintln!("SKIP: {tool} not found (scripts/deps.sh)");
            return;
        }
    }
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_dhcp")).parent().unwrap();
    let started = Instant::now();
    let out = common::vm::boot(guest, bin_dir, std::iter::empty::<(&str, &str)>());
    let console = String::from_utf8_lossy(&out.stdout);
    println!("{console}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    println!("VM test took {:.1} s", started.elapsed().as_secs_f64());
    let fails: Vec<&str> = console.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        fails.is_empty(),
        "failures in the guest:\n{}",
        fails.join("\n")
    );
    assert!(out.status.success(), "guest exited with {}", out.status);
    let passed = console
        .lines()
        .find_map(|l| l.strip_suffix(" passed, 0 failed"))
        .and_then(|n| n.trim().parse::<u32>().ok())
        .expect("no summary line from the guest");
    assert!(passed >= min_passed, "only {passed} checks ran");
}

#[test]
fn ipvlan_l2_three_containers_in_vm() {
    run_guest("guest-ipvlan.sh", 21);
}

/// Dual stack on ipvlan L2 (issue 12): three slaves sharing the master's MAC get three DHCPv6
/// bindings under three DUIDs from dnsmasq (DHCPv6 range + `--enable-ra`) and three IPv6
/// addresses, usable when ADD returns (out of DAD), with the RA's /64 and the router's
/// link-local as gateway; they ping each other over IPv6; the kernel's RA default route is on
/// every slave; `dhcp-leases --json` lists the ipv6 records; CHECK; an IPv6-only network; l3/l3s
/// with `dhcp6` refused with code 7 creating nothing; DEL releases both families.
/// tests/vm/guest-ipvlan6.sh; its console prints each ADD's time (`ADD-MS`).
#[test]
fn ipvlan_l2_dual_stack_three_containers_in_vm() {
    run_guest("guest-ipvlan6.sh", 39);
}

/// busybox udhcpd keys leases by MAC and ignores option 61. Behind ipvlan, where every slave
/// carries the master's MAC: with the default derived chaddrs each container gets a lease of
/// its own (issue 13 §3); with `"chaddr": "link"` only the first container may get a lease,
/// and it must keep it (issue 10 §5, found with udhcpd). tests/vm/guest-udhcpd.sh.
#[test]
fn ipvlan_behind_a_server_keying_by_mac_in_vm() {
    run_guest("guest-udhcpd.sh", 20);
}

/// 802.1q trunk parents (issue 13 §1): VLAN links made on demand on the trunk m0, five slaves on
/// two VLANs served by two dnsmasq, the link deleted with its last slave after the lease, an
/// administrator's m0.70 left alone, errors naming their cause. tests/vm/guest-vlan.sh.
#[test]
fn ipvlan_on_802_1q_trunk_parents_in_vm() {
    run_guest("guest-vlan.sh", 37);
}
