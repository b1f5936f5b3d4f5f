//! Proves the fake DHCPv6 server of tests/common/fake_server6.rs against real traffic, with the
//! project's sans-IO DHCPv6 client (`cni_dhcp::dhcp6::Client`) as the client, driven over a
//! plain UDP socket opened in a container netns (no daemon): binding with scripted lifetimes,
//! renewal, release, NoAddrsAvail, NoBinding and NotOnLink on RENEW, replies for another DUID,
//! garbage, Rapid Commit, silence and UseMulticast, DECLINE and a hand-built CONFIRM.
//! Needs root, iproute2 and IPv6; skips like the other lab tests when they are missing.
//!
//! ```text
//!  netns <p>-srv : s0 2001:db8:6::1/64 (nodad) + link-local, FakeServer6 on [::]:547
//!        | veth
//!  netns <p>-host: m0
//!  netns <p>-c1  : eth0, a macvlan slave of m0, up, link-local only
//! ```

mod common;

use std::io;
use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cni_dhcp::dhcp6::message::{self, Kind};
use cni_dhcp::dhcp6::{
    self, Accepted, Client, ClientConfig, Event, Ignored, Lease6, State, StatusCode, parse_reply,
};
use cni_dhcp::netns::NetNs;
use common::Lab;
use common::fake_server6::{
    DECOY_DUID, DNS_SERVER, DOMAIN, FakeServer6, MessageType, POOL_START, SERVER_DUID, status,
};

const IFNAME: &str = "eth0";
const NETWORK: &str = "labnet6";
/// Budget of one test step on a busy 2-core machine (each takes a few seconds at most).
const STEP: Duration = Duration::from_secs(40);

fn deadline(step: Duration) -> Instant {
    Instant::now()
        .checked_add(step)
        .expect("deadline overflows")
}

/// The pool's `n`-th address.
fn pool(n: u128) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(POOL_START).saturating_add(n))
}

/// A container netns with `eth0` (a macvlan slave of m0) up, once its link-local address has
/// passed duplicate address detection; the netns path and that address.
fn container(lab: &Lab, name: &str) -> (PathBuf, Ipv6Addr) {
    let ns = lab.container(name);
    lab.add_macvlan(&ns, IFNAME);
    lab.exec_ok(&ns, &["ip", "link", "set", IFNAME, "up"]);
    let ll = lab.wait_link_local(&ns, IFNAME, Duration::from_secs(30));
    (ns, ll)
}

/// A client's end: a UDP socket bound to `[::]:546` on `eth0`, made in the container netns by a
/// thread that entered it (the socket stays there; it is driven from the test thread).
struct Peer {
    sock: UdpSocket,
    ifindex: u32,
}

impl Peer {
    fn open(ns: &Path) -> Peer {
        NetNs::open(ns)
            .and_then(|n| {
                n.run(|| {
                    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
                    let ifindex = nix::net::if_::if_nametoindex(IFNAME).map_err(io::Error::from)?;
                    let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
                    s.set_only_v6(true)?;
                    s.bind_device(Some(IFNAME.as_bytes()))?;
                    s.set_multicast_if_v6(ifindex)?;
                    let any = SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, dhcp6::CLIENT_PORT, 0, 0);
                    s.bind(&SockAddr::from(any))?;
                    Ok(Peer {
                        sock: UdpSocket::from(s),
                        ifindex,
                    })
                })
            })
            .expect("client socket in the container netns")
    }

    /// Sends `payload` to `ff02::1:2` port 547 out of eth0.
    fn send_raw(&self, payload: &[u8]) {
        let dst = SocketAddrV6::new(dhcp6::ALL_SERVERS, dhcp6::SERVER_PORT, 0, self.ifindex);
        self.sock.send_to(payload, dst).expect("send to ff02::1:2");
    }

    fn send(&self, tx: &dhcp6::Transmit) {
        assert_eq!(tx.dst, dhcp6::ALL_SERVERS_SOCKET);
        self.send_raw(&tx.payload);
    }

    /// One datagram within `wait`; `None` on timeout.
    fn recv(&self, buf: &mut [u8], wait: Duration) -> Option<(usize, SocketAddrV6)> {
        self.sock
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .unwrap();
        match self.sock.recv_from(buf) {
            Ok((n, std::net::SocketAddr::V6(from))) => Some((n, from)),
            Ok((_, from)) => panic!("IPv4 datagram from {from} on an IPv6 socket"),
            // EINTR: a receive timeout (SO_RCVTIMEO) makes recvfrom(2) fail so instead of
            // restarting after any wake-up, e.g. when the test process is frozen and thawed.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                None
            }
            Err(e) => panic!("recv: {e}"),
        }
    }

    /// The first reply with transaction id `xid` within [`STEP`], parsed, and its source.
    fn reply_to(&self, xid: u32) -> (dhcp6::Reply, SocketAddrV6) {
        let end = deadline(STEP);
        let mut buf = vec![0u8; 65536];
        loop {
            let left = end.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no reply with xid {xid:#08x}");
            if let Some((n, from)) = self.recv(&mut buf, left.min(Duration::from_secs(1))) {
                if let Ok(r) = parse_reply(&buf[..n]) {
                    if r.xid == xid {
                        return (r, from);
                    }
                }
            }
        }
    }
}

