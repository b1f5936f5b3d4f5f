//! The DHCPv6 client's socket: a UDP/IPv6 socket bound to port 546 on one container interface.
//!
//! DHCPv4 needs a packet socket because the interface has no IPv4 address before the lease
//! (docs/design.md, *Why a packet socket*). DHCPv6 does not: the client sends from the
//! interface's link-local address (RFC 3315 §16, kept by RFC 8415) to `ff02::1:2` port 547
//! (All_DHCP_Relay_Agents_and_Servers, RFC 8415 §7.1, §7.2), and servers answer to that
//! link-local address, port 546. So a plain UDP socket does, and the kernel builds and checks
//! IPv6 and UDP. It is bound to `[::]:546` and to the device (`SO_BINDTODEVICE`), so it hears
//! only its own interface, whatever else the namespace holds; multicast goes out of the same
//! interface (`IPV6_MULTICAST_IF`), one hop (`IPV6_MULTICAST_HOPS` 1: the messages are
//! link-scoped), and is not looped back to the namespace (`IPV6_MULTICAST_LOOP` off).
//!
//! The link-local address must be usable first: while it is tentative (Duplicate Address
//! Detection, RFC 4862 §5.4) the kernel has no source address for the link and a send fails
//! with `EADDRNOTAVAIL` (the test `send_while_tentative_fails_then_works` shows it); the driver
//! waits for [`crate::daemon::ra_listen::link_local_here`] to report it ready.
//!
//! [`open`] must run on a thread inside the container's network namespace (the daemon runs it
//! through `NetNs::run_async`, [`crate::netns`]); the returned [`Udp6Socket`] is then driven from
//! the shared runtime.
//!
//! Unlike a packet socket ([`crate::daemon::packet`], whose close waits for an RCU grace period
//! and is therefore handed to closer threads), a UDP socket closes in about a microsecond, so a
//! [`Udp6Socket`] is simply dropped on whichever thread holds it.

use std::io;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::OwnedFd;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::daemon::packet::LinkAddr;

/// UDP port DHCPv6 clients listen on (RFC 8415 §7.2).
pub(crate) const CLIENT_PORT6: u16 = crate::dhcp6::CLIENT_PORT;
/// UDP port DHCPv6 servers and relay agents listen on (RFC 8415 §7.2).
pub(crate) const SERVER_PORT6: u16 = crate::dhcp6::SERVER_PORT;

/// Largest datagram [`Udp6Socket::recv`] takes, in bytes: the largest UDP payload without
/// jumbograms (65535 less the 8-byte UDP header) fits, so nothing is ever truncated.
const RECV_MAX: usize = 64 * 1024;

/// Whether IPv6 is switched off on `ifname` (`net.ipv6.conf.<ifname>.disable_ipv6` is 1, in
/// the calling thread's namespace): no link-local address will come, so a DHCPv6 ADD fails at
/// once instead of waiting for one. Unreadable (no such interface, IPv6 off in the kernel):
/// false, and what follows finds out.
pub(crate) fn ipv6_disabled(ifname: &str) -> bool {
    conf_path(ifname, "disable_ipv6")
        .and_then(|p| std::fs::read_to_string(p).ok())
        .is_some_and(|v| v.trim() == "1")
}

/// `/proc/sys/net/ipv6/conf/<ifname>/<knob>` (ip-sysctl.rst), `None` when `ifname` could name
/// another directory (empty, `.`, `..`, a `/`).
fn conf_path(ifname: &str, knob: &str) -> Option<String> {
    let bad = ifname.is_empty() || ifname.contains('/') || ifname == "." || ifname == "..";
    (!bad).then(|| format!("/proc/sys/net/ipv6/conf/{ifname}/{knob}"))
}

