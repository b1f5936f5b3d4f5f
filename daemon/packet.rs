//! The DHCP client's socket: an `AF_PACKET` datagram socket on one container interface.
//!
//! Before a lease exists the interface has no IPv4 address, so a UDP socket can neither send
//! from 0.0.0.0 reliably nor receive replies that strict reverse-path filtering would drop; like
//! dhcpcd, systemd-networkd and the reference, the client uses a packet socket (docs/design.md,
//! *Why a packet socket*). We use one for every message, also the unicast RENEWING request and
//! DHCPRELEASE, whose IPv4 source is then the leased address (RFC 2131 §4.4.5, §4.4.6): it works
//! whether or not the address is configured yet and never competes for UDP port 68 with anything in
//! the container.
//!
//! The socket is `SOCK_DGRAM` bound to `ETH_P_IP` on one ifindex: the kernel adds and strips the
//! Ethernet header, we build and parse IPv4 and UDP with `etherparse`. A classic BPF filter
//! (IPv4, UDP, not a fragment, destination port 68) runs in the kernel so that the broadcasts of
//! hundreds of neighbouring slaves never reach user space (docs/design.md, *Broadcasts at scale*).
//! The filter is attached before the socket is bound, so no unfiltered packet is ever queued.
//!
//! [`open`] must run on a thread inside the container's network namespace (see
//! [`crate::netns`]); the returned [`PacketSocket`] is then driven from the shared runtime.
//!
//! Closing a packet socket is slow: `packet_release` waits for an RCU grace period
//! (`synchronize_net()` in net/packet/af_packet.c), 12 ms each measured on the benchmark machine,
//! while closing a UDP socket takes about a microsecond. On a runtime worker that wait would stall
//! every other lease: with two workers, a thousand ADDs (each closes its socket once bound) queued
//! behind 6 s of grace periods. So dropping a [`PacketSocket`] hands its descriptor to a few
//! closer threads ([`CLOSER_THREADS`]); their closes overlap, and concurrent waiters share one
//! grace period.

use std::io;
use std::mem;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use parking_lot::Mutex;
use socket2::{Domain, SockFilter, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// UDP port of DHCP clients (RFC 2131 §4.1).
pub(crate) const CLIENT_PORT: u16 = 68;
/// UDP port of DHCP servers (RFC 2131 §4.1).
pub(crate) const SERVER_PORT: u16 = 67;
/// Ethernet broadcast address.
pub(crate) const BROADCAST_MAC: [u8; 6] = [0xff; 6];

/// `ETH_P_IP` in network byte order, as `socket(2)`/`sockaddr_ll` want it.
const ETH_P_IP_BE: u16 = (libc::ETH_P_IP as u16).to_be();

/// Kernel receive buffer asked for, in bytes: room for a burst of replies while the runtime is
/// busy with other leases.
const RECV_BUFFER: usize = 256 * 1024;

/// Classic BPF over the IPv4 header (SOCK_DGRAM packet sockets see the packet from the network
/// header on): accept IPv4/UDP, non-fragments, destination port 68; drop everything else.
fn dhcp_client_filter() -> [SockFilter; 9] {
    const LD_B_ABS: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
    const LD_H_ABS: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
    const LD_H_IND: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_IND) as u16;
    const LDX_B_MSH: u16 = (libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    [
        SockFilter::new(LD_B_ABS, 0, 0, 9),    // 0: A = ip.protocol
        SockFilter::new(JEQ_K, 0, 6, 17),      // 1: UDP? else drop
        SockFilter::new(LD_H_ABS, 0, 0, 6),    // 2: A = flags/fragment offset
        SockFilter::new(JSET_K, 4, 0, 0x1fff), // 3: a fragment? drop
        SockFilter::new(LDX_B_MSH, 0, 0, 0),   // 4: X = IP header length
        SockFilter::new(LD_H_IND, 0, 0, 2),    // 5: A = udp.dst_port
        SockFilter::new(JEQ_K, 0, 1, CLIENT_PORT as u32), // 6: port 68? else drop
        SockFilter::new(RET_K, 0, 0, 0x0004_0000), // 7: accept (up to 256 KiB)
        SockFilter::new(RET_K, 0, 0, 0),       // 8: drop
    ]
}

/// The interface a socket was opened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinkAddr {
    /// ifindex inside the container's namespace.
    pub(crate) ifindex: u32,
    /// The interface's MAC, the Ethernet source of every frame (on an ipvlan slave, the
    /// master's); the BOOTP chaddr may be another ([`crate::rpc::ChaddrPolicy`]).
    pub(crate) mac: [u8; 6],
}