/// The transaction id of a client message.
fn xid_of(payload: &[u8]) -> u32 {
    u32::from_be_bytes([0, payload[1], payload[2], payload[3]])
}

/// What happened while a client was driven: messages it sent, what it made of each datagram
/// received, and its events, all in order.
#[derive(Debug, Default)]
struct Log {
    sent: Vec<dhcp6::MessageType>,
    handled: Vec<Result<Accepted, Ignored>>,
    events: Vec<Event>,
}

impl Log {
    fn ignored(&self, why: &Ignored) -> usize {
        self.handled
            .iter()
            .filter(|r| r.as_ref().err() == Some(why))
            .count()
    }
}

/// Runs `client` on `peer` with the real clock until `done(log)` holds; panics at `end`.
fn drive(
    client: &mut Client,
    peer: &Peer,
    log: &mut Log,
    end: Instant,
    done: impl Fn(&Log) -> bool,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        let now = Instant::now();
        while let Some(tx) = client.poll_transmit(now) {
            peer.send(&tx);
            log.sent.push(tx.message_type);
        }
        while let Some(ev) = client.poll_event() {
            log.events.push(ev);
        }
        if done(log) {
            return;
        }
        assert!(
            now < end,
            "not done in time, state {:?}: {log:#?}",
            client.state()
        );
        let wake = client.poll_at().map_or(end, |t| t.min(end));
        let wait = wake
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(1), Duration::from_millis(200));
        if let Some((n, _)) = peer.recv(&mut buf, wait) {
            log.handled.push(client.handle(Instant::now(), &buf[..n]));
        }
    }
}

/// Drives `client` until an event after the ones already in `log` satisfies `pred`; returns it.
fn drive_to_event(
    client: &mut Client,
    peer: &Peer,
    log: &mut Log,
    pred: impl Fn(&Event) -> bool,
) -> Event {
    let from = log.events.len();
    drive(client, peer, log, deadline(STEP), |l| {
        l.events[from..].iter().any(&pred)
    });
    log.events[from..]
        .iter()
        .find(|e| pred(e))
        .cloned()
        .expect("the event drive stopped at")
}

fn bound(client: &mut Client, peer: &Peer, log: &mut Log) -> Lease6 {
    match drive_to_event(client, peer, log, |e| matches!(e, Event::Bound(_))) {
        Event::Bound(l) => l,
        e => unreachable!("{e:?}"),
    }
}

/// The client configuration of container `container_id`: short lifetimes kept as sent, a
/// generous acquisition budget.
fn config(container_id: &str) -> ClientConfig {
    let mut c = ClientConfig::for_container(container_id, NETWORK, IFNAME, None).unwrap();
    c.timeout = Duration::from_secs(60);
    c.min_lifetime = 0;
    c
}

/// `sent` with repeats folded (retransmissions on a loaded machine).
fn folded(sent: &[dhcp6::MessageType]) -> Vec<dhcp6::MessageType> {
    let mut v = sent.to_vec();
    v.dedup();
    v
}

/// A lab from [`common::fake_lab6`], the fake server on it, and one container with its socket
/// and link-local address; `None`: skip.
fn setup(name: &str) -> Option<(Lab, FakeServer6, Ipv6Addr, Peer)> {
    Some(setup_on(common::fake_lab6(name)?))
}

/// Like [`setup`] but s0 has only its link-local address, with duplicate address detection on,
/// so [`FakeServer6::start`] has to wait for it to leave `tentative`.
fn setup_link_local_only(name: &str) -> Option<(Lab, FakeServer6, Ipv6Addr, Peer)> {
    if !common::ipv6_or_skip(name) {
        return None;
    }
    Some(setup_on(common::fake_lab(name)?))
}

