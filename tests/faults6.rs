//! DHCPv6 faults through the daemon, against the scriptable fake DHCPv6 server of tests/common
//! (what dnsmasq will not do): no addresses available, a server that falls silent after
//! granting a lease of seconds (RENEW, REBIND, expiry: the address leaves the interface, comes
//! back when the server does), replies for another DUID, and garbage. IPv6-only networks
//! (`"dhcp4": false`), macvlan containers; no RA on the fake link, so leases are /128.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Lab;
use common::fake_server6::{FakeServer6, MessageType};
use common::plugin::{DHCP, Daemon, cni, conf, eventually, lease_records};
use serde_json::{Value, json};

const STEP: Duration = Duration::from_secs(30);

fn v6_conf(daemon: &Daemon) -> Value {
    conf(&daemon.socket, json!({"dhcp4": false, "dhcp6": true}))
}

fn container(lab: &Lab, name: &str) -> PathBuf {
    let ns = lab.container(name);
    lab.add_macvlan(&ns, "eth0");
    ns
}

/// The global IPv6 addresses on the container's eth0, as `a/len`.
fn ipv6_of(lab: &Lab, ns: &Path) -> Vec<String> {
    lab.exec_ok(
        ns,
        &[
            "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global",
        ],
    )
    .lines()
    .filter_map(|l| {
        l.split_whitespace()
            .skip_while(|w| *w != "inet6")
            .nth(1)
            .map(str::to_string)
    })
    .collect()
}

fn record6(daemon: &Daemon, name: &str) -> Value {
    lease_records(&daemon.socket)
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|r| r["attachment"]["container_id"] == name && r["family"] == "ipv6")
                .cloned()
        })
        .unwrap_or(Value::Null)
}

#[test]
fn no_addrs_avail_fails_the_add_clearly_then_it_succeeds() {
    let name = "no_addrs_avail_fails_the_add_clearly_then_it_succeeds";
    let Some(lab) = common::fake_lab6(name) else {
        return;
    };
    let srv = FakeServer6::start(&lab);
    srv.no_addrs_avail(true);
    let daemon = Daemon::start(lab.dir(), &["-timeout", "4s"]);
    let ns = container(&lab, "full");
    let config = v6_conf(&daemon);
    let (ok, out) = cni(DHCP, "ADD", "full", &ns, "eth0", &config);
    assert!(!ok, "{out}");
    assert_eq!(out["code"], 11, "try again later: {out}");
    let msg = out["msg"].as_str().unwrap_or_default();
    assert!(msg.starts_with("DHCPv6: "), "{out}");
    assert!(
        out["details"]
            .as_str()
            .is_some_and(|d| d.contains("NoAddrsAvail")),
        "the server's status is named: {out}"
    );
    // A failed ADD leaves nothing behind.
    assert_eq!(lease_records(&daemon.socket), json!([]));
    srv.no_addrs_avail(false);
    let (ok, out) = cni(DHCP, "ADD", "full", &ns, "eth0", &config);
    assert!(ok, "{out}");
    assert!(cni(DHCP, "DEL", "full", &ns, "eth0", &config).0);
}

#[test]
fn silent_server_rebind_expiry_withdraws_the_address_and_it_comes_back() {
    let name = "silent_server_rebind_expiry_withdraws_the_address_and_it_comes_back";
    let Some(lab) = common::fake_lab6(name) else {
        return;
    };
    let srv = FakeServer6::start(&lab);
    // The shortest lifetimes the daemon keeps (dhcp6::MIN_LIFETIME_SECS is 20 s).
    srv.set_lifetimes(20, 20);
    srv.set_t1_t2(4, 8);
    let daemon = Daemon::start(lab.dir(), &[]);
    let ns = container(&lab, "quiet6");
    let config = v6_conf(&daemon);
    // The lifetimes count from the REQUEST, sent after this; the ADD itself returns up to
    // RA_WAIT (2 s) later, having waited for an RA that never comes on this link.
    let bound = Instant::now();
    let (ok, out) = cni(DHCP, "ADD", "quiet6", &ns, "eth0", &config);
    assert!(ok, "{out}");
    let address = out["ips"][0]["address"].as_str().unwrap().to_string();
    assert!(address.ends_with("/128"), "no RA here: {out}");
    // As the main plugin would: the address on the interface.
    lab.exec_ok(
        &ns,
        &["ip", "-6", "addr", "add", &address, "dev", "eth0", "nodad"],
    );
    srv.silent(true);
    assert!(
        srv.wait_for(|s| s.msg_type == Some(MessageType::Renew), STEP),
        "no RENEW"
    );
    assert!(
        srv.wait_for(|s| s.msg_type == Some(MessageType::Rebind), STEP),
        "no REBIND"
    );
    // At the end of the valid lifetime the address leaves the interface.
    assert!(
        eventually(STEP, || ipv6_of(&lab, &ns).is_empty()),
        "address still there after expiry: {:?}",
        ipv6_of(&lab, &ns)
    );
    let withdrawn = bound.elapsed();
    // Not before the valid lifetime ends (20 s after the REQUEST, which came after `bound`).
    assert!(
        withdrawn >= Duration::from_secs(20),
        "withdrawn before the valid lifetime ended: {withdrawn:?}"
    );
    assert_ne!(record6(&daemon, "quiet6")["state"], "BOUND");
    // The daemon keeps soliciting; when the server answers, the address is put back.
    srv.silent(false);
    assert!(
        eventually(STEP, || ipv6_of(&lab, &ns) == vec![address.clone()]),
        "address not put back: {:?}",
        ipv6_of(&lab, &ns)
    );
    assert_eq!(record6(&daemon, "quiet6")["state"], "BOUND");
    println!(
        "20 s DHCPv6 lease, server silent from bind: {} RENEW, {} REBIND; withdrawn {:.1} s after the ADD began, back {:.1} s after",
        srv.count(MessageType::Renew),
        srv.count(MessageType::Rebind),
        withdrawn.as_secs_f64(),
        bound.elapsed().as_secs_f64()
    );
    assert!(cni(DHCP, "DEL", "quiet6", &ns, "eth0", &config).0);
}