/// Opens the filtered packet socket on `ifname`, brings the interface up if it is down (as the
/// reference daemon does: a main plugin may hand over a link that is still down), and returns
/// the socket's fd with the interface's index and MAC.
///
/// Must be called on a thread inside the target network namespace.
///
/// Errors: `NotFound` when no such interface exists; the errors of `socket(2)`,
/// `setsockopt(2)`, `bind(2)` and the `SIOCSIFFLAGS` ioctl.
pub(crate) fn open(ifname: &str) -> io::Result<(OwnedFd, LinkAddr)> {
    open_inner(ifname, None)
}

/// Opens the socket on `ifname` again for a lease that already has it (at T1, for a
/// DHCPRELEASE, after a restart): only if the interface is the one the lease was granted on,
/// with the same index and MAC as `expect`. Unlike [`open`] it never brings the link up:
/// whoever set it down meant it.
///
/// Must be called on a thread inside the target network namespace.
///
/// Errors: `NotFound` when no such interface exists or it is another one under the same name
/// (deleted and made again); otherwise as [`open`].
pub(crate) fn open_existing(ifname: &str, expect: LinkAddr) -> io::Result<(OwnedFd, LinkAddr)> {
    open_inner(ifname, Some(expect))
}

fn open_inner(ifname: &str, expect: Option<LinkAddr>) -> io::Result<(OwnedFd, LinkAddr)> {
    let ifindex = nix::net::if_::if_nametoindex(ifname)
        .map_err(|e| io::Error::new(io::ErrorKind::NotFound, format!("{ifname}: {e}")))?;
    let mac = link_mac(ifname)?;
    match expect {
        None => set_up(ifname)?,
        Some(e) if e.ifindex != ifindex || e.mac != mac => {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{ifname} is another interface than the lease's (index {ifindex}, the lease's {})",
                    e.ifindex
                ),
            ));
        }
        Some(_) => {}
    }

    // Protocol 0: receives nothing until bound, so the filter is in place before any packet.
    let socket = Socket::new(Domain::PACKET, Type::DGRAM.nonblocking().cloexec(), None)?;
    socket.attach_filter(&dhcp_client_filter())?;
    let _ = socket.set_recv_buffer_size(RECV_BUFFER);
    let sll = sockaddr_ll(ifindex, ETH_P_IP_BE, [0; 6]);
    // SAFETY: `sll` is a valid sockaddr_ll and its size is passed along.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((socket.into(), LinkAddr { ifindex, mac }))
}

fn sockaddr_ll(ifindex: u32, protocol_be: u16, mac: [u8; 6]) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol_be;
    sll.sll_ifindex = ifindex as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&mac);
    sll
}

/// The interface's hardware address, from `getifaddrs(3)` (its `AF_PACKET` entry); the
/// DHCPv6 socket ([`crate::daemon::udp6`]) reads it the same way.
///
/// Errors: `NotFound` when the interface has none (or does not exist); `getifaddrs` failing.
pub(crate) fn link_mac(ifname: &str) -> io::Result<[u8; 6]> {
    for ifa in nix::ifaddrs::getifaddrs().map_err(io::Error::from)? {
        if ifa.interface_name != ifname {
            continue;
        }
        if let Some(mac) = ifa
            .address
            .as_ref()
            .and_then(|a| a.as_link_addr())
            .and_then(|l| l.addr())
        {
            return Ok(mac);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("{ifname}: no hardware address"),
    ))
}

/// Sets IFF_UP on `ifname` when it is not set (`SIOCGIFFLAGS`/`SIOCSIFFLAGS`, netdevice(7)).
pub(crate) fn set_up(ifname: &str) -> io::Result<()> {
    set_up_with(ifname, || Ok(()))
}