fn setup_on(lab: Lab) -> (Lab, FakeServer6, Ipv6Addr, Peer) {
    let srv = FakeServer6::start(&lab);
    let (ns, ll) = container(&lab, "c1");
    let peer = Peer::open(&ns);
    (lab, srv, ll, peer)
}

/// SOLICIT, ADVERTISE (Preference 255: requested at once), REQUEST, REPLY with the scripted
/// lifetimes and T1/T2, all replies unicast to the client's link-local port 546; at T1 a RENEW
/// gets the new lifetimes; RELEASE gets Success and frees the binding.
#[test]
fn binds_with_scripted_lifetimes_renews_and_releases() {
    use dhcp6::MessageType::{Release, Renew, Reply, Request, Solicit};
    let Some((_lab, srv, ll, peer)) = setup("fk6-bind") else {
        return;
    };
    srv.set_lifetimes(30, 60);
    srv.set_t1_t2(2, 20);
    let cfg = config("cid-fk6-bind");
    let mut client = Client::new(cfg.clone(), Instant::now(), 0x6b1d);
    let mut log = Log::default();

    let lease = bound(&mut client, &peer, &mut log);
    assert_eq!(folded(&log.sent), [Solicit, Request], "{log:#?}");
    assert_eq!(
        lease,
        Lease6 {
            address: POOL_START,
            preferred_lifetime: 30,
            valid_lifetime: 60,
            t1: 2,
            t2: 20,
            iaid: cfg.iaid,
            server_id: SERVER_DUID.to_vec(),
            dns_servers: vec![DNS_SERVER],
            domain_search: vec![DOMAIN.to_string()],
        }
    );
    let key = (cfg.duid.clone(), cfg.iaid);
    assert_eq!(srv.bindings().get(&key), Some(&POOL_START));
    assert_eq!(srv.bindings().len(), 1);

    // What the server saw: multicasts from the container's link-local port 546, our identity.
    let seen = srv.seen();
    let solicit = seen
        .iter()
        .find(|s| s.msg_type == Some(Solicit))
        .expect("a SOLICIT");
    assert_eq!(solicit.client_duid.as_deref(), Some(cfg.duid.as_slice()));
    assert_eq!(solicit.iaid, Some(cfg.iaid));
    assert_eq!(solicit.server_duid, None);
    assert_eq!(solicit.elapsed, Some(0), "first message of the exchange");
    assert_eq!(*solicit.src.ip(), ll);
    assert_eq!(solicit.src.port(), dhcp6::CLIENT_PORT);
    assert_eq!(solicit.dst, dhcp6::ALL_SERVERS);
    assert!(
        solicit.oro.contains(&23) && solicit.oro.contains(&24),
        "{solicit:?}"
    );
    let request = seen
        .iter()
        .find(|s| s.msg_type == Some(Request))
        .expect("a REQUEST");
    assert_eq!(request.server_duid.as_deref(), Some(SERVER_DUID));
    assert_eq!(request.requested, vec![POOL_START]);
    // What it sent: unicast to that link-local and port, the scripted times.
    let sent = srv.sent();
    assert!(!sent.is_empty());
    for s in &sent {
        assert_eq!(
            (*s.dst.ip(), s.dst.port()),
            (ll, dhcp6::CLIENT_PORT),
            "{s:?}"
        );
        assert!(!s.garbage && !s.decoy);
    }
    let reply = sent
        .iter()
        .find(|s| s.msg_type == Some(Reply))
        .expect("a REPLY");
    assert_eq!(reply.grants.len(), 1);
    let g = &reply.grants[0];
    assert_eq!(
        (g.address, g.preferred, g.valid, g.t1, g.t2),
        (POOL_START, 30, 60, 2, 20)
    );

    // T1 after 2 s: RENEW naming the server, same address, fresh lifetimes.
    srv.set_lifetimes(40, 80);
    let renewed = drive_to_event(&mut client, &peer, &mut log, |e| {
        matches!(e, Event::Renewed(_))
    });
    let Event::Renewed(renewed) = renewed else {
        unreachable!()
    };
    assert_eq!(renewed.address, POOL_START);
    assert_eq!(
        (renewed.preferred_lifetime, renewed.valid_lifetime),
        (40, 80)
    );
    let renew = srv
        .seen()
        .into_iter()
        .find(|s| s.msg_type == Some(Renew))
        .expect("a RENEW");
    assert_eq!(renew.server_duid.as_deref(), Some(SERVER_DUID));
    assert_eq!(renew.requested, vec![POOL_START]);
    assert_eq!(renew.src.port(), dhcp6::CLIENT_PORT);

    // RELEASE: REPLY with Success, the binding gone.
    let tx = client.release().expect("a RELEASE");
    assert_eq!(tx.message_type, Release);
    peer.send(&tx);
    let (r, from) = peer.reply_to(xid_of(&tx.payload));
    assert_eq!(r.message_type, Reply);
    assert_eq!(
        *from.ip(),
        srv.link_local(),
        "replies come from s0's link-local"
    );
    assert_eq!(r.status.as_ref().map(|s| s.code), Some(StatusCode::Success));
    assert_eq!(r.client_id.as_deref(), Some(cfg.duid.as_slice()));
    assert!(srv.bindings().is_empty(), "{:?}", srv.bindings());
    assert_eq!(client.state(), State::Released);
}

