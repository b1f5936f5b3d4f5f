//! A scriptable fake DHCPv6 server for fault tests, run in the lab's server netns on `s0`.
//!
//! dnsmasq stays the DHCPv6 server for interop tests (tests/dhcp6_interop.rs); this one exists
//! for what dnsmasq cannot do: lifetimes of a few seconds (dnsmasq raises anything under 2
//! minutes), NoAddrsAvail, NoBinding and NotOnLink on demand, UseMulticast, silence, replies
//! for another client's DUID, and garbage. The DHCPv6 twin of [`super::fake_server`].
//!
//! ```ignore
//! mod common;
//! use common::fake_server6::{FakeServer6, MessageType, POOL_START};
//! let lab = common::fake_lab6("foo").unwrap();  // no dnsmasq; None: skip the test
//! let srv = FakeServer6::start(&lab);
//! srv.set_lifetimes(4, 8);                      // preferred, valid: seconds
//! srv.set_t1_t2(2, 3);
//! // ... run a DHCPv6 client in a container ...
//! assert!(srv.wait_for(|s| s.msg_type == Some(MessageType::Renew), Duration::from_secs(10)));
//! srv.no_binding_on_renew(1);                   // the next RENEW gets IA_NA status NoBinding
//! ```
//!
//! Behaviour (RFC 8415 where it matters, simplified where it does not):
//! - UDP `[::]:547`, SO_BINDTODEVICE `s0`, joined to `ff02::1:2` on `s0`; s0's link-local
//!   ([`FakeServer6::link_local`]) and, in a lab from [`super::fake_lab6`], [`SERVER_ADDR`].
//!   Every reply goes unicast to the source address and port of the message it answers (the
//!   client's link-local, port 546), as dnsmasq does; nothing is ever multicast.
//! - SOLICIT gets an ADVERTISE with Preference ([`DEFAULT_PREFERENCE`], see
//!   [`FakeServer6::set_preference`]), or, when the SOLICIT carries Rapid Commit (option 14)
//!   and [`FakeServer6::rapid_commit`] allows it (default), a REPLY with Rapid Commit that
//!   binds at once. REQUEST, RENEW, REBIND get a REPLY; RELEASE a REPLY with status Success
//!   that frees the binding; DECLINE a REPLY with Success, the address kept out of the pool
//!   from then on; CONFIRM a REPLY with Success when every address is in [`ON_LINK_PREFIX`],
//!   NotOnLink otherwise (no reply when it names none). REQUEST, RENEW, RELEASE and DECLINE
//!   naming another server's DUID (or none) are recorded and not answered (§16.4, §16.6,
//!   §16.8, §16.9); so is any other message type (relay messages, INFORMATION-REQUEST,
//!   server messages) and any message without a Client ID.
//! - Bindings are keyed by (client DUID, IAID), one per IA_NA of the message; addresses come
//!   from [`POOL_START`]..=[`POOL_END`], the client's binding first, else the address it names
//!   when it is free and in the pool, else the lowest free one. An ADVERTISE reserves the
//!   address for the IA (not a binding: [`FakeServer6::bindings`] lists what a REPLY granted).
//!   RENEW keeps the binding (other addresses it names are listed with lifetimes 0, §18.3.4),
//!   or gets IA_NA status NoBinding when there is none; REBIND re-creates a binding it does not
//!   know for a free pool address, as an authoritative server does, else NoBinding.
//! - Replies carry the Client ID (echoed), Server ID [`SERVER_DUID`] (a DUID-LL), one IA_NA per
//!   IA_NA asked about with T1/T2 and an IA Address with preferred/valid lifetimes (defaults
//!   [`DEFAULT_T1_SECS`], [`DEFAULT_T2_SECS`], [`DEFAULT_PREFERRED_SECS`],
//!   [`DEFAULT_VALID_SECS`]), and, in ADVERTISE and REPLY to SOLICIT, REQUEST, RENEW, REBIND,
//!   DNS servers (option 23, [`DNS_SERVER`]) and a domain list (option 24, [`DOMAIN`]), in
//!   that order (Client ID and Server ID first is what [`FakeServer6::garbage`] relies on).
//!   A pool that is exhausted for every IA of a SOLICIT or REQUEST is answered as with
//!   [`FakeServer6::no_addrs_avail`]; for some IAs only, those get IA_NA status NoAddrsAvail.
//!
//! Every datagram received is recorded as a [`Seen`], even in silent mode; every datagram sent
//! as a [`Sent`], just before it is sent (so a client that got it finds it in
//! [`FakeServer6::sent`]). The script ([`FakeServer6::set_lifetimes`] and the other setters) may change
//! while the server runs; it applies from the next datagram on.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io::{self, IoSliceMut};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use cni_dhcp::dhcp6::MessageType;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrIn6, recvmsg, setsockopt, sockopt};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::Lab;

