//! Router Advertisements and link-local readiness, in the container's network namespace: what a
//! DHCPv6 lease needs besides its address.
//!
//! DHCPv6 (RFC 8415) grants a bare address; its prefix length and the default router come from
//! the link's Router Advertisements (RFC 4861 §4.2; docs/design.md, *Router Advertisements*).
//! This module is the I/O around the sans-IO parser [`crate::ra`]: a raw ICMPv6 socket on one
//! interface that receives only Router Advertisements ([`open`], [`RaSocket`]), sends a Router
//! Solicitation (§4.1, [`RaSocket::solicit`]) so that a router answers at once rather than at its
//! next periodic advertisement (up to 600 s by default, §6.2.1), and waits for the first
//! advertisement that parses ([`first_router`]), whose [`Heard`] gives the prefix length of an
//! address and the default router through [`crate::ra`]'s helpers.
//!
//! What RFC 4861 §6.1.2 asks of a receiver and the payload cannot show is checked here, before
//! [`crate::ra::parse`]: the IPv6 hop limit must be 255 (read from the `IPV6_HOPLIMIT` control
//! message, RFC 3542 §6.3), so no off-link node can forge one, and the source must be
//! link-local. The ICMPv6 checksum is the kernel's: a raw ICMPv6 socket has checksumming on,
//! at offset 2, from its creation (`rawv6_init_sk` in net/ipv6/raw.c; RFC 3542 §3.1), so the
//! kernel fills it in on send and verifies it on receive; the tests check both.
//!
//! Both the DHCPv6 socket ([`crate::daemon::udp6`]) and the Router Solicitation need a usable
//! link-local source address, which is tentative for a second or two after the link comes up
//! (Duplicate Address Detection, RFC 4862 §5.4): [`link_local_here`] says when it is ready.
//!
//! [`open`] and [`link_local_here`] must run on a thread inside the container's network
//! namespace (`NetNs::run_async`, [`crate::netns`]); the [`RaSocket`] is then driven from the
//! shared runtime. Like a UDP socket and unlike a packet socket ([`crate::daemon::packet`]), a
//! raw socket is closed by a plain drop: its release does not wait for an RCU grace period
//! (dropping an [`RaSocket`] took 62 µs, deregistration included, in the test
//! `first_router_hears_a_valid_ra_and_drops_forged_ones`, which prints it).

use std::io;
use std::io::IoSliceMut;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrIn6};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::ra::{self, RouterAdvertisement};

/// ICMPv6 type of a Router Solicitation (RFC 4861 §4.1).
pub(crate) const ROUTER_SOLICITATION: u8 = 133;

/// All-routers link-local multicast address (RFC 4291 §2.7.1): where a Router Solicitation goes.
pub(crate) const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// The IPv6 hop limit of every Neighbor Discovery message, sent and accepted (RFC 4861 §6.1.2,
/// §6.1.1 for solicitations).
pub(crate) const ND_HOP_LIMIT: u8 = 255;

/// `ICMP6_FILTER` (linux/icmpv6.h; not in the `libc` crate): the socket option, at level
/// `IPPROTO_ICMPV6`, that sets which ICMPv6 types a raw ICMPv6 socket receives (RFC 3542 §3.2).
const ICMP6_FILTER: libc::c_int = 1;

/// Largest message [`RaSocket::recv`] takes, in bytes: an IPv6 payload without jumbograms.
/// Longer ones (reported by `MSG_TRUNC`) are dropped, not parsed cut short.
const RECV_MAX: usize = 64 * 1024;

/// Where the calling thread's namespace lists its IPv6 addresses (proc(5); `/proc/net` would
/// show the namespace of the process's main thread, not this thread's).
const IF_INET6: &str = "/proc/thread-self/net/if_inet6";

/// The state of an interface's link-local (fe80::/10) address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkLocal {
    /// Usable as a source address: DAD is done, off (`nodad`), or optimistic (RFC 4429).
    Ready(Ipv6Addr),
    /// Still in Duplicate Address Detection: sends from it fail (`EADDRNOTAVAIL`); usually ready
    /// within one or two seconds (RetransTimer 1 s per probe, after a random delay under 1 s).
    Tentative,
    /// DAD failed: another node on the link has the address. It will not become ready by itself.
    DadFailed,
    /// No link-local address: the link has no carrier yet (the kernel makes it once the link is
    /// up with carrier), IPv6 is disabled on it, `addrgenmode none`, or no such interface.
    Missing,
}

impl LinkLocal {
    /// Order of preference when an interface has several link-local addresses.
    fn rank(&self) -> u8 {
        match self {
            LinkLocal::Missing => 0,
            LinkLocal::DadFailed => 1,
            LinkLocal::Tentative => 2,
            LinkLocal::Ready(_) => 3,
        }
    }
}

