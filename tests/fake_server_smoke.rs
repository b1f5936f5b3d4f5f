//! Proves the fake DHCP server of tests/common/fake_server.rs with busybox udhcpc as the client
//! (no project code involved): short leases and unicast renewal, NAK on demand, silence.
//! Needs root, iproute2 and busybox.

mod common;

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::fake_server::{
    DECOY_ADDR, DECOY_CLIENT_ID, FakeServer, Keying, Kind, POOL_START, SERVER_ID,
};
use common::{Lab, unavailable_with};
use dhcproto::v4::MessageType;

/// Skip (outside CI) when the lab cannot run here; the fake server needs no dnsmasq.
fn skip(test: &str) -> bool {
    match unavailable_with(false) {
        None => false,
        Some(why) if std::env::var("CI").map(|v| v == "true").unwrap_or(false) => {
            panic!("{test}: {why}")
        }
        Some(why) => {
            eprintln!("SKIP {test}: {why}");
            true
        }
    }
}

/// udhcpc event script: log each event with its address to `events`, configure the address.
fn udhcpc_script(dir: &Path) -> (String, PathBuf) {
    let script = dir.join("udhcpc.script");
    let events = dir.join("udhcpc.events");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$1 $ip $lease\" >> {ev}\ncase \"$1\" in\n  bound|renew) ip addr replace \"$ip/${{mask:-24}}\" dev \"$interface\" ;;\n  deconfig) ip addr flush dev \"$interface\" ;;\nesac\nexit 0\n",
            ev = events.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(&events, "").unwrap();
    (script.to_string_lossy().into_owned(), events)
}

/// Option 61 as the reference plugin builds it: 0x00 and `containerID/networkName/ifName`.
fn client_id(container: &str) -> Vec<u8> {
    [
        b"\x00".as_slice(),
        format!("{container}/labnet/eth0").as_bytes(),
    ]
    .concat()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// udhcpc's arguments: foreground, broadcast flag, our client id, our script, plus `extra`.
fn udhcpc_args(id: &[u8], script: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["udhcpc", "-i", "eth0", "-f", "-B", "-x"]
        .map(String::from)
        .to_vec();
    a.push(format!("0x3d:{}", hex(id)));
    a.extend(["-s".to_string(), script.to_string()]);
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// A container with a macvlan `eth0`, up, no address.
fn container(lab: &Lab, name: &str) -> PathBuf {
    let ns = lab.container(name);
    lab.add_macvlan(&ns, "eth0");
    lab.exec_ok(&ns, &["ip", "link", "set", "eth0", "up"]);
    ns
}

/// Kills the child (udhcpc: `ip netns exec` execs it, so the pid is udhcpc's) when dropped.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn short_lease_is_renewed_by_unicast_request() {
    if skip("short_lease_is_renewed_by_unicast_request") {
        return;
    }
    let lab = Lab::builder("fk-renew").without_dnsmasq().build();
    let srv = FakeServer::start(&lab);
    srv.set_lease_time(4);
    let ns = container(&lab, "c1");
    let (script, events) = udhcpc_script(lab.dir());
    let id = client_id("cid-c1");
    // Without -q udhcpc stays and renews at half the lease, but busybox 1.35 treats short leases
    // as longer ones: with 4 s (and 20 s) leases it was seen renewing 15 s after the ACK.
    let child = lab
        .command_in(&ns, "busybox")
        .args(udhcpc_args(&id, &script, &["-t", "5", "-T", "1"]))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn udhcpc");
    let _udhcpc = Reap(child);

    assert!(
        srv.wait_for_sent(
            |s| s.msg_type == Some(MessageType::Ack),
            Duration::from_secs(5)
        ),
        "no ACK; seen: {:?}",
        srv.received()
    );
    let lease = srv.leases()[0].clone();
    assert_eq!(lease.ip, POOL_START);
    assert_eq!(lease.client_id.as_deref(), Some(id.as_slice()));
    assert_eq!(lease.lease_secs, 4);
    assert_eq!(lease.kind, Kind::Selecting);
    assert!(
        wait_until(Duration::from_secs(3), || lab
            .ipv4_of(&ns, "eth0")
            .contains(&"198.18.0.100/24".to_string())),
        "address not configured; events: {}",
        fs::read_to_string(&events).unwrap_or_default()
    );
    let discover = &srv.received()[0];
    assert_eq!(discover.kind, Kind::Discover);
    assert!(discover.broadcast_flag, "udhcpc -B sets the broadcast flag");
    assert_eq!(discover.client_id.as_deref(), Some(id.as_slice()));

    // The renewal: unicast from the leased address to the server, ciaddr set.
    assert!(
        srv.wait_for(|s| s.kind == Kind::Renewing, Duration::from_secs(17)),
        "no RENEWING request; seen: {:?}",
        srv.received()
    );
    let renew = srv
        .received()
        .into_iter()
        .find(|s| s.kind == Kind::Renewing)
        .unwrap();
    assert_eq!(renew.ciaddr, POOL_START);
    assert_eq!(*renew.src.ip(), POOL_START);
    assert_eq!(renew.dst, SERVER_ID);
    assert_eq!(
        renew.requested_ip, None,
        "RFC 2131: no option 50 when RENEWING"
    );
    // Its ACK went unicast to ciaddr:68, and udhcpc got it (its script ran "renew").
    assert!(srv.wait_for_sent(
        |s| s.msg_type == Some(MessageType::Ack) && *s.dst.ip() == POOL_START,
        Duration::from_secs(1)
    ));
    assert!(
        wait_until(Duration::from_secs(2), || fs::read_to_string(&events)
            .unwrap_or_default()
            .contains("renew 198.18.0.100")),
        "udhcpc did not take the unicast ACK; events: {}",
        fs::read_to_string(&events).unwrap_or_default()
    );
    assert_eq!(srv.leases().len(), 2);
    assert_eq!(srv.leases()[1].kind, Kind::Renewing);
}

/// Runs udhcpc to completion in `ns` (use with -q -n); returns (success, stderr).
fn run_udhcpc(lab: &Lab, ns: &Path, args: &[String]) -> (bool, String) {
    let out = lab
        .command_in(ns, "busybox")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run udhcpc");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn nak_on_demand_sends_udhcpc_back_to_discover() {
    if skip("nak_on_demand_sends_udhcpc_back_to_discover") {
        return;
    }
    let lab = Lab::builder("fk-nak").without_dnsmasq().build();
    let srv = FakeServer::start(&lab);
    srv.set_lease_time(8);
    srv.nak_requests(1);
    let ns = container(&lab, "c1");
    let (script, events) = udhcpc_script(lab.dir());
    let id = client_id("cid-c1");
    // -q: exit once bound; -n: exit if no lease. udhcpc waits 3 s after a NAK.
    let start = Instant::now();
    let (ok, err) = run_udhcpc(
        &lab,
        &ns,
        &udhcpc_args(&id, &script, &["-q", "-n", "-t", "5", "-T", "1"]),
    );
    assert!(ok, "udhcpc failed: {err}");
    assert!(start.elapsed() < Duration::from_secs(12));
    assert_eq!(srv.naks_pending(), 0);

    let sent: Vec<MessageType> = srv.sent().iter().filter_map(|s| s.msg_type).collect();
    assert_eq!(
        sent,
        [
            MessageType::Offer,
            MessageType::Nak,
            MessageType::Offer,
            MessageType::Ack
        ],
        "replies"
    );
    let seen = srv.received();
    let kinds: Vec<Kind> = seen.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [
            Kind::Discover,
            Kind::Selecting,
            Kind::Discover,
            Kind::Selecting
        ],
        "requests: {seen:?}"
    );
    // The second DISCOVER is a new transaction that began after the NAK.
    let nak_at = srv
        .sent()
        .iter()
        .find(|s| s.msg_type == Some(MessageType::Nak))
        .unwrap()
        .at;
    assert!(seen[2].at > nak_at);
    assert_ne!(seen[2].xid, seen[0].xid);
    let ev = fs::read_to_string(&events).unwrap();
    assert!(ev.contains("nak"), "udhcpc saw no NAK; events: {ev}");
    assert!(ev.contains("bound 198.18.0.100 8"), "events: {ev}");
    assert_eq!(lab.ipv4_of(&ns, "eth0"), ["198.18.0.100/24"]);
}

