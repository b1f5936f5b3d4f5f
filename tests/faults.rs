//! Server faults a real server won't produce on demand, against the scriptable fake server
//! (tests/common/fake_server.rs) in the netns lab: short leases, silence at T1, DHCPNAK on
//! renew, garbage and foreign replies, a server keying by MAC, restarts past T1 and past
//! expiry. Each test prints its figures. Needs root.

mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::Lab;
use common::fake_server::{FakeServer, Keying, Kind};
use common::plugin::*;
use serde_json::{Value, json};

fn lab(name: &str) -> Option<Lab> {
    common::fake_lab(name)
}

/// One macvlan container with a lease whose address is put on the interface, as the main
/// plugin would. Returns (netns, "a.b.c.d/nn").
fn add_one(lab: &Lab, daemon: &Daemon, name: &str) -> (std::path::PathBuf, String) {
    let ns = lab.container(name);
    lab.add_macvlan(&ns, "eth0");
    let (ok, out) = cni(
        DHCP,
        "ADD",
        name,
        &ns,
        "eth0",
        &conf(&daemon.socket, json!({})),
    );
    assert!(ok, "{name}: {out}");
    let address = out["ips"][0]["address"].as_str().unwrap().to_string();
    lab.exec_ok(&ns, &["ip", "addr", "add", &address, "dev", "eth0"]);
    (ns, address)
}