/// The server's DUID, the Server Identifier option 2 data: DUID-LL (type 3, RFC 8415 §11.4),
/// hardware type 1 (Ethernet), link-layer address 02:fa:6e:00:00:06 (locally administered).
pub const SERVER_DUID: &[u8] = &[0x00, 0x03, 0x00, 0x01, 0x02, 0xfa, 0x6e, 0x00, 0x00, 0x06];
/// The Client ID that replies carry in [`FakeServer6::reply_for_other_duid`] mode: a DUID-UUID
/// (type 4) of a UUID no client derives, what a container on an ipvlan slave hears of a
/// sibling's reply.
pub const DECOY_DUID: &[u8] = &[
    0x00, 0x04, 0xde, 0xc0, 0x7d, 0x00, 0x00, 0x00, 0x40, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x01,
];
/// A static address for s0 ([`super::fake_lab6`] puts it there, /64), in [`ON_LINK_PREFIX`].
pub const SERVER_ADDR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 6, 0, 0, 0, 0, 1);
/// The link's prefix (/[`ON_LINK_PREFIX_LEN`]): what CONFIRM is checked against.
pub const ON_LINK_PREFIX: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 6, 0, 0, 0, 0, 0);
/// Prefix length of [`ON_LINK_PREFIX`].
pub const ON_LINK_PREFIX_LEN: u8 = 64;
/// First address of the pool.
pub const POOL_START: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 6, 0, 0, 0, 0, 0x100);
/// Last address of the pool.
pub const POOL_END: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 6, 0, 0, 0, 0, 0x1ff);
/// Option 23 until [`FakeServer6::set_dns`].
pub const DNS_SERVER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 6, 0, 0, 0, 0, 0x53);
/// Option 24 until [`FakeServer6::set_domains`].
pub const DOMAIN: &str = "lab6.test";
/// Preferred lifetime until [`FakeServer6::set_lifetimes`], seconds.
pub const DEFAULT_PREFERRED_SECS: u32 = 3600;
/// Valid lifetime until [`FakeServer6::set_lifetimes`], seconds.
pub const DEFAULT_VALID_SECS: u32 = 7200;
/// T1 until [`FakeServer6::set_t1_t2`], seconds.
pub const DEFAULT_T1_SECS: u32 = 1800;
/// T2 until [`FakeServer6::set_t1_t2`], seconds.
pub const DEFAULT_T2_SECS: u32 = 2880;
/// Preference (option 7) in ADVERTISEs until [`FakeServer6::set_preference`]: 255, so a client
/// requests at once instead of collecting ADVERTISEs for its first retransmission time
/// (RFC 8415 §18.2.1), as with an authoritative dnsmasq.
pub const DEFAULT_PREFERENCE: Option<u8> = Some(255);

/// Status codes (RFC 8415 §21.13) the server sends.
pub mod status {
    pub const SUCCESS: u16 = 0;
    pub const NO_ADDRS_AVAIL: u16 = 2;
    pub const NO_BINDING: u16 = 3;
    pub const NOT_ON_LINK: u16 = 4;
    pub const USE_MULTICAST: u16 = 5;
}

/// Option codes (RFC 8415 §21, RFC 3646) the server reads or writes.
mod code {
    pub const CLIENTID: u16 = 1;
    pub const SERVERID: u16 = 2;
    pub const IA_NA: u16 = 3;
    pub const IAADDR: u16 = 5;
    pub const ORO: u16 = 6;
    pub const PREFERENCE: u16 = 7;
    pub const ELAPSED_TIME: u16 = 8;
    pub const STATUS_CODE: u16 = 13;
    pub const RAPID_COMMIT: u16 = 14;
    pub const DNS_SERVERS: u16 = 23;
    pub const DOMAIN_LIST: u16 = 24;
}

const IFNAME: &str = "s0";
const NETNS_DIR: &str = "/var/run/netns";
const SERVER_PORT: u16 = 547;
/// All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1).
const ALL_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
/// How often the serving thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(50);
/// How long [`FakeServer6::start`] waits for s0's link-local to pass DAD.
const LINK_LOCAL_WAIT: Duration = Duration::from_secs(30);

/// A binding's key: (client DUID, IAID).
pub type Key = (Vec<u8>, u32);

/// One IA_NA of a received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenIa {
    pub iaid: u32,
    /// Its IA Address options' addresses.
    pub addresses: Vec<Ipv6Addr>,
}

/// One datagram the server received (recorded in every mode, silent included).
#[derive(Debug, Clone)]
pub struct Seen {
    /// The msg-type byte; `None` for a datagram shorter than the 4-byte header.
    pub msg_type: Option<MessageType>,
    /// transaction-id (24 bits).
    pub xid: u32,
    /// Client Identifier option 1 data.
    pub client_duid: Option<Vec<u8>>,
    /// Server Identifier option 2 data.
    pub server_duid: Option<Vec<u8>>,
    /// The IAID of the first IA_NA.
    pub iaid: Option<u32>,
    /// The IA Address options' addresses, of every IA_NA, in order.
    pub requested: Vec<Ipv6Addr>,
    /// Every IA_NA.
    pub ias: Vec<SeenIa>,
    /// Elapsed Time option 8, hundredths of a second.
    pub elapsed: Option<u16>,
    /// Rapid Commit option 14 present.
    pub rapid_commit: bool,
    /// Option Request option 6 codes.
    pub oro: Vec<u16>,
    /// An option ran past its container (the walk stopped there).
    pub truncated: bool,
    /// The IPv6 source address (with its scope id) and UDP source port.
    pub src: SocketAddrV6,
    /// The IPv6 destination address (IPV6_PKTINFO): `ff02::1:2` for a multicast, one of s0's
    /// addresses for a unicast.
    pub dst: Ipv6Addr,
    /// Datagram length in bytes.
    pub len: usize,
    pub at: Instant,
}