/// The state of the link-local address of interface `ifindex` in the calling thread's network
/// namespace, from `/proc/thread-self/net/if_inet6` (format at [`parse_if_inet6`]). With
/// several link-local addresses, the best state wins (a ready one, else a tentative one...).
///
/// Must be called on a thread inside the target namespace. Cheap: one read of a small file.
///
/// Errors: reading the file failing other than by its absence (no file: IPv6 is disabled in
/// the kernel, which is [`LinkLocal::Missing`]).
pub(crate) fn link_local_here(ifindex: u32) -> io::Result<LinkLocal> {
    match std::fs::read_to_string(IF_INET6) {
        Ok(text) => Ok(parse_if_inet6(&text, ifindex)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(LinkLocal::Missing),
        Err(e) => Err(e),
    }
}

/// The state of interface `ifindex`'s link-local address in `text`, the contents of
/// `if_inet6`: one line per address, fields separated by spaces (net/ipv6/addrconf.c,
/// `if6_seq_show`, format `"%pi6 %02x %02x %02x %02x %8s"`):
///
/// 1. the address, 32 hex digits without colons;
/// 2. the interface index, hex (at least 2 digits);
/// 3. the prefix length, hex;
/// 4. the scope, hex (`20` link, `00` global, `10` host);
/// 5. the low 8 bits of the `IFA_F_*` flags, hex: `40` tentative, `08` DAD failed (set with
///    tentative), `04` optimistic (set with tentative, counts as ready), `80` permanent;
/// 6. the interface name, right-aligned in 8 columns.
///
/// Only addresses in fe80::/10 count. Malformed lines are skipped; no line for the interface
/// (IPv6 disabled on it, none made yet) is [`LinkLocal::Missing`].
fn parse_if_inet6(text: &str, ifindex: u32) -> LinkLocal {
    parse_if_inet6_for(text, ifindex, |a| a.is_unicast_link_local())
}

/// The DAD state of `address` on interface `ifindex` in the calling thread's namespace, in the
/// terms of [`LinkLocal`] (`Missing`: not on the interface): how the daemon finds that a leased
/// DHCPv6 address the main plugin configured failed duplicate address detection (RFC 8415
/// §18.2.8: DECLINE it).
///
/// Must be called on a thread inside the target namespace. Errors: as [`link_local_here`].
pub(crate) fn address_here(ifindex: u32, address: Ipv6Addr) -> io::Result<LinkLocal> {
    match std::fs::read_to_string(IF_INET6) {
        Ok(text) => Ok(parse_if_inet6_for(&text, ifindex, |a| a == address)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(LinkLocal::Missing),
        Err(e) => Err(e),
    }
}

/// [`parse_if_inet6`] of the addresses `wanted` accepts.
fn parse_if_inet6_for(text: &str, ifindex: u32, wanted: impl Fn(Ipv6Addr) -> bool) -> LinkLocal {
    let mut best = LinkLocal::Missing;
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(addr), Some(index), Some(_plen), Some(_scope), Some(flags)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        let Some(addr) = hex_addr(addr) else {
            continue;
        };
        let (Some(index), Some(flags)) = (hex_u32(index), hex_u32(flags)) else {
            continue;
        };
        if index != ifindex || !wanted(addr) {
            continue;
        }
        let state = match crate::link::DadState::from_flags(flags) {
            crate::link::DadState::Failed => LinkLocal::DadFailed,
            crate::link::DadState::Tentative => LinkLocal::Tentative,
            crate::link::DadState::Ready => LinkLocal::Ready(addr),
        };
        if state.rank() > best.rank() {
            best = state;
        }
    }
    best
}

/// 32 hex digits as an IPv6 address; `None` for anything else (a sign, wrong length).
fn hex_addr(s: &str) -> Option<Ipv6Addr> {
    if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(s, 16).ok().map(Ipv6Addr::from)
}

/// 1 to 8 hex digits as a number; `None` for anything else.
fn hex_u32(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// A `struct icmp6_filter` (linux/icmpv6.h) that lets only the ICMPv6 types in `pass` through:
/// 256 bits in 8 `u32` words in host byte order, type `t` being bit `t % 32` of word `t / 32`.
/// On Linux a **set bit blocks** its type (the kernel's `icmpv6_filter` drops when the bit is
/// set; glibc's `ICMP6_FILTER_SETPASS` clears it), so this starts from all ones.
fn icmp6_filter_passing(pass: &[u8]) -> [u32; 8] {
    let mut words = [u32::MAX; 8];
    for &t in pass {
        words[usize::from(t >> 5)] &= !(1u32 << (t & 31));
    }
    words
}

/// Sets `ICMP6_FILTER` on `socket` to `words` (from [`icmp6_filter_passing`]).
///
/// Errors: `setsockopt(2)` failing (`ENOPROTOOPT` on a socket that is not raw ICMPv6).
fn set_icmp6_filter(socket: &Socket, words: &[u32; 8]) -> io::Result<()> {
    // SAFETY: a valid socket, and a readable buffer of exactly the option's size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_ICMPV6,
            ICMP6_FILTER,
            words.as_ptr().cast(),
            std::mem::size_of_val(words) as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens the Router Advertisement socket on `ifname`: raw ICMPv6, close-on-exec, non-blocking,
/// `SO_BINDTODEVICE` `ifname`, an `ICMP6_FILTER` passing only type 134, `IPV6_RECVHOPLIMIT` on,
/// and hop limit 255 (`IPV6_MULTICAST_HOPS`, `IPV6_UNICAST_HOPS`) for the Router Solicitation
/// it sends. Anything that reached the socket before the filter and the device binding were in
/// place is read and thrown away before it is returned.
///
/// Needs `CAP_NET_RAW` in the namespace's user namespace (the daemon runs as root). Must be
/// called on a thread inside the target network namespace.
///
/// Errors: the errors of `socket(2)` (`EPERM` without `CAP_NET_RAW`) and `setsockopt(2)`
/// (`ENODEV` from `SO_BINDTODEVICE` when there is no such interface).
pub(crate) fn open(ifname: &str) -> io::Result<OwnedFd> {
    let socket = Socket::new(
        Domain::IPV6,
        Type::RAW.nonblocking().cloexec(),
        Some(Protocol::ICMPV6),
    )?;
    set_icmp6_filter(&socket, &icmp6_filter_passing(&[ra::ROUTER_ADVERTISEMENT]))?;
    socket.bind_device(Some(ifname.as_bytes()))?;
    socket.set_recv_hoplimit_v6(true)?;
    socket.set_multicast_hops_v6(u32::from(ND_HOP_LIMIT))?;
    socket.set_unicast_hops_v6(u32::from(ND_HOP_LIMIT))?;
    // A raw socket receives from its creation: drop what came in before the options above
    // (other types, other interfaces, no hop limit). Bounded by the receive buffer.
    let mut scratch = [std::mem::MaybeUninit::<u8>::uninit(); 64];
    while socket.recv(&mut scratch).is_ok() {}
    Ok(socket.into())
}

/// ICMPv6 option type of a Source Link-Layer Address (RFC 4861 §4.6.1).
const OPT_SOURCE_LINK_LAYER_ADDRESS: u8 = 1;

/// Length of [`router_solicitation`]'s message: 8 bytes of header, 8 of option.
const ROUTER_SOLICITATION_LEN: usize = 16;

/// One Router Solicitation (RFC 4861 §4.1) from the interface whose MAC is `mac`: type 133,
/// code 0, checksum 0 (the kernel fills it in), 4 reserved bytes, and the Source Link-Layer
/// Address option (type 1, length 1 in units of 8 bytes, the MAC), which §4.1 says SHOULD be
/// there when the source is not `::` (ours is the link-local address). A router's kernel
/// (Linux with forwarding on the interface, `ndisc_recv_rs`) makes a neighbour entry for the
/// sender from it (§6.2.6), so the router knows the container's MAC before the SOLICIT that
/// follows at once. That matters to dnsmasq on the router: its DHCPv6 server looks every
/// client up in the neighbour table and, on a miss, sends a Neighbor Solicitation and sleeps
/// 100 ms (up to 5 times) before it answers anyone, DHCPv4 included (`get_client_mac`, dnsmasq
/// 2.90). Measured in the benchmark's lab, 100 dual-stack ADDs at once: 1.43 s without the
/// option (189 SOLICITs for 100: the first ones waited out their retransmission), 0.28-0.36 s
/// with it (docs/performance.md, *Dual stack*).
fn router_solicitation(mac: [u8; 6]) -> [u8; ROUTER_SOLICITATION_LEN] {
    let mut m = [0u8; ROUTER_SOLICITATION_LEN];
    m[0] = ROUTER_SOLICITATION;
    m[8] = OPT_SOURCE_LINK_LAYER_ADDRESS;
    m[9] = 1;
    m[10..].copy_from_slice(&mac);
    m
}

/// The Router Advertisement socket, registered with the runtime's reactor. Dropping it closes
/// the descriptor at once (see the module doc).
#[derive(Debug)]
pub(crate) struct RaSocket {
    fd: AsyncFd<OwnedFd>,
}

/// What one `recvmsg(2)` on the socket gave.
enum Got {
    /// A message with its source: hop limit 255, link-local source.
    Message(Ipv6Addr, Vec<u8>),
    /// Something to skip (wrong hop limit or source, truncated, or a message the kernel
    /// dropped for its checksum); more may be queued.
    Skipped,
}

impl RaSocket {
    /// Wraps a socket returned by [`open`]. Must be called within the tokio runtime.
    ///
    /// Errors: registering with the reactor failing.
    pub(crate) fn new(fd: OwnedFd) -> io::Result<RaSocket> {
        // SAFETY: an OwnedFd is a valid open descriptor, owned by the AsyncFd for its whole life.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(RaSocket { fd })
    }

    /// Sends one Router Solicitation ([`router_solicitation`], with `mac`, the interface's
    /// hardware address, as its source link-layer address) to `ff02::2` on interface `ifindex`
    /// (the socket's), hop limit 255, from the interface's link-local address, without waiting.
    ///
    /// Errors: `WouldBlock` when the send buffer is full; `EADDRNOTAVAIL` while the link-local
    /// address is tentative; `ENETDOWN`, `ENODEV` and the other `sendto(2)` errors as they are.
    pub(crate) fn solicit(&self, ifindex: u32, mac: [u8; 6]) -> io::Result<()> {
        let dst = SocketAddrV6::new(ALL_ROUTERS, 0, 0, ifindex);
        SockRef::from(self.fd.get_ref()).send_to(&router_solicitation(mac), &dst.into())?;
        Ok(())
    }

    /// Waits for the next ICMPv6 message that passes the filter (a Router Advertisement, not
    /// yet validated) with hop limit 255 and a link-local source (RFC 4861 §6.1.2), and returns
    /// its IPv6 source and the message from its type byte. Messages that fail either check, or
    /// arrive without a hop limit or longer than 64 KiB, are dropped.
    ///
    /// Errors: the `recvmsg(2)` error (rare: `ENOMEM`, `ENOBUFS` for a truncated control
    /// message...).
    pub(crate) async fn recv(&self) -> io::Result<(Ipv6Addr, Vec<u8>)> {
        let mut buf = vec![0u8; RECV_MAX];
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| recv_one(fd.get_ref().as_fd(), &mut buf)) {
                Ok(Ok(Got::Message(src, msg))) => return Ok((src, msg)),
                Ok(Ok(Got::Skipped)) => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

/// One `recvmsg(2)` on the raw socket `fd` into `buf`, with the checks of [`RaSocket::recv`].
///
/// The kernel verifies the ICMPv6 checksum before it queues a message (`rawv6_rcv_skb` in
/// net/ipv6/raw.c drops a bad one, the test `a_wrong_checksum_is_dropped_by_the_kernel` shows
/// it). `rawv6_recvmsg` has a second check for messages queued unverified, which kills the
/// message and fails with `EAGAIN` even when more are queued; as `WouldBlock` that would clear
/// the reactor's readiness, and with edge-triggered epoll the queued messages would wait for the
/// next arrival. So, defensively, `EAGAIN` with a non-empty queue (`FIONREAD`) is
/// [`Got::Skipped`].
fn recv_one(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Got> {
    let raw = fd.as_raw_fd();
    let mut cmsg = nix::cmsg_space!(libc::c_int);
    let len = buf.len();
    let mut iov = [IoSliceMut::new(buf)];
    let msg = match nix::sys::socket::recvmsg::<SockaddrIn6>(
        raw,
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_TRUNC,
    ) {
        Ok(msg) => msg,
        Err(nix::errno::Errno::EAGAIN) => {
            return if queued(raw) {
                Ok(Got::Skipped)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        Err(e) => return Err(e.into()),
    };
    let n = msg.bytes;
    let src = msg.address.map(|a| a.ip());
    let mut hop_limit = None;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::Ipv6HopLimit(h) = c {
            hop_limit = Some(h);
        }
    }
    let Some(src) = src else {
        return Ok(Got::Skipped);
    };
    if n > len || hop_limit != Some(i32::from(ND_HOP_LIMIT)) || !src.is_unicast_link_local() {
        return Ok(Got::Skipped);
    }
    Ok(Got::Message(src, buf.get(..n).unwrap_or_default().to_vec()))
}

/// Whether a message is waiting on the raw socket `fd` (`FIONREAD`: the next message's length).
fn queued(fd: libc::c_int) -> bool {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `n`.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    rc == 0 && n > 0
}

/// A Router Advertisement that parsed ([`crate::ra::parse`]), with the router that sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Heard {
    /// The advertisement's IPv6 source: the router's link-local address (the same as
    /// `ra.source`), to be used with the interface it arrived on.
    pub(crate) router: Ipv6Addr,
    /// The advertisement.
    pub(crate) ra: RouterAdvertisement,
}

impl Heard {
    /// The prefix length to give `address` (the DHCPv6 lease's): the longest on-link prefix
    /// of the advertisement that contains it ([`crate::ra::on_link_prefix_len`]); `None` means
    /// /128 (no prefix says the address is on-link, RFC 5942 §4, §5).
    pub(crate) fn prefix_len_for(&self, address: Ipv6Addr) -> Option<u8> {
        ra::on_link_prefix_len(&self.ra, address)
    }

    /// The default router and its lifetime in seconds, counted from reception (about when
    /// [`first_router`] returned); `None` when the router lifetime is 0: not a default router
    /// ([`crate::ra::default_router`]).
    pub(crate) fn default_router(&self) -> Option<(Ipv6Addr, Duration)> {
        ra::default_router(&self.ra)
    }
}

/// Waits up to `within` for a Router Advertisement on `sock` that [`crate::ra::parse`] accepts,
/// and returns it with its router. Advertisements that do not parse (RFC 4861 §6.1.2) are
/// skipped and logged at debug level. The caller sends [`RaSocket::solicit`] first (and again,
/// RFC 4861 §6.3.7 allows 3 at 4-second intervals, if it waits longer).
///
/// `None`: nothing valid within `within` (no router on the link, or ipvlan in mode l3, where
/// no RA arrives), or the socket failed (logged; a raw socket does not fail in practice).
pub(crate) async fn first_router(sock: &RaSocket, within: Duration) -> Option<Heard> {
    // tokio's timeout saturates a deadline beyond its clock's range to "never".
    tokio::time::timeout(within, async {
        loop {
            match sock.recv().await {
                Ok((src, msg)) => match ra::parse(&msg, src) {
                    Ok(ra) => return Some(Heard { router: src, ra }),
                    Err(e) => {
                        tracing::debug!(router = %src, error = %e, "router advertisement ignored")
                    }
                },
                Err(e) => {
                    tracing::debug!(error = %e, "router advertisement socket failed");
                    return None;
                }
            }
        }
    })
    .await
    .unwrap_or(None)
}

/// Network namespaces with a veth pair between them, for the socket tests of this module and
/// of [`crate::daemon::udp6`].
#[cfg(test)]
pub(crate) mod testnet {
    use std::net::Ipv6Addr;
    use std::path::Path;
    use std::process::Command;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    use crate::daemon::packet::LinkAddr;
    use crate::netns::NetNs;

    /// Prefix of the namespaces these tests make: `cdu6.<pid>.<seq>.a` and `.b`.
    const TAG: &str = "cdu6.";

    /// The container side's link-local address with [`Dad::Off`].
    pub(crate) const A_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0xa);
    /// The peer side's link-local address with [`Dad::Off`].
    pub(crate) const B_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0xb);
    /// The container side's MAC.
    pub(crate) const A_MAC: [u8; 6] = [0x02, 0, 0x5e, 0x10, 0, 0x0a];

    /// How the link-local addresses come about.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Dad {
        /// Static `fe80::a/64` and `fe80::b/64` with `nodad` (addrgenmode none): ready at once.
        Off,
        /// The kernel's EUI-64 link-locals with Duplicate Address Detection, as on a real link.
        On,
    }

    /// Namespace `a` (the container) holding `v0`, namespace `b` (the peer) holding `v1`, a
    /// veth pair, both up. Dropping deletes both namespaces (and with them the pair).
    pub(crate) struct VethPair {
        names: [String; 2],
        pub(crate) a: NetNs,
        pub(crate) b: NetNs,
        /// `v0`'s index in `a` and its MAC.
        pub(crate) a_link: LinkAddr,
        /// `v1`'s index in `b`.
        pub(crate) b_index: u32,
    }

    /// Why these tests cannot run here, or `None`.
    pub(crate) fn unavailable() -> Option<String> {
        if !nix::unistd::geteuid().is_root() {
            return Some("needs root (network namespaces)".into());
        }
        let found = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
            .iter()
            .any(|p| Path::new(p).is_file());
        (!found).then(|| "`ip` (iproute2) not found".into())
    }

    /// Runs `ip` with `args`; panics with its stderr when it fails.
    pub(crate) fn ip(args: &[&str]) {
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The index of `ifname` in the calling thread's namespace.
    fn index_of(ifname: &str) -> std::io::Result<u32> {
        nix::net::if_::if_nametoindex(ifname).map_err(std::io::Error::from)
    }

    /// Deletes namespaces left by an earlier test process that was killed (its pid is gone).
    fn sweep() {
        let Ok(dir) = std::fs::read_dir("/run/netns") else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(TAG) else {
                continue;
            };
            let pid = rest.split('.').next().unwrap_or("");
            if !pid.is_empty() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("ip").args(["netns", "del", &name]).status();
            }
        }
    }

    impl VethPair {
        /// Makes the pair, or `None` (with the reason printed) when it cannot be made here.
        /// Waits until both ends have carrier and, with [`Dad::Off`], their addresses.
        pub(crate) fn new(test: &str, dad: Dad) -> Option<VethPair> {
            if let Some(why) = unavailable() {
                eprintln!("SKIP {test}: {why}");
                return None;
            }
            sweep();
            static SEQ: AtomicU32 = AtomicU32::new(0);
            let base = format!(
                "{TAG}{}.{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            );
            let names = [format!("{base}.a"), format!("{base}.b")];
            for n in &names {
                // A leftover of this very name (pid reused) is removed first.
                let _ = Command::new("ip").args(["netns", "del", n]).output();
                ip(&["netns", "add", n]);
            }
            // From here on, dropping `pair` cleans up whatever fails below.
            let a = NetNs::open(format!("/run/netns/{}", names[0])).unwrap();
            let b = NetNs::open(format!("/run/netns/{}", names[1])).unwrap();
            let mut pair = VethPair {
                names,
                a,
                b,
                a_link: LinkAddr {
                    ifindex: 0,
                    mac: A_MAC,
                },
                b_index: 0,
            };
            let (na, nb) = (pair.names[0].clone(), pair.names[1].clone());
            ip(&[
                "-n",
                &na,
                "link",
                "add",
                "v0",
                "address",
                "02:00:5e:10:00:0a",
                "type",
                "veth",
                "peer",
                "name",
                "v1",
                "address",
                "02:00:5e:10:00:0b",
                "netns",
                &nb,
            ]);
            if dad == Dad::Off {
                ip(&["-n", &na, "link", "set", "v0", "addrgenmode", "none"]);
                ip(&["-n", &nb, "link", "set", "v1", "addrgenmode", "none"]);
                ip(&["-n", &na, "addr", "add", "fe80::a/64", "dev", "v0", "nodad"]);
                ip(&["-n", &nb, "addr", "add", "fe80::b/64", "dev", "v1", "nodad"]);
            }
            ip(&["-n", &na, "link", "set", "v0", "up"]);
            ip(&["-n", &nb, "link", "set", "v1", "up"]);
            pair.a_link.ifindex = pair.a.run(|| index_of("v0")).unwrap();
            pair.b_index = pair.b.run(|| index_of("v1")).unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while !(pair.lower_up(&na, "v0") && pair.lower_up(&nb, "v1")) {
                assert!(Instant::now() < deadline, "{test}: no carrier on the veth");
                std::thread::sleep(Duration::from_millis(20));
            }
            Some(pair)
        }

        fn lower_up(&self, ns: &str, dev: &str) -> bool {
            let out = Command::new("ip")
                .args(["-n", ns, "-o", "link", "show", dev])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).contains("LOWER_UP")
        }

        /// The name of namespace `a` (0) or `b` (1), for `ip -n`.
        pub(crate) fn name(&self, which: usize) -> &str {
            &self.names[which]
        }
    }

    impl Drop for VethPair {
        fn drop(&mut self) {
            for n in &self.names {
                let _ = Command::new("ip").args(["netns", "del", n]).output();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testnet::{A_LL, A_MAC, B_LL, Dad, VethPair, ip};
    use super::*;
    use crate::ra::{Preference, PrefixInformation};
    use std::time::Instant;

    const WAIT: Duration = Duration::from_secs(5);
    const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    const LEASED: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 0x150);

    #[test]
    fn if_inet6_lines_give_the_link_local_state() {
        // As the kernel prints them: v0 is index 2, lo index 1.
        let text = "\
00000000000000000000000000000001 01 80 10 80       lo
fe80000000000000000000000000000a 02 40 20 80       v0
20010db8000000010000000000000150 02 40 00 80       v0
";
        let a = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0xa);
        assert_eq!(parse_if_inet6(text, 2), LinkLocal::Ready(a));
        // One given address (a leased global one): its own state, not the link-local's.
        let global = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 0x150);
        assert_eq!(
            parse_if_inet6_for(text, 2, |x| x == global),
            LinkLocal::Ready(global)
        );
        let failed_global = "20010db8000000010000000000000150 02 40 00 c8       v0\n";
        assert_eq!(
            parse_if_inet6_for(failed_global, 2, |x| x == global),
            LinkLocal::DadFailed
        );
        assert_eq!(
            parse_if_inet6_for(text, 2, |x| x == Ipv6Addr::LOCALHOST),
            LinkLocal::Missing
        );
        // Only a global address, or no line at all: no link-local.
        assert_eq!(parse_if_inet6(text, 1), LinkLocal::Missing);
        assert_eq!(parse_if_inet6(text, 3), LinkLocal::Missing);
        assert_eq!(parse_if_inet6("", 2), LinkLocal::Missing);

        let tentative = "fe80000000000000020000fffe10000a 02 40 20 c0       v0\n";
        assert_eq!(parse_if_inet6(tentative, 2), LinkLocal::Tentative);
        let failed = "fe80000000000000020000fffe10000a 02 40 20 c8       v0\n";
        assert_eq!(parse_if_inet6(failed, 2), LinkLocal::DadFailed);
        let optimistic = "fe80000000000000020000fffe10000a 02 40 20 c4       v0\n";
        let eui = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x200, 0xff, 0xfe10, 0xa);
        assert_eq!(parse_if_inet6(optimistic, 2), LinkLocal::Ready(eui));
        // nodad (0x02) plus permanent.
        let nodad = "fe80000000000000020000fffe10000a 02 40 20 82       v0\n";
        assert_eq!(parse_if_inet6(nodad, 2), LinkLocal::Ready(eui));
        // Index in more than 2 digits.
        let big = "fe80000000000000020000fffe10000a 1a2 40 20 80 eth0\n";
        assert_eq!(parse_if_inet6(big, 0x1a2), LinkLocal::Ready(eui));

        // Several link-locals: the best state wins, whatever the order.
        let two = format!("{failed}{tentative}");
        assert_eq!(parse_if_inet6(&two, 2), LinkLocal::Tentative);
        let three = format!("{tentative}{nodad}{failed}");
        assert_eq!(parse_if_inet6(&three, 2), LinkLocal::Ready(eui));

        // Malformed lines are skipped, never a panic.
        let junk = "\
fe80 02 40 20 80 v0
+e80000000000000020000fffe10000a 02 40 20 80 v0
fe80000000000000020000fffe10000a zz 40 20 80 v0
fe80000000000000020000fffe10000a 02 40 20
fe80000000000000020000fffe10000g 02 40 20 80 v0
fe80000000000000020000fffe10000a 123456789 40 20 80 v0
\u{0}\u{ff}
";
        assert_eq!(parse_if_inet6(junk, 2), LinkLocal::Missing);
        assert_eq!(
            parse_if_inet6(&format!("{junk}{tentative}"), 2),
            LinkLocal::Tentative
        );
    }

    #[test]
    fn the_filter_passes_only_the_listed_types() {
        let f = icmp6_filter_passing(&[134]);
        // 134 = word 4, bit 6: clear; everything else set (blocked).
        assert_eq!(f[4], !(1 << 6));
        for (i, w) in f.iter().enumerate() {
            if i != 4 {
                assert_eq!(*w, u32::MAX, "word {i}");
            }
        }
        let f = icmp6_filter_passing(&[0, 31, 32, 133, 255]);
        assert_eq!(f[0], !(1 | 1 << 31));
        assert_eq!(f[1], !1);
        assert_eq!(f[4], !(1 << 5));
        assert_eq!(f[7], !(1 << 31));
        assert_eq!(icmp6_filter_passing(&[]), [u32::MAX; 8]);
    }

    /// The ICMPv6 checksum (RFC 4443 §2.3) of `msg` from `src` to `dst`: 0 when `msg` already
    /// carries a correct one.
    fn icmp6_checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        let mut add = |bytes: &[u8]| {
            for c in bytes.chunks(2) {
                let hi = u32::from(c[0]) << 8;
                let lo = u32::from(*c.get(1).unwrap_or(&0));
                sum += hi | lo;
            }
        };
        add(&src.octets());
        add(&dst.octets());
        add(&(msg.len() as u32).to_be_bytes());
        add(&[0, 0, 0, 58]);
        add(msg);
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// The RA the fake router sends: dnsmasq's shape (M, O, a /64 on-link prefix with A clear),
    /// router lifetime `lifetime` seconds.
    fn router_ad(lifetime: u16) -> RouterAdvertisement {
        RouterAdvertisement {
            source: B_LL,
            cur_hop_limit: 64,
            managed: true,
            other: true,
            preference: Preference::Medium,
            router_lifetime: lifetime,
            reachable_time: 0,
            retrans_timer: 0,
            source_link_layer: Some(vec![0x02, 0, 0x5e, 0x10, 0, 0x0b]),
            mtu: Some(1500),
            prefixes: vec![PrefixInformation {
                prefix: "2001:db8:0:1::/64".parse().unwrap(),
                on_link: true,
                autonomous: false,
                valid_lifetime: 86400,
                preferred_lifetime: 14400,
            }],
            routes: Vec::new(),
            dns_servers: Vec::new(),
            search_lists: Vec::new(),
            malformed: Vec::new(),
        }
    }

    /// A raw ICMPv6 socket of the fake router on `v1` in the peer namespace, multicasting with
    /// hop limit `hops`, bound to the source `bind` if given, receiving only `pass` types and
    /// the all-routers group.
    fn peer_raw(pair: &VethPair, hops: u32, bind: Option<Ipv6Addr>, pass: &[u8]) -> Socket {
        let index = pair.b_index;
        let pass = pass.to_vec();
        pair.b
            .run(move || {
                let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
                set_icmp6_filter(&s, &icmp6_filter_passing(&pass))?;
                s.bind_device(Some(b"v1"))?;
                s.set_multicast_if_v6(index)?;
                s.set_multicast_hops_v6(hops)?;
                s.join_multicast_v6(&ALL_ROUTERS, index)?;
                s.set_recv_hoplimit_v6(true)?;
                if let Some(a) = bind {
                    s.bind(&SocketAddrV6::new(a, 0, 0, 0).into())?;
                }
                s.set_read_timeout(Some(WAIT))?;
                Ok(s)
            })
            .unwrap()
    }

    fn send_ra(from: &Socket, pair: &VethPair, ra: &RouterAdvertisement) {
        let dst = SocketAddrV6::new(ALL_NODES, 0, 0, pair.b_index);
        from.send_to(&ra.to_bytes(), &dst.into()).unwrap();
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// An RA sent with hop limit 255 from the router's link-local address arrives with the
    /// checksum the kernel filled in and gives the prefix and the router; ones with hop limit
    /// 64 or a global source are dropped (RFC 4861 §6.1.2), alone (`first_router` times out)
    /// and before a good one (the good one is returned).
    #[test]
    fn first_router_hears_a_valid_ra_and_drops_forged_ones() {
        let Some(pair) = VethPair::new(
            "first_router_hears_a_valid_ra_and_drops_forged_ones",
            Dad::Off,
        ) else {
            return;
        };
        ip(&[
            "-n",
            pair.name(1),
            "addr",
            "add",
            "2001:db8:1::b/64",
            "dev",
            "v1",
            "nodad",
        ]);
        let fd = pair.a.run(|| open("v0")).unwrap();
        let router = peer_raw(&pair, 255, None, &[]);
        let off_link = peer_raw(&pair, 64, None, &[]);
        let global = peer_raw(&pair, 255, Some("2001:db8:1::b".parse().unwrap()), &[]);
        let rt = runtime();
        let sock = rt.block_on(async { RaSocket::new(fd) }).unwrap();

        rt.block_on(async {
            // A forged one alone: nothing is heard.
            send_ra(&off_link, &pair, &router_ad(1));
            let t = Instant::now();
            assert_eq!(first_router(&sock, Duration::from_millis(1500)).await, None);
            assert!(t.elapsed() >= Duration::from_millis(1400));

            // Forged ones, then the router's: the router's comes out.
            send_ra(&off_link, &pair, &router_ad(2));
            send_ra(&global, &pair, &router_ad(3));
            send_ra(&router, &pair, &router_ad(1800));
            let heard = first_router(&sock, WAIT).await.expect("no RA heard");
            assert_eq!(heard.router, B_LL);
            assert_eq!(heard.ra.source, B_LL);
            assert_eq!(heard.ra.router_lifetime, 1800);
            assert!(heard.ra.managed && heard.ra.other);
            assert_eq!(heard.prefix_len_for(LEASED), Some(64));
            assert_eq!(heard.prefix_len_for("2001:db8:9::1".parse().unwrap()), None);
            assert_eq!(
                heard.default_router(),
                Some((B_LL, Duration::from_secs(1800)))
            );

            // What the socket hands over is the message as sent, with the kernel's checksum.
            send_ra(&router, &pair, &router_ad(600));
            let (src, msg) = tokio::time::timeout(WAIT, sock.recv())
                .await
                .expect("no RA")
                .unwrap();
            assert_eq!(src, B_LL);
            let sent = router_ad(600).to_bytes();
            assert_eq!(&sent[2..4], &[0, 0], "sent with checksum 0");
            assert_ne!(&msg[2..4], &[0, 0], "the kernel filled the checksum in");
            assert_eq!(icmp6_checksum(src, ALL_NODES, &msg), 0, "and it is right");
            assert_eq!(msg[4..], sent[4..]);
        });
        let t = Instant::now();
        drop(sock);
        eprintln!("closing the raw ICMPv6 socket took {:?}", t.elapsed());
    }

    /// A message with a wrong ICMPv6 checksum never reaches the socket (the kernel drops it
    /// before queueing it), and does not hide the good one sent right after it. Sent through a packet
    /// socket, the only way to put a wrong checksum on the wire.
    #[test]
    fn a_wrong_checksum_is_dropped_by_the_kernel() {
        let Some(pair) = VethPair::new("a_wrong_checksum_is_dropped_by_the_kernel", Dad::Off)
        else {
            return;
        };
        let fd = pair.a.run(|| open("v0")).unwrap();
        let b_index = pair.b_index;
        let packet = pair
            .b
            .run(|| Socket::new(Domain::PACKET, Type::DGRAM, None))
            .unwrap();
        // IPv6 header (RFC 8200 §3) + the RA, to ff02::1 (MAC 33:33:00:00:00:01, RFC 2464 §7).
        let frame = |lifetime: u16, corrupt: bool| {
            let mut msg = router_ad(lifetime).to_bytes();
            let sum = icmp6_checksum(B_LL, ALL_NODES, &msg) ^ u16::from(corrupt);
            msg[2..4].copy_from_slice(&sum.to_be_bytes());
            let mut p = vec![0x60, 0, 0, 0];
            p.extend_from_slice(&(msg.len() as u16).to_be_bytes());
            p.extend_from_slice(&[58, 255]);
            p.extend_from_slice(&B_LL.octets());
            p.extend_from_slice(&ALL_NODES.octets());
            p.extend_from_slice(&msg);
            p
        };
        let send = |p: &[u8]| {
            // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = (libc::ETH_P_IPV6 as u16).to_be();
            sll.sll_ifindex = b_index as i32;
            sll.sll_halen = 6;
            sll.sll_addr[..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
            // SAFETY: valid fd, buffer and sockaddr_ll with its length.
            let rc = unsafe {
                libc::sendto(
                    packet.as_raw_fd(),
                    p.as_ptr().cast(),
                    p.len(),
                    0,
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, p.len() as isize, "{}", io::Error::last_os_error());
        };
        let rt = runtime();
        let sock = rt.block_on(async { RaSocket::new(fd) }).unwrap();
        rt.block_on(async {
            send(&frame(7, true));
            assert_eq!(first_router(&sock, Duration::from_millis(1500)).await, None);
            // Sent together before the socket is read: the bad one must not stall the good one.
            send(&frame(8, true));
            send(&frame(9, false));
            tokio::time::sleep(Duration::from_millis(200)).await;
            let heard = first_router(&sock, WAIT)
                .await
                .expect("the good RA is lost");
            assert_eq!(heard.ra.router_lifetime, 9);
        });
        // They reached the socket and were dropped there: the `drops` column (the last) of
        // raw6, where ours is the only raw socket of the namespace.
        let drops = pair
            .a
            .run(|| std::fs::read_to_string("/proc/thread-self/net/raw6"))
            .unwrap()
            .lines()
            .skip(1)
            .filter_map(|l| l.split_ascii_whitespace().last()?.parse::<u64>().ok())
            .sum::<u64>();
        assert_eq!(drops, 2, "drops counted on the socket");
    }

    /// The Router Solicitation is the header and the source link-layer address option, byte
    /// for byte (RFC 4861 §4.1, §4.6.1).
    #[test]
    fn router_solicitation_carries_the_source_link_layer_address() {
        let mac = [0x02, 0, 0x5e, 0x10, 0, 0x0a];
        assert_eq!(
            router_solicitation(mac),
            [133, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0x02, 0, 0x5e, 0x10, 0, 0x0a]
        );
    }

    /// `solicit` sends a Router Solicitation with hop limit 255 from the link-local address to
    /// ff02::2, with the interface's MAC as its source link-layer address, and the kernel fills
    /// its checksum in. The kernel's own solicitations are turned off on v0 first, since they
    /// look the same.
    #[test]
    fn solicit_reaches_the_router() {
        let Some(pair) = VethPair::new("solicit_reaches_the_router", Dad::Off) else {
            return;
        };
        pair.a
            .run(|| std::fs::write("/proc/sys/net/ipv6/conf/v0/router_solicitations", "0"))
            .unwrap();
        let fd = pair.a.run(|| open("v0")).unwrap();
        let router = peer_raw(&pair, 255, None, &[ROUTER_SOLICITATION]);
        let rt = runtime();
        let sock = rt.block_on(async { RaSocket::new(fd) }).unwrap();
        sock.solicit(pair.a_link.ifindex, pair.a_link.mac).unwrap();
        let deadline = Instant::now() + WAIT;
        let mut buf = vec![0u8; 256];
        loop {
            assert!(Instant::now() < deadline, "no solicitation at the router");
            // recv_one checks hop limit 255 and the link-local source (the peer's socket
            // blocks for up to WAIT: a timeout comes back as WouldBlock).
            let (src, msg) = match recv_one(router.as_fd(), &mut buf) {
                Ok(Got::Message(src, msg)) => (src, msg),
                Ok(Got::Skipped) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("{e}"),
            };
            if src != A_LL {
                continue;
            }
            assert_eq!(msg.len(), ROUTER_SOLICITATION_LEN, "{msg:?}");
            assert_eq!(msg[0], ROUTER_SOLICITATION);
            assert_eq!(msg[1], 0);
            assert_eq!(&msg[4..8], &[0, 0, 0, 0]);
            assert_eq!(&msg[8..10], &[OPT_SOURCE_LINK_LAYER_ADDRESS, 1]);
            assert_eq!(&msg[10..], &A_MAC);
            assert_ne!(&msg[2..4], &[0, 0], "the kernel filled the checksum in");
            assert_eq!(icmp6_checksum(A_LL, ALL_ROUTERS, &msg), 0);
            break;
        }
    }
}