fn record_of(daemon: &Daemon, name: &str) -> Value {
    lease_records(&daemon.socket)
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["attachment"]["container_id"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

fn has_default_route(lab: &Lab, ns: &Path) -> bool {
    String::from_utf8_lossy(&lab.exec_in(ns, &["ip", "route"]).stdout)
        .contains("default via 198.18.0.1")
}

#[test]
fn silent_server_renewing_rebinding_expiry_then_lease_returns() {
    let Some(lab) = lab("silent") else { return };
    let server = FakeServer::start(&lab);
    // The shortest lease the daemon keeps (dhcp::config::MIN_LEASE_SECS): T1 10 s, T2 17.5 s.
    server.set_lease_time(20);
    let daemon = Daemon::start(lab.dir(), &["-resendmax", "2s"]);
    let (ns, address) = add_one(&lab, &daemon, "quiet");
    let bound = Instant::now();
    server.set_silent(true);

    // RENEWING (unicast) from T1, then REBINDING (broadcast) from T2, all unanswered.
    assert!(server.wait_for(|s| s.kind == Kind::Renewing, Duration::from_secs(12)));
    assert!(server.wait_for(|s| s.kind == Kind::Rebinding, Duration::from_secs(10)));
    let renewing = server.count_kind(Kind::Renewing);
    let rebinding = server.count_kind(Kind::Rebinding);
    // At expiry the address leaves the interface: the LAN never sees a stale duplicate.
    assert!(
        eventually(Duration::from_secs(6), || lab
            .ipv4_of(&ns, "eth0")
            .is_empty()),
        "address still configured after expiry: {:?}",
        lab.ipv4_of(&ns, "eth0")
    );
    let withdrawn = bound.elapsed();
    let state = record_of(&daemon, "quiet")["state"].clone();
    assert_ne!(state, "BOUND", "{state}");
    // The daemon keeps trying; when the server answers again, address and routes come back.
    server.set_silent(false);
    assert!(
        eventually(Duration::from_secs(15), || lab.ipv4_of(&ns, "eth0")
            == vec![address.clone()]),
        "address not put back: {:?}",
        lab.ipv4_of(&ns, "eth0")
    );
    assert!(eventually(Duration::from_secs(2), || has_default_route(
        &lab, &ns
    )));
    let back = bound.elapsed();
    assert_eq!(record_of(&daemon, "quiet")["state"], "BOUND");
    println!(
        "20 s lease, server silent from T1: {renewing} RENEWING and {rebinding} REBINDING requests; address withdrawn {:.1} s after bound; back with routes {:.1} s after bound",
        withdrawn.as_secs_f64(),
        back.as_secs_f64()
    );
    assert!(
        withdrawn >= Duration::from_secs(19),
        "withdrawn before expiry: {withdrawn:?}"
    );
}

#[test]
fn nak_on_renew_withdraws_and_reconfigures_a_new_address() {
    let Some(lab) = lab("nak") else { return };
    let server = FakeServer::start(&lab);
    server.set_lease_time(20); // T1 10 s
    let daemon = Daemon::start(lab.dir(), &["-resendmax", "2s"]);
    let (ns, address) = add_one(&lab, &daemon, "naked");
    // The server moves this client to .200: its renewal gets a NAK, the next DISCOVER .200.
    let new = Ipv4Addr::new(198, 18, 0, 200);
    server.set_next_address(new);
    let started = Instant::now();
    assert!(server.wait_for_sent(
        |s| s.msg_type == Some(dhcproto::v4::MessageType::Nak),
        Duration::from_secs(12)
    ));
    let expected = format!("{new}/24");
    assert!(
        eventually(Duration::from_secs(10), || lab.ipv4_of(&ns, "eth0")
            == vec![expected.clone()]),
        "interface not moved from {address} to {expected}: {:?}",
        lab.ipv4_of(&ns, "eth0")
    );
    assert!(eventually(Duration::from_secs(2), || has_default_route(
        &lab, &ns
    )));
    let record = record_of(&daemon, "naked");
    assert_eq!(record["lease"]["address"], new.to_string(), "{record}");
    assert_eq!(
        record["previous_address"],
        address.split('/').next().unwrap(),
        "the change is recorded: {record}"
    );
    let nak_at = server
        .sent()
        .iter()
        .find(|s| s.msg_type == Some(dhcproto::v4::MessageType::Nak))
        .map(|s| s.at)
        .unwrap();
    println!(
        "NAK on renew {:.1} s after the change: {address} -> {expected} on the interface {:.0} ms after the NAK",
        (nak_at - started).as_secs_f64(),
        nak_at.elapsed().as_secs_f64() * 1e3
    );
}

#[test]
fn garbage_duplicates_and_foreign_replies_do_not_disturb() {
    let Some(lab) = lab("garbage") else { return };
    let server = FakeServer::start(&lab);
    server.set_lease_time(20);
    server.garbage(true);
    server.answer_twice(true);
    server.wrong_client_id_first(true);
    let daemon = Daemon::start(lab.dir(), &[]);
    let (_ns, address) = add_one(&lab, &daemon, "sturdy");
    // Not the decoy's address, not a corrupted one.
    assert!(
        address.starts_with("198.18.0.1") && address.ends_with("/24"),
        "{address}"
    );
    assert_ne!(
        address, "198.18.0.99/24",
        "took the reply meant for another client"
    );
    // Renewals still go through the noise.
    assert!(eventually(Duration::from_secs(14), || {
        record_of(&daemon, "sturdy")["renewals"].as_u64() >= Some(1)
    }));
    let r = record_of(&daemon, "sturdy");
    assert_eq!(r["lease"]["address"], address.split('/').next().unwrap());
    let garbage = server.sent().iter().filter(|s| s.garbage).count();
    println!(
        "{garbage} garbage datagrams, every reply twice, decoy replies first: lease {address} kept, {} renewal(s), daemon alive",
        r["renewals"]
    );
    // The daemon is still healthy.
    assert!(lease_records(&daemon.socket).as_array().unwrap().len() == 1);
}

#[test]
fn server_keying_by_mac_is_declined_not_duplicated() {
    let Some(lab) = lab("mackeyed") else { return };
    let server = FakeServer::start(&lab);
    // What a MAC-keyed server does behind ipvlan, where every slave shares the MAC.
    server.set_keying(Keying::OneAddress);
    let daemon = Daemon::start(lab.dir(), &[]);
    let (_ns1, first) = add_one(&lab, &daemon, "first");
    let ns2 = lab.container("second");
    lab.add_macvlan(&ns2, "eth0");
    let (ok, out) = cni(
        DHCP,
        "ADD",
        "second",
        &ns2,
        "eth0",
        &conf(&daemon.socket, json!({})),
    );
    assert!(!ok, "a duplicate was handed out: {out}");
    assert_eq!(out["code"], 7, "{out}");
    let msg = out["msg"].as_str().unwrap();
    assert!(msg.contains("MAC") && msg.contains("option 61"), "{msg}");
    assert!(server.wait_for(|s| s.kind == Kind::Decline, Duration::from_secs(2)));
    let records = lease_records(&daemon.socket);
    assert_eq!(records.as_array().unwrap().len(), 1, "{records}");
    println!(
        "MAC-keyed server: first got {first}; second ADD failed with code 7, {} DHCPDECLINE sent, 1 lease held",
        server.count_kind(Kind::Decline)
    );
}

#[test]
fn restart_past_t1_renews_at_once_and_past_expiry_reboots() {
    let Some(lab) = lab("resume") else { return };
    let server = FakeServer::start(&lab);
    server.set_lease_time(20); // T1 9.5-10 s, T2 16.6-17.5 s: room for a slow restart
    let daemon = Daemon::start(lab.dir(), &[]);
    let (ns, address) = add_one(&lab, &daemon, "phoenix");
    let ip: Ipv4Addr = address.split('/').next().unwrap().parse().unwrap();
    // kill -9, wait past T1 (not T2), start again: RENEWING at once.
    drop(daemon);
    std::thread::sleep(Duration::from_millis(11_000));
    let before = server.count_kind(Kind::Renewing);
    let restarted = Instant::now();
    let daemon = Daemon::start(lab.dir(), &[]);
    assert!(server.wait_for_count(
        |s| s.kind == Kind::Renewing,
        before + 1,
        Duration::from_secs(4)
    ));
    let renew_delay = restarted.elapsed();
    assert!(eventually(Duration::from_secs(4), || {
        record_of(&daemon, "phoenix")["renewals"].as_u64() >= Some(1)
    }));
    // kill -9, wait past expiry, start again: INIT-REBOOT asks for the same address.
    drop(daemon);
    std::thread::sleep(Duration::from_millis(21_000));
    let restarted = Instant::now();
    let daemon = Daemon::start(lab.dir(), &[]);
    assert!(server.wait_for(
        |s| s.kind == Kind::InitReboot && s.requested_ip == Some(ip),
        Duration::from_secs(3)
    ));
    let reboot_delay = restarted.elapsed();
    assert!(eventually(Duration::from_secs(3), || {
        record_of(&daemon, "phoenix")["state"] == "BOUND"
    }));
    assert_eq!(
        record_of(&daemon, "phoenix")["lease"]["address"],
        ip.to_string()
    );
    assert_eq!(lab.ipv4_of(&ns, "eth0"), vec![address.clone()]);
    println!(
        "restart past T1: RENEWING {:.0} ms after start; restart past expiry: INIT-REBOOT for {ip} {:.0} ms after start, BOUND again with the same address",
        renew_delay.as_secs_f64() * 1e3,
        reboot_delay.as_secs_f64() * 1e3
    );
}

#[test]
fn t1_fuzz_spreads_renewals_of_leases_granted_together() {
    let Some(lab) = lab("fuzz") else { return };
    let server = FakeServer::start(&lab);
    server.set_lease_time(20); // T1 10 s; fuzz up to 5% = 0.5 s
    let daemon = Daemon::start(lab.dir(), &[]);
    const N: usize = 12;
    for i in 0..N {
        add_one(&lab, &daemon, &format!("f{i}"));
    }
    assert!(server.wait_for_count(|s| s.kind == Kind::Renewing, N, Duration::from_secs(15)));
    // Each lease's T1 as the client chose it: first RENEWING minus its first DHCPACK. Without
    // fuzz every offset would be 10.000 s to within a few ms.
    let acks = server.leases();
    let offsets: Vec<f64> = server
        .received()
        .iter()
        .filter(|s| s.kind == Kind::Renewing)
        .filter_map(|s| {
            let ack = acks.iter().find(|l| l.client_id == s.client_id)?;
            Some((s.at - ack.at).as_secs_f64())
        })
        .collect();
    assert!(offsets.len() >= N, "{offsets:?}");
    let min = offsets.iter().cloned().fold(f64::MAX, f64::min);
    let max = offsets.iter().cloned().fold(f64::MIN, f64::max);
    println!(
        "{N} leases of 20 s: T1 offsets from {min:.3} s to {max:.3} s (spread {:.0} ms)",
        (max - min) * 1e3
    );
    assert!(max <= 10.05, "T1 later than half the lease: {max}");
    assert!(max - min > 0.1, "renewals not fuzzed: {offsets:?}");
}

#[test]
fn a_silent_server_on_one_network_never_stalls_another() {
    let Some(silent_lab) = lab("stall") else {
        return;
    };
    let server = FakeServer::start(&silent_lab);
    server.set_silent(true);
    if common::skip_unless_available("a_silent_server_on_one_network_never_stalls_another") {
        return;
    }
    let busy_lab = Lab::builder("busy").no_ping(true).build();
    let daemon = Daemon::start(silent_lab.dir(), &["-timeout", "3s"]);
    let stuck_ns = silent_lab.container("stuck");
    silent_lab.add_macvlan(&stuck_ns, "eth0");
    let fine_ns = busy_lab.container("fine");
    busy_lab.add_macvlan(&fine_ns, "eth0");
    std::thread::scope(|s| {
        let stuck = s.spawn(|| {
            let mut c = conf(&daemon.socket, json!({}));
            c["name"] = json!("silentnet");
            cni(DHCP, "ADD", "stuck", &stuck_ns, "eth0", &c)
        });
        // Let the silent ADD start first.
        assert!(server.wait_for(|s| s.kind == Kind::Discover, Duration::from_secs(2)));
        let started = Instant::now();
        let (ok, out) = cni(
            DHCP,
            "ADD",
            "fine",
            &fine_ns,
            "eth0",
            &conf(&daemon.socket, json!({})),
        );
        let took = started.elapsed();
        assert!(ok, "{out}");
        let (stuck_ok, stuck_out) = stuck.join().unwrap();
        assert!(!stuck_ok && stuck_out["code"] == 11, "{stuck_out}");
        println!(
            "ADD on a working network took {:.0} ms while another network's server was silent",
            took.as_secs_f64() * 1e3
        );
        assert!(took < Duration::from_secs(1), "stalled: {took:?}");
    });
}