/// One IA Address the server sent (in an IA_NA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub iaid: u32,
    pub t1: u32,
    pub t2: u32,
    pub address: Ipv6Addr,
    pub preferred: u32,
    pub valid: u32,
}

/// One datagram the server sent.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The msg-type of the reply; `None` for garbage.
    pub msg_type: Option<MessageType>,
    pub xid: u32,
    /// The Client ID it carried (the client's, or [`DECOY_DUID`]).
    pub client_duid: Vec<u8>,
    /// The top-level Status Code.
    pub status: Option<u16>,
    /// The Status Codes inside its IA_NAs, as (IAID, code).
    pub ia_status: Vec<(u32, u16)>,
    /// The IA Addresses it carried, with their IA_NA's T1/T2.
    pub grants: Vec<Grant>,
    /// Preference option 7.
    pub preference: Option<u8>,
    /// Rapid Commit option 14 present.
    pub rapid_commit: bool,
    /// Where it went: the source of the message it answers.
    pub dst: SocketAddrV6,
    /// True for the bad datagrams of [`FakeServer6::garbage`].
    pub garbage: bool,
    /// True for a reply of [`FakeServer6::reply_for_other_duid`].
    pub decoy: bool,
    pub len: usize,
    /// When it was recorded, just before it was sent.
    pub at: Instant,
    /// Why sending it failed (`send_to(2)`'s error), if it did.
    pub error: Option<String>,
}

/// The knobs, shared with the serving thread.
#[derive(Debug, Clone)]
struct Script {
    preferred: u32,
    valid: u32,
    t1: u32,
    t2: u32,
    preference: Option<u8>,
    dns: Vec<Ipv6Addr>,
    domains: Vec<String>,
    silent: bool,
    no_addrs_avail: bool,
    no_binding_on_renew: u32,
    not_on_link_on_renew: u32,
    use_multicast: u32,
    other_duid: bool,
    garbage: bool,
    rapid_commit: bool,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            preferred: DEFAULT_PREFERRED_SECS,
            valid: DEFAULT_VALID_SECS,
            t1: DEFAULT_T1_SECS,
            t2: DEFAULT_T2_SECS,
            preference: DEFAULT_PREFERENCE,
            dns: vec![DNS_SERVER],
            domains: vec![DOMAIN.to_string()],
            silent: false,
            no_addrs_avail: false,
            no_binding_on_renew: 0,
            not_on_link_on_renew: 0,
            use_multicast: 0,
            other_duid: false,
            garbage: false,
            rapid_commit: true,
        }
    }
}

/// What the server knows and has done.
#[derive(Debug, Default)]
struct State {
    seen: Vec<Seen>,
    sent: Vec<Sent>,
    /// Granted by a REPLY.
    bindings: HashMap<Key, Ipv6Addr>,
    /// Advertised, not (yet) requested: kept from other clients.
    offered: HashMap<Key, Ipv6Addr>,
    /// Addresses a client declined: never handed out again.
    declined: HashSet<Ipv6Addr>,
}

struct Shared {
    script: Mutex<Script>,
    state: Mutex<State>,
    /// Notified whenever `state` changes.
    changed: Condvar,
    stop: AtomicBool,
}

/// The fake server. Serves on its own thread from [`FakeServer6::start`] until dropped.
pub struct FakeServer6 {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    link_local: Ipv6Addr,
}