/// [`set_up`], running `before` first when the link is down (what must be in place before the
/// kernel starts the link's IPv6 autoconfiguration: [`crate::daemon::udp6::optimistic_dad`]).
///
/// Errors: `before`'s, or the ioctls'.
pub(crate) fn set_up_with(ifname: &str, before: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM.cloexec(), None)?;
    // SAFETY: ifreq is plain old data; we fill its name with at most IFNAMSIZ-1 bytes.
    let mut ifr: libc::ifreq = unsafe { mem::zeroed() };
    let name = ifname.as_bytes();
    if name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: valid fd and ifreq for these two ioctls.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) != 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = ifr.ifr_ifru.ifru_flags;
        if flags & libc::IFF_UP as libc::c_short == 0 {
            before()?;
            ifr.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
            if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// A datagram received on port 68.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Received {
    /// The UDP payload: a BOOTP/DHCP message, not yet validated.
    pub(crate) payload: Vec<u8>,
    /// IPv4 source address.
    pub(crate) src_ip: Ipv4Addr,
    /// Link-layer source: the server's (or relay's) MAC, the destination of our later unicasts.
    pub(crate) src_mac: [u8; 6],
}

/// Parses an IPv4 packet (as a SOCK_DGRAM packet socket delivers it) and returns the UDP payload
/// when it is a UDP datagram to port 68. The UDP checksum is not verified: on veth and other
/// virtual links the kernel may hand packet sockets a partial checksum (offload), and the DHCP
/// layer validates what it reads anyway.
///
/// Returns `None` for anything else (truncated, not IPv4, not UDP, other port).
pub fn parse_datagram(packet: &[u8]) -> Option<(Ipv4Addr, &[u8])> {
    let sliced = SlicedPacket::from_ip(packet).ok()?;
    let src = match sliced.net? {
        NetSlice::Ipv4(ip) => ip.header().source_addr(),
        _ => return None,
    };
    match sliced.transport? {
        TransportSlice::Udp(udp) if udp.destination_port() == CLIENT_PORT => {
            Some((src, udp.payload()))
        }
        _ => None,
    }
}

/// Builds the IPv4 + UDP packet carrying `payload` from `src`:68 to `dst`:67 (TTL 64).
pub(crate) fn build_datagram(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ipv4(src.octets(), dst.octets(), 64).udp(CLIENT_PORT, SERVER_PORT);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    // Writing into a Vec only fails for payloads over 64 KiB, which we never build.
    let _ = builder.write(&mut out, payload);
    out
}

/// Threads that close packet sockets (see the module doc). Closes in flight at once; each
/// waits about one grace period, which the concurrent ones share.
pub(crate) const CLOSER_THREADS: usize = 4;

/// Closes `fd` on a closer thread, never on the caller's; falls back to closing here if the
/// closer threads cannot be started.
fn close_later(fd: OwnedFd) {
    static CLOSER: OnceLock<Option<Mutex<mpsc::Sender<OwnedFd>>>> = OnceLock::new();
    let closer = CLOSER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<OwnedFd>();
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for i in 0..CLOSER_THREADS {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("closer-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only to take one fd, not while closing it.
                        let next = rx.lock().recv();
                        match next {
                            Ok(fd) => drop(fd),
                            Err(_) => return,
                        }
                    }
                });
            started += usize::from(spawned.is_ok());
        }
        (started > 0).then(|| Mutex::new(tx))
    });
    match closer {
        Some(tx) => {
            if let Err(mpsc::SendError(fd)) = tx.lock().send(fd) {
                drop(fd);
            }
        }
        None => drop(fd),
    }
}

/// The packet socket, registered with the runtime's reactor. Dropping it deregisters it and
/// closes the descriptor on a closer thread.
#[derive(Debug)]
pub(crate) struct PacketSocket {
    /// Always `Some` until `drop`.
    fd: Option<AsyncFd<OwnedFd>>,
    link: LinkAddr,
}

impl Drop for PacketSocket {
    fn drop(&mut self) {
        if let Some(fd) = self.fd.take() {
            close_later(fd.into_inner());
        }
    }
}