/// Turns on Optimistic Duplicate Address Detection (RFC 4429) for `ifname`: its link-local
/// address is usable as a source at once instead of after DAD (1-2 s, RFC 4862 §5.4), so a
/// DHCPv6 SOLICIT can leave as soon as the link is up. Called only for a link the daemon
/// itself brings up (a main plugin may hand it over down), just before it does: the kernel
/// decides optimism when it makes the address. Writes `net.ipv6.conf.<ifname>.optimistic_dad`
/// and `use_optimistic` (ip-sysctl.rst) in the calling thread's namespace (`/proc/sys/net` is
/// the opener's namespace). A kernel built without CONFIG_IPV6_OPTIMISTIC_DAD has no such
/// files: DAD then runs as usual.
///
/// Must be called on a thread inside the target namespace. Errors: a write refused other than
/// by the file's absence.
pub(crate) fn optimistic_dad(ifname: &str) -> io::Result<()> {
    for knob in ["optimistic_dad", "use_optimistic"] {
        let path = conf_path(ifname, knob).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{ifname:?} is not an interface name"),
            )
        })?;
        match std::fs::write(path, "1") {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

/// Opens the DHCPv6 client socket on `ifname`: UDP/IPv6, close-on-exec, non-blocking,
/// `IPV6_V6ONLY`, `SO_REUSEADDR`, `SO_BINDTODEVICE` `ifname`, `IPV6_MULTICAST_IF` its index,
/// `IPV6_MULTICAST_HOPS` 1, `IPV6_MULTICAST_LOOP` off, bound to `[::]:546`. Returns the socket's
/// fd with the interface's index and MAC, looked up as [`crate::daemon::packet::open`] does
/// (`if_nametoindex(3)`, then the `AF_PACKET` entry of `getifaddrs(3)`).
///
/// With `expect`, the interface must be the one a lease was granted on: the same index and MAC
/// (as [`crate::daemon::packet::open_existing`]). Unlike `packet::open` it never brings the link
/// up: the caller does, and then waits for the link-local address.
///
/// `SO_REUSEADDR`: each container's socket lives in its own namespace and never meets another
/// container's, but a restarted daemon may still hold its predecessor's socket on the same
/// interface for a moment (and a DHCPv6 client in the container itself may hold port 546).
/// Between sockets bound alike, Linux gives each multicast datagram to all of them and a
/// unicast one to one of them.
///
/// Must be called on a thread inside the target network namespace.
///
/// Errors: `NotFound` when no such interface exists (`if_nametoindex` says `ENODEV`), it has no
/// hardware address, it was renamed while the socket was being opened, or, with `expect`, it is
/// another interface under the same name (deleted and made again); the errors of `socket(2)`,
/// `setsockopt(2)` (`ENODEV` from `SO_BINDTODEVICE` when the interface went away meanwhile) and
/// `bind(2)` (`EADDRINUSE` when a socket without `SO_REUSEADDR` holds port 546).
pub(crate) fn open(ifname: &str, expect: Option<LinkAddr>) -> io::Result<(OwnedFd, LinkAddr)> {
    let link = lookup_link(ifname)?;
    if let Some(e) = expect
        && (e.ifindex != link.ifindex || e.mac != link.mac)
    {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{ifname} is another interface than the lease's (index {}, the lease's {})",
                link.ifindex, e.ifindex
            ),
        ));
    }

    let socket = Socket::new(
        Domain::IPV6,
        Type::DGRAM.nonblocking().cloexec(),
        Some(Protocol::UDP),
    )?;
    socket.set_only_v6(true)?;
    socket.set_reuse_address(true)?;
    socket.bind_device(Some(ifname.as_bytes()))?;
    // SO_BINDTODEVICE takes a name: make sure it still names the interface checked above.
    let now = index_of(ifname)?;
    if now != link.ifindex {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{ifname} changed while its socket was opened (index {} then {now})",
                link.ifindex
            ),
        ));
    }
    socket.set_multicast_if_v6(link.ifindex)?;
    socket.set_multicast_hops_v6(1)?;
    socket.set_multicast_loop_v6(false)?;
    let any = SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, CLIENT_PORT6, 0, 0);
    socket.bind(&any.into())?;
    Ok((socket.into(), link))
}

/// The index of `ifname` in the calling thread's namespace.
///
/// Errors: `NotFound` (from `ENODEV`) when there is no such interface.
fn index_of(ifname: &str) -> io::Result<u32> {
    nix::net::if_::if_nametoindex(ifname)
        .map_err(|e| io::Error::new(io::ErrorKind::NotFound, format!("{ifname}: {e}")))
}