impl FakeServer6 {
    /// Starts serving on `s0` in `lab`'s server netns (see the module documentation), once s0's
    /// link-local address has passed duplicate address detection (at once in a lab from
    /// [`super::fake_lab6`], which turns DAD off on s0). The lab may run dnsmasq for DHCPv4, as
    /// long as dnsmasq does not serve DHCPv6 (no DHCPv6 range): port 547 must be free.
    /// Panics if the socket cannot be made. Returns once the socket is bound and joined.
    pub fn start(lab: &Lab) -> FakeServer6 {
        let link_local = lab.wait_link_local(lab.srv_ns(), IFNAME, LINK_LOCAL_WAIT);
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
            .name("fake-dhcp6".into())
            .spawn(move || {
                // This thread is ours alone: setns here does not move anyone else.
                match open_socket(&netns) {
                    Ok((sock, ifindex)) => {
                        let _ = tx.send(Ok(()));
                        serve(&sock, ifindex, &sh);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .expect("spawn fake-dhcp6 thread");
        match rx.recv() {
            Ok(Ok(())) => FakeServer6 {
                shared,
                thread: Some(thread),
                link_local,
            },
            Ok(Err(e)) => {
                let _ = thread.join();
                panic!("FakeServer6::start in {}: {e}", lab.srv_ns())
            }
            Err(_) => {
                let _ = thread.join();
                panic!("FakeServer6::start: serving thread died")
            }
        }
    }

    fn script(&self) -> MutexGuard<'_, Script> {
        self.shared.script.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// s0's link-local address: the source of every reply.
    pub fn link_local(&self) -> Ipv6Addr {
        self.link_local
    }

    /// Preferred and valid lifetimes of the IA Addresses in later replies, in seconds.
    /// Default [`DEFAULT_PREFERRED_SECS`], [`DEFAULT_VALID_SECS`]. Not checked: preferred >
    /// valid is sent as told (a client must discard such an address, §21.6).
    pub fn set_lifetimes(&self, preferred: u32, valid: u32) {
        let mut s = self.script();
        s.preferred = preferred;
        s.valid = valid;
    }

    /// T1 and T2 of the IA_NAs in later replies, in seconds (0: the client chooses, §21.4).
    /// Default [`DEFAULT_T1_SECS`], [`DEFAULT_T2_SECS`]. Not checked either.
    pub fn set_t1_t2(&self, t1: u32, t2: u32) {
        let mut s = self.script();
        s.t1 = t1;
        s.t2 = t2;
    }

    /// Preference option 7 in later ADVERTISEs; `None` sends none (a client then waits out its
    /// first retransmission time collecting ADVERTISEs). Default [`DEFAULT_PREFERENCE`].
    pub fn set_preference(&self, preference: Option<u8>) {
        self.script().preference = preference;
    }

    /// DNS servers (option 23) in later replies; empty sends no option 23.
    pub fn set_dns(&self, servers: Vec<Ipv6Addr>) {
        self.script().dns = servers;
    }

    /// Domain search list (option 24, names without the trailing dot) in later replies; empty
    /// sends no option 24.
    pub fn set_domains(&self, domains: Vec<String>) {
        self.script().domains = domains;
    }

    /// Silent: record every datagram, answer none.
    pub fn silent(&self, yes: bool) {
        self.script().silent = yes;
    }

    /// ADVERTISEs and the REPLYs to REQUEST (and to a Rapid Commit SOLICIT, which then gets an
    /// ADVERTISE, §18.3.1) carry top-level status NoAddrsAvail and no IA_NA. RENEW and REBIND
    /// are answered as usual.
    pub fn no_addrs_avail(&self, yes: bool) {
        self.script().no_addrs_avail = yes;
    }

    /// The next `n` RENEWs get IA_NA status NoBinding, and the server forgets their bindings
    /// (as a server restarted without its lease database: the REQUEST that a client sends
    /// next gets the same address back, free again). Replaces any count still pending; 0
    /// cancels.
    pub fn no_binding_on_renew(&self, n: u32) {
        self.script().no_binding_on_renew = n;
    }

    /// The next `n` RENEWs get top-level status NotOnLink and no IA_NA (the bindings stay).
    /// Replaces any count still pending; 0 cancels. Counted after
    /// [`FakeServer6::use_multicast_status`] and before [`FakeServer6::no_binding_on_renew`].
    pub fn not_on_link_on_renew(&self, n: u32) {
        self.script().not_on_link_on_renew = n;
    }

    /// The next `n` REQUESTs, RENEWs, RELEASEs and DECLINEs (the messages a client may unicast,
    /// §18.4), however they arrived, get top-level status UseMulticast and nothing else: not acted on. Replaces any count
    /// still pending; 0 cancels.
    pub fn use_multicast_status(&self, n: u32) {
        self.script().use_multicast = n;
    }

    /// Replies carry [`DECOY_DUID`] as Client ID instead of the client's DUID, and only those
    /// are sent; same xid, same destination. The server acts on the messages as usual (binds,
    /// frees).
    pub fn reply_for_other_duid(&self, yes: bool) {
        self.script().other_duid = yes;
    }

    /// Before every reply, send bad datagrams with its msg-type and xid: random bytes after the
    /// 4-byte header, and the reply truncated inside its Client ID or Server ID option (never
    /// later: a reply cut after them would still parse into a lease, only poorer).
    pub fn garbage(&self, yes: bool) {
        self.script().garbage = yes;
    }

    /// Whether a SOLICIT with Rapid Commit gets a binding REPLY (true, the default) or an
    /// ADVERTISE as any other.
    pub fn rapid_commit(&self, yes: bool) {
        self.script().rapid_commit = yes;
    }

    /// RENEWs still to get NoBinding from [`FakeServer6::no_binding_on_renew`].
    pub fn no_binding_pending(&self) -> u32 {
        self.script().no_binding_on_renew
    }

    /// Forget every binding, reservation and declined address (a server restarted without its
    /// lease database). The history ([`FakeServer6::seen`], [`FakeServer6::sent`]) stays.
    pub fn forget_bindings(&self) {
        let mut st = self.state();
        st.bindings.clear();
        st.offered.clear();
        st.declined.clear();
    }

    /// Every datagram received so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state().seen.clone()
    }

    /// Every datagram sent so far, in order (garbage and decoys included).
    pub fn sent(&self) -> Vec<Sent> {
        self.state().sent.clone()
    }

    /// The current bindings (granted by a REPLY): (client DUID, IAID) -> address.
    pub fn bindings(&self) -> HashMap<Key, Ipv6Addr> {
        self.state().bindings.clone()
    }

    /// The addresses declined so far (kept out of the pool).
    pub fn declined(&self) -> HashSet<Ipv6Addr> {
        self.state().declined.clone()
    }

    /// How many received datagrams had message type `t`.
    pub fn count(&self, t: MessageType) -> usize {
        self.state()
            .seen
            .iter()
            .filter(|s| s.msg_type == Some(t))
            .count()
    }

    /// How many datagrams sent (garbage excluded) had message type `t`.
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
        // A timeout too large for an Instant waits for ever (in slices).
        let deadline = Instant::now().checked_add(timeout);
        let mut st = self.state();
        loop {
            if done(&st) {
                return true;
            }
            let now = Instant::now();
            let left = match deadline {
                Some(d) if now >= d => return false,
                Some(d) => d.saturating_duration_since(now),
                None => Duration::from_secs(3600),
            };
            st = self
                .shared
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for FakeServer6 {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// On the calling thread: enter `netns`, make the server's socket there; with s0's ifindex.
fn open_socket(netns: &Path) -> io::Result<(Socket, u32)> {
    let f = std::fs::File::open(netns)?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
    let ifindex = nix::net::if_::if_nametoindex(IFNAME).map_err(io::Error::from)?;
    let sock = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_only_v6(true)?;
    sock.set_reuse_address(true)?;
    sock.bind_device(Some(IFNAME.as_bytes()))?;
    setsockopt(&sock, sockopt::Ipv6RecvPacketInfo, &true).map_err(io::Error::from)?;
    sock.set_read_timeout(Some(POLL))?;
    sock.bind(&SockAddr::from(SocketAddrV6::new(
        Ipv6Addr::UNSPECIFIED,
        SERVER_PORT,
        0,
        0,
    )))?;
    sock.join_multicast_v6(&ALL_SERVERS, ifindex)?;
    Ok((sock, ifindex))
}

fn serve(sock: &Socket, ifindex: u32, sh: &Shared) {
    let mut buf = vec![0u8; 65536];
    let mut rng = XorShift::new();
    while !sh.stop.load(Ordering::SeqCst) {
        let (len, src, dst) = match recv(sock, &mut buf) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                eprintln!("fake-dhcp6: recv: {e}");
                std::thread::sleep(POLL);
                continue;
            }
        };
        let seen = describe(&buf[..len], src, dst);
        let mut script = sh.script.lock().unwrap_or_else(|e| e.into_inner());
        let mut st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
        st.seen.push(seen.clone());
        sh.changed.notify_all();
        if script.silent {
            continue;
        }
        let Some(mut reply) = decide(&mut script, &mut st, &seen) else {
            continue;
        };
        let script = script.clone();
        drop(st);
        // A link-local source without a scope (it always has one here) is s0's.
        let mut to = src;
        if to.scope_id() == 0 {
            to.set_scope_id(ifindex);
        }
        let decoy = script.other_duid;
        if decoy {
            reply.client_id = DECOY_DUID.to_vec();
        }
        let (real, sid_end) = encode(&reply);
        let record = |garbage: bool, len: usize| Sent {
            msg_type: (!garbage).then_some(reply.msg_type),
            xid: reply.xid,
            client_duid: reply.client_id.clone(),
            status: reply.status.as_ref().map(|s| s.0),
            ia_status: reply
                .ias
                .iter()
                .filter_map(|ia| ia.status.as_ref().map(|s| (ia.iaid, s.0)))
                .collect(),
            grants: reply.grants(),
            preference: reply.preference,
            rapid_commit: reply.rapid_commit,
            dst: to,
            garbage,
            decoy,
            len,
            at: Instant::now(),
            error: None,
        };
        let mut out: Vec<(Vec<u8>, Sent)> = Vec::new();
        if script.garbage {
            for bytes in garbage_for(&real, sid_end, &mut rng) {
                let sent = record(true, bytes.len());
                out.push((bytes, sent));
            }
        }
        let sent = record(false, real.len());
        out.push((real, sent));
        for (bytes, mut sent) in out {
            // Recorded before it goes out, so that whoever received it finds it in `sent()`.
            let at = {
                let mut st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
                sent.at = Instant::now();
                st.sent.push(sent);
                sh.changed.notify_all();
                st.sent.len() - 1
            };
            if let Err(e) = sock.send_to(&bytes, &SockAddr::from(to)) {
                eprintln!("fake-dhcp6: send to {to}: {e}");
                let mut st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(s) = st.sent.get_mut(at) {
                    s.error = Some(e.to_string());
                }
            }
        }
    }
}

/// One datagram with its source and (IP header) destination; `None` on the poll timeout.
fn recv(sock: &Socket, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddrV6, Ipv6Addr)>> {
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo);
    let mut iov = [IoSliceMut::new(buf)];
    let r = match recvmsg::<SockaddrIn6>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    ) {
        Ok(r) => r,
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut dst = Ipv6Addr::UNSPECIFIED;
    if let Ok(cmsgs) = r.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::Ipv6PacketInfo(pi) = c {
                dst = Ipv6Addr::from(pi.ipi6_addr.s6_addr);
            }
        }
    }
    let src = r
        .address
        .map(SocketAddrV6::from)
        .unwrap_or_else(|| SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0));
    Ok(Some((r.bytes, src, dst)))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// The options of `area` as (code, data), and whether an option ran past the end (the walk
/// stops there).
fn options(area: &[u8]) -> (Vec<(u16, &[u8])>, bool) {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < area.len() {
        let (Some(c), Some(len)) = (u16_at(area, at), u16_at(area, at.saturating_add(2))) else {
            return (out, true);
        };
        let start = at.saturating_add(4);
        let end = start.saturating_add(usize::from(len));
        let Some(data) = area.get(start..end) else {
            return (out, true);
        };
        out.push((c, data));
        at = end;
    }
    (out, false)
}

/// A received datagram, decoded as far as it goes.
fn describe(d: &[u8], src: SocketAddrV6, dst: Ipv6Addr) -> Seen {
    let mut s = Seen {
        msg_type: None,
        xid: 0,
        client_duid: None,
        server_duid: None,
        iaid: None,
        requested: Vec::new(),
        ias: Vec::new(),
        elapsed: None,
        rapid_commit: false,
        oro: Vec::new(),
        truncated: false,
        src,
        dst,
        len: d.len(),
        at: Instant::now(),
    };
    if d.len() < 4 {
        return s;
    }
    s.msg_type = Some(MessageType::from_code(d[0]));
    s.xid = u32::from_be_bytes([0, d[1], d[2], d[3]]);
    let (opts, truncated) = options(&d[4..]);
    s.truncated = truncated;
    for (c, data) in opts {
        match c {
            code::CLIENTID if s.client_duid.is_none() => s.client_duid = Some(data.to_vec()),
            code::SERVERID if s.server_duid.is_none() => s.server_duid = Some(data.to_vec()),
            code::IA_NA => {
                let Some(iaid) = u32_at(data, 0) else {
                    s.truncated = true;
                    continue;
                };
                let (inner, cut) = options(data.get(12..).unwrap_or_default());
                s.truncated |= cut;
                let addresses = inner
                    .iter()
                    .filter(|(c, _)| *c == code::IAADDR)
                    .filter_map(|(_, a)| {
                        let octets: [u8; 16] = a.get(..16)?.try_into().ok()?;
                        Some(Ipv6Addr::from(octets))
                    })
                    .collect();
                s.ias.push(SeenIa { iaid, addresses });
            }
            code::ELAPSED_TIME => s.elapsed = u16_at(data, 0),
            code::RAPID_COMMIT => s.rapid_commit = true,
            code::ORO => {
                s.oro = data
                    .chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect()
            }
            _ => {}
        }
    }
    s.iaid = s.ias.first().map(|ia| ia.iaid);
    s.requested = s.ias.iter().flat_map(|ia| ia.addresses.clone()).collect();
    s
}

/// A reply's IA_NA.
#[derive(Debug, Clone)]
struct OutIa {
    iaid: u32,
    t1: u32,
    t2: u32,
    /// (address, preferred, valid).
    addresses: Vec<(Ipv6Addr, u32, u32)>,
    status: Option<(u16, &'static str)>,
}

/// A reply, before encoding.
#[derive(Debug, Clone)]
struct Out {
    msg_type: MessageType,
    xid: u32,
    client_id: Vec<u8>,
    ias: Vec<OutIa>,
    status: Option<(u16, &'static str)>,
    preference: Option<u8>,
    rapid_commit: bool,
    dns: Vec<Ipv6Addr>,
    domains: Vec<String>,
}

impl Out {
    fn new(msg_type: MessageType, m: &Seen) -> Out {
        Out {
            msg_type,
            xid: m.xid,
            client_id: m.client_duid.clone().unwrap_or_default(),
            ias: Vec::new(),
            status: None,
            preference: None,
            rapid_commit: false,
            dns: Vec::new(),
            domains: Vec::new(),
        }
    }