/// An ADVERTISE with NoAddrsAvail is ignored by the client (the SOLICIT goes on); once the
/// server has addresses again the retransmitted SOLICIT binds.
#[test]
fn no_addrs_avail_is_ignored_until_addresses_are_back() {
    let Some((_lab, srv, _ll, peer)) = setup("fk6-noaddr") else {
        return;
    };
    srv.no_addrs_avail(true);
    let mut client = Client::new(config("cid-fk6-noaddr"), Instant::now(), 2);
    let mut log = Log::default();
    let no_addrs = Ignored::Status(StatusCode::NoAddrsAvail);
    drive(&mut client, &peer, &mut log, deadline(STEP), |l| {
        l.ignored(&no_addrs) >= 1
    });
    assert_eq!(client.state(), State::Soliciting, "the SOLICIT goes on");
    let adv = srv
        .sent()
        .into_iter()
        .find(|s| s.msg_type == Some(MessageType::Advertise))
        .expect("an ADVERTISE");
    assert_eq!(adv.status, Some(status::NO_ADDRS_AVAIL));
    assert!(adv.grants.is_empty());
    assert!(srv.bindings().is_empty());

    srv.no_addrs_avail(false);
    let lease = bound(&mut client, &peer, &mut log);
    assert_eq!(lease.address, POOL_START);
    assert_eq!(srv.bindings().len(), 1);
}

/// NoBinding in the REPLY to RENEW: the client REQUESTs its address from the same server
/// (RFC 8415 §18.2.10.1) and gets it back, reported as a renewal.
#[test]
fn no_binding_on_renew_makes_the_client_request_its_binding_again() {
    use dhcp6::MessageType::{Renew, Request};
    let Some((_lab, srv, _ll, peer)) = setup("fk6-nobind") else {
        return;
    };
    srv.set_lifetimes(30, 60);
    srv.set_t1_t2(2, 20);
    srv.no_binding_on_renew(1);
    let cfg = config("cid-fk6-nobind");
    let mut client = Client::new(cfg.clone(), Instant::now(), 3);
    let mut log = Log::default();
    let lease = bound(&mut client, &peer, &mut log);
    let after_bind = log.sent.len();

    let Event::Renewed(renewed) = drive_to_event(&mut client, &peer, &mut log, |e| {
        matches!(e, Event::Renewed(_))
    }) else {
        unreachable!()
    };
    assert_eq!(renewed.address, lease.address);
    assert_eq!(
        folded(&log.sent[after_bind..]),
        [Renew, Request],
        "{log:#?}"
    );
    assert!(
        log.handled.iter().any(|r| matches!(
            r,
            Ok(Accepted { status: StatusCode::NoBinding, address, .. }) if address.is_unspecified()
        )),
        "{log:#?}"
    );
    assert_eq!(srv.no_binding_pending(), 0);
    let nobind = srv
        .sent()
        .into_iter()
        .find(|s| !s.ia_status.is_empty())
        .expect("a REPLY with an IA_NA status");
    assert_eq!(nobind.ia_status, vec![(cfg.iaid, status::NO_BINDING)]);
    // The REQUEST after NoBinding names this server and the held address.
    let req = srv
        .seen()
        .into_iter()
        .rfind(|s| s.msg_type == Some(Request))
        .unwrap();
    assert_eq!(req.requested, vec![lease.address]);
    assert_eq!(req.server_duid.as_deref(), Some(SERVER_DUID));
    assert_eq!(
        srv.bindings().get(&(cfg.duid.clone(), cfg.iaid)),
        Some(&lease.address)
    );
}

