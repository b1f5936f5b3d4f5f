//! A scriptable fake DHCPv4 server for fault tests, run in the lab's server netns on `s0`.
//!
//! dnsmasq stays the server for everyday tests; this one exists for what dnsmasq cannot do:
//! leases of a few seconds (dnsmasq raises anything under 2 minutes), NAK on demand, silence,
//! duplicate replies, replies for another client, garbage, and MAC-keyed or one-address servers.
//!
//! ```ignore
//! mod common;
//! use common::fake_server::{FakeServer, Kind};
//! let lab = common::Lab::builder("foo").without_dnsmasq().build();
//! let srv = FakeServer::start(&lab);
//! srv.set_lease_time(4);                    // seconds
//! // ... run a client in a container ...
//! assert!(srv.wait_for(|s| s.kind == Kind::Renewing, Duration::from_secs(6)));
//! srv.nak_requests(1);                      // the next REQUEST of any kind gets a NAK
//! ```
//!
//! Behaviour (RFC 2131 where it matters, simplified where it does not):
//! - DISCOVER gets an OFFER; REQUEST in SELECTING (options 50 and 54), INIT-REBOOT (50, no 54,
//!   ciaddr 0), RENEWING and REBINDING (ciaddr set) gets an ACK when the address is the client's
//!   binding (or free, so a client the server forgot is re-bound, as an authoritative server does),
//!   else a NAK. A SELECTING REQUEST naming another server id is recorded and not answered.
//! - RELEASE frees the client's binding; DECLINE frees it and keeps the address out of the pool.
//!   Both are recorded, neither is answered.
//! - Addresses come from [`POOL_START`]..=[`POOL_END`], lowest free first, keyed as
//!   [`Keying`] says (default: option 61, chaddr when a client sends none, as dnsmasq does).
//! - OFFER/ACK carry options 53, 54 ([`SERVER_ID`]), 51, 58/59 when set, 1 (/24), 3 and 6
//!   ([`SERVER_ID`]), and echo the client's option 61 (RFC 6842) unless told not to.
//!   NAK carries 53, 54, 56 and the echoed 61.
//! - OFFER, and ACK to a client with ciaddr 0, go to 255.255.255.255:68 whatever the broadcast
//!   flag says (this server cannot unicast to an address the client has not configured yet).
//!   ACK to a client with ciaddr set (RENEWING, REBINDING) goes unicast to ciaddr:68. NAK is
//!   always broadcast (RFC 2131 §4.3.2).
//!
//! Every datagram received is recorded as a [`Seen`], even in silent mode; every datagram sent as
//! a [`Sent`]; every ACK as a [`FakeLease`]. The script ([`FakeServer::set_lease_time`] and the
//! other setters) may change while the server runs; it applies from the next datagram on.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::io::IoSliceMut;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Encodable};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrIn, recvmsg, setsockopt, sockopt};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::Lab;

/// The server's address on `s0` and its server identifier (option 54).
pub const SERVER_ID: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The subnet mask in replies (option 1): /24.
pub const NETMASK: Ipv4Addr = Ipv4Addr::new(255, 255, 255, 0);
/// First address of the pool.
pub const POOL_START: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
/// Last address of the pool.
pub const POOL_END: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 250);
/// The address (yiaddr) that replies carry in [`FakeServer::wrong_client_id`] mode: outside the
/// pool, so a client that took it is easy to spot.
pub const DECOY_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 99);
/// The option 61 that replies carry in [`FakeServer::wrong_client_id`] mode: type 0 and an ASCII
/// name, shaped like the reference's `containerID/networkName/ifName` ids.
pub const DECOY_CLIENT_ID: &[u8] = b"\x00decoy-container/labnet/eth0";
/// Lease time (option 51) until [`FakeServer::set_lease_time`]: 3600 seconds.
pub const DEFAULT_LEASE_SECS: u32 = 3600;