    fn with_status(mut self, code: u16, why: &'static str) -> Out {
        self.status = Some((code, why));
        self
    }

    /// The configuration options (23, 24) of the script.
    fn with_config(mut self, script: &Script) -> Out {
        self.dns = script.dns.clone();
        self.domains = script.domains.clone();
        self
    }

    fn grants(&self) -> Vec<Grant> {
        self.ias
            .iter()
            .flat_map(|ia| {
                ia.addresses
                    .iter()
                    .map(|&(address, preferred, valid)| Grant {
                        iaid: ia.iaid,
                        t1: ia.t1,
                        t2: ia.t2,
                        address,
                        preferred,
                        valid,
                    })
            })
            .collect()
    }
}

fn in_pool(a: Ipv6Addr) -> bool {
    (POOL_START..=POOL_END).contains(&a)
}

fn on_link(a: Ipv6Addr) -> bool {
    let shift = 128 - u32::from(ON_LINK_PREFIX_LEN);
    u128::from(a).checked_shr(shift).unwrap_or(0)
        == u128::from(ON_LINK_PREFIX).checked_shr(shift).unwrap_or(0)
}

impl State {
    fn is_free(&self, a: Ipv6Addr) -> bool {
        !self.declined.contains(&a)
            && !self.bindings.values().any(|b| *b == a)
            && !self.offered.values().any(|b| *b == a)
    }