/// NotOnLink in the REPLY to RENEW: the lease is lost and a new acquisition starts; the server
/// kept the binding, so it hands the same address out again.
#[test]
fn not_on_link_on_renew_loses_the_lease_and_a_new_solicit_gets_it_back() {
    let Some((_lab, srv, _ll, peer)) = setup("fk6-notonlink") else {
        return;
    };
    srv.set_lifetimes(30, 60);
    srv.set_t1_t2(2, 20);
    srv.not_on_link_on_renew(1);
    let mut client = Client::new(config("cid-fk6-nol"), Instant::now(), 4);
    let mut log = Log::default();
    let lease = bound(&mut client, &peer, &mut log);
    drive_to_event(&mut client, &peer, &mut log, |e| *e == Event::Lost);
    assert!(
        srv.sent()
            .iter()
            .any(|s| s.status == Some(status::NOT_ON_LINK)),
        "{:?}",
        srv.sent()
    );
    let again = bound(&mut client, &peer, &mut log);
    assert_eq!(again.address, lease.address, "the server kept the binding");
}

/// ADVERTISEs carrying another DUID (what a container hears of its ipvlan siblings' replies)
/// are ignored; the real ones bind.
#[test]
fn replies_for_another_duid_are_ignored() {
    let Some((_lab, srv, _ll, peer)) = setup("fk6-otherduid") else {
        return;
    };
    srv.reply_for_other_duid(true);
    let mut client = Client::new(config("cid-fk6-other"), Instant::now(), 5);
    let mut log = Log::default();
    drive(&mut client, &peer, &mut log, deadline(STEP), |l| {
        l.ignored(&Ignored::WrongClientId) >= 2
    });
    assert_eq!(client.state(), State::Soliciting);
    assert!(log.handled.iter().all(Result::is_err), "{log:#?}");
    let sent = srv.sent();
    assert!(sent.iter().all(|s| s.decoy && s.client_duid == DECOY_DUID));
    assert!(srv.bindings().is_empty(), "an ADVERTISE binds nothing");

    srv.reply_for_other_duid(false);
    let lease = bound(&mut client, &peer, &mut log);
    assert_eq!(lease.address, POOL_START, "the reservation was kept for it");
}

/// Random bytes and a truncated copy before each reply: all ignored, the real replies bind
/// with the full lease (DNS and domain list included).
#[test]
fn garbage_before_every_reply_is_ignored() {
    let Some((_lab, srv, _ll, peer)) = setup("fk6-garbage") else {
        return;
    };
    srv.garbage(true);
    let cfg = config("cid-fk6-garbage");
    let mut client = Client::new(cfg.clone(), Instant::now(), 6);
    let mut log = Log::default();
    let lease = bound(&mut client, &peer, &mut log);
    assert_eq!(lease.address, POOL_START);
    assert_eq!(lease.dns_servers, vec![DNS_SERVER]);
    assert_eq!(lease.domain_search, vec![DOMAIN.to_string()]);
    let bad = srv.sent().iter().filter(|s| s.garbage).count();
    assert!(
        bad >= 4,
        "two bad datagrams before each of ADVERTISE and REPLY"
    );
    let ignored = log.handled.iter().filter(|r| r.is_err()).count();
    assert!(ignored >= 4, "every bad datagram ignored: {log:#?}");
    // Exactly one datagram was accepted per reply the server meant.
    let accepted = log.handled.iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        accepted,
        srv.sent().iter().filter(|s| !s.garbage).count(),
        "{log:#?}"
    );
}