const IFNAME: &str = "s0";
const NETNS_DIR: &str = "/var/run/netns";
/// How often the serving thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// How the server decides which client is which (who gets which address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keying {
    /// By option 61 (client identifier), by chaddr when the client sends none. Default.
    #[default]
    ClientId,
    /// By chaddr only, ignoring option 61: clients sharing a MAC share an address.
    Mac,
    /// Every client gets the same address ([`POOL_START`], or the one set with
    /// [`FakeServer::set_next_address`]): a MAC-keyed server behind ipvlan, where every slave
    /// carries the master's MAC, as seen with the macvlan links the lab can make.
    OneAddress,
    /// By chaddr only, like [`Keying::Mac`], but a chaddr that already has a binding and
    /// DISCOVERs again is offered its bound address once and from then on the next free one,
    /// and a SELECTING REQUEST for that one moves the chaddr's only binding there (its old
    /// address is freed, so the old holder's renewal is NAKed). What busybox udhcpd does once
    /// a MAC's binding was blanked by a DHCPDECLINE, or a server that probes the bound address,
    /// finds it in use and picks another for the same MAC.
    MacNextAddress,
}

/// Where bad datagrams go relative to the real reply, see [`FakeServer::garbage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    /// No such fault. Default.
    #[default]
    Off,
    /// The bad datagrams first, then the real reply.
    Before,
    /// Only the bad datagrams; the real reply is not sent.
    Instead,
}

/// What a received datagram was, with the REQUEST's state told apart (RFC 2131 §4.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Discover,
    /// REQUEST with server id (54) and requested address (50), ciaddr 0.
    Selecting,
    /// REQUEST with requested address (50), no server id, ciaddr 0.
    InitReboot,
    /// REQUEST with ciaddr set, sent unicast to the server ([`SERVER_ID`]).
    Renewing,
    /// REQUEST with ciaddr set, sent to any other address (a broadcast).
    Rebinding,
    /// REQUEST that fits none of the above (e.g. no option 50 and ciaddr 0).
    OtherRequest,
    Release,
    Decline,
    Inform,
    /// Any other message type.
    Other,
    /// Not a BOOTREQUEST that dhcproto could decode, or one without option 53.
    Malformed,
}

/// One datagram the server received (recorded in every mode, silent included).
#[derive(Debug, Clone)]
pub struct Seen {
    /// Option 53; `None` when absent or undecodable.
    pub msg_type: Option<MessageType>,
    pub kind: Kind,
    pub xid: u32,
    pub ciaddr: Ipv4Addr,
    /// chaddr, `hlen` bytes (6 for Ethernet).
    pub chaddr: Vec<u8>,
    /// Option 61, raw bytes (type byte included).
    pub client_id: Option<Vec<u8>>,
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// The IP header's source address and UDP source port.
    pub src: SocketAddrV4,
    /// The IP header's destination address (IP_PKTINFO): 255.255.255.255 for a broadcast,
    /// [`SERVER_ID`] for a unicast.
    pub dst: Ipv4Addr,
    /// The BOOTP broadcast flag (RFC 2131 §4.1).
    pub broadcast_flag: bool,
    /// The `secs` field, seconds since the client began.
    pub secs: u16,
    /// Datagram length in bytes.
    pub len: usize,
    pub at: Instant,
}

/// One datagram the server sent.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Option 53 of the reply; `None` for garbage.
    pub msg_type: Option<MessageType>,
    pub xid: u32,
    pub yiaddr: Ipv4Addr,
    /// Option 61 the reply carried.
    pub client_id: Option<Vec<u8>>,
    pub dst: SocketAddrV4,
    /// True for the bad datagrams of [`FakeServer::garbage`].
    pub garbage: bool,
    pub at: Instant,
}

/// One DHCPACK the server sent: a lease it handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeLease {
    pub ip: Ipv4Addr,
    /// The client's option 61, if it sent one.
    pub client_id: Option<Vec<u8>>,
    pub chaddr: Vec<u8>,
    pub xid: u32,
    /// Option 51, seconds.
    pub lease_secs: u32,
    /// Options 58 and 59, seconds, when set.
    pub t1_t2: Option<(u32, u32)>,
    /// The REQUEST that this ACK answered.
    pub kind: Kind,
    pub at: Instant,
}

/// The knobs, shared with the serving thread.
#[derive(Debug, Clone)]
struct Script {
    lease_secs: u32,
    t1_t2: Option<(u32, u32)>,
    naks_left: u32,
    silent: bool,
    answer_twice: bool,
    wrong_client: Placement,
    garbage: Placement,
    keying: Keying,
    next_address: Option<Ipv4Addr>,
    echo_client_id: bool,
    /// Option 121 in OFFER/ACK when set.
    classless_routes: Option<Vec<(ipnet::Ipv4Net, Ipv4Addr)>>,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            lease_secs: DEFAULT_LEASE_SECS,
            t1_t2: None,
            naks_left: 0,
            silent: false,
            answer_twice: false,
            wrong_client: Placement::Off,
            garbage: Placement::Off,
            keying: Keying::ClientId,
            next_address: None,
            echo_client_id: true,
            classless_routes: None,
        }
    }
}