    /// The address for `key`: its binding, else its reservation, else `hint` when free and in
    /// the pool, else the lowest free one; `None` when the pool is exhausted.
    fn address_for(&self, key: &Key, hint: Option<Ipv6Addr>) -> Option<Ipv6Addr> {
        if let Some(a) = self.bindings.get(key).or_else(|| self.offered.get(key)) {
            return Some(*a);
        }
        if let Some(h) = hint.filter(|h| in_pool(*h) && self.is_free(*h)) {
            return Some(h);
        }
        (u128::from(POOL_START)..=u128::from(POOL_END))
            .map(Ipv6Addr::from)
            .find(|a| self.is_free(*a))
    }

    fn bind(&mut self, key: Key, a: Ipv6Addr) {
        self.offered.remove(&key);
        self.bindings.insert(key, a);
    }

    fn forget(&mut self, key: &Key) -> Option<Ipv6Addr> {
        let offered = self.offered.remove(key);
        self.bindings.remove(key).or(offered)
    }
}

/// An IA_NA granting `a` with the script's timers and lifetimes.
fn granted(script: &Script, iaid: u32, a: Ipv6Addr) -> OutIa {
    OutIa {
        iaid,
        t1: script.t1,
        t2: script.t2,
        addresses: vec![(a, script.preferred, script.valid)],
        status: None,
    }
}

/// An IA_NA with only a status, T1 and T2 0.
fn ia_status(iaid: u32, code: u16, why: &'static str) -> OutIa {
    OutIa {
        iaid,
        t1: 0,
        t2: 0,
        addresses: Vec::new(),
        status: Some((code, why)),
    }
}

/// What to answer to `m`; `None` for no answer. Acts on the state (bindings) and the script's
/// counters.
fn decide(script: &mut Script, st: &mut State, m: &Seen) -> Option<Out> {
    let t = m.msg_type?;
    let duid = m.client_duid.clone()?; // RFC 8415 §16: every client message we act on has one
    let key = |iaid: u32| (duid.clone(), iaid);
    let ours = m.server_duid.as_deref() == Some(SERVER_DUID);
    let names_server = matches!(
        t,
        MessageType::Request | MessageType::Renew | MessageType::Release | MessageType::Decline
    );
    if names_server && !ours {
        return None; // addressed to another server (or to none: malformed)
    }
    if names_server && script.use_multicast > 0 {
        script.use_multicast -= 1;
        return Some(Out::new(MessageType::Reply, m).with_status(
            status::USE_MULTICAST,
            "fake-server6: UseMulticast on demand",
        ));
    }
    let no_addrs = |m: &Seen| {
        Out::new(
            if t == MessageType::Solicit {
                MessageType::Advertise
            } else {
                MessageType::Reply
            },
            m,
        )
        .with_status(
            status::NO_ADDRS_AVAIL,
            "fake-server6: no addresses available",
        )
    };
    match t {
        MessageType::Solicit | MessageType::Request => {
            if script.no_addrs_avail {
                return Some(no_addrs(m));
            }
            let commit = t == MessageType::Request || (m.rapid_commit && script.rapid_commit);
            let mut ias = Vec::new();
            for ia in &m.ias {
                let k = key(ia.iaid);
                match st.address_for(&k, ia.addresses.first().copied()) {
                    Some(a) => {
                        if commit {
                            st.bind(k, a);
                        } else {
                            st.offered.insert(k, a);
                        }
                        ias.push(granted(script, ia.iaid, a));
                    }
                    None => ias.push(ia_status(
                        ia.iaid,
                        status::NO_ADDRS_AVAIL,
                        "fake-server6: pool exhausted",
                    )),
                }
            }
            if ias.iter().all(|ia| ia.addresses.is_empty()) {
                return Some(no_addrs(m));
            }
            let (msg_type, rapid) = match t {
                MessageType::Solicit if commit => (MessageType::Reply, true),
                MessageType::Solicit => (MessageType::Advertise, false),
                _ => (MessageType::Reply, false),
            };
            let mut r = Out::new(msg_type, m).with_config(script);
            r.ias = ias;
            r.rapid_commit = rapid;
            if msg_type == MessageType::Advertise {
                r.preference = script.preference;
            }
            Some(r)
        }
        MessageType::Renew | MessageType::Rebind => {
            if t == MessageType::Renew && script.not_on_link_on_renew > 0 {
                script.not_on_link_on_renew -= 1;
                return Some(
                    Out::new(MessageType::Reply, m)
                        .with_status(status::NOT_ON_LINK, "fake-server6: NotOnLink on demand"),
                );
            }
            let forget = t == MessageType::Renew && script.no_binding_on_renew > 0;
            if forget {
                script.no_binding_on_renew -= 1;
            }
            let mut r = Out::new(MessageType::Reply, m).with_config(script);
            for ia in &m.ias {
                let k = key(ia.iaid);
                if forget {
                    st.forget(&k);
                    r.ias.push(ia_status(
                        ia.iaid,
                        status::NO_BINDING,
                        "fake-server6: NoBinding on demand",
                    ));
                    continue;
                }
                let bound = st.bindings.get(&k).copied().or_else(|| {
                    // REBIND for a binding this server does not know: re-create it when the
                    // address is free (an authoritative server, §18.3.5).
                    let h = ia.addresses.first().copied();
                    let h =
                        h.filter(|h| t == MessageType::Rebind && in_pool(*h) && st.is_free(*h))?;
                    st.bind(k.clone(), h);
                    Some(h)
                });
                match bound {
                    Some(a) => {
                        let mut g = granted(script, ia.iaid, a);
                        // Other addresses named are not the client's: lifetimes 0 (§18.3.4).
                        g.addresses
                            .extend(ia.addresses.iter().filter(|x| **x != a).map(|x| (*x, 0, 0)));
                        r.ias.push(g);
                    }
                    None => r.ias.push(ia_status(
                        ia.iaid,
                        status::NO_BINDING,
                        "fake-server6: no binding",
                    )),
                }
            }
            Some(r)
        }
        MessageType::Release | MessageType::Decline => {
            for ia in &m.ias {
                let held = st.forget(&key(ia.iaid));
                if t == MessageType::Decline {
                    st.declined.extend(held);
                    st.declined.extend(ia.addresses.iter().copied());
                }
            }
            Some(Out::new(MessageType::Reply, m).with_status(status::SUCCESS, "fake-server6: done"))
        }
        MessageType::Confirm => {
            if m.requested.is_empty() {
                return None; // §18.3.3: nothing to confirm, no reply
            }
            let r = Out::new(MessageType::Reply, m);
            Some(if m.requested.iter().all(|a| on_link(*a)) {
                r.with_status(status::SUCCESS, "fake-server6: on link")
            } else {
                r.with_status(status::NOT_ON_LINK, "fake-server6: not on link")
            })
        }
        _ => None,
    }
}

/// Appends option `code` with `data` (RFC 8415 §21.1). Nothing here comes near 65535 bytes.
fn opt(out: &mut Vec<u8>, code: u16, data: &[u8]) {
    let len = u16::try_from(data.len()).expect("option data over 65535 bytes");
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
}

/// A Status Code option's data (§21.13).
fn status_data(code: u16, why: &str) -> Vec<u8> {
    let mut d = code.to_be_bytes().to_vec();
    d.extend_from_slice(why.as_bytes());
    d
}

/// The encoded reply, and the offset just past its Server ID option (the end of the part that
/// [`garbage_for`] may cut into).
fn encode(r: &Out) -> (Vec<u8>, usize) {
    let mut m = vec![r.msg_type.code()];
    m.extend_from_slice(&r.xid.to_be_bytes()[1..]);
    opt(&mut m, code::CLIENTID, &r.client_id);
    opt(&mut m, code::SERVERID, SERVER_DUID);
    let sid_end = m.len();
    for ia in &r.ias {
        let mut d = ia.iaid.to_be_bytes().to_vec();
        d.extend_from_slice(&ia.t1.to_be_bytes());
        d.extend_from_slice(&ia.t2.to_be_bytes());
        for (a, preferred, valid) in &ia.addresses {
            let mut ad = a.octets().to_vec();
            ad.extend_from_slice(&preferred.to_be_bytes());
            ad.extend_from_slice(&valid.to_be_bytes());
            opt(&mut d, code::IAADDR, &ad);
        }
        if let Some((c, why)) = ia.status {
            opt(&mut d, code::STATUS_CODE, &status_data(c, why));
        }
        opt(&mut m, code::IA_NA, &d);
    }
    if let Some((c, why)) = r.status {
        opt(&mut m, code::STATUS_CODE, &status_data(c, why));
    }
    if let Some(p) = r.preference {
        opt(&mut m, code::PREFERENCE, &[p]);
    }
    if r.rapid_commit {
        opt(&mut m, code::RAPID_COMMIT, &[]);
    }
    if !r.dns.is_empty() {
        let d: Vec<u8> = r.dns.iter().flat_map(|a| a.octets()).collect();
        opt(&mut m, code::DNS_SERVERS, &d);
    }
    if !r.domains.is_empty() {
        // RFC 1035 §3.1 names, uncompressed (RFC 8415 §10).
        let mut d = Vec::new();
        for name in &r.domains {
            for label in name.split('.').filter(|l| !l.is_empty()) {
                let len = u8::try_from(label.len()).expect("label over 255 bytes");
                d.push(len);
                d.extend_from_slice(label.as_bytes());
            }
            d.push(0);
        }
        opt(&mut m, code::DOMAIN_LIST, &d);
    }
    (m, sid_end)
}

/// Bad variants of an encoded reply, keeping its msg-type and xid (bytes 0..4): random bytes
/// after the header, and the reply cut at a random point inside its Client ID or Server ID
/// option (`sid_end`: the end of the Server ID option).
fn garbage_for(real: &[u8], sid_end: usize, rng: &mut XorShift) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut random = real[..4].to_vec();
    let n = 1 + rng.below(300);
    random.extend((0..n).map(|_| rng.next() as u8));
    out.push(random);
    // 4 <= cut < sid_end: at least the Server ID is missing or cut short, so no client may
    // take it as a reply (§16.10).
    let cut = 4 + rng.below(sid_end.saturating_sub(4).max(1));
    out.push(real[..cut.min(real.len())].to_vec());
    out
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