#[test]
fn silent_server_gives_no_lease() {
    if skip("silent_server_gives_no_lease") {
        return;
    }
    let lab = Lab::builder("fk-silent").without_dnsmasq().build();
    let srv = FakeServer::start(&lab);
    srv.set_silent(true);
    let ns = container(&lab, "c1");
    let (script, events) = udhcpc_script(lab.dir());
    let id = client_id("cid-c1");
    // Three DISCOVERs one second apart, then give up (-n).
    let (ok, _) = run_udhcpc(
        &lab,
        &ns,
        &udhcpc_args(&id, &script, &["-q", "-n", "-t", "3", "-T", "1"]),
    );
    assert!(!ok, "udhcpc got a lease from a silent server");
    assert_eq!(srv.count(MessageType::Discover), 3);
    assert!(srv.sent().is_empty());
    assert!(srv.leases().is_empty());
    assert!(lab.ipv4_of(&ns, "eth0").is_empty());
    assert!(!fs::read_to_string(&events).unwrap().contains("bound"));
}

#[test]
fn keying_by_client_id_by_mac_and_one_address_for_all() {
    if skip("keying_by_client_id_by_mac_and_one_address_for_all") {
        return;
    }
    let lab = Lab::builder("fk-keys").without_dnsmasq().build();
    let srv = FakeServer::start(&lab);
    let (script, _events) = udhcpc_script(lab.dir());
    let args = |id: &[u8]| udhcpc_args(id, &script, &["-q", "-n", "-t", "3", "-T", "1"]);
    let lease_of = |ns: &Path, id: &[u8]| {
        let (ok, err) = run_udhcpc(&lab, ns, &args(id));
        assert!(ok, "udhcpc failed: {err}");
        let ip = srv.leases().last().unwrap().ip;
        lab.exec_ok(ns, &["ip", "addr", "flush", "dev", "eth0"]);
        ip
    };
    let c1 = container(&lab, "c1");
    let c2 = container(&lab, "c2");
    // Default: by option 61. Two ids on one MAC get two addresses; the same id keeps its own.
    assert_eq!(lease_of(&c1, &client_id("cid-a")), POOL_START);
    assert_eq!(
        lease_of(&c1, &client_id("cid-b")),
        Ipv4Addr::new(198, 18, 0, 101)
    );
    assert_eq!(lease_of(&c1, &client_id("cid-a")), POOL_START);
    // By MAC: option 61 ignored; one MAC, one address, whatever the id.
    srv.mac_keyed(true);
    let by_mac = lease_of(&c2, &client_id("cid-c"));
    assert_eq!(by_mac, Ipv4Addr::new(198, 18, 0, 102));
    assert_eq!(lease_of(&c2, &client_id("cid-d")), by_mac);
    // One address for everyone (a MAC-keyed server behind ipvlan): distinct MACs and ids, same
    // address.
    srv.set_keying(Keying::OneAddress);
    assert_eq!(lease_of(&c1, &client_id("cid-e")), POOL_START);
    assert_eq!(lease_of(&c2, &client_id("cid-f")), POOL_START);
    // set_next_address changes who gets what from the next decision on.
    srv.set_keying(Keying::ClientId);
    srv.set_next_address(Ipv4Addr::new(198, 18, 0, 200));
    assert_eq!(
        lease_of(&c1, &client_id("cid-a")),
        Ipv4Addr::new(198, 18, 0, 200)
    );
    // Every ACK echoed option 61 (RFC 6842).
    for s in srv.sent() {
        assert!(s.client_id.is_some(), "{s:?}");
    }
}