#[test]
fn replies_for_another_duid_and_garbage_are_ignored() {
    let name = "replies_for_another_duid_and_garbage_are_ignored";
    let Some(lab) = common::fake_lab6(name) else {
        return;
    };
    let srv = FakeServer6::start(&lab);
    srv.reply_for_other_duid(true);
    let daemon = Daemon::start(lab.dir(), &["-timeout", "4s"]);
    let ns = container(&lab, "decoy");
    let config = v6_conf(&daemon);
    let (ok, out) = cni(DHCP, "ADD", "decoy", &ns, "eth0", &config);
    assert!(!ok && out["code"] == 11, "{out}");
    assert!(
        out["details"]
            .as_str()
            .is_some_and(|d| d.contains("another client")),
        "the ignored replies are named: {out}"
    );
    // Garbage before every real reply: the lease is still acquired, from the real ones.
    srv.reply_for_other_duid(false);
    srv.garbage(true);
    let (ok, out) = cni(DHCP, "ADD", "decoy", &ns, "eth0", &config);
    assert!(ok, "{out}");
    let rec = record6(&daemon, "decoy");
    assert_eq!(rec["state"], "BOUND", "{rec}");
    assert!(cni(DHCP, "DEL", "decoy", &ns, "eth0", &config).0);
    assert!(
        srv.wait_for(|s| s.msg_type == Some(MessageType::Release), STEP),
        "no RELEASE"
    );
}

#[test]
fn an_address_that_fails_dad_is_declined_and_another_one_configured() {
    use common::fake_server6::POOL_START;
    let name = "an_address_that_fails_dad_is_declined_and_another_one_configured";
    let Some(lab) = common::fake_lab6(name) else {
        return;
    };
    let srv = FakeServer6::start(&lab);
    // Another node on the link already holds the first address of the pool.
    common::ip(&[
        "-n",
        lab.srv_ns(),
        "-6",
        "addr",
        "add",
        &format!("{POOL_START}/128"),
        "dev",
        "s0",
        "nodad",
    ]);
    let daemon = Daemon::start(lab.dir(), &["-ra-wait", "0s"]);
    let ns = container(&lab, "dup6");
    let config = v6_conf(&daemon);
    let (ok, out) = cni(DHCP, "ADD", "dup6", &ns, "eth0", &config);
    assert!(ok, "{out}");
    let address = out["ips"][0]["address"].as_str().unwrap().to_string();
    assert_eq!(address, format!("{POOL_START}/128"), "{out}");
    // The main plugin configures it, with DAD: it fails, the other node answers for it.
    lab.exec_ok(&ns, &["ip", "-6", "addr", "add", &address, "dev", "eth0"]);
    assert!(
        srv.wait_for(|s| s.msg_type == Some(MessageType::Decline), STEP),
        "no DECLINE: {:?}",
        srv.seen()
    );
    assert!(srv.declined().contains(&POOL_START));
    // After the client's DECLINE_WAIT (10 s) a new address comes, and the daemon puts it on
    // the interface itself; the declined one is gone from it.
    assert!(
        eventually(Duration::from_secs(40), || {
            let on = ipv6_of(&lab, &ns);
            on.len() == 1 && on[0] != address
        }),
        "no new address configured: {:?}\n{}",
        ipv6_of(&lab, &ns),
        record6(&daemon, "dup6")
    );
    let rec = record6(&daemon, "dup6");
    assert_eq!(rec["state"], "BOUND", "{rec}");
    assert_ne!(rec["lease6"]["address"], POOL_START.to_string(), "{rec}");
    assert!(cni(DHCP, "DEL", "dup6", &ns, "eth0", &config).0);
}

#[test]
fn ipv6_disabled_in_the_container_fails_at_once_with_code_7() {
    let name = "ipv6_disabled_in_the_container_fails_at_once_with_code_7";
    let Some(lab) = common::fake_lab6(name) else {
        return;
    };
    let _srv = FakeServer6::start(&lab);
    let daemon = Daemon::start(lab.dir(), &[]);
    let ns = container(&lab, "nov6");
    lab.exec_ok(&ns, &["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1"]);
    let config = v6_conf(&daemon);
    let (ok, out) = cni(DHCP, "ADD", "nov6", &ns, "eth0", &config);
    assert!(!ok && out["code"] == 7, "{out}");
    let msg = out["msg"].as_str().unwrap_or_default();
    assert!(msg.contains("disable_ipv6"), "{out}");
    assert_eq!(lease_records(&daemon.socket), json!([]));
}
