//! Interop of the sans-IO DHCPv6 client (`cni_dhcp::dhcp6`) and the Router Advertisement parser
//! (`cni_dhcp::ra`) with a real server: dnsmasq serving DHCPv6 and sending RAs on `fd00:cd::/64`
//! in the lab of tests/common, the client driven over a plain UDP socket (and the RA read from a
//! raw ICMPv6 socket) opened inside a container namespace. No daemon, no mocks. Needs root,
//! iproute2 and dnsmasq-base; skips like the other lab tests when they are missing.
//!
//! ```text
//!  netns <p>-srv : s0 fd00:cd::1/64 (nodad), dnsmasq: DHCPv6 range ::100-::1ff 12h, --enable-ra
//!        | veth
//!  netns <p>-host: m0
//!  netns <p>-c1, <p>-c2: eth0, macvlan slaves of m0, up, link-local only
//! ```

mod common;

use std::io;
use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use cni_dhcp::dhcp6::{self, Client, ClientConfig, Event, Lease6, State, identity};
use cni_dhcp::netns::NetNs;
use cni_dhcp::ra;
use common::Lab;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use common::v6::{DNS, RANGE_FIRST, RANGE_LAST};
/// dnsmasq's lease time for the range, in seconds (`12h`).
const LEASE_SECS: u32 = 12 * 3600;
const NETWORK: &str = "labnet6";
const IFNAME: &str = "eth0";
/// Overall budget of one test step (acquisition, release, RA) on a busy 2-core machine.
const STEP: Duration = Duration::from_secs(40);

/// The lab of [`common::dhcpv6_lab`].
fn v6_lab(name: &str, authoritative: bool) -> Option<Lab> {
    common::dhcpv6_lab(name, authoritative)
}

fn deadline(step: Duration) -> Instant {
    Instant::now()
        .checked_add(step)
        .expect("deadline overflows")
}