/// The index and MAC of `ifname`: the index from `if_nametoindex(3)`, the MAC as the IPv4
/// packet socket reads it ([`crate::daemon::packet::link_mac`]).
///
/// Errors: `NotFound` when there is no such interface or it has no hardware address;
/// `getifaddrs` failing.
fn lookup_link(ifname: &str) -> io::Result<LinkAddr> {
    let ifindex = index_of(ifname)?;
    let mac = crate::daemon::packet::link_mac(ifname)?;
    Ok(LinkAddr { ifindex, mac })
}

/// A datagram received from port 547.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Received6 {
    /// The UDP payload: a DHCPv6 message, not yet validated.
    pub(crate) payload: Vec<u8>,
    /// Where it came from: the server's or relay's address (link-local for a server on the
    /// link, with `scope_id` the interface's index), port 547.
    pub(crate) src: SocketAddrV6,
}

/// The DHCPv6 client socket, registered with the runtime's reactor. Dropping it closes the
/// descriptor at once (fast for UDP, see the module doc).
#[derive(Debug)]
pub(crate) struct Udp6Socket {
    socket: tokio::net::UdpSocket,
    link: LinkAddr,
}

impl Udp6Socket {
    /// Wraps a socket returned by [`open`] on the interface `link`. Must be called within the
    /// tokio runtime, like [`crate::daemon::packet::PacketSocket::new`].
    ///
    /// Errors: registering with the reactor failing.
    pub(crate) fn new(fd: OwnedFd, link: LinkAddr) -> io::Result<Udp6Socket> {
        let std_socket = std::net::UdpSocket::from(fd);
        // `open` made it non-blocking already; this makes sure for any other fd.
        std_socket.set_nonblocking(true)?;
        let socket = tokio::net::UdpSocket::from_std(std_socket)?;
        Ok(Udp6Socket { socket, link })
    }

    /// The interface the socket was opened on (tests check it).
    #[cfg(test)]
    pub(crate) fn link(&self) -> LinkAddr {
        self.link
    }

    /// Sends `payload` as one UDP datagram from port 546 to `dst`, without waiting. A
    /// link-local or multicast `dst` with `scope_id` 0 (as [`crate::dhcp6::ALL_SERVERS_SOCKET`])
    /// is sent on this socket's interface; the kernel picks the link-local source address.
    ///
    /// Errors: `WouldBlock` when the socket's send buffer is full (the caller retries, its
    /// retransmission timer at the latest); `EADDRNOTAVAIL` while the link-local address is
    /// still tentative; `ENETDOWN`/`ENOBUFS` and the other `sendto(2)` errors as they are.
    pub(crate) fn send_to(&self, payload: &[u8], dst: SocketAddrV6) -> io::Result<()> {
        let dst = scoped(dst, self.link.ifindex);
        // Straight to sendto(2): tokio's try_send_to answers WouldBlock, without trying, until
        // the reactor has reported the socket writable once (not yet right after `new`).
        SockRef::from(&self.socket).send_to(payload, &dst.into())?;
        Ok(())
    }

    /// Waits for the next datagram from port 547 (up to 64 KiB; datagrams from any other source
    /// port are dropped: only servers and relay agents send from 547, RFC 8415 §7.2).
    ///
    /// Errors: the `recvfrom(2)` error (rare on a UDP socket; `ENOMEM` and the like).
    pub(crate) async fn recv(&self) -> io::Result<Received6> {
        let mut buf = vec![0u8; RECV_MAX];
        loop {
            let (n, src) = self.socket.recv_from(&mut buf).await?;
            match src {
                SocketAddr::V6(src) if src.port() == SERVER_PORT6 => {
                    return Ok(Received6 {
                        payload: buf.get(..n).unwrap_or(&buf).to_vec(),
                        src,
                    });
                }
                // Another source port, or (impossible on a V6ONLY socket) IPv4.
                _ => continue,
            }
        }
    }
}