/// What the server knows and has done.
#[derive(Debug, Default)]
struct State {
    seen: Vec<Seen>,
    sent: Vec<Sent>,
    leases: Vec<FakeLease>,
    /// Client key -> bound address (keys per [`Keying`]).
    bindings: HashMap<Vec<u8>, Ipv4Addr>,
    /// The address of [`Keying::OneAddress`] once chosen.
    one_address: Option<Ipv4Addr>,
    /// Addresses a client declined: never offered again.
    declined: HashSet<Ipv4Addr>,
    /// [`Keying::MacNextAddress`]: DISCOVERs from a key that already had a binding.
    repeats: HashMap<Vec<u8>, u32>,
}

struct Shared {
    script: Mutex<Script>,
    state: Mutex<State>,
    /// Notified whenever `state` changes.
    changed: Condvar,
    stop: AtomicBool,
}

/// The fake server. Serves on its own thread from [`FakeServer::start`] until dropped.
pub struct FakeServer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    /// Starts serving on `s0` in `lab`'s server netns: UDP 0.0.0.0:67, SO_BINDTODEVICE `s0`,
    /// SO_BROADCAST. The lab must be built with [`super::LabBuilder::without_dnsmasq`].
    /// Panics if the socket cannot be made. Returns once the socket is bound.
    pub fn start(lab: &Lab) -> FakeServer {
        assert!(
            lab.dnsmasq_pid().is_none(),
            "FakeServer::start: the lab runs dnsmasq on port 67; build it with without_dnsmasq()"
        );
        let netns = Path::new(NETNS_DIR).join(lab.srv_ns());
        let shared = Arc::new(Shared {
            script: Mutex::new(Script::default()),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fake-dhcp".into())
            .spawn(move || {
                // This thread is ours alone: setns here does not move anyone else.
                match open_socket(&netns) {
                    Ok(sock) => {
                        let _ = tx.send(Ok(()));
                        serve(&sock, &sh);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .expect("spawn fake-dhcp thread");
        match rx.recv() {
            Ok(Ok(())) => FakeServer {
                shared,
                thread: Some(thread),
            },
            Ok(Err(e)) => {
                let _ = thread.join();
                panic!("FakeServer::start in {}: {e}", lab.srv_ns())
            }
            Err(_) => {
                let _ = thread.join();
                panic!("FakeServer::start: serving thread died")
            }
        }
    }

    fn script(&self) -> MutexGuard<'_, Script> {
        self.shared.script.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lease time (option 51) in later OFFERs and ACKs, in seconds. Default 3600.
    /// Note that busybox udhcpc 1.35 renews no sooner than ~15 s after the ACK (seen with 4 s and
    /// 20 s leases): test short-lease clients other than udhcpc, or wait.
    pub fn set_lease_time(&self, secs: u32) {
        self.script().lease_secs = secs;
    }

    /// Send options 58 (T1) and 59 (T2), in seconds, in later OFFERs and ACKs.
    /// Without them (the default) clients use 0.5 and 0.875 of the lease time.
    pub fn set_renewal_times(&self, t1_secs: u32, t2_secs: u32) {
        self.script().t1_t2 = Some((t1_secs, t2_secs));
    }

    /// Stop sending options 58 and 59.
    pub fn clear_renewal_times(&self) {
        self.script().t1_t2 = None;
    }

    /// NAK the next `n` REQUESTs of any kind (SELECTING ones naming this server, INIT-REBOOT,
    /// RENEWING, REBINDING). Replaces any count still pending; 0 cancels.
    pub fn nak_requests(&self, n: u32) {
        self.script().naks_left = n;
    }

    /// REQUESTs still to be NAKed from [`FakeServer::nak_requests`].
    pub fn naks_pending(&self) -> u32 {
        self.script().naks_left
    }

    /// Silent: record and count every datagram, answer none.
    pub fn set_silent(&self, yes: bool) {
        self.script().silent = yes;
    }

    /// Send every reply (and every bad datagram) twice, back to back.
    pub fn answer_twice(&self, yes: bool) {
        self.script().answer_twice = yes;
    }

    /// Replies carry [`DECOY_CLIENT_ID`] as option 61 and, for OFFER/ACK, [`DECOY_ADDR`] as
    /// yiaddr, instead of the real reply. Same xid and chaddr as the request: what a client on an
    /// ipvlan slave sees of a sibling's reply. The server still binds the real address.
    pub fn wrong_client_id(&self, yes: bool) {
        self.script().wrong_client = if yes {
            Placement::Instead
        } else {
            Placement::Off
        };
    }

    /// Like [`FakeServer::wrong_client_id`] but the decoy reply goes first and the real one after
    /// it: a client that checks option 61 gets its lease, one that does not takes the decoy.
    pub fn wrong_client_id_first(&self, yes: bool) {
        self.script().wrong_client = if yes {
            Placement::Before
        } else {
            Placement::Off
        };
    }

    /// Before every real reply, send bad datagrams that keep the request's xid: random bytes,
    /// the reply truncated at a random length, the reply with an option whose length runs past
    /// the end, the reply with a 1-byte option 54 and a zero-length option 51, and the reply
    /// with a wrong magic cookie. The real reply follows.
    pub fn garbage(&self, yes: bool) {
        self.script().garbage = if yes {
            Placement::Before
        } else {
            Placement::Off
        };
    }

    /// Like [`FakeServer::garbage`] but only the bad datagrams: no real reply.
    pub fn garbage_only(&self, yes: bool) {
        self.script().garbage = if yes {
            Placement::Instead
        } else {
            Placement::Off
        };
    }

    /// `true`: key clients by chaddr only ([`Keying::Mac`]); `false`: by option 61
    /// ([`Keying::ClientId`]).
    pub fn mac_keyed(&self, yes: bool) {
        self.script().keying = if yes { Keying::Mac } else { Keying::ClientId };
    }

    /// How clients are told apart; see [`Keying`]. Existing bindings stay (keys of one keying
    /// do not match the other's, so clients get new bindings after a change).
    pub fn set_keying(&self, keying: Keying) {
        self.script().keying = keying;
    }

    /// Send option 121 (RFC 3442) with these (destination, router) routes in later OFFERs and
    /// ACKs; `None` stops.
    pub fn set_classless_routes(&self, routes: Option<Vec<(ipnet::Ipv4Net, Ipv4Addr)>>) {
        self.script().classless_routes = routes;
    }

    /// Echo option 61 in replies (RFC 6842). Default true; false for an old server.
    pub fn echo_client_id(&self, yes: bool) {
        self.script().echo_client_id = yes;
    }

    /// The next address decision (a DISCOVER, or a REQUEST of any kind) rebinds the asking client
    /// to `ip`, once. A REQUEST for its old address is then NAKed and its next DISCOVER is
    /// offered `ip`. In [`Keying::OneAddress`] it changes the one address.
    pub fn set_next_address(&self, ip: Ipv4Addr) {
        self.script().next_address = Some(ip);
    }

    /// Forget every binding and declined address (a server restarted without its lease file).
    /// The history ([`FakeServer::received`], [`FakeServer::sent`], [`FakeServer::leases`]) stays.
    pub fn forget_bindings(&self) {
        let mut st = self.state();
        st.bindings.clear();
        st.one_address = None;
        st.declined.clear();
        st.repeats.clear();
    }

    /// Every datagram received so far, in order.
    pub fn received(&self) -> Vec<Seen> {
        self.state().seen.clone()
    }

    /// Every datagram sent so far, in order (garbage and duplicates included).
    pub fn sent(&self) -> Vec<Sent> {
        self.state().sent.clone()
    }

    /// Every lease handed out so far: one entry per DHCPACK sent (duplicates of
    /// [`FakeServer::answer_twice`] once), in order.
    pub fn leases(&self) -> Vec<FakeLease> {
        self.state().leases.clone()
    }

    /// The current bindings: client key (option 61 or chaddr, per [`Keying`]) -> address.
    pub fn bindings(&self) -> HashMap<Vec<u8>, Ipv4Addr> {
        self.state().bindings.clone()
    }

    /// How many received datagrams had message type `t`.
    pub fn count(&self, t: MessageType) -> usize {
        self.state()
            .seen
            .iter()
            .filter(|s| s.msg_type == Some(t))
            .count()
    }

    /// How many received datagrams were of kind `k`.
    pub fn count_kind(&self, k: Kind) -> usize {
        self.state().seen.iter().filter(|s| s.kind == k).count()
    }

    /// How many datagrams sent had message type `t`.
    pub fn count_sent(&self, t: MessageType) -> usize {
        self.state()
            .sent
            .iter()
            .filter(|s| s.msg_type == Some(t))
            .count()
    }

    /// Waits until some received datagram (earlier ones included) satisfies `pred`; false on
    /// timeout.
    pub fn wait_for(&self, pred: impl Fn(&Seen) -> bool, timeout: Duration) -> bool {
        self.wait_state(|st| st.seen.iter().any(&pred), timeout)
    }

    /// Waits until some datagram sent (earlier ones included) satisfies `pred`; false on timeout.
    pub fn wait_for_sent(&self, pred: impl Fn(&Sent) -> bool, timeout: Duration) -> bool {
        self.wait_state(|st| st.sent.iter().any(&pred), timeout)
    }

    /// Waits until at least `n` received datagrams satisfy `pred`; false on timeout.
    pub fn wait_for_count(
        &self,
        pred: impl Fn(&Seen) -> bool,
        n: usize,
        timeout: Duration,
    ) -> bool {
        self.wait_state(
            |st| st.seen.iter().filter(|s| pred(s)).count() >= n,
            timeout,
        )
    }

    fn wait_state(&self, done: impl Fn(&State) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.state();
        loop {
            if done(&st) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// On the calling thread: enter `netns`, make the server's socket there.
fn open_socket(netns: &Path) -> io::Result<Socket> {
    let f = File::open(netns)?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_address(true)?;
    sock.set_broadcast(true)?;
    sock.bind_device(Some(IFNAME.as_bytes()))?;
    setsockopt(&sock, sockopt::Ipv4PacketInfo, &true).map_err(io::Error::from)?;
    sock.set_read_timeout(Some(POLL))?;
    sock.bind(&SockAddr::from(SocketAddrV4::new(
        Ipv4Addr::UNSPECIFIED,
        67,
    )))?;
    Ok(sock)
}

fn serve(sock: &Socket, sh: &Shared) {
    let mut buf = vec![0u8; 2048];
    let mut rng = XorShift::new();
    while !sh.stop.load(Ordering::SeqCst) {
        let (len, src, dst) = match recv(sock, &mut buf) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                eprintln!("fake-dhcp: recv: {e}");
                std::thread::sleep(POLL);
                continue;
            }
        };
        let data = &buf[..len];
        // dhcproto can panic on some malformed options with debug assertions on (docs/design.md,
        // *dhcproto's decoder*).
        let msg = std::panic::catch_unwind(|| Message::from_bytes(data))
            .ok()
            .and_then(Result::ok)
            .filter(|m| m.opcode() == Opcode::BootRequest);
        let seen = describe(msg.as_ref(), len, src, dst);
        let kind = seen.kind;
        let mut script = sh.script.lock().unwrap_or_else(|e| e.into_inner());
        let mut st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
        st.seen.push(seen);
        sh.changed.notify_all();
        let Some(msg) = msg else { continue };
        if script.silent {
            continue;
        }
        let Some((reply, to)) = decide(&mut script, &mut st, &msg, kind) else {
            continue;
        };
        let script = script.clone();
        drop(st);
        let mut out: Vec<(Vec<u8>, Sent)> = Vec::new();
        let real = encode(&reply, to, false);
        if script.garbage != Placement::Off {
            for bytes in garbage_for(&real.0, &mut rng) {
                let sent = Sent {
                    msg_type: None,
                    garbage: true,
                    ..real.1.clone()
                };
                out.push((bytes, sent));
            }
        }
        if script.wrong_client != Placement::Off {
            out.push(encode(&decoy(&reply), to, false));
        }
        if script.garbage != Placement::Instead && script.wrong_client != Placement::Instead {
            out.push(real);
        }
        let times = if script.answer_twice { 2 } else { 1 };
        for (bytes, mut sent) in out {
            for _ in 0..times {
                if let Err(e) = sock.send_to(&bytes, &SockAddr::from(sent.dst)) {
                    eprintln!("fake-dhcp: send to {}: {e}", sent.dst);
                }
                sent.at = Instant::now();
                let mut st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
                st.sent.push(sent.clone());
                sh.changed.notify_all();
            }
        }
    }
}

/// One datagram with its source and (IP header) destination; `None` on the poll timeout.
fn recv(sock: &Socket, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddrV4, Ipv4Addr)>> {
    let mut cmsg = nix::cmsg_space!(libc::in_pktinfo);
    let mut iov = [IoSliceMut::new(buf)];
    let r = match recvmsg::<SockaddrIn>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    ) {
        Ok(r) => r,
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut dst = Ipv4Addr::UNSPECIFIED;
    if let Ok(cmsgs) = r.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::Ipv4PacketInfo(pi) = c {
                dst = Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr));
            }
        }
    }
    let src = r
        .address
        .map(|a| SocketAddrV4::new(a.ip(), a.port()))
        .unwrap_or_else(|| SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    Ok(Some((r.bytes, src, dst)))
}

fn describe(msg: Option<&Message>, len: usize, src: SocketAddrV4, dst: Ipv4Addr) -> Seen {
    let at = Instant::now();
    let Some(m) = msg else {
        return Seen {
            msg_type: None,
            kind: Kind::Malformed,
            xid: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            chaddr: Vec::new(),
            client_id: None,
            requested_ip: None,
            server_id: None,
            src,
            dst,
            broadcast_flag: false,
            secs: 0,
            len,
            at,
        };
    };
    let msg_type = m.opts().msg_type();
    let requested_ip = requested_ip(m);
    let server_id = server_id(m);
    let ciaddr = m.ciaddr();
    let kind = match msg_type {
        None => Kind::Malformed,
        Some(MessageType::Discover) => Kind::Discover,
        Some(MessageType::Request) => {
            if !ciaddr.is_unspecified() {
                if dst == SERVER_ID {
                    Kind::Renewing
                } else {
                    Kind::Rebinding
                }
            } else if requested_ip.is_some() && server_id.is_some() {
                Kind::Selecting
            } else if requested_ip.is_some() {
                Kind::InitReboot
            } else {
                Kind::OtherRequest
            }
        }
        Some(MessageType::Release) => Kind::Release,
        Some(MessageType::Decline) => Kind::Decline,
        Some(MessageType::Inform) => Kind::Inform,
        Some(_) => Kind::Other,
    };
    Seen {
        msg_type,
        kind,
        xid: m.xid(),
        ciaddr,
        chaddr: m.chaddr().to_vec(),
        client_id: client_id(m),
        requested_ip,
        server_id,
        src,
        dst,
        broadcast_flag: m.flags().broadcast(),
        secs: m.secs(),
        len,
        at,
    }
}

fn client_id(m: &Message) -> Option<Vec<u8>> {
    match m.opts().get(OptionCode::ClientIdentifier) {
        Some(DhcpOption::ClientIdentifier(id)) => Some(id.clone()),
        _ => None,
    }
}

fn requested_ip(m: &Message) -> Option<Ipv4Addr> {
    match m.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    }
}

fn server_id(m: &Message) -> Option<Ipv4Addr> {
    match m.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    }
}

/// The client's key per the keying.
fn key_of(keying: Keying, m: &Message) -> Vec<u8> {
    match keying {
        Keying::ClientId => client_id(m)
            .map(|id| [b"id:".as_slice(), &id].concat())
            .unwrap_or_else(|| [b"mac:".as_slice(), m.chaddr()].concat()),
        Keying::Mac | Keying::OneAddress | Keying::MacNextAddress => {
            [b"mac:".as_slice(), m.chaddr()].concat()
        }
    }
}

fn in_pool(ip: Ipv4Addr) -> bool {
    (u32::from(POOL_START)..=u32::from(POOL_END)).contains(&u32::from(ip))
}

impl State {
    /// The client's address now: applies a pending next address, else its binding, else a new
    /// one from the pool (`None` when the pool is exhausted).
    fn address_for(&mut self, script: &mut Script, key: &[u8]) -> Option<Ipv4Addr> {
        let next = script.next_address.take();
        if script.keying == Keying::OneAddress {
            if let Some(ip) = next {
                self.one_address = Some(ip);
            }
            return Some(*self.one_address.get_or_insert(POOL_START));
        }
        if let Some(ip) = next {
            self.bindings.insert(key.to_vec(), ip);
            return Some(ip);
        }
        if let Some(ip) = self.bindings.get(key) {
            return Some(*ip);
        }
        let ip = (u32::from(POOL_START)..=u32::from(POOL_END))
            .map(Ipv4Addr::from)
            .find(|ip| self.is_free(*ip))?;
        self.bindings.insert(key.to_vec(), ip);
        Some(ip)
    }

    fn is_free(&self, ip: Ipv4Addr) -> bool {
        !self.declined.contains(&ip) && !self.bindings.values().any(|b| *b == ip)
    }
}

/// What to answer to `m` (of kind `kind`), and where; `None` for no answer.
fn decide(
    script: &mut Script,
    st: &mut State,
    m: &Message,
    kind: Kind,
) -> Option<(Message, SocketAddrV4)> {
    let key = key_of(script.keying, m);
    let bcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, 68);
    match kind {
        Kind::Discover => {
            let ip = if script.keying == Keying::MacNextAddress && st.bindings.contains_key(&key) {
                let n = st.repeats.entry(key.clone()).or_default();
                *n += 1;
                if *n >= 2 {
                    (u32::from(POOL_START)..=u32::from(POOL_END))
                        .map(Ipv4Addr::from)
                        .find(|ip| st.is_free(*ip))?
                } else {
                    st.address_for(script, &key)?
                }
            } else {
                st.address_for(script, &key)?
            };
            Some((reply(script, m, MessageType::Offer, ip), bcast))
        }
        Kind::Selecting | Kind::InitReboot | Kind::Renewing | Kind::Rebinding => {
            if kind == Kind::Selecting && server_id(m) != Some(SERVER_ID) {
                return None; // the client chose another server
            }
            if script.naks_left > 0 {
                script.naks_left -= 1;
                return Some((nak(script, m, "NAK on demand"), bcast));
            }
            let want = match kind {
                Kind::Selecting | Kind::InitReboot => requested_ip(m)?,
                _ => m.ciaddr(),
            };
            let pending_next = script.next_address.is_some();
            let known = script.keying == Keying::OneAddress
                || pending_next
                || st.bindings.contains_key(&key);
            let have = if known
                && script.keying == Keying::MacNextAddress
                && kind == Kind::Selecting
                && in_pool(want)
                && st.is_free(want)
            {
                // The chaddr's only binding moves to the address it now asks for.
                st.bindings.insert(key.clone(), want);
                want
            } else if known {
                st.address_for(script, &key)?
            } else if in_pool(want) && st.is_free(want) {
                // A client this server forgot (or never saw): re-bind it, as authoritative
                // servers do.
                st.bindings.insert(key.clone(), want);
                want
            } else {
                return Some((nak(script, m, "address not available"), bcast));
            };
            if have != want {
                return Some((nak(script, m, "wrong address"), bcast));
            }
            let to = if m.ciaddr().is_unspecified() {
                bcast
            } else {
                SocketAddrV4::new(m.ciaddr(), 68)
            };
            st.leases.push(FakeLease {
                ip: have,
                client_id: client_id(m),
                chaddr: m.chaddr().to_vec(),
                xid: m.xid(),
                lease_secs: script.lease_secs,
                t1_t2: script.t1_t2,
                kind,
                at: Instant::now(),
            });
            Some((reply(script, m, MessageType::Ack, have), to))
        }
        Kind::Release => {
            st.bindings.remove(&key);
            None
        }
        Kind::Decline => {
            if let Some(ip) = st.bindings.remove(&key) {
                st.declined.insert(ip);
            }
            if let Some(ip) = requested_ip(m) {
                st.declined.insert(ip);
            }
            None
        }
        _ => None,
    }
}