#[test]
fn duplicates_and_garbage_before_each_reply() {
    if skip("duplicates_and_garbage_before_each_reply") {
        return;
    }
    let lab = Lab::builder("fk-garbage").without_dnsmasq().build();
    let srv = FakeServer::start(&lab);
    srv.answer_twice(true);
    srv.garbage(true);
    let ns = container(&lab, "c1");
    let (script, _events) = udhcpc_script(lab.dir());
    let id = client_id("cid-c1");
    let (ok, err) = run_udhcpc(
        &lab,
        &ns,
        &udhcpc_args(&id, &script, &["-q", "-n", "-t", "5", "-T", "1"]),
    );
    assert!(ok, "udhcpc failed: {err}");
    assert_eq!(lab.ipv4_of(&ns, "eth0"), ["198.18.0.100/24"]);
    let sent = srv.sent();
    // OFFER and ACK each twice, each preceded by 5 bad datagrams sent twice.
    assert_eq!(srv.count_sent(MessageType::Offer), 2, "{sent:?}");
    assert_eq!(srv.count_sent(MessageType::Ack), 2, "{sent:?}");
    assert_eq!(sent.iter().filter(|s| s.garbage).count(), 20, "{sent:?}");
    let xids: Vec<u32> = srv.received().iter().map(|s| s.xid).collect();
    assert!(sent.iter().all(|s| xids.contains(&s.xid)));
}

#[test]
fn decoy_replies_carry_another_client_id_and_address() {
    if skip("decoy_replies_carry_another_client_id_and_address") {
        return;
    }
    let lab = Lab::builder("fk-decoy").without_dnsmasq().build();
    let srv = FakeServer::start(&lab);
    srv.wrong_client_id(true);
    let ns = container(&lab, "c1");
    let (script, _events) = udhcpc_script(lab.dir());
    let id = client_id("cid-c1");
    let child = lab
        .command_in(&ns, "busybox")
        .args(udhcpc_args(&id, &script, &["-t", "5", "-T", "1"]))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn udhcpc");
    let _udhcpc = Reap(child);
    // udhcpc does not check option 61 (only xid and chaddr), so it takes the decoy offer and
    // asks for the decoy address; the server, which bound .100 to it, NAKs that.
    assert!(
        srv.wait_for(
            |s| s.kind == Kind::Selecting && s.requested_ip == Some(DECOY_ADDR),
            Duration::from_secs(5)
        ),
        "seen: {:?}",
        srv.received()
    );
    assert!(srv.wait_for_sent(
        |s| s.msg_type == Some(MessageType::Nak),
        Duration::from_secs(1)
    ));
    let sent = srv.sent();
    assert!(!sent.is_empty());
    for s in &sent {
        assert_eq!(s.client_id.as_deref(), Some(DECOY_CLIENT_ID), "{s:?}");
    }
    let offer = sent
        .iter()
        .find(|s| s.msg_type == Some(MessageType::Offer))
        .unwrap();
    assert_eq!(offer.yiaddr, DECOY_ADDR);
    assert_eq!(offer.xid, srv.received()[0].xid);
    assert!(srv.leases().is_empty());
    assert_eq!(
        srv.bindings().values().copied().collect::<Vec<_>>(),
        [POOL_START]
    );
}