/// A container netns with `eth0` (a macvlan slave of m0) up, once its link-local address has
/// passed duplicate address detection. Returns the netns path and the link-local address.
fn container_with_link(lab: &Lab, name: &str) -> (std::path::PathBuf, Ipv6Addr) {
    let ns = lab.container(name);
    lab.add_macvlan(&ns, IFNAME);
    lab.exec_ok(&ns, &["ip", "link", "set", IFNAME, "up"]);
    let end = deadline(Duration::from_secs(30));
    loop {
        let out = lab.exec_ok(&ns, &["ip", "-6", "-o", "addr", "show", "dev", IFNAME]);
        let ll = out.lines().find(|l| l.contains("inet6 fe80:"));
        if let Some(l) = ll {
            assert!(!l.contains("dadfailed"), "DAD failed: {l}");
            if !l.contains("tentative") {
                let addr = l
                    .split_whitespace()
                    .skip_while(|w| *w != "inet6")
                    .nth(1)
                    .and_then(|a| a.split('/').next())
                    .and_then(|a| a.parse().ok())
                    .unwrap_or_else(|| panic!("link-local in {l:?}"));
                return (ns, addr);
            }
        }
        assert!(
            Instant::now() < end,
            "{name}: link-local still tentative: {out}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The interface index of `ifname` in the calling thread's netns.
fn ifindex(ifname: &str) -> io::Result<u32> {
    nix::net::if_::if_nametoindex(ifname).map_err(io::Error::from)
}

/// A UDP socket in `ns` bound to `[::]:546` on `eth0`, multicasting out of it, and its ifindex.
fn client_socket(ns: &Path) -> (UdpSocket, u32) {
    NetNs::open(ns)
        .and_then(|n| {
            n.run(|| {
                let idx = ifindex(IFNAME)?;
                let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
                s.set_only_v6(true)?;
                s.bind_device(Some(IFNAME.as_bytes()))?;
                s.set_multicast_if_v6(idx)?;
                let any = SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, dhcp6::CLIENT_PORT, 0, 0);
                s.bind(&SockAddr::from(any))?;
                Ok((UdpSocket::from(s), idx))
            })
        })
        .expect("client socket in the container netns")
}

fn send(sock: &UdpSocket, idx: u32, tx: &dhcp6::Transmit) {
    let mut dst = tx.dst;
    dst.set_scope_id(idx);
    assert_eq!(*dst.ip(), dhcp6::ALL_SERVERS);
    assert_eq!(dst.port(), dhcp6::SERVER_PORT);
    sock.send_to(&tx.payload, dst)
        .unwrap_or_else(|e| panic!("send {:?}: {e}", tx.message_type));
}

/// Runs `client` on `sock` with the real clock until it is bound; panics on any other event or
/// at `end`. Returns the lease and the types of the messages sent, in order.
fn acquire(
    client: &mut Client,
    sock: &UdpSocket,
    idx: u32,
    end: Instant,
) -> (Lease6, Vec<dhcp6::MessageType>) {
    let mut sent = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let now = Instant::now();
        assert!(now < end, "no binding in time, state {:?}", client.state());
        while let Some(tx) = client.poll_transmit(now) {
            eprintln!("-> {:?}", tx.message_type);
            send(sock, idx, &tx);
            sent.push(tx.message_type);
        }
        if let Some(ev) = client.poll_event() {
            match ev {
                Event::Bound(lease) => return (lease, sent),
                other => panic!("unexpected event {other:?} in state {:?}", client.state()),
            }
        }
        let wake = client.poll_at().map_or(end, |t| t.min(end));
        let wait = wake
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(1), Duration::from_secs(1));
        sock.set_read_timeout(Some(wait)).unwrap();
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                let r = client.handle(Instant::now(), &buf[..n]);
                eprintln!("<- {n} bytes from {from}: {r:?}");
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
}

/// The message types of `sent` with retransmissions folded (a loaded machine may make dnsmasq
/// answer after the first retransmission time).
fn exchanges(sent: &[dhcp6::MessageType]) -> Vec<dhcp6::MessageType> {
    let mut v = sent.to_vec();
    v.dedup();
    v
}

/// `bytes` as dnsmasq writes a DUID in its lease file: lower-case hex pairs joined by `:`.
fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Waits until dnsmasq's lease file has (`present`) or lacks a DHCPv6 lease for `duid`; returns
/// that lease when present. For a DHCPv6 lease the file's MAC column holds the IAID in decimal.
fn wait_lease(lab: &Lab, duid: &[u8], present: bool, end: Instant) -> Option<common::Lease> {
    let id = colon_hex(duid);
    loop {
        let found = lab.leases().into_iter().find(|l| l.client_id == id);
        if found.is_some() == present {
            return found;
        }
        assert!(
            Instant::now() < end,
            "lease for DUID {id} {} the lease file:\n{}\nlog:\n{}",
            if present {
                "never appeared in"
            } else {
                "still in"
            },
            lab.lease_file(),
            lab.dnsmasq_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn config(container_id: &str) -> ClientConfig {
    let mut c = ClientConfig::for_container(container_id, NETWORK, IFNAME, None).unwrap();
    // Generous for a busy machine; dnsmasq answers in milliseconds.
    c.timeout = Duration::from_secs(30);
    c
}

fn in_range(a: Ipv6Addr) -> bool {
    (RANGE_FIRST..=RANGE_LAST).contains(&a)
}

fn check_lease(lease: &Lease6, cfg: &ClientConfig) {
    assert!(
        in_range(lease.address),
        "{} outside the range",
        lease.address
    );
    assert_eq!(lease.iaid, cfg.iaid);
    // dnsmasq grants the range's lease time as both lifetimes; allow for its rounding.
    let near = |v: u32, want: u32| v <= want && v + 120 >= want;
    assert!(near(lease.valid_lifetime, LEASE_SECS), "{lease:?}");
    assert!(
        lease.preferred_lifetime <= lease.valid_lifetime
            && near(lease.preferred_lifetime, LEASE_SECS),
        "{lease:?}"
    );
    // T1 about half, T2 more than T1 and under the valid lifetime (dnsmasq: 1/2 and 7/8).
    assert!(
        (LEASE_SECS * 2 / 5..=LEASE_SECS * 3 / 5).contains(&lease.t1),
        "T1 {lease:?}"
    );
    assert!(
        lease.t2 > lease.t1 && lease.t2 < lease.valid_lifetime && lease.t2 >= LEASE_SECS * 3 / 4,
        "T2 {lease:?}"
    );
    assert_eq!(lease.dns_servers, vec![DNS], "{lease:?}");
    assert!(!lease.server_id.is_empty());
}

/// One container, dnsmasq authoritative (its ADVERTISE carries Preference 255, taken at once):
/// SOLICIT, ADVERTISE, REQUEST, REPLY; the binding in dnsmasq's lease file under our DUID and
/// IAID; dnsmasq's RA read and parsed; a restarted client's REBIND ([`Client::reboot`]) gets the
/// same address; then RELEASE drops the binding.
#[test]
fn dnsmasq_binds_our_duid_and_iaid_sends_a_matching_ra_and_drops_the_binding_on_release() {
    use dhcp6::MessageType::{Rebind, Request, Solicit};
    let Some(lab) = v6_lab("dhcp6_interop", true) else {
        return;
    };
    let (ns, _ll) = container_with_link(&lab, "c1");
    let cfg = config("cid-interop-1");
    assert_eq!(cfg.duid, identity::duid("cid-interop-1", NETWORK));
    assert_eq!(cfg.iaid, identity::iaid(IFNAME));
    let (sock, idx) = client_socket(&ns);
    let started = Instant::now();
    let mut client = Client::new(cfg.clone(), started, 0x5eed_0001);
    let (lease, sent) = acquire(&mut client, &sock, idx, deadline(STEP));
    eprintln!("bound after {:?}: {lease:?}", started.elapsed());
    assert_eq!(client.state(), State::Bound);
    assert_eq!(
        sent,
        [Solicit, Request],
        "one exchange each, nothing lost on a veth"
    );
    check_lease(&lease, &cfg);

    let l = wait_lease(&lab, &cfg.duid, true, deadline(STEP)).unwrap();
    assert_eq!(l.ip, lease.address.to_string(), "{}", lab.lease_file());
    assert_eq!(
        l.mac,
        cfg.iaid.to_string(),
        "IAID column: {}",
        lab.lease_file()
    );

    check_ra(&lab, &ns, lease.address);

    // A daemon restart that lost the lease's timers: REBIND for the remembered address.
    let mut client = Client::reboot(cfg.clone(), lease.clone(), Instant::now(), 0x5eed_0002);
    let (again, sent) = acquire(&mut client, &sock, idx, deadline(STEP));
    assert_eq!(exchanges(&sent), [Rebind], "{sent:?}");
    assert_eq!(
        again.address, lease.address,
        "dnsmasq keeps the binding of our DUID+IAID"
    );
    check_lease(&again, &cfg);

    let tx = client.release().expect("a RELEASE for the held lease");
    assert_eq!(tx.message_type, dhcp6::MessageType::Release);
    assert_eq!(client.state(), State::Released);
    send(&sock, idx, &tx);
    wait_lease(&lab, &cfg.duid, false, deadline(STEP));
    assert!(client.poll_transmit(Instant::now()).is_none());
}

/// Two containers on one link, different container IDs: two DUIDs, so dnsmasq (which keys
/// bindings by DUID and IAID; both use the IAID of `eth0`) gives two different addresses. dnsmasq
/// is not authoritative here, so its ADVERTISE has no Preference option: the first client must
/// wait out its first retransmission time (over SOL_TIMEOUT, 1 s) before it REQUESTs; the second
/// asks for Rapid Commit and is bound by the REPLY to its SOLICIT.
#[test]
fn two_containers_get_two_addresses() {
    use dhcp6::MessageType::{Request, Solicit};
    let Some(lab) = v6_lab("dhcp6_two", false) else {
        return;
    };
    let (ns1, _) = container_with_link(&lab, "c1");
    let (ns2, _) = container_with_link(&lab, "c2");
    let cfg1 = config("cid-two-1");
    let mut cfg2 = config("cid-two-2");
    cfg2.rapid_commit = true;
    assert_ne!(cfg1.duid, cfg2.duid);
    assert_eq!(cfg1.iaid, cfg2.iaid);
    let (s1, i1) = client_socket(&ns1);
    let (s2, i2) = client_socket(&ns2);

    let t0 = Instant::now();
    let mut c1 = Client::new(cfg1.clone(), t0, 1);
    let (l1, sent1) = acquire(&mut c1, &s1, i1, deadline(STEP));
    let waited = t0.elapsed();
    eprintln!("c1 bound after {waited:?}");
    assert_eq!(exchanges(&sent1), [Solicit, Request], "{sent1:?}");
    assert!(
        waited > dhcp6::client::SOL_TIMEOUT,
        "without Preference 255 the client collects ADVERTISEs for the first RT: {waited:?}"
    );

    let mut c2 = Client::new(cfg2.clone(), Instant::now(), 2);
    let (l2, sent2) = acquire(&mut c2, &s2, i2, deadline(STEP));
    assert_eq!(
        sent2,
        [Solicit],
        "Rapid Commit: the REPLY to the SOLICIT binds"
    );

    check_lease(&l1, &cfg1);
    check_lease(&l2, &cfg2);
    assert_ne!(l1.address, l2.address);
    let f1 = wait_lease(&lab, &cfg1.duid, true, deadline(STEP)).unwrap();
    let f2 = wait_lease(&lab, &cfg2.duid, true, deadline(STEP)).unwrap();
    assert_eq!(f1.ip, l1.address.to_string());
    assert_eq!(f2.ip, l2.address.to_string());

    // Releasing one leaves the other's binding alone.
    send(&s1, i1, &c1.release().unwrap());
    wait_lease(&lab, &cfg1.duid, false, deadline(STEP));
    assert!(wait_lease(&lab, &cfg2.duid, true, deadline(STEP)).is_some());
    send(&s2, i2, &c2.release().unwrap());
    wait_lease(&lab, &cfg2.duid, false, deadline(STEP));
}

/// ICMPv6 type of a Router Solicitation (RFC 4861 §4.1).
const ROUTER_SOLICITATION: u8 = 133;
/// All-routers link-local multicast (RFC 4291 §2.7.1).
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// A raw ICMPv6 socket in `ns` on `eth0` reporting each packet's hop limit, and the ifindex.
fn icmp6_socket(ns: &Path) -> (Socket, u32) {
    NetNs::open(ns)
        .and_then(|n| {
            n.run(|| {
                let idx = ifindex(IFNAME)?;
                let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
                s.bind_device(Some(IFNAME.as_bytes()))?;
                s.set_multicast_if_v6(idx)?;
                // RFC 4861 §6.1.1: a Router Solicitation goes out with hop limit 255.
                s.set_multicast_hops_v6(255)?;
                nix::sys::socket::setsockopt(
                    &s,
                    nix::sys::socket::sockopt::Ipv6RecvHopLimit,
                    &true,
                )
                .map_err(io::Error::from)?;
                s.set_read_timeout(Some(Duration::from_secs(1)))?;
                Ok((s, idx))
            })
        })
        .expect("raw ICMPv6 socket in the container netns")
}

/// The server's link-local address on s0.
fn server_link_local(lab: &Lab) -> Ipv6Addr {
    let out = lab.exec_ok(
        lab.srv_ns(),
        &[
            "ip", "-6", "-o", "addr", "show", "dev", "s0", "scope", "link",
        ],
    );
    out.split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no link-local on s0: {out}"))
}

/// Solicits and reads Router Advertisements in `ns` until one arrives with hop limit 255 (the
/// caller's duty per `ra::parse`), and checks it describes dnsmasq's stateful link.
fn check_ra(lab: &Lab, ns: &Path, leased: Ipv6Addr) {
    let (sock, idx) = icmp6_socket(ns);
    let router = server_link_local(lab);
    let end = deadline(STEP);
    let rs = [ROUTER_SOLICITATION, 0, 0, 0, 0, 0, 0, 0];
    let to = SockAddr::from(SocketAddrV6::new(ALL_ROUTERS, 0, 0, idx));
    let mut buf = vec![0u8; 65536];
    let mut next_rs = Instant::now();
    let (ra, hop_limit) = loop {
        let now = Instant::now();
        assert!(
            now < end,
            "no Router Advertisement in time:\n{}",
            lab.dnsmasq_log()
        );
        if now >= next_rs {
            // The kernel fills in the ICMPv6 checksum on a raw ICMPv6 socket.
            sock.send_to(&rs, &to).expect("send Router Solicitation");
            next_rs = now + Duration::from_secs(3);
        }
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!(libc::c_int);
        let msg = match nix::sys::socket::recvmsg::<nix::sys::socket::SockaddrIn6>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            nix::sys::socket::MsgFlags::empty(),
        ) {
            Ok(m) => m,
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
            Err(e) => panic!("recvmsg: {e}"),
        };
        let n = msg.bytes;
        let source = msg.address.expect("source address").ip();
        let hop = msg.cmsgs().unwrap().find_map(|c| match c {
            nix::sys::socket::ControlMessageOwned::Ipv6HopLimit(h) => Some(h),
            _ => None,
        });
        if buf.first() != Some(&ra::ROUTER_ADVERTISEMENT) {
            continue; // our own or others' solicitations, neighbour discovery...
        }
        eprintln!("RA from {source}, {n} bytes, hop limit {hop:?}");
        if hop != Some(255) {
            continue;
        }
        break (
            ra::parse(&buf[..n], source).expect("dnsmasq's RA parses"),
            hop,
        );
    };
    eprintln!("{ra:?} (hop limit {hop_limit:?})");
    assert!(ra.malformed.is_empty(), "{:?}", ra.malformed);
    assert_eq!(ra.source, router, "the RA comes from s0's link-local");
    assert!(ra.managed, "M flag for a stateful DHCPv6 range");
    assert!(ra.other, "O flag");
    assert!(
        ra.router_lifetime > 0,
        "router lifetime {}",
        ra.router_lifetime
    );
    let p = ra
        .prefixes
        .iter()
        .find(|p| p.prefix.to_string() == "fd00:cd::/64")
        .unwrap_or_else(|| panic!("no fd00:cd::/64 prefix in {ra:?}"));
    assert!(p.on_link && !p.autonomous, "L set, A clear: {p:?}");
    assert_eq!(ra::on_link_prefix_len(&ra, leased), Some(64));
    assert!(
        ra.dns_servers.iter().any(|d| d.addresses.contains(&DNS)),
        "dnsmasq also puts the DHCPv6 DNS server in an RDNSS option: {:?}",
        ra.dns_servers
    );
    let (gw, life) = ra::default_router(&ra).expect("a default router");
    assert_eq!(gw, router);
    assert!(life > Duration::ZERO);
}
