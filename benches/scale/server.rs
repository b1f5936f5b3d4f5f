//! The server alone: how fast the lab's dnsmasq hands out leases when no client implementation
//! stands in the way, so the ratios in the table can be read against the server's own limit.
//!
//! A load generator in its own netns (a macvlan slave of the lab's master with 198.18.0.2/20)
//! plays a BOOTP relay (RFC 1542 §4): every DHCPDISCOVER and DHCPREQUEST carries giaddr
//! 198.18.0.2 and goes unicast to the server, which answers unicast to giaddr port 67. So no
//! broadcast, no packet socket, no process start and no netns switch is measured: only dnsmasq's
//! DISCOVER→OFFER and REQUEST→ACK, with up to [`WINDOW`] transactions in flight. Each client has
//! its own chaddr and option 61.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Encodable};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::common::SERVER_IP;

/// Transactions in flight at once (enough to keep dnsmasq busy, few enough not to overflow its
/// socket buffer).
pub const WINDOW: usize = 64;
/// The load generator's address, the relay agent address (giaddr) of every request.
const RELAY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// What the server alone did.
#[derive(Debug, Clone, Default)]
pub struct ServerOnly {
    /// Leases asked for.
    pub leases: usize,
    /// DHCPACKs received.
    pub acked: usize,
    /// First DISCOVER to last ACK (or the give-up time).
    pub wall: Duration,
    /// DISCOVER sent to ACK received, per acknowledged lease.
    pub latencies: Vec<Duration>,
    /// dnsmasq's CPU time over the run, seconds.
    pub server_cpu: f64,
}

/// Builds a fresh lab like the benchmark's and asks its dnsmasq for `n` leases.
pub fn measure(n: usize, leasefile_ro: bool) -> ServerOnly {
    let lab = crate::bench_lab("bench-server", false, leasefile_ro);
    let names = vec!["loadgen".to_string()];
    let ns = lab.containers_with_macvlan(&names, "eth0").remove(0);
    let ns_name = ns.file_name().unwrap().to_string_lossy().into_owned();
    crate::common::ip(&[
        "-n",
        &ns_name,
        "addr",
        "add",
        &format!("{RELAY}/20"),
        "dev",
        "eth0",
    ]);
    crate::common::ip(&["-n", &ns_name, "link", "set", "eth0", "up"]);
    let dnsmasq = lab.dnsmasq_pid().expect("dnsmasq pid");
    let cpu0 = crate::procstat::cpu_secs(dnsmasq).unwrap_or(0.0);
    // The socket must be made inside the load generator's netns: on a thread of its own.
    let mut out = std::thread::spawn(move || {
        let f = std::fs::File::open(&ns).expect("open netns");
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        run(n)
    })
    .join()
    .expect("load generator thread");
    out.server_cpu = crate::procstat::cpu_secs(dnsmasq).unwrap_or(0.0) - cpu0;
    drop(lab);
    out
}

/// Where one client is.
struct Txn {
    started: Instant,
    last_sent: Instant,
    /// The offered address once the OFFER came (then the REQUEST is out).
    offered: Option<Ipv4Addr>,
}

fn client_id(i: usize) -> Vec<u8> {
    let mut v = vec![0u8];
    v.extend_from_slice(format!("loadgen-{i}").as_bytes());
    v
}

fn chaddr(i: usize) -> [u8; 6] {
    let b = (i as u32).to_be_bytes();
    [0x02, 0x42, b[0], b[1], b[2], b[3]]
}

fn message(i: usize, t: MessageType, offered: Option<Ipv4Addr>) -> Vec<u8> {
    let server: Ipv4Addr = SERVER_IP.parse().unwrap();
    let mut m = Message::new(
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        RELAY,
        &chaddr(i),
    );
    m.set_opcode(Opcode::BootRequest)
        .set_xid(i as u32 + 1)
        .set_hops(1)
        .set_flags(Flags::default());
    let opts = m.opts_mut();
    opts.insert(DhcpOption::MessageType(t));
    opts.insert(DhcpOption::ClientIdentifier(client_id(i)));
    if let Some(ip) = offered {
        opts.insert(DhcpOption::RequestedIpAddress(ip));
        opts.insert(DhcpOption::ServerIdentifier(server));
    }
    m.to_vec().expect("encode")
}

fn run(n: usize) -> ServerOnly {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
    sock.set_reuse_address(true).unwrap();
    sock.set_recv_buffer_size(4 << 20).unwrap();
    sock.bind(&SockAddr::from(SocketAddrV4::new(RELAY, 67)))
        .expect("bind 198.18.0.2:67");
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let server = SockAddr::from(SocketAddrV4::new(SERVER_IP.parse().unwrap(), 67));

    let start = Instant::now();
    let give_up = start + Duration::from_secs(60);
    let mut next = 0usize;
    let mut live: HashMap<u32, (usize, Txn)> = HashMap::new();
    let mut res = ServerOnly {
        leases: n,
        ..ServerOnly::default()
    };
    let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 2048];
    while (next < n || !live.is_empty()) && Instant::now() < give_up {
        while next < n && live.len() < WINDOW {
            let now = Instant::now();
            let _ = sock.send_to(&message(next, MessageType::Discover, None), &server);
            live.insert(
                next as u32 + 1,
                (
                    next,
                    Txn {
                        started: now,
                        last_sent: now,
                        offered: None,
                    },
                ),
            );
            next += 1;
        }
        match sock.recv(&mut buf) {
            Ok(len) => {
                // SAFETY: recv initialised the first `len` bytes.
                let bytes: Vec<u8> = buf[..len]
                    .iter()
                    .map(|b| unsafe { b.assume_init() })
                    .collect();
                let Ok(reply) = Message::from_bytes(&bytes) else {
                    continue;
                };
                let Some((i, txn)) = live.get_mut(&reply.xid()) else {
                    continue;
                };
                let i = *i;
                match reply.opts().get(OptionCode::MessageType) {
                    Some(DhcpOption::MessageType(MessageType::Offer)) if txn.offered.is_none() => {
                        txn.offered = Some(reply.yiaddr());
                        txn.last_sent = Instant::now();
                        let _ =
                            sock.send_to(&message(i, MessageType::Request, txn.offered), &server);
                    }
                    Some(DhcpOption::MessageType(MessageType::Ack)) => {
                        let (_, txn) = live.remove(&reply.xid()).unwrap();
                        res.acked += 1;
                        res.latencies.push(txn.started.elapsed());
                    }
                    Some(DhcpOption::MessageType(MessageType::Nak)) => {
                        // Start over for this client.
                        txn.offered = None;
                        txn.last_sent = Instant::now();
                        let _ = sock.send_to(&message(i, MessageType::Discover, None), &server);
                    }
                    _ => {}
                }
            }
            Err(_) => {
                // Quiet for 20 ms: resend whatever has waited a second.
                let now = Instant::now();
                for (i, txn) in live.values_mut() {
                    if now - txn.last_sent > Duration::from_secs(1) {
                        txn.last_sent = now;
                        let t = if txn.offered.is_some() {
                            MessageType::Request
                        } else {
                            MessageType::Discover
                        };
                        let _ = sock.send_to(&message(*i, t, txn.offered), &server);
                    }
                }
            }
        }
    }
    res.wall = start.elapsed();
    res
}