fn reply_base(script: &Script, m: &Message, t: MessageType) -> Message {
    let mut r = Message::new_with_id(
        m.xid(),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        m.giaddr(),
        m.chaddr(),
    );
    r.set_opcode(Opcode::BootReply)
        .set_htype(m.htype())
        .set_flags(m.flags());
    let o = r.opts_mut();
    o.insert(DhcpOption::MessageType(t));
    o.insert(DhcpOption::ServerIdentifier(SERVER_ID));
    if script.echo_client_id {
        if let Some(id) = client_id(m) {
            o.insert(DhcpOption::ClientIdentifier(id));
        }
    }
    r
}

fn reply(script: &Script, m: &Message, t: MessageType, ip: Ipv4Addr) -> Message {
    let mut r = reply_base(script, m, t);
    r.set_yiaddr(ip);
    if t == MessageType::Ack {
        r.set_ciaddr(m.ciaddr());
    }
    let o = r.opts_mut();
    o.insert(DhcpOption::AddressLeaseTime(script.lease_secs));
    if let Some((t1, t2)) = script.t1_t2 {
        o.insert(DhcpOption::Renewal(t1));
        o.insert(DhcpOption::Rebinding(t2));
    }
    o.insert(DhcpOption::SubnetMask(NETMASK));
    o.insert(DhcpOption::Router(vec![SERVER_ID]));
    o.insert(DhcpOption::DomainNameServer(vec![SERVER_ID]));
    if let Some(routes) = &script.classless_routes {
        o.insert(DhcpOption::ClasslessStaticRoute(routes.clone()));
    }
    r
}