/// `dst` with `scope_id` set to `ifindex` when it needs a scope (link-local unicast, or
/// multicast) and has none; otherwise `dst` as it is.
fn scoped(mut dst: SocketAddrV6, ifindex: u32) -> SocketAddrV6 {
    let ip = dst.ip();
    if dst.scope_id() == 0 && (ip.is_unicast_link_local() || ip.is_multicast()) {
        dst.set_scope_id(ifindex);
    }
    dst
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::ra_listen::testnet::{A_LL, A_MAC, B_LL, Dad, VethPair};
    use crate::daemon::ra_listen::{LinkLocal, link_local_here};
    use std::time::{Duration, Instant};

    /// Long enough for a loaded 2-core builder, short enough to fail a broken test quickly.
    const WAIT: Duration = Duration::from_secs(5);

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A plain UDP socket in the peer's namespace on `v1`, bound to `addr`, with a receive
    /// timeout; joined to `ff02::1:2` on `v1` when `join`.
    fn peer_socket(pair: &VethPair, addr: SocketAddrV6, join: bool) -> std::net::UdpSocket {
        let b_index = pair.b_index;
        pair.b
            .run(move || {
                let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
                s.set_only_v6(true)?;
                s.set_reuse_address(true)?;
                s.bind_device(Some(b"v1"))?;
                if join {
                    s.join_multicast_v6(&crate::dhcp6::ALL_SERVERS, b_index)?;
                }
                s.bind(&addr.into())?;
                s.set_read_timeout(Some(WAIT))?;
                Ok(std::net::UdpSocket::from(s))
            })
            .unwrap()
    }

    #[test]
    fn scope_is_added_to_link_scoped_destinations_only() {
        let all = crate::dhcp6::ALL_SERVERS_SOCKET;
        assert_eq!(scoped(all, 7).scope_id(), 7);
        let ll = SocketAddrV6::new(B_LL, 547, 0, 0);
        assert_eq!(scoped(ll, 7).scope_id(), 7);
        let given = SocketAddrV6::new(B_LL, 547, 0, 3);
        assert_eq!(scoped(given, 7).scope_id(), 3);
        let global = SocketAddrV6::new("2001:db8::1".parse().unwrap(), 547, 0, 0);
        assert_eq!(scoped(global, 7), global);
    }

    /// `open` finds the link (index, MAC), refuses another one under the name and a missing
    /// one, and the socket hears a unicast from port 547 on its link-local address but not one
    /// from another port; a multicast to `ff02::1:2` reaches a listener on the peer.
    #[test]
    fn unicast_in_and_multicast_out_over_a_veth() {
        let Some(pair) = VethPair::new("unicast_in_and_multicast_out_over_a_veth", Dad::Off) else {
            return;
        };
        let (fd, link) = pair.a.run(|| open("v0", None)).unwrap();
        assert_eq!(link, pair.a_link);
        assert_eq!(link.mac, A_MAC);

        // Another link under the lease's name: wrong index, or same index and other MAC.
        let other_index = LinkAddr {
            ifindex: link.ifindex + 100,
            ..link
        };
        let err = pair
            .a
            .run(move || open("v0", Some(other_index)))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        let other_mac = LinkAddr {
            mac: [2, 0, 0, 0, 0, 1],
            ..link
        };
        let err = pair.a.run(move || open("v0", Some(other_mac))).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        let err = pair.a.run(|| open("nosuch0", None)).unwrap_err();
        assert!(crate::link::is_not_found(&err), "{err}");
        // The lease's own link passes, and a second socket can share port 546 (SO_REUSEADDR).
        let (fd2, _) = pair.a.run(move || open("v0", Some(link))).unwrap();
        drop(fd2);

        let from_other_port = peer_socket(&pair, SocketAddrV6::new(B_LL, 5470, 0, 0), false);
        let server = peer_socket(&pair, SocketAddrV6::new(B_LL, SERVER_PORT6, 0, 0), false);
        let listener = peer_socket(
            &pair,
            SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, SERVER_PORT6, 0, 0),
            true,
        );
        let to_client = SocketAddrV6::new(A_LL, CLIENT_PORT6, 0, pair.b_index);

        runtime().block_on(async {
            let sock = Udp6Socket::new(fd, link).unwrap();
            assert_eq!(sock.link(), link);

            // Dropped: not from port 547. Then the server's datagram, which must be next.
            from_other_port.send_to(b"not-a-server", to_client).unwrap();
            server.send_to(b"advertise", to_client).unwrap();
            let got = tokio::time::timeout(WAIT, sock.recv())
                .await
                .expect("no datagram from port 547")
                .unwrap();
            assert_eq!(got.payload, b"advertise");
            assert_eq!(*got.src.ip(), B_LL);
            assert_eq!(got.src.port(), SERVER_PORT6);
            assert_eq!(got.src.scope_id(), link.ifindex);

            // Multicast with scope 0, as the client's Transmit gives it.
            sock.send_to(b"solicit", crate::dhcp6::ALL_SERVERS_SOCKET)
                .unwrap();
        });
        let mut buf = [0u8; 64];
        let (n, src) = listener
            .recv_from(&mut buf)
            .expect("no multicast at the peer");
        assert_eq!(&buf[..n], b"solicit");
        match src {
            SocketAddr::V6(src) => {
                assert_eq!(*src.ip(), A_LL, "sent from the link-local address");
                assert_eq!(src.port(), CLIENT_PORT6);
            }
            other => panic!("IPv4 source {other}"),
        }
    }

    /// With Duplicate Address Detection, the link-local address is tentative for a second or
    /// two after the link comes up; sending then fails with EADDRNOTAVAIL (no source address),
    /// on this socket and on the Router Solicitation's, and works once the address is ready.
    /// What the driver's wait for the link-local is for.
    #[test]
    fn send_while_tentative_fails_then_works() {
        let Some(pair) = VethPair::new("send_while_tentative_fails_then_works", Dad::On) else {
            return;
        };
        let ifindex = pair.a_link.ifindex;
        let poll = |until: fn(&LinkLocal) -> bool| {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let state = pair.a.run(move || link_local_here(ifindex)).unwrap();
                if until(&state) || Instant::now() > deadline {
                    return state;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        let first = poll(|s| !matches!(s, LinkLocal::Missing));
        assert_eq!(first, LinkLocal::Tentative);
        let (fd, link) = pair.a.run(|| open("v0", None)).unwrap();
        let listener = peer_socket(
            &pair,
            SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, SERVER_PORT6, 0, 0),
            true,
        );
        let rt = runtime();
        let sock = rt.block_on(async { Udp6Socket::new(fd, link) }).unwrap();
        let err = rt
            .block_on(async { sock.send_to(b"early", crate::dhcp6::ALL_SERVERS_SOCKET) })
            .unwrap_err();
        eprintln!("send while tentative: {err} ({:?})", err.raw_os_error());
        assert_eq!(err.raw_os_error(), Some(libc::EADDRNOTAVAIL), "{err}");
        let ra_fd = pair.a.run(|| crate::daemon::ra_listen::open("v0")).unwrap();
        let ra = rt
            .block_on(async { crate::daemon::ra_listen::RaSocket::new(ra_fd) })
            .unwrap();
        // A Router Solicitation alike: the kernel does not fall back to `::` as its source.
        let err = ra.solicit(ifindex, A_MAC).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EADDRNOTAVAIL), "{err}");

        let LinkLocal::Ready(ll) = poll(|s| matches!(s, LinkLocal::Ready(_))) else {
            panic!("the link-local address never became ready");
        };
        assert!(ll.is_unicast_link_local());
        rt.block_on(async { sock.send_to(b"late", crate::dhcp6::ALL_SERVERS_SOCKET) })
            .unwrap();
        ra.solicit(ifindex, A_MAC).unwrap();
        let mut buf = [0u8; 64];
        let (n, src) = listener
            .recv_from(&mut buf)
            .expect("no multicast at the peer");
        assert_eq!(&buf[..n], b"late");
        assert_eq!(src.ip(), std::net::IpAddr::V6(ll));
    }
}