impl PacketSocket {
    /// Wraps a socket returned by [`open`]. Must be called within the tokio runtime.
    pub(crate) fn new(fd: OwnedFd, link: LinkAddr) -> io::Result<PacketSocket> {
        // SAFETY: an OwnedFd is a valid open descriptor, owned by the AsyncFd for its whole life.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(PacketSocket { fd: Some(fd), link })
    }

    fn async_fd(&self) -> &AsyncFd<OwnedFd> {
        self.fd.as_ref().expect("PacketSocket used after drop")
    }

    /// Sends `payload` as a UDP datagram `src`:68 → `dst`:67 in a frame to `dst_mac`.
    ///
    /// Packet sockets do not block on send in practice (the qdisc drops instead); a transient
    /// `ENETDOWN`/`ENOBUFS` is returned to the caller, whose retransmission timer retries.
    pub(crate) fn send(
        &self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        dst_mac: [u8; 6],
        payload: &[u8],
    ) -> io::Result<()> {
        let packet = build_datagram(src, dst, payload);
        let sll = sockaddr_ll(self.link.ifindex, ETH_P_IP_BE, dst_mac);
        // SAFETY: valid fd, buffer and sockaddr_ll with its length.
        let rc = unsafe {
            libc::sendto(
                self.async_fd().get_ref().as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for the next UDP datagram to port 68 on this interface. Outgoing copies
    /// (`PACKET_OUTGOING`) and non-DHCP packets that slip past the filter are skipped.
    pub(crate) async fn recv(&self) -> io::Result<Received> {
        let mut buf = vec![0u8; 2048];
        loop {
            let mut guard = self.async_fd().readable().await?;
            let result = guard.try_io(|fd| {
                // SAFETY: sockaddr_ll is POD; recvfrom writes at most `len` bytes into it and
                // at most buf.len() bytes into buf.
                let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
                let mut len = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                let n = unsafe {
                    libc::recvfrom(
                        fd.get_ref().as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_TRUNC,
                        (&mut sll as *mut libc::sockaddr_ll).cast(),
                        &mut len,
                    )
                };
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok((n as usize, sll))
            });
            let (n, sll) = match result {
                Ok(r) => r?,
                Err(_would_block) => continue,
            };
            if sll.sll_pkttype == libc::PACKET_OUTGOING || n > buf.len() {
                continue;
            }
            if let Some((src_ip, payload)) = parse_datagram(&buf[..n]) {
                let mut src_mac = [0u8; 6];
                src_mac.copy_from_slice(&sll.sll_addr[..6]);
                return Ok(Received {
                    payload: payload.to_vec(),
                    src_ip,
                    src_mac,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_datagram_parses_back_only_for_port_68() {
        let payload = b"dhcp-bytes";
        let out = build_datagram(Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::BROADCAST, payload);
        // We build client->server (dst port 67), so our own packet is not for port 68.
        assert!(parse_datagram(&out).is_none());
        // A server->client datagram (dst port 68) parses.
        let reply =
            PacketBuilder::ipv4([198, 18, 0, 1], [255; 4], 64).udp(SERVER_PORT, CLIENT_PORT);
        let mut buf = Vec::new();
        reply.write(&mut buf, payload).unwrap();
        let (src, got) = parse_datagram(&buf).unwrap();
        assert_eq!(src, Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(got, payload);
        // Truncated packets are refused, not a panic.
        for cut in 0..buf.len() {
            let _ = parse_datagram(&buf[..cut]);
        }
        assert!(parse_datagram(&buf[..20]).is_none());
    }

    #[test]
    fn client_datagram_has_ports_and_addresses() {
        let out = build_datagram(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, b"x");
        let sliced = SlicedPacket::from_ip(&out).unwrap();
        match (sliced.net.unwrap(), sliced.transport.unwrap()) {
            (NetSlice::Ipv4(ip), TransportSlice::Udp(udp)) => {
                assert_eq!(ip.header().source_addr(), Ipv4Addr::UNSPECIFIED);
                assert_eq!(ip.header().destination_addr(), Ipv4Addr::BROADCAST);
                assert_eq!(udp.source_port(), 68);
                assert_eq!(udp.destination_port(), 67);
                assert_eq!(udp.payload(), b"x");
            }
            _ => panic!("not IPv4/UDP"),
        }
    }
}