fn nak(script: &Script, m: &Message, why: &str) -> Message {
    let mut r = reply_base(script, m, MessageType::Nak);
    r.opts_mut()
        .insert(DhcpOption::Message(format!("fake-server: {why}")));
    r
}

/// The reply as another client's: decoy option 61 and, for OFFER/ACK, the decoy address.
fn decoy(reply: &Message) -> Message {
    let mut r = reply.clone();
    if !r.yiaddr().is_unspecified() {
        r.set_yiaddr(DECOY_ADDR);
    }
    r.opts_mut()
        .insert(DhcpOption::ClientIdentifier(DECOY_CLIENT_ID.to_vec()));
    r
}

fn encode(m: &Message, to: SocketAddrV4, garbage: bool) -> (Vec<u8>, Sent) {
    let bytes = m.to_vec().expect("encode reply");
    let sent = Sent {
        msg_type: m.opts().msg_type(),
        xid: m.xid(),
        yiaddr: m.yiaddr(),
        client_id: client_id(m),
        dst: to,
        garbage,
        at: Instant::now(),
    };
    (bytes, sent)
}

/// Offset of the options after the magic cookie in a BOOTP message.
const OPTIONS_AT: usize = 240;

/// Bad variants of an encoded reply (all keep its xid, bytes 4..8).
fn garbage_for(real: &[u8], rng: &mut XorShift) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    // 1. Random bytes, random length 1..=300.
    let n = 1 + rng.below(300);
    out.push((0..n).map(|_| rng.next() as u8).collect());
    // 2. The reply truncated inside its fixed BOOTP header (the xid survives, no option does).
    // Not inside the options: busybox udhcpc 1.35 takes an OFFER cut inside option 54 as valid,
    // with the missing bytes as zeros, and then asks for server 198.18.0.0, which made the
    // udhcpc smoke test fail whenever the random cut landed there (seen once in CI).
    let cut = 8 + rng.below(OPTIONS_AT - 8);
    out.push(real[..cut.min(real.len() - 1)].to_vec());
    // 3. An option whose length runs past the end of the datagram.
    let mut body = strip_end(real);
    body.extend_from_slice(&[51, 0xff, 0, 0]);
    out.push(body);
    // 4. A 1-byte server id (option 54 must have 4) and a zero-length lease time.
    let mut body = strip_end(real);
    body.extend_from_slice(&[54, 1, 198, 51, 0, 255]);
    out.push(body);
    // 5. A wrong magic cookie.
    let mut body = real.to_vec();
    if body.len() >= OPTIONS_AT {
        body[236..240].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    }
    out.push(body);
    out
}

/// The encoded reply without its END option (and whatever follows it).
fn strip_end(real: &[u8]) -> Vec<u8> {
    let mut i = OPTIONS_AT;
    while i < real.len() {
        match real[i] {
            0 => i += 1,
            255 => break,
            _ if i + 1 < real.len() => i += 2 + real[i + 1] as usize,
            _ => break,
        }
    }
    real[..i.min(real.len())].to_vec()
}

/// A small PRNG for garbage; no need for quality.
struct XorShift(u64);

impl XorShift {
    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        XorShift(seed | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform-ish in 0..n (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