/// Rapid Commit: the REPLY to the SOLICIT binds; with the server refusing it, an ADVERTISE and
/// a REQUEST. On a lab whose s0 has only a link-local (FakeServer6::start waits out its DAD).
#[test]
fn rapid_commit_binds_on_the_solicit_unless_the_server_refuses() {
    use dhcp6::MessageType::{Request, Solicit};
    let Some((_lab, srv, _ll, peer)) = setup_link_local_only("fk6-rapid") else {
        return;
    };
    let mut cfg = config("cid-fk6-rapid-1");
    cfg.rapid_commit = true;
    let mut client = Client::new(cfg.clone(), Instant::now(), 7);
    let mut log = Log::default();
    let lease = bound(&mut client, &peer, &mut log);
    assert_eq!(log.sent, [Solicit], "{log:#?}");
    assert_eq!(lease.address, POOL_START);
    assert!(srv.sent().iter().any(|s| s.rapid_commit));
    assert!(srv.seen().iter().any(|s| s.rapid_commit));
    assert_eq!(
        srv.bindings().get(&(cfg.duid.clone(), cfg.iaid)),
        Some(&POOL_START)
    );

    srv.rapid_commit(false);
    let mut cfg2 = config("cid-fk6-rapid-2");
    cfg2.rapid_commit = true;
    let mut client2 = Client::new(cfg2, Instant::now(), 8);
    let mut log2 = Log::default();
    let lease2 = bound(&mut client2, &peer, &mut log2);
    assert_eq!(folded(&log2.sent), [Solicit, Request], "{log2:#?}");
    assert_eq!(lease2.address, pool(1), "lowest free address");
}

/// A silent server sees the SOLICIT retransmitted (with a growing Elapsed Time); a REPLY with
/// UseMulticast is ignored and the REQUEST retransmitted.
#[test]
fn silence_and_use_multicast_make_the_client_retransmit() {
    use dhcp6::MessageType::{Request, Solicit};
    let Some((_lab, srv, _ll, peer)) = setup("fk6-silent") else {
        return;
    };
    srv.silent(true);
    srv.use_multicast_status(1);
    let mut client = Client::new(config("cid-fk6-silent"), Instant::now(), 9);
    let mut log = Log::default();
    drive(&mut client, &peer, &mut log, deadline(STEP), |l| {
        l.sent.iter().filter(|t| **t == Solicit).count() >= 2
    });
    assert!(srv.wait_for_count(|s| s.msg_type == Some(Solicit), 2, STEP));
    assert!(srv.sent().is_empty(), "silent: nothing sent");
    let elapsed = srv
        .seen()
        .iter()
        .filter_map(|s| s.elapsed)
        .max()
        .unwrap_or(0);
    assert!(elapsed > 0, "a retransmission counts its elapsed time");

    srv.silent(false);
    let lease = bound(&mut client, &peer, &mut log);
    assert_eq!(lease.address, POOL_START);
    assert_eq!(
        log.ignored(&Ignored::Status(StatusCode::UseMulticast)),
        1,
        "{log:#?}"
    );
    assert!(srv.count(Request) >= 2, "the REQUEST was sent again");
}

/// CONFIRM (hand-built with the crate's public encoder) gets Success for a pool address and
/// NotOnLink for another prefix; DECLINE gets Success and the address is not handed out again.
#[test]
fn decline_keeps_the_address_out_and_confirm_checks_the_link() {
    let Some((_lab, srv, _ll, peer)) = setup("fk6-decline") else {
        return;
    };
    let cfg = config("cid-fk6-decline");
    let mut client = Client::new(cfg.clone(), Instant::now(), 10);
    let mut log = Log::default();
    let lease = bound(&mut client, &peer, &mut log);

    // CONFIRM, hand-built with the crate's public encoder: on-link, then not.
    for (address, want) in [
        (lease.address, StatusCode::Success),
        (
            Ipv6Addr::new(0x2001, 0xdb8, 7, 0, 0, 0, 0, 1),
            StatusCode::NotOnLink,
        ),
    ] {
        let xid = 0x00c0_ffee;
        peer.send_raw(&message::build(&cfg, Kind::Confirm { address }, xid, 0));
        let (r, _) = peer.reply_to(xid);
        assert_eq!(r.message_type, dhcp6::MessageType::Reply);
        assert_eq!(r.status.map(|s| s.code), Some(want), "CONFIRM {address}");
        assert!(r.ia_na.is_empty());
    }

    let tx = client.decline(Instant::now()).expect("a DECLINE");
    assert_eq!(tx.message_type, dhcp6::MessageType::Decline);
    peer.send(&tx);
    let (r, _) = peer.reply_to(xid_of(&tx.payload));
    assert_eq!(r.status.map(|s| s.code), Some(StatusCode::Success));
    assert!(srv.declined().contains(&lease.address));
    assert!(srv.bindings().is_empty());

    // The next client gets the next address, not the declined one.
    let mut other = Client::new(config("cid-fk6-decline-2"), Instant::now(), 11);
    let mut log2 = Log::default();
    let l2 = bound(&mut other, &peer, &mut log2);
    assert_eq!(l2.address, pool(1));
}
