//! The DHCPv6 client state machine for one IA_NA (RFC 8415 §18.2), sans-IO like the DHCPv4 one
//! ([`crate::dhcp::client`]): it owns no socket and reads no clock. The driver feeds it the
//! current time and every UDP payload received on port 546, sends what
//! [`Client::poll_transmit`] returns (always to `ff02::1:2` port 547,
//! [`ALL_SERVERS_SOCKET`]), drains [`Client::poll_event`], and sleeps until
//! [`Client::poll_at`]. Each payload is parsed once here; [`Client::handle`] says what it
//! accepted ([`Accepted`]) or why it dropped it ([`Ignored`]), and each [`Transmit`] carries its
//! message type, so the driver never parses DHCPv6 itself. Every rule below has a unit test with
//! a fake clock.
//!
//! Acquisition: INIT → SOLICIT → SOLICITING. ADVERTISEs are collected until the first
//! retransmission time elapses, and the best (highest Preference, the first of equals) is then
//! chosen; one with Preference 255, or any ADVERTISE after the first RT, is chosen at once
//! (§18.2.1, §18.2.9). An ADVERTISE without a usable address for our IAID (NoAddrsAvail, no
//! address) is ignored, except for its SOL_MAX_RT (option 82, §21.24), which is applied.
//! REQUESTING: REQUEST to the chosen server → REPLY → BOUND ([`Event::Bound`]). With
//! [`ClientConfig::rapid_commit`], a REPLY to the SOLICIT carrying Rapid Commit binds at once.
//! A REPLY to the REQUEST with NotOnLink or NoAddrsAvail starts a new SOLICIT (§18.2.10.1),
//! as do REQ_MAX_RC unanswered REQUESTs; all within one budget ([`ClientConfig::timeout`]),
//! after which [`Event::Timeout`], state FAILED. A reply is ours when its transaction id is our
//! current exchange's and its Client Identifier is our DUID; it must name its server (§16.3,
//! §16.10). On ipvlan every slave hears its neighbours' multicast replies, so the DUID check is
//! what tells containers apart.
//!
//! Lease life: at T1 RENEWING (RENEW naming the lease's server), at T2 REBINDING (REBIND, any
//! server), at the valid lifetime's end EXPIRED ([`Event::Expired`]). A REPLY granting our
//! address is [`Event::Renewed`]; NoBinding makes the client REQUEST the binding again from the
//! replying server (§18.2.10.1), still in RENEWING or REBINDING; NotOnLink, or our address with
//! a valid lifetime of 0, is [`Event::Lost`]: stop using the address, and a new acquisition
//! starts. T1 and T2 are moved earlier by up to 1/20 of their value, as for DHCPv4, so that
//! leases granted together do not renew together. The preferred lifetime is reported in the
//! lease but not acted on (the driver may set it on the address).
//!
//! Retransmission (§15): RT = IRT + RAND × IRT, then 2 × RT + RAND × RT, capped at MRT + RAND ×
//! MRT, RAND uniform in [-0.1, +0.1] (strictly positive for the first SOLICIT), with the §7.6
//! constants below; MRC bounds the REQUESTs; the exchange's end is T2 for RENEW, expiry for
//! REBIND (MRD), the budget for SOLICIT. The Elapsed Time option counts hundredths of a second
//! from the exchange's first message, saturating at 0xffff (§21.9).
//!
//! Choices of this implementation, within RFC 8415:
//! - Every message is multicast to `ff02::1:2`: the Server Unicast option (§21.12) is ignored,
//!   so UseMulticast never needs an answer (it is ignored like UnspecFail: the retransmission
//!   goes on).
//! - After a restart with a persisted lease, [`Client::resume`] keeps it with its timers, and
//!   [`Client::reboot`] (its state unknown, or expired) sends REBIND (§18.2.5), not CONFIRM
//!   (§18.2.3): a REBIND both checks the address and returns fresh lifetimes, works whether or
//!   not the lease expired, and any server may answer; CONFIRM would say only whether the
//!   address is on-link. [`message::Kind::Confirm`] is built and tested for a later use.
//! - RELEASE and DECLINE are sent once, not retransmitted up to REL_MAX_RC / DEC_MAX_RC
//!   (§18.2.7, §18.2.8 allow a client to give up; the driver lets go of its socket right after
//!   a release); the client is then done and any REPLY to them is [`Ignored::Unexpected`].
//! - A valid lifetime under [`ClientConfig::min_lifetime`] is raised to it, as DHCPv4 raises
//!   short leases.

use std::collections::VecDeque;
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::ALL_SERVERS_SOCKET;
use super::config::ClientConfig;
use super::message::{self, Kind, MessageType};
use super::reply::{
    INFINITY, Lease6, LeaseError, ParseError, Reply, StatusCode, lease_times, parse_reply,
};
use crate::dhcp::timing::{Budget, min_opt};

/// SOL_TIMEOUT (§7.6): first SOLICIT retransmission time.
pub const SOL_TIMEOUT: Duration = Duration::from_secs(1);
/// SOL_MAX_RT (§7.6): default cap on the SOLICIT retransmission time; a server's option 82
/// replaces it (§21.24).
pub const SOL_MAX_RT: Duration = Duration::from_secs(3600);
/// REQ_TIMEOUT (§7.6): first REQUEST retransmission time.
pub const REQ_TIMEOUT: Duration = Duration::from_secs(1);
/// REQ_MAX_RT (§7.6): cap on the REQUEST retransmission time.
pub const REQ_MAX_RT: Duration = Duration::from_secs(30);
/// REQ_MAX_RC (§7.6): REQUESTs sent before giving up on a server.
pub const REQ_MAX_RC: u32 = 10;
/// REN_TIMEOUT (§7.6): first RENEW retransmission time.
pub const REN_TIMEOUT: Duration = Duration::from_secs(10);
/// REN_MAX_RT (§7.6): cap on the RENEW retransmission time.
pub const REN_MAX_RT: Duration = Duration::from_secs(600);
/// REB_TIMEOUT (§7.6): first REBIND retransmission time.
pub const REB_TIMEOUT: Duration = Duration::from_secs(10);
/// REB_MAX_RT (§7.6): cap on the REBIND retransmission time.
pub const REB_MAX_RT: Duration = Duration::from_secs(600);
/// How long to wait after a DECLINE before acquiring again in [`Client::keep_trying`] mode (the
/// DHCPv4 client's [`crate::dhcp::client::DECLINE_WAIT`], for the same loop).
pub const DECLINE_WAIT: Duration = Duration::from_secs(10);
/// T1/T2 are moved earlier by a random fuzz of up to 1/20 of their value.
const TIMER_FUZZ_DIVISOR: u64 = 20;

/// Client states, named as the DHCPv4 ones where they mean the same (RFC 8415 names no states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum State {
    /// INIT: a SOLICIT is due (on the next [`Client::poll_transmit`] at or after its time).
    Init,
    /// SOLICITING: SOLICIT sent, collecting ADVERTISEs.
    Soliciting,
    /// REQUESTING: REQUEST sent to the chosen server, waiting for its REPLY.
    Requesting,
    /// REBOOTING: after a restart, REBIND sent for a remembered address ([`Client::reboot`]).
    Rebooting,
    /// BOUND: holding a lease, waiting for T1.
    Bound,
    /// RENEWING: past T1, RENEW to the lease's server (or REQUEST again after NoBinding).
    Renewing,
    /// REBINDING: past T2, REBIND to any server (or REQUEST again after NoBinding).
    Rebinding,
    /// The valid lifetime ended unrenewed; terminal (unless in keep-trying mode).
    Expired,
    /// RELEASE sent (or nothing to release); terminal.
    Released,
    /// The acquisition budget ran out; terminal.
    Failed,
    /// DECLINE sent; terminal, the lease forgotten.
    Declined,
}

impl State {
    /// The state's name in capitals ("SOLICITING", "BOUND", ...).
    pub fn name(self) -> &'static str {
        match self {
            State::Init => "INIT",
            State::Soliciting => "SOLICITING",
            State::Requesting => "REQUESTING",
            State::Rebooting => "REBOOTING",
            State::Bound => "BOUND",
            State::Renewing => "RENEWING",
            State::Rebinding => "REBINDING",
            State::Expired => "EXPIRED",
            State::Released => "RELEASED",
            State::Failed => "FAILED",
            State::Declined => "DECLINED",
        }
    }
}

/// A UDP datagram to send from our link-local address, port 546 (the socket, bound to the
/// container's interface, sets the source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination: always [`ALL_SERVERS_SOCKET`] (`ff02::1:2` port 547).
    pub dst: std::net::SocketAddrV6,
    /// The DHCPv6 message (UDP payload).
    pub payload: Vec<u8>,
    /// Its msg-type, so a driver can count, pace and name it without parsing `payload`.
    pub message_type: MessageType,
}

/// A reply [`Client::handle`] accepted: what a driver records about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// ADVERTISE or REPLY.
    pub message_type: MessageType,
    /// The address it offers or grants for our IA_NA; `::` when none (a REPLY with a status
    /// that moved us on, e.g. NoBinding).
    pub address: Ipv6Addr,
    /// The status that decided (top level, else our IA_NA's; Success when absent).
    pub status: StatusCode,
    /// The server's DUID (Server Identifier option 2 data).
    pub server_id: Vec<u8>,
}

/// Something the driver must act on, from [`Client::poll_event`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A REPLY to REQUEST, to a Rapid Commit SOLICIT or to the REBIND of [`Client::reboot`]:
    /// configure this address. Also after a lost lease was re-acquired in keep-trying mode.
    Bound(Lease6),
    /// A REPLY to RENEW or REBIND (or to the REQUEST after NoBinding): the same address with
    /// new lifetimes.
    Renewed(Lease6),
    /// While RENEWING or REBINDING, a server said the address is gone (NotOnLink, a valid
    /// lifetime of 0, NoAddrsAvail after NoBinding): stop using it now. A new acquisition
    /// starts (state INIT).
    Lost,
    /// The valid lifetime ended in REBINDING: stop using the address. State EXPIRED, or INIT
    /// in keep-trying mode.
    Expired,
    /// No binding within [`ClientConfig::timeout`]. State FAILED.
    Timeout,
}

/// Why [`Client::handle`] dropped a received payload (for logs; dropping is always safe).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    /// Not a DHCPv6 message.
    #[error("malformed: {0}")]
    Malformed(ParseError),
    /// Not ADVERTISE or REPLY (another client's message, a relay message...).
    #[error("not from a server ({0:?})")]
    NotFromServer(MessageType),
    /// transaction-id is not our current exchange's.
    #[error("xid {got:#08x} is not ours ({expected:#08x})")]
    WrongXid {
        /// Ours.
        expected: u32,
        /// The message's.
        got: u32,
    },
    /// No Client Identifier (§16.3, §16.10: discard).
    #[error("no client identifier")]
    NoClientId,
    /// The Client Identifier is another client's DUID (another container's).
    #[error("client identifier is another client's")]
    WrongClientId,
    /// No Server Identifier (§16.3, §16.10: discard).
    #[error("no server identifier")]
    NoServerId,
    /// A message type we do not expect in this state.
    #[error("unexpected {message_type:?} in state {state:?}")]
    Unexpected {
        /// Our state.
        state: State,
        /// The message's type.
        message_type: MessageType,
    },
    /// A status that asks nothing of us here (UnspecFail, UseMulticast, NoAddrsAvail in an
    /// ADVERTISE...): the exchange goes on.
    #[error("status {0:?}")]
    Status(StatusCode),
    /// No usable binding for our IA_NA in it.
    #[error("unusable: {0}")]
    Unusable(LeaseError),
}

impl From<LeaseError> for Ignored {
    /// A reply's IA_NA that grants nothing usable: its status when it has one, else why.
    fn from(e: LeaseError) -> Ignored {
        match e {
            LeaseError::Status(c) => Ignored::Status(c),
            e => Ignored::Unusable(e),
        }
    }
}

/// One DHCPv6 client for one interface's IA_NA. See the module documentation.
#[derive(Debug)]
pub struct Client {
    /// What to send and how long to try; fixed for the client's life.
    config: ClientConfig,
    /// Seeded source of transaction ids, RAND and timer fuzz, so tests are deterministic.
    rng: SmallRng,
    /// The state with the data only it uses; [`Client::state`] names it.
    state: ClientState,
    /// Current transaction id (24 bits): new for each exchange (§16.1).
    xid: u32,
    /// SOLICIT's MRT: [`SOL_MAX_RT`] until a server's option 82 replaces it (§18.2.9).
    sol_max_rt: Duration,
    /// Keep-trying mode, the driver's choice.
    keep_trying: bool,
    /// A lease was held at some point (bound, resumed, rebooted): what makes keep-trying apply.
    ever_bound: bool,
    /// Events not yet taken by [`Client::poll_event`].
    events: VecDeque<Event>,
}

/// The client's state and what only it needs to know.
#[derive(Debug)]
enum ClientState {
    /// INIT: a SOLICIT due at the data's [`Retransmit::at`].
    Init(SolicitState),
    /// SOLICITING: SOLICIT sent, ADVERTISEs collected until the first RT ends.
    Soliciting(SolicitState),
    /// REQUESTING: a server was chosen; its REQUEST is due or sent.
    Requesting(RequestState),
    /// REBOOTING: REBIND for a remembered address is due or sent.
    Rebooting(RebootState),
    /// BOUND: holding a lease, waiting for T1.
    Bound(Held),
    /// RENEWING: past T1.
    Renewing(RenewState),
    /// REBINDING: past T2.
    Rebinding(RenewState),
    /// EXPIRED: still held here so [`Client::lease`] says which address to remove.
    Expired(Held),
    /// RELEASED.
    Released,
    /// FAILED.
    Failed,
    /// DECLINED.
    Declined,
}

/// The §15 retransmission parameters of one kind of exchange.
#[derive(Debug, Clone, Copy)]
struct Params {
    /// IRT.
    irt: Duration,
    /// MRT (never zero here).
    mrt: Duration,
    /// MRC; 0 = unbounded (the state's end bounds it).
    mrc: u32,
    /// The first RT's RAND is strictly positive (SOLICIT, §18.2.1).
    positive_first: bool,
}

/// The REQUEST parameters (§7.6).
const REQUEST: Params = Params {
    irt: REQ_TIMEOUT,
    mrt: REQ_MAX_RT,
    mrc: REQ_MAX_RC,
    positive_first: false,
};
/// The RENEW parameters (§7.6).
const RENEW: Params = Params {
    irt: REN_TIMEOUT,
    mrt: REN_MAX_RT,
    mrc: 0,
    positive_first: false,
};
/// The REBIND parameters (§7.6).
const REBIND: Params = Params {
    irt: REB_TIMEOUT,
    mrt: REB_MAX_RT,
    mrc: 0,
    positive_first: false,
};

/// Retransmission bookkeeping of one exchange.
#[derive(Debug, Clone, Copy)]
struct Retransmit {
    /// When the next (re)transmission is due; None when beyond `Instant`'s range.
    at: Option<Instant>,
    /// Transmissions so far in this exchange: MRC counts them, and SOLICITING knows the first
    /// RT is over once there were two.
    attempts: u32,
    /// The last RT, from which the next doubles (§15); zero before the first.
    rt: Duration,
    /// When the exchange's first message went out: Elapsed Time counts from it (§21.9).
    first: Option<Instant>,
    /// When its latest message went out: the granted lifetimes count from it.
    sent: Option<Instant>,
}

impl Retransmit {
    /// A new exchange whose first message is due `at`.
    fn first(at: Option<Instant>) -> Retransmit {
        Retransmit {
            at,
            attempts: 0,
            rt: Duration::ZERO,
            first: None,
            sent: None,
        }
    }
}

/// The chosen (or best so far) ADVERTISE.
#[derive(Debug, Clone)]
struct Offer {
    /// Its server's DUID: the REQUEST names it.
    server_id: Vec<u8>,
    /// The address advertised for our IA_NA.
    address: Ipv6Addr,
    /// Its Preference (0 when absent).
    preference: u8,
}

/// What INIT and SOLICITING need.
#[derive(Debug, Clone)]
struct SolicitState {
    /// The acquisition's budget.
    budget: Budget,
    /// An address to hint in the SOLICIT's IA_NA (a lease lost or expired).
    hint: Option<Ipv6Addr>,
    /// The SOLICIT schedule.
    tx: Retransmit,
    /// The best ADVERTISE heard within the first RT.
    best: Option<Offer>,
}

/// What REQUESTING needs.
#[derive(Debug, Clone)]
struct RequestState {
    /// The acquisition's budget.
    budget: Budget,
    /// The SOLICIT's hint, kept for a restart after REQ_MAX_RC.
    hint: Option<Ipv6Addr>,
    /// The chosen server and address.
    offer: Offer,
    /// The REQUEST schedule.
    tx: Retransmit,
}

/// What REBOOTING needs.
#[derive(Debug, Clone, Copy)]
struct RebootState {
    /// The acquisition's budget (it covers the fallback SOLICIT too).
    budget: Budget,
    /// The remembered address: the REBIND's IA Address, the SOLICIT's hint afterwards.
    address: Ipv6Addr,
    /// The REBIND schedule.
    tx: Retransmit,
}

/// A lease held (or expired), with its timers.
#[derive(Debug, Clone)]
struct Held {
    /// The lease, with [`ClientConfig::min_lifetime`] applied.
    lease: Lease6,
    /// The instant its times count from (the message the REPLY answered).
    granted_at: Instant,
    /// T1 (fuzzed); None = never.
    t1: Option<Instant>,
    /// T2 (fuzzed); None = never.
    t2: Option<Instant>,
    /// End of the valid lifetime; None = never.
    expires: Option<Instant>,
}

/// What RENEWING and REBINDING need.
#[derive(Debug, Clone)]
struct RenewState {
    /// The lease, in use until a loss or expiry.
    held: Held,
    /// The RENEW, REBIND or REQUEST schedule.
    tx: Retransmit,
    /// After NoBinding (§18.2.10.1): the server to REQUEST the binding from again; None while
    /// renewing or rebinding as usual.
    reinstate: Option<Vec<u8>>,
}

impl ClientState {
    /// The public name of this state.
    fn state(&self) -> State {
        match self {
            ClientState::Init(_) => State::Init,
            ClientState::Soliciting(_) => State::Soliciting,
            ClientState::Requesting(_) => State::Requesting,
            ClientState::Rebooting(_) => State::Rebooting,
            ClientState::Bound(_) => State::Bound,
            ClientState::Renewing(_) => State::Renewing,
            ClientState::Rebinding(_) => State::Rebinding,
            ClientState::Expired(_) => State::Expired,
            ClientState::Released => State::Released,
            ClientState::Failed => State::Failed,
            ClientState::Declined => State::Declined,
        }
    }

    /// The acquisition budget, in the states that acquire.
    fn budget(&self) -> Option<Budget> {
        match self {
            ClientState::Init(s) | ClientState::Soliciting(s) => Some(s.budget),
            ClientState::Requesting(r) => Some(r.budget),
            ClientState::Rebooting(r) => Some(r.budget),
            ClientState::Bound(_)
            | ClientState::Renewing(_)
            | ClientState::Rebinding(_)
            | ClientState::Expired(_)
            | ClientState::Released
            | ClientState::Failed
            | ClientState::Declined => None,
        }
    }

    /// The retransmission schedule, in the states that send.
    fn retransmit(&self) -> Option<Retransmit> {
        match self {
            ClientState::Init(s) | ClientState::Soliciting(s) => Some(s.tx),
            ClientState::Requesting(r) => Some(r.tx),
            ClientState::Rebooting(r) => Some(r.tx),
            ClientState::Renewing(r) | ClientState::Rebinding(r) => Some(r.tx),
            ClientState::Bound(_)
            | ClientState::Expired(_)
            | ClientState::Released
            | ClientState::Failed
            | ClientState::Declined => None,
        }
    }

    /// The lease held, or the one that expired.
    fn held(&self) -> Option<&Held> {
        match self {
            ClientState::Bound(h) | ClientState::Expired(h) => Some(h),
            ClientState::Renewing(r) | ClientState::Rebinding(r) => Some(&r.held),
            ClientState::Init(_)
            | ClientState::Soliciting(_)
            | ClientState::Requesting(_)
            | ClientState::Rebooting(_)
            | ClientState::Released
            | ClientState::Failed
            | ClientState::Declined => None,
        }
    }
}

/// `lease` with the valid-lifetime floor `min` applied: a finite valid lifetime under `min`
/// becomes `min`, the preferred lifetime too, and T1, T2 the §21.4 defaults of it.
fn floored(mut lease: Lease6, min: u32) -> Lease6 {
    if lease.valid_lifetime != INFINITY && lease.valid_lifetime < min {
        lease.valid_lifetime = min;
        lease.preferred_lifetime = min;
        (lease.t1, lease.t2) = lease_times(0, 0, min, min);
    }
    lease
}

impl Client {
    /// A client in INIT whose first SOLICIT goes out on the first
    /// [`poll_transmit`](Client::poll_transmit) at or after `now`; the budget starts at `now`.
    /// `seed` seeds the transaction ids and RAND (use a random one outside tests).
    pub fn new(config: ClientConfig, now: Instant, seed: u64) -> Client {
        let mut rng = SmallRng::seed_from_u64(seed);
        let xid = rng.random::<u32>() & 0x00ff_ffff;
        Client {
            state: ClientState::Init(SolicitState {
                budget: Budget::new(now, config.timeout),
                hint: None,
                tx: Retransmit::first(Some(now)),
                best: None,
            }),
            config,
            rng,
            xid,
            sol_max_rt: SOL_MAX_RT,
            keep_trying: false,
            ever_bound: false,
            events: VecDeque::new(),
        }
    }

    /// A client already BOUND to `lease`, whose times count from `granted_at` (maybe long
    /// past): for a daemon restarting with a persisted lease it knows is valid. No event is
    /// queued. Timers already due fire on the first poll: RENEWING, REBINDING, or
    /// [`Event::Expired`]. A driver that cannot trust `granted_at` should [`reboot`](Client::reboot).
    pub fn resume(config: ClientConfig, lease: Lease6, granted_at: Instant, seed: u64) -> Client {
        let mut c = Client::new(config, granted_at, seed);
        c.bind(granted_at, lease, Event::Bound);
        c.events.clear();
        c
    }

    /// A client in REBOOTING for a remembered `lease` whose state is unknown or that expired:
    /// for a daemon restarting with a persisted lease. The first
    /// [`poll_transmit`](Client::poll_transmit) at or after `now` sends a REBIND for
    /// `lease.address` (§18.2.5; why not CONFIRM: module documentation). Then:
    /// - a REPLY granting an address: [`Event::Bound`], state BOUND;
    /// - NoBinding: REQUEST for the address to the replying server (§18.2.10.1), REQUESTING;
    /// - NotOnLink, NoAddrsAvail, or no usable address: SOLICIT at once, no hint;
    /// - silence: the REBIND (RT [`REB_TIMEOUT`]) is not repeated past half of
    ///   [`ClientConfig::timeout`]; then SOLICIT hinting the old address.
    ///
    /// The budget starts at `now` and covers the fallback; the remembered lease counts as held
    /// once, so keep-trying mode applies. [`lease`](Client::lease) is None until a REPLY.
    pub fn reboot(config: ClientConfig, lease: Lease6, now: Instant, seed: u64) -> Client {
        let mut c = Client::new(config, now, seed);
        c.state = ClientState::Rebooting(RebootState {
            budget: Budget::new(now, c.config.timeout),
            address: lease.address,
            tx: Retransmit::first(Some(now)),
        });
        c.ever_bound = true;
        c
    }

    /// Switch keep-trying (background) mode on or off; off by default. When on and a lease has
    /// been held once, acquisitions never time out, and at expiry (or after [`Event::Lost`] or
    /// a DECLINE) the client acquires again, SOLICIT hinting the old address after an expiry,
    /// instead of stopping. Takes effect at the next poll.
    pub fn keep_trying(&mut self, yes: bool) {
        self.keep_trying = yes;
    }

    /// Whether keep-trying mode is on.
    pub fn keeps_trying(&self) -> bool {
        self.keep_trying
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state.state()
    }

    /// The lease held in BOUND, RENEWING, REBINDING, or the one that expired in EXPIRED.
    pub fn lease(&self) -> Option<&Lease6> {
        self.state.held().map(|h| &h.lease)
    }

    /// When the held lease's times count from: persist it to [`resume`](Client::resume).
    pub fn granted_at(&self) -> Option<Instant> {
        self.state.held().map(|h| h.granted_at)
    }

    /// T1 of the held lease (with fuzz); None without one or when infinite.
    pub fn renew_at(&self) -> Option<Instant> {
        self.state.held().and_then(|h| h.t1)
    }

    /// T2 of the held lease (with fuzz); None without one or when infinite.
    pub fn rebind_at(&self) -> Option<Instant> {
        self.state.held().and_then(|h| h.t2)
    }

    /// End of the held lease's valid lifetime; None without one or when infinite.
    pub fn expires_at(&self) -> Option<Instant> {
        self.state.held().and_then(|h| h.expires)
    }

    /// The chosen ADVERTISE while REQUESTING, as (address, server DUID); None otherwise.
    pub fn advertised(&self) -> Option<(Ipv6Addr, &[u8])> {
        match &self.state {
            ClientState::Requesting(r) => Some((r.offer.address, &r.offer.server_id)),
            _ => None,
        }
    }

    /// The current transaction id (24 bits).
    pub fn xid(&self) -> u32 {
        self.xid
    }

    /// SOLICIT's current MRT ([`SOL_MAX_RT`], or a server's option 82).
    pub fn sol_max_rt(&self) -> Duration {
        self.sol_max_rt
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Next pending event, oldest first. Drain after every `poll_transmit` and `handle`.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`poll_transmit`](Client::poll_transmit) next has something to do; None when
    /// nothing but a received message can change anything, or the state is terminal. Once
    /// `poll_transmit(now)` returned None it is None or later than `now`.
    pub fn poll_at(&self) -> Option<Instant> {
        match &self.state {
            ClientState::Init(s) | ClientState::Soliciting(s) => {
                min_opt(s.tx.at, self.budget_end(s.budget))
            }
            ClientState::Requesting(r) => min_opt(r.tx.at, self.budget_end(r.budget)),
            ClientState::Rebooting(r) => min_opt(r.tx.at, self.budget_end(r.budget)),
            ClientState::Bound(h) => h.t1,
            ClientState::Renewing(r) => min_opt(r.tx.at, r.held.t2),
            ClientState::Rebinding(r) => min_opt(r.tx.at, r.held.expires),
            ClientState::Expired(_)
            | ClientState::Released
            | ClientState::Failed
            | ClientState::Declined => None,
        }
    }

    /// The acquisition deadline in force: none once a lease was held, in keep-trying mode.
    fn budget_end(&self, budget: Budget) -> Option<Instant> {
        if self.keep_trying && self.ever_bound {
            None
        } else {
            budget.deadline
        }
    }

    /// When REBOOTING gives up for SOLICIT: half the budget after it began.
    fn reboot_phase_end(&self, budget: Budget) -> Option<Instant> {
        budget.started.checked_add(self.config.timeout / 2)
    }

    /// `rt` × RAND, RAND uniform in [-0.1, +0.1] (§15), at millisecond precision; strictly
    /// positive when `positive` (the first SOLICIT, §18.2.1).
    fn rand_part(&mut self, rt: Duration, positive: bool) -> i64 {
        let tenth = i64::try_from(rt.as_millis() / 10).unwrap_or(i64::MAX);
        if positive {
            self.rng.random_range(1..=tenth.max(1))
        } else {
            self.rng.random_range(-tenth..=tenth)
        }
    }

    /// `base` plus `delta` milliseconds, saturating.
    fn offset(base: Duration, delta: i64) -> Duration {
        let d = Duration::from_millis(delta.unsigned_abs());
        if delta < 0 {
            base.saturating_sub(d)
        } else {
            base.saturating_add(d)
        }
    }

    /// `tx` after one more transmission at `now` with parameters `p` (§15): the next RT, due
    /// no later than `end` (the exchange's MRD).
    fn backoff(
        &mut self,
        now: Instant,
        tx: Retransmit,
        p: Params,
        end: Option<Instant>,
    ) -> Retransmit {
        let rt = if tx.attempts == 0 {
            let r = self.rand_part(p.irt, p.positive_first);
            Self::offset(p.irt, r)
        } else {
            let r = self.rand_part(tx.rt, false);
            Self::offset(tx.rt.saturating_mul(2), r)
        };
        let rt = if rt > p.mrt {
            let r = self.rand_part(p.mrt, false);
            Self::offset(p.mrt, r)
        } else {
            rt
        };
        // Never 0 (a zero RT would make the driver spin).
        let rt = rt.max(Duration::from_millis(1));
        Retransmit {
            at: min_opt(now.checked_add(rt), end),
            attempts: tx.attempts.saturating_add(1),
            rt,
            first: tx.first.or(Some(now)),
            sent: Some(now),
        }
    }

    /// The SOLICIT parameters: [`SOL_TIMEOUT`], the current SOL_MAX_RT, no MRC.
    fn solicit_params(&self) -> Params {
        Params {
            irt: SOL_TIMEOUT,
            mrt: self.sol_max_rt,
            mrc: 0,
            positive_first: true,
        }
    }

    /// A new transaction id (24 bits).
    fn new_xid(&mut self) {
        self.xid = self.rng.random::<u32>() & 0x00ff_ffff;
    }

    /// INIT again, with a new exchange: within `budget`, hinting `hint`, SOLICIT due `at`.
    fn restarted(
        &mut self,
        budget: Budget,
        hint: Option<Ipv6Addr>,
        at: Option<Instant>,
    ) -> ClientState {
        self.new_xid();
        ClientState::Init(SolicitState {
            budget,
            hint,
            tx: Retransmit::first(at),
            best: None,
        })
    }

    /// REQUESTING `offer` now, a new exchange.
    fn requesting(
        &mut self,
        now: Instant,
        budget: Budget,
        hint: Option<Ipv6Addr>,
        offer: Offer,
    ) -> ClientState {
        self.new_xid();
        ClientState::Requesting(RequestState {
            budget,
            hint,
            offer,
            tx: Retransmit::first(Some(now)),
        })
    }

    /// The state, leaving a placeholder for the caller to replace at once.
    fn take_state(&mut self) -> ClientState {
        std::mem::replace(&mut self.state, ClientState::Failed)
    }

    /// Fire the timers due at `now`, in order: budget, T1, T2, expiry.
    fn advance(&mut self, now: Instant) {
        let due = |t: Option<Instant>| t.is_some_and(|t| now >= t);
        if self.state.budget().is_some_and(|b| due(self.budget_end(b))) {
            self.state = ClientState::Failed;
            self.events.push_back(Event::Timeout);
        }
        self.state = match self.take_state() {
            ClientState::Bound(held) if due(held.t1) => {
                self.new_xid();
                ClientState::Renewing(RenewState {
                    held,
                    tx: Retransmit::first(Some(now)),
                    reinstate: None,
                })
            }
            s => s,
        };
        self.state = match self.take_state() {
            ClientState::Renewing(r) if due(r.held.t2) => {
                self.new_xid();
                ClientState::Rebinding(RenewState {
                    held: r.held,
                    tx: Retransmit::first(Some(now)),
                    reinstate: None,
                })
            }
            s => s,
        };
        self.state = match self.take_state() {
            ClientState::Rebinding(r) if due(r.held.expires) => {
                self.events.push_back(Event::Expired);
                if self.keep_trying {
                    let budget = Budget::new(now, self.config.timeout);
                    self.restarted(budget, Some(r.held.lease.address), Some(now))
                } else {
                    ClientState::Expired(r.held)
                }
            }
            s => s,
        };
    }

    /// Run the timers up to `now`, then return the message due now, if any. Call it again
    /// until it returns None.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.advance(now);
        let tx = self.state.retransmit()?;
        if tx.at.is_none_or(|t| now < t) {
            return None;
        }
        // Ends of exchanges that are due now, before anything is sent.
        self.state = match self.take_state() {
            // The first RT is over with an ADVERTISE in hand: request it (§18.2.1).
            ClientState::Soliciting(SolicitState {
                budget,
                hint,
                best: Some(offer),
                ..
            }) => self.requesting(now, budget, hint, offer),
            // REQ_MAX_RC REQUESTs unanswered: look for a server again (§18.2.2, §18.2.10.1).
            ClientState::Requesting(r) if r.tx.attempts >= REQUEST.mrc => {
                self.restarted(r.budget, r.hint, Some(now))
            }
            ClientState::Rebooting(r)
                if r.tx.attempts > 0
                    && self.reboot_phase_end(r.budget).is_none_or(|end| now >= end) =>
            {
                self.restarted(r.budget, Some(r.address), Some(now))
            }
            // REQUEST after NoBinding unanswered: back to RENEW or REBIND, a new exchange.
            ClientState::Renewing(r) | ClientState::Rebinding(r)
                if r.reinstate.is_some() && r.tx.attempts >= REQUEST.mrc =>
            {
                let rebinding = r.held.t2.is_some_and(|t2| now >= t2);
                self.new_xid();
                let r = RenewState {
                    held: r.held,
                    tx: Retransmit::first(Some(now)),
                    reinstate: None,
                };
                if rebinding {
                    ClientState::Rebinding(r)
                } else {
                    ClientState::Renewing(r)
                }
            }
            s => s,
        };
        let sp = self.solicit_params();
        let rebinding = matches!(self.state, ClientState::Rebinding(_));
        let (state, payload, message_type) = match self.take_state() {
            ClientState::Init(s) | ClientState::Soliciting(s) => {
                let tx = self.backoff(now, s.tx, sp, None);
                let kind = Kind::Solicit { hint: s.hint };
                let m = self.build(kind, now, s.tx);
                (
                    ClientState::Soliciting(SolicitState { tx, ..s }),
                    m,
                    kind.message_type(),
                )
            }
            ClientState::Requesting(r) => {
                let tx = self.backoff(now, r.tx, REQUEST, None);
                let kind = Kind::Request {
                    server_id: &r.offer.server_id,
                    address: r.offer.address,
                };
                let (m, t) = (self.build(kind, now, r.tx), kind.message_type());
                (ClientState::Requesting(RequestState { tx, ..r }), m, t)
            }
            ClientState::Rebooting(r) => {
                let end = self.reboot_phase_end(r.budget);
                let tx = self.backoff(now, r.tx, REBIND, end);
                let kind = Kind::Rebind { address: r.address };
                let m = self.build(kind, now, r.tx);
                (
                    ClientState::Rebooting(RebootState { tx, ..r }),
                    m,
                    kind.message_type(),
                )
            }
            ClientState::Renewing(r) | ClientState::Rebinding(r) => {
                let end = if rebinding { r.held.expires } else { r.held.t2 };
                let address = r.held.lease.address;
                let (params, kind) = match &r.reinstate {
                    Some(server_id) => (REQUEST, Kind::Request { server_id, address }),
                    None if rebinding => (REBIND, Kind::Rebind { address }),
                    None => (
                        RENEW,
                        Kind::Renew {
                            server_id: &r.held.lease.server_id,
                            address,
                        },
                    ),
                };
                let (m, t) = (self.build(kind, now, r.tx), kind.message_type());
                let tx = self.backoff(now, r.tx, params, end);
                let r = RenewState { tx, ..r };
                let state = if rebinding {
                    ClientState::Rebinding(r)
                } else {
                    ClientState::Renewing(r)
                };
                (state, m, t)
            }
            // Nothing is due in these (no schedule: returned above).
            s @ (ClientState::Bound(_)
            | ClientState::Expired(_)
            | ClientState::Released
            | ClientState::Failed
            | ClientState::Declined) => {
                self.state = s;
                return None;
            }
        };
        self.state = state;
        Some(Transmit {
            dst: ALL_SERVERS_SOCKET,
            payload,
            message_type,
        })
    }

    /// The payload of `kind` with the current xid and the Elapsed Time of exchange `tx` at
    /// `now` (hundredths of a second, saturating at 0xffff, §21.9; 0 for its first message).
    fn build(&self, kind: Kind<'_>, now: Instant, tx: Retransmit) -> Vec<u8> {
        let elapsed = tx.first.map_or(0, |f| {
            u16::try_from(now.saturating_duration_since(f).as_millis() / 10).unwrap_or(u16::MAX)
        });
        message::build(&self.config, kind, self.xid, elapsed)
    }

    /// Feed one UDP payload received on port 546 at `now`. `Ok` says what was accepted (and
    /// acted on); `Err` why it was dropped, the state then unchanged (except for timers due at
    /// `now`, which fire first, and a SOL_MAX_RT option of a reply that is ours, §18.2.9).
    /// Total: no input panics.
    pub fn handle(&mut self, now: Instant, payload: &[u8]) -> Result<Accepted, Ignored> {
        self.advance(now);
        let reply = parse_reply(payload).map_err(Ignored::Malformed)?;
        let message_type = reply.message_type;
        if !matches!(message_type, MessageType::Advertise | MessageType::Reply) {
            return Err(Ignored::NotFromServer(message_type));
        }
        if reply.xid != self.xid {
            return Err(Ignored::WrongXid {
                expected: self.xid,
                got: reply.xid,
            });
        }
        match &reply.client_id {
            None => return Err(Ignored::NoClientId),
            Some(id) if *id != self.config.duid => return Err(Ignored::WrongClientId),
            Some(_) => {}
        }
        let server_id = reply.server_id.clone().ok_or(Ignored::NoServerId)?;
        if let Some(s) = reply.sol_max_rt {
            self.sol_max_rt = Duration::from_secs(u64::from(s));
        }
        let iaid = self.config.iaid;
        let status = reply.status_for(iaid);
        let accepted = |address: Ipv6Addr| Accepted {
            message_type,
            address,
            status,
            server_id: server_id.clone(),
        };
        let unexpected = Ignored::Unexpected {
            state: self.state(),
            message_type,
        };
        let advertise = message_type == MessageType::Advertise;
        match self.take_state() {
            ClientState::Soliciting(mut s) if advertise => {
                let lease = reply.to_lease(iaid, None);
                let lease = match lease {
                    Ok(l) => l,
                    Err(e) => {
                        self.state = ClientState::Soliciting(s);
                        return Err(e.into());
                    }
                };
                let offer = Offer {
                    server_id: server_id.clone(),
                    address: lease.address,
                    preference: reply.preference,
                };
                // Preference 255, or the first RT is over: this one at once (§18.2.9).
                if offer.preference == 255 || s.tx.attempts > 1 {
                    self.state = self.requesting(now, s.budget, s.hint, offer);
                } else {
                    if s.best
                        .as_ref()
                        .is_none_or(|b| offer.preference > b.preference)
                    {
                        s.best = Some(offer);
                    }
                    self.state = ClientState::Soliciting(s);
                }
                Ok(accepted(lease.address))
            }
            ClientState::Soliciting(s) if self.config.rapid_commit && reply.rapid_commit => {
                match reply.to_lease(iaid, None) {
                    Ok(lease) => {
                        let address = lease.address;
                        self.bind(s.tx.sent.unwrap_or(now), lease, Event::Bound);
                        Ok(accepted(address))
                    }
                    Err(e) => {
                        self.state = ClientState::Soliciting(s);
                        Err(e.into())
                    }
                }
            }
            ClientState::Requesting(r) if !advertise => match reply.to_lease(iaid, None) {
                Ok(lease) => {
                    let address = lease.address;
                    self.bind(r.tx.sent.unwrap_or(now), lease, Event::Bound);
                    Ok(accepted(address))
                }
                // Not this server's link or no address from it: look again (§18.2.10.1).
                Err(LeaseError::Status(StatusCode::NotOnLink | StatusCode::NoAddrsAvail)) => {
                    self.state = self.restarted(r.budget, None, Some(now));
                    Ok(accepted(Ipv6Addr::UNSPECIFIED))
                }
                Err(e) => {
                    self.state = ClientState::Requesting(r);
                    Err(e.into())
                }
            },
            ClientState::Rebooting(r) if !advertise => match reply.to_lease(iaid, None) {
                Ok(lease) => {
                    let address = lease.address;
                    self.bind(r.tx.sent.unwrap_or(now), lease, Event::Bound);
                    Ok(accepted(address))
                }
                Err(LeaseError::Status(StatusCode::NoBinding)) => {
                    let offer = Offer {
                        server_id: server_id.clone(),
                        address: r.address,
                        preference: reply.preference,
                    };
                    self.state = self.requesting(now, r.budget, Some(r.address), offer);
                    Ok(accepted(Ipv6Addr::UNSPECIFIED))
                }
                Err(
                    LeaseError::Status(StatusCode::NotOnLink | StatusCode::NoAddrsAvail)
                    | LeaseError::NoAddress
                    | LeaseError::NoIa(_),
                ) => {
                    self.state = self.restarted(r.budget, None, Some(now));
                    Ok(accepted(Ipv6Addr::UNSPECIFIED))
                }
                Err(e) => {
                    self.state = ClientState::Rebooting(r);
                    Err(e.into())
                }
            },
            ClientState::Renewing(r) if !advertise => self
                .renew_reply(now, r, false, &reply, &server_id)
                .map(accepted),
            ClientState::Rebinding(r) if !advertise => self
                .renew_reply(now, r, true, &reply, &server_id)
                .map(accepted),
            // Anything else: nothing was asked that this answers.
            s => {
                self.state = s;
                Err(unexpected)
            }
        }
    }

    /// A REPLY (ours, from `server_id`) while RENEWING (`rebinding` false) or REBINDING, in
    /// state `r` (taken out of `self.state`, which this sets): the address to report as
    /// accepted, or why it was ignored (`r` then put back).
    fn renew_reply(
        &mut self,
        now: Instant,
        mut r: RenewState,
        rebinding: bool,
        reply: &Reply,
        server_id: &[u8],
    ) -> Result<Ipv6Addr, Ignored> {
        let iaid = self.config.iaid;
        let held = r.held.lease.address;
        let put_back = |r: RenewState| {
            if rebinding {
                ClientState::Rebinding(r)
            } else {
                ClientState::Renewing(r)
            }
        };
        // Our address listed with a valid lifetime of 0: the server withdrew it (§18.2.10.1).
        let ours_gone = reply
            .ia_na
            .iter()
            .filter(|ia| ia.iaid == iaid)
            .flat_map(|ia| &ia.addresses)
            .any(|a| a.address == held && a.valid == 0);
        match reply.to_lease(iaid, Some(held)) {
            Ok(lease) => {
                self.bind(r.tx.sent.unwrap_or(now), lease, Event::Renewed);
                Ok(held)
            }
            // The server lost our binding: ask for it again (§18.2.10.1).
            Err(LeaseError::Status(StatusCode::NoBinding)) if r.reinstate.is_none() => {
                self.new_xid();
                r.reinstate = Some(server_id.to_vec());
                r.tx = Retransmit::first(Some(now));
                self.state = put_back(r);
                Ok(Ipv6Addr::UNSPECIFIED)
            }
            Err(LeaseError::Status(StatusCode::NotOnLink)) => {
                self.lose(now);
                Ok(Ipv6Addr::UNSPECIFIED)
            }
            Err(LeaseError::Status(StatusCode::NoAddrsAvail)) if r.reinstate.is_some() => {
                self.lose(now);
                Ok(Ipv6Addr::UNSPECIFIED)
            }
            Err(LeaseError::NoAddress) if ours_gone => {
                self.lose(now);
                Ok(Ipv6Addr::UNSPECIFIED)
            }
            Err(e) => {
                self.state = put_back(r);
                Err(e.into())
            }
        }
    }

    /// The held address is gone: [`Event::Lost`], and a fresh acquisition from `now`.
    fn lose(&mut self, now: Instant) {
        self.events.push_back(Event::Lost);
        let budget = Budget::new(now, self.config.timeout);
        self.state = self.restarted(budget, None, Some(now));
    }

    /// Enter BOUND with `lease`, timers counted from `base` (the message the REPLY answered),
    /// T1 and T2 moved earlier by up to 1/20 of their value, always T1 <= T2 <= expiry.
    fn bind(&mut self, base: Instant, lease: Lease6, event: fn(Lease6) -> Event) {
        let lease = floored(lease, self.config.min_lifetime);
        let at = |secs: u32| {
            (secs != INFINITY)
                .then(|| base.checked_add(Duration::from_secs(u64::from(secs))))
                .flatten()
        };
        let fuzzed = |rng: &mut SmallRng, secs: u32| {
            if secs == INFINITY {
                return None;
            }
            let ms = u64::from(secs).saturating_mul(1000);
            let fuzz = rng.random_range(0..=ms / TIMER_FUZZ_DIVISOR);
            base.checked_add(Duration::from_millis(ms.saturating_sub(fuzz)))
        };
        let expires = at(lease.valid_lifetime);
        let t2 = min_opt(fuzzed(&mut self.rng, lease.t2), expires);
        let t1 = min_opt(fuzzed(&mut self.rng, lease.t1), t2);
        self.ever_bound = true;
        self.events.push_back(event(lease.clone()));
        self.state = ClientState::Bound(Held {
            lease,
            granted_at: base,
            t1,
            t2,
            expires,
        });
    }

    /// Refuse the held address, found in use (duplicate address detection failed; §18.2.8):
    /// returns the DECLINE naming the lease's server and the address, a new xid, Elapsed Time
    /// 0, sent once. The lease is forgotten; state DECLINED, or in keep-trying mode (once a
    /// lease was held) INIT with the SOLICIT [`DECLINE_WAIT`] later. In states without a lease
    /// (timers due at `now` fire first) it returns None and changes nothing.
    pub fn decline(&mut self, now: Instant) -> Option<Transmit> {
        self.advance(now);
        let (server_id, address) = {
            let h = match &self.state {
                ClientState::Bound(h) => h,
                ClientState::Renewing(r) | ClientState::Rebinding(r) => &r.held,
                _ => return None,
            };
            (h.lease.server_id.clone(), h.lease.address)
        };
        self.new_xid();
        let kind = Kind::Decline {
            server_id: &server_id,
            address,
        };
        let tx = Transmit {
            dst: ALL_SERVERS_SOCKET,
            payload: message::build(&self.config, kind, self.xid, 0),
            message_type: MessageType::Decline,
        };
        self.state = if self.keep_trying && self.ever_bound {
            let budget = Budget::new(now, self.config.timeout);
            self.restarted(budget, None, now.checked_add(DECLINE_WAIT))
        } else {
            ClientState::Declined
        };
        Some(tx)
    }

    /// Give the lease back (§18.2.7): the RELEASE naming the lease's server and address, a new
    /// xid, Elapsed Time 0, sent once, when a lease is held (BOUND, RENEWING, REBINDING); None
    /// otherwise. Either way the state becomes RELEASED and nothing more is sent.
    pub fn release(&mut self) -> Option<Transmit> {
        let held = match &self.state {
            ClientState::Bound(h) => Some(h),
            ClientState::Renewing(r) | ClientState::Rebinding(r) => Some(&r.held),
            _ => None,
        }
        .map(|h| (h.lease.server_id.clone(), h.lease.address));
        self.state = ClientState::Released;
        let (server_id, address) = held?;
        self.new_xid();
        let kind = Kind::Release {
            server_id: &server_id,
            address,
        };
        Some(Transmit {
            dst: ALL_SERVERS_SOCKET,
            payload: message::build(&self.config, kind, self.xid, 0),
            message_type: MessageType::Release,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp6::identity::{duid, iaid};
    use crate::dhcp6::message::code;
    use crate::dhcp6::reply::build::{header, ia, iaaddr, opt};
    use proptest::prelude::*;

    const SERVER_A: &[u8] = &[0, 3, 0, 1, 0xa];
    const SERVER_B: &[u8] = &[0, 3, 0, 1, 0xb];
    const ADDR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
    const ADDR_B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x11);

    fn our_duid() -> Vec<u8> {
        duid("cid-c1", "labnet")
    }

    /// Defaults without the lifetime floor, so timer tests can use short leases.
    fn config() -> ClientConfig {
        ClientConfig {
            min_lifetime: 0,
            ..ClientConfig::new(our_duid(), iaid("eth0"))
        }
    }

    fn long_budget() -> ClientConfig {
        ClientConfig {
            timeout: secs(100_000),
            ..config()
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    /// What the fake server puts in a message.
    struct Srv {
        server: &'static [u8],
        client_id: Option<Vec<u8>>,
        address: Ipv6Addr,
        t1: u32,
        t2: u32,
        preferred: u32,
        valid: u32,
        preference: Option<u8>,
        ia_status: Option<u16>,
        top_status: Option<u16>,
        rapid_commit: bool,
        no_address: bool,
    }

    impl Default for Srv {
        fn default() -> Srv {
            Srv {
                server: SERVER_A,
                client_id: Some(our_duid()),
                address: ADDR,
                t1: 100,
                t2: 160,
                preferred: 200,
                valid: 300,
                preference: None,
                ia_status: None,
                top_status: None,
                rapid_commit: false,
                no_address: false,
            }
        }
    }

    /// A server message of type `t` (2 ADVERTISE, 7 REPLY) for transaction `xid`.
    fn msg(t: u8, xid: u32, s: &Srv) -> Vec<u8> {
        let mut m = header(t, xid);
        if let Some(id) = &s.client_id {
            opt(&mut m, code::CLIENTID, id);
        }
        opt(&mut m, code::SERVERID, s.server);
        let addrs = if s.no_address {
            vec![]
        } else {
            vec![iaaddr(s.address, s.preferred, s.valid, None)]
        };
        opt(
            &mut m,
            code::IA_NA,
            &ia(iaid("eth0"), s.t1, s.t2, &addrs, s.ia_status),
        );
        if let Some(p) = s.preference {
            opt(&mut m, code::PREFERENCE, &[p]);
        }
        if let Some(st) = s.top_status {
            opt(&mut m, code::STATUS_CODE, &st.to_be_bytes());
        }
        if s.rapid_commit {
            opt(&mut m, code::RAPID_COMMIT, &[]);
        }
        m
    }

    /// The data of top-level option `c` of one of our messages.
    fn top_opt(p: &[u8], c: u16) -> Option<Vec<u8>> {
        let mut at = 4;
        while at + 4 <= p.len() {
            let code = u16::from_be_bytes([p[at], p[at + 1]]);
            let len = usize::from(u16::from_be_bytes([p[at + 2], p[at + 3]]));
            if code == c {
                return Some(p[at + 4..at + 4 + len].to_vec());
            }
            at += 4 + len;
        }
        None
    }

    fn elapsed(t: &Transmit) -> u16 {
        let d = top_opt(&t.payload, code::ELAPSED_TIME).unwrap();
        u16::from_be_bytes([d[0], d[1]])
    }

    fn xid_of(t: &Transmit) -> u32 {
        parse_reply(&t.payload).unwrap().xid
    }

    /// The address of our IA_NA's IA Address in one of our messages.
    fn ia_address(t: &Transmit) -> Option<Ipv6Addr> {
        let r = parse_reply(&t.payload).unwrap();
        r.ia_na.first()?.addresses.first().map(|a| a.address)
    }

    /// SOLICIT, ADVERTISE (preference 255), REQUEST, REPLY at `t0`; returns the client BOUND.
    fn bound(t0: Instant, srv: &Srv) -> Client {
        let mut c = Client::new(config(), t0, 1);
        let s = c.poll_transmit(t0).unwrap();
        let adv = Srv {
            preference: Some(255),
            ..Srv::default()
        };
        c.handle(t0, &msg(2, xid_of(&s), &adv)).unwrap();
        let r = c.poll_transmit(t0).unwrap();
        assert_eq!(r.message_type, MessageType::Request);
        c.handle(t0, &msg(7, xid_of(&r), srv)).unwrap();
        assert!(matches!(c.poll_event(), Some(Event::Bound(_))));
        assert_eq!(c.state(), State::Bound);
        c
    }

    /// The RT after `prev` per §15 is within [1.9, 2.1] × prev, or, when capped, within
    /// [0.9, 1.1] × mrt (1 ms of rounding either way).
    fn rt_ok(rt: Duration, prev: Duration, mrt: Duration) -> bool {
        let within = |lo: Duration, hi: Duration| rt + ms(1) >= lo && rt <= hi + ms(1);
        (rt <= mrt && within(prev.mul_f64(1.9), prev.mul_f64(2.1)))
            || within(mrt.mul_f64(0.9), mrt.mul_f64(1.1))
    }

    #[test]
    fn solicit_retransmission_follows_section_15() {
        let t0 = Instant::now();
        let mut c = Client::new(long_budget(), t0, 7);
        let first = c.poll_transmit(t0).unwrap();
        assert_eq!(first.message_type, MessageType::Solicit);
        assert_eq!(first.dst, ALL_SERVERS_SOCKET);
        assert_eq!(elapsed(&first), 0);
        let xid = xid_of(&first);
        assert!(xid <= 0x00ff_ffff);
        // First RT strictly greater than IRT, at most 1.1 × IRT (§18.2.1).
        let mut now = c.poll_at().unwrap();
        let mut prev = now - t0;
        assert!(
            prev > SOL_TIMEOUT && prev <= SOL_TIMEOUT.mul_f64(1.1),
            "{prev:?}"
        );
        assert!(c.poll_transmit(now - ms(1)).is_none());
        for _ in 0..20 {
            let t = c.poll_transmit(now).unwrap();
            assert_eq!(xid_of(&t), xid, "retransmissions keep the xid");
            let hundredths = ((now - t0).as_millis() / 10).min(0xffff) as u16;
            assert_eq!(elapsed(&t), hundredths);
            let next = c.poll_at().unwrap();
            let rt = next - now;
            assert!(rt_ok(rt, prev, SOL_MAX_RT), "rt {rt:?} after {prev:?}");
            (now, prev) = (next, rt);
        }
        // The cap was reached, and Elapsed Time saturated.
        assert!(prev >= SOL_MAX_RT.mul_f64(0.9));
        assert_eq!(elapsed(&c.poll_transmit(now).unwrap()), 0xffff);
    }

    #[test]
    fn sol_max_rt_option_replaces_the_cap_even_in_an_ignored_advertise() {
        let t0 = Instant::now();
        let mut c = Client::new(long_budget(), t0, 3);
        let s = c.poll_transmit(t0).unwrap();
        let mut m = msg(
            2,
            xid_of(&s),
            &Srv {
                no_address: true,
                top_status: Some(2),
                ..Srv::default()
            },
        );
        opt(&mut m, code::SOL_MAX_RT, &60u32.to_be_bytes());
        assert_eq!(
            c.handle(t0, &m),
            Err(Ignored::Status(StatusCode::NoAddrsAvail))
        );
        assert_eq!(c.sol_max_rt(), secs(60));
        assert_eq!(c.state(), State::Soliciting);
        let mut now = t0;
        for _ in 0..12 {
            now = c.poll_at().unwrap();
            c.poll_transmit(now).unwrap();
        }
        let rt = c.poll_at().unwrap() - now;
        assert!(rt >= secs(54) && rt <= secs(66), "{rt:?}");
    }

    #[test]
    fn advertises_are_collected_for_the_first_rt_and_the_best_requested() {
        let t0 = Instant::now();
        let mut c = Client::new(config(), t0, 1);
        let s = c.poll_transmit(t0).unwrap();
        let xid = xid_of(&s);
        let adv = |server, address, p| Srv {
            server,
            address,
            preference: p,
            ..Srv::default()
        };
        c.handle(t0, &msg(2, xid, &adv(SERVER_A, ADDR, None)))
            .unwrap();
        let a = c.handle(t0, &msg(2, xid, &adv(SERVER_B, ADDR_B, Some(50))));
        assert_eq!(a.unwrap().address, ADDR_B);
        // Equal preference: the first heard stays chosen.
        c.handle(t0, &msg(2, xid, &adv(SERVER_A, ADDR, Some(50))))
            .unwrap();
        assert_eq!(c.state(), State::Soliciting);
        let rt_end = c.poll_at().unwrap();
        assert!(c.poll_transmit(rt_end - ms(1)).is_none());
        let r = c.poll_transmit(rt_end).unwrap();
        assert_eq!(r.message_type, MessageType::Request);
        assert_eq!(c.state(), State::Requesting);
        assert_eq!(c.advertised(), Some((ADDR_B, SERVER_B)));
        let parsed = parse_reply(&r.payload).unwrap();
        assert_eq!(parsed.server_id.as_deref(), Some(SERVER_B));
        assert_eq!(parsed.client_id, Some(our_duid()));
        assert_eq!(ia_address(&r), Some(ADDR_B));
        assert_ne!(parsed.xid, xid, "REQUEST is a new exchange");
        assert_eq!(elapsed(&r), 0);
        assert!(top_opt(&r.payload, code::ORO).is_some());
    }

    #[test]
    fn preference_255_or_a_late_advertise_is_taken_at_once() {
        let t0 = Instant::now();
        let mut c = Client::new(config(), t0, 1);
        let s = c.poll_transmit(t0).unwrap();
        let p255 = Srv {
            preference: Some(255),
            ..Srv::default()
        };
        c.handle(t0, &msg(2, xid_of(&s), &p255)).unwrap();
        assert_eq!(c.state(), State::Requesting);
        assert_eq!(
            c.poll_transmit(t0).unwrap().message_type,
            MessageType::Request
        );

        // No ADVERTISE in the first RT: the first one after it is taken, whatever its
        // preference.
        let mut c = Client::new(config(), t0, 1);
        let s = c.poll_transmit(t0).unwrap();
        let t1 = c.poll_at().unwrap();
        assert_eq!(
            c.poll_transmit(t1).unwrap().message_type,
            MessageType::Solicit
        );
        c.handle(t1, &msg(2, xid_of(&s), &Srv::default())).unwrap();
        assert_eq!(c.state(), State::Requesting);
    }

    #[test]
    fn rapid_commit_reply_binds_at_once() {
        let t0 = Instant::now();
        let mut c = Client::new(
            ClientConfig {
                rapid_commit: true,
                ..config()
            },
            t0,
            1,
        );
        let s = c.poll_transmit(t0).unwrap();
        assert_eq!(top_opt(&s.payload, code::RAPID_COMMIT), Some(vec![]));
        let xid = xid_of(&s);
        // A REPLY without Rapid Commit answers nothing we asked.
        assert!(matches!(
            c.handle(t0, &msg(7, xid, &Srv::default())),
            Err(Ignored::Unexpected { .. })
        ));
        let rc = Srv {
            rapid_commit: true,
            ..Srv::default()
        };
        let t = t0 + ms(300);
        assert_eq!(c.handle(t, &msg(7, xid, &rc)).unwrap().address, ADDR);
        let Some(Event::Bound(lease)) = c.poll_event() else {
            panic!("not bound")
        };
        assert_eq!(lease.address, ADDR);
        assert_eq!(c.state(), State::Bound);
        // Times count from the SOLICIT.
        assert_eq!(c.granted_at(), Some(t0));
        assert_eq!(c.expires_at(), Some(t0 + secs(300)));

        // Without Rapid Commit configured, a Rapid Commit REPLY is not taken.
        let mut c = Client::new(config(), t0, 1);
        let s = c.poll_transmit(t0).unwrap();
        assert!(top_opt(&s.payload, code::RAPID_COMMIT).is_none());
        assert!(c.handle(t0, &msg(7, xid_of(&s), &rc)).is_err());
    }

    #[test]
    fn reply_binds_with_fuzzed_timers() {
        let t0 = Instant::now();
        let c = bound(t0, &Srv::default());
        let lease = c.lease().unwrap();
        assert_eq!((lease.t1, lease.t2, lease.valid_lifetime), (100, 160, 300));
        assert_eq!(lease.server_id, SERVER_A);
        let t1 = c.renew_at().unwrap() - t0;
        let t2 = c.rebind_at().unwrap() - t0;
        assert!(t1 >= secs(95) && t1 <= secs(100), "{t1:?}");
        assert!(t2 >= secs(152) && t2 <= secs(160), "{t2:?}");
        assert_eq!(c.expires_at(), Some(t0 + secs(300)));
        assert_eq!(c.poll_at(), c.renew_at());
        // T1 and T2 of 0: 0.5 and 0.8 of the preferred lifetime (§21.4).
        let c = bound(
            t0,
            &Srv {
                t1: 0,
                t2: 0,
                preferred: 1000,
                valid: 2000,
                ..Srv::default()
            },
        );
        assert_eq!((c.lease().unwrap().t1, c.lease().unwrap().t2), (500, 800));
    }

    #[test]
    fn short_lifetimes_are_floored() {
        let t0 = Instant::now();
        let mut c = Client::new(ClientConfig::new(our_duid(), iaid("eth0")), t0, 1);
        let s = c.poll_transmit(t0).unwrap();
        let p255 = Srv {
            preference: Some(255),
            ..Srv::default()
        };
        c.handle(t0, &msg(2, xid_of(&s), &p255)).unwrap();
        let r = c.poll_transmit(t0).unwrap();
        let short = Srv {
            t1: 1,
            t2: 2,
            preferred: 3,
            valid: 4,
            ..Srv::default()
        };
        c.handle(t0, &msg(7, xid_of(&r), &short)).unwrap();
        let l = c.lease().unwrap();
        assert_eq!(
            (l.t1, l.t2, l.preferred_lifetime, l.valid_lifetime),
            (10, 16, 20, 20)
        );
    }

    #[test]
    fn request_retransmits_up_to_mrc_then_solicits_again() {
        let t0 = Instant::now();
        let mut c = Client::new(long_budget(), t0, 5);
        let s = c.poll_transmit(t0).unwrap();
        let p255 = Srv {
            preference: Some(255),
            ..Srv::default()
        };
        c.handle(t0, &msg(2, xid_of(&s), &p255)).unwrap();
        let mut now = t0;
        let mut prev = Duration::ZERO;
        let mut xid = None;
        for i in 0..REQ_MAX_RC {
            let r = c.poll_transmit(now).unwrap();
            assert_eq!(r.message_type, MessageType::Request, "request {i}");
            assert_eq!(*xid.get_or_insert(xid_of(&r)), xid_of(&r));
            let next = c.poll_at().unwrap();
            let rt = next - now;
            if i == 0 {
                assert!(rt >= ms(900) && rt <= ms(1100), "{rt:?}");
            } else {
                assert!(rt_ok(rt, prev, REQ_MAX_RT), "rt {rt:?} after {prev:?}");
            }
            (now, prev) = (next, rt);
        }
        assert!(prev >= REQ_MAX_RT.mul_f64(0.9));
        let s2 = c.poll_transmit(now).unwrap();
        assert_eq!(s2.message_type, MessageType::Solicit);
        assert_ne!(Some(xid_of(&s2)), xid);
        assert_eq!(elapsed(&s2), 0);
    }

    #[test]
    fn not_on_link_or_no_addrs_on_request_solicits_again() {
        for status in [4u16, 2] {
            let t0 = Instant::now();
            let mut c = Client::new(config(), t0, 1);
            let s = c.poll_transmit(t0).unwrap();
            let p255 = Srv {
                preference: Some(255),
                ..Srv::default()
            };
            c.handle(t0, &msg(2, xid_of(&s), &p255)).unwrap();
            let r = c.poll_transmit(t0).unwrap();
            let refused = Srv {
                ia_status: Some(status),
                no_address: true,
                ..Srv::default()
            };
            let a = c.handle(t0, &msg(7, xid_of(&r), &refused)).unwrap();
            assert_eq!(a.address, Ipv6Addr::UNSPECIFIED);
            assert_eq!(c.state(), State::Init);
            let s2 = c.poll_transmit(t0).unwrap();
            assert_eq!(s2.message_type, MessageType::Solicit);
            assert_ne!(xid_of(&s2), xid_of(&r));
            assert!(c.poll_event().is_none());
        }
    }

    #[test]
    fn unspec_fail_and_use_multicast_are_ignored_and_the_request_goes_on() {
        let t0 = Instant::now();
        let mut c = Client::new(config(), t0, 1);
        let s = c.poll_transmit(t0).unwrap();
        let p255 = Srv {
            preference: Some(255),
            ..Srv::default()
        };
        c.handle(t0, &msg(2, xid_of(&s), &p255)).unwrap();
        let r = c.poll_transmit(t0).unwrap();
        for (st, code) in [
            (1u16, StatusCode::UnspecFail),
            (5, StatusCode::UseMulticast),
        ] {
            let m = msg(
                7,
                xid_of(&r),
                &Srv {
                    top_status: Some(st),
                    ..Srv::default()
                },
            );
            assert_eq!(c.handle(t0, &m), Err(Ignored::Status(code)));
            assert_eq!(c.state(), State::Requesting);
        }
        let next = c.poll_at().unwrap();
        assert_eq!(
            c.poll_transmit(next).unwrap().message_type,
            MessageType::Request
        );
    }

    #[test]
    fn budget_runs_out() {
        let t0 = Instant::now();
        let mut c = Client::new(config(), t0, 1);
        let mut now = t0;
        while let Some(t) = c.poll_at() {
            now = t;
            while c.poll_transmit(now).is_some() {}
            if c.state() == State::Failed {
                break;
            }
        }
        assert_eq!(now, t0 + secs(10));
        assert_eq!(c.poll_event(), Some(Event::Timeout));
        assert_eq!(c.state(), State::Failed);
        assert_eq!(c.poll_at(), None);
    }

    #[test]
    fn renew_at_t1_rebind_at_t2_expiry_at_valid_lifetime() {
        let t0 = Instant::now();
        let mut c = bound(t0, &Srv::default());
        let t1 = c.renew_at().unwrap();
        let t2 = c.rebind_at().unwrap();
        let end = c.expires_at().unwrap();
        assert!(c.poll_transmit(t1 - ms(1)).is_none());
        let renew = c.poll_transmit(t1).unwrap();
        assert_eq!(renew.message_type, MessageType::Renew);
        assert_eq!(renew.dst, ALL_SERVERS_SOCKET);
        assert_eq!(c.state(), State::Renewing);
        let p = parse_reply(&renew.payload).unwrap();
        assert_eq!(p.server_id.as_deref(), Some(SERVER_A));
        assert_eq!(ia_address(&renew), Some(ADDR));
        assert_eq!(elapsed(&renew), 0);
        let renew_xid = xid_of(&renew);
        // RENEW retransmissions: 10 s ±10%, then doubling, never past T2.
        let mut now = t1;
        let mut prev = Duration::ZERO;
        let mut first = true;
        loop {
            let next = c.poll_at().unwrap();
            assert!(next <= t2);
            let rt = next - now;
            if next == t2 {
                break;
            }
            if first {
                assert!(rt >= secs(9) && rt <= secs(11), "{rt:?}");
                first = false;
            } else {
                assert!(rt_ok(rt, prev, REN_MAX_RT), "{rt:?} after {prev:?}");
            }
            let t = c.poll_transmit(next).unwrap();
            assert_eq!(t.message_type, MessageType::Renew);
            assert_eq!(xid_of(&t), renew_xid);
            (now, prev) = (next, rt);
        }
        let rebind = c.poll_transmit(t2).unwrap();
        assert_eq!(rebind.message_type, MessageType::Rebind);
        assert_eq!(c.state(), State::Rebinding);
        assert_eq!(parse_reply(&rebind.payload).unwrap().server_id, None);
        assert_ne!(xid_of(&rebind), renew_xid);
        let rt = c.poll_at().unwrap() - t2;
        assert!(rt >= secs(9) && rt <= secs(11), "{rt:?}");
        // Silence to the end.
        let mut now = t2;
        while let Some(t) = c.poll_at() {
            assert!(t <= end);
            now = t;
            while c.poll_transmit(now).is_some() {}
        }
        assert_eq!(now, end);
        assert_eq!(c.poll_event(), Some(Event::Expired));
        assert_eq!(c.state(), State::Expired);
        assert_eq!(c.lease().unwrap().address, ADDR);
    }

    #[test]
    fn reply_to_renew_extends_from_the_latest_renew() {
        let t0 = Instant::now();
        let mut c = bound(t0, &Srv::default());
        let t1 = c.renew_at().unwrap();
        let renew = c.poll_transmit(t1).unwrap();
        let again = c.poll_at().unwrap();
        c.poll_transmit(again).unwrap();
        // A REPLY granting another address only is not a renewal of ours.
        let other = Srv {
            address: ADDR_B,
            ..Srv::default()
        };
        assert_eq!(
            c.handle(again, &msg(7, xid_of(&renew), &other)),
            Err(Ignored::Unusable(LeaseError::NoAddress))
        );
        let longer = Srv {
            t1: 1000,
            t2: 1600,
            preferred: 2000,
            valid: 3000,
            ..Srv::default()
        };
        let a = c
            .handle(again + ms(50), &msg(7, xid_of(&renew), &longer))
            .unwrap();
        assert_eq!(a.address, ADDR);
        let Some(Event::Renewed(l)) = c.poll_event() else {
            panic!("not renewed")
        };
        assert_eq!(l.valid_lifetime, 3000);
        assert_eq!(c.state(), State::Bound);
        assert_eq!(c.granted_at(), Some(again));
        assert_eq!(c.expires_at(), Some(again + secs(3000)));
    }

    #[test]
    fn no_binding_on_renew_requests_the_binding_again() {
        let t0 = Instant::now();
        let mut c = bound(t0, &Srv::default());
        let t1 = c.renew_at().unwrap();
        let renew = c.poll_transmit(t1).unwrap();
        let nb = Srv {
            server: SERVER_B,
            ia_status: Some(3),
            no_address: true,
            ..Srv::default()
        };
        c.handle(t1, &msg(7, xid_of(&renew), &nb)).unwrap();
        assert_eq!(c.state(), State::Renewing);
        let req = c.poll_transmit(t1).unwrap();
        assert_eq!(req.message_type, MessageType::Request);
        let p = parse_reply(&req.payload).unwrap();
        assert_eq!(p.server_id.as_deref(), Some(SERVER_B));
        assert_eq!(ia_address(&req), Some(ADDR));
        assert_ne!(p.xid, xid_of(&renew));
        // Retransmitted as a REQUEST (1 s).
        let rt = c.poll_at().unwrap() - t1;
        assert!(rt >= ms(900) && rt <= ms(1100), "{rt:?}");
        c.handle(t1, &msg(7, p.xid, &Srv::default())).unwrap();
        assert!(matches!(c.poll_event(), Some(Event::Renewed(_))));
        assert_eq!(c.state(), State::Bound);
    }

    #[test]
    fn reinstating_request_gives_up_after_mrc_or_on_no_addrs() {
        let t0 = Instant::now();
        let nb = Srv {
            ia_status: Some(3),
            no_address: true,
            ..Srv::default()
        };
        let mut c = bound(t0, &Srv::default());
        // T2 far enough from T1 for ten REQUESTs (1 + 2 + 4 + ... capped at 30 s: ~200 s).
        let mut c2 = bound(
            t0,
            &Srv {
                t1: 100,
                t2: 1000,
                preferred: 2000,
                valid: 3000,
                ..Srv::default()
            },
        );
        let t1 = c2.renew_at().unwrap();
        let renew = c2.poll_transmit(t1).unwrap();
        c2.handle(t1, &msg(7, xid_of(&renew), &nb)).unwrap();
        let mut now = t1;
        let mut xid = None;
        for _ in 0..REQ_MAX_RC {
            let r = c2.poll_transmit(now).unwrap();
            assert_eq!(r.message_type, MessageType::Request);
            assert_eq!(*xid.get_or_insert(xid_of(&r)), xid_of(&r));
            now = c2.poll_at().unwrap();
        }
        let back = c2.poll_transmit(now).unwrap();
        assert_eq!(back.message_type, MessageType::Renew);
        assert_ne!(Some(xid_of(&back)), xid);
        assert_eq!(c2.state(), State::Renewing);

        // NoAddrsAvail to the reinstating REQUEST: the address is lost.
        let t1 = c.renew_at().unwrap();
        let renew = c.poll_transmit(t1).unwrap();
        c.handle(t1, &msg(7, xid_of(&renew), &nb)).unwrap();
        let req = c.poll_transmit(t1).unwrap();
        let none = Srv {
            ia_status: Some(2),
            no_address: true,
            ..Srv::default()
        };
        c.handle(t1, &msg(7, xid_of(&req), &none)).unwrap();
        assert_eq!(c.poll_event(), Some(Event::Lost));
        assert_eq!(c.state(), State::Init);
    }

    #[test]
    fn solicit_carries_the_derived_identity_and_a_lower_preference_does_not_win() {
        let t0 = Instant::now();
        let cfg = ClientConfig::for_container("cid-c1", "labnet", "eth0", None).unwrap();
        let mut c = Client::new(cfg, t0, 1);
        let s = c.poll_transmit(t0).unwrap();
        assert_eq!(
            top_opt(&s.payload, code::CLIENTID)
                .map(hex::encode)
                .as_deref(),
            Some("000432efe19cc57157ec906d9d070e8623ab")
        );
        let ia = top_opt(&s.payload, code::IA_NA).unwrap();
        assert_eq!(ia[..4], 0x67b1_9724u32.to_be_bytes());
        let xid = xid_of(&s);
        let adv = |server, address, p| Srv {
            server,
            address,
            preference: Some(p),
            ..Srv::default()
        };
        c.handle(t0, &msg(2, xid, &adv(SERVER_A, ADDR, 9))).unwrap();
        c.handle(t0, &msg(2, xid, &adv(SERVER_B, ADDR_B, 8)))
            .unwrap();
        let end = c.poll_at().unwrap();
        c.poll_transmit(end).unwrap();
        assert_eq!(c.advertised(), Some((ADDR, SERVER_A)));
    }

    #[test]
    fn not_on_link_or_withdrawn_address_while_renewing_is_lost() {
        let t0 = Instant::now();
        for srv in [
            Srv {
                top_status: Some(4),
                ..Srv::default()
            },
            Srv {
                preferred: 0,
                valid: 0,
                ..Srv::default()
            },
        ] {
            let mut c = bound(t0, &Srv::default());
            let t2 = c.rebind_at().unwrap();
            let rebind = c.poll_transmit(t2).unwrap();
            assert_eq!(rebind.message_type, MessageType::Rebind);
            c.handle(t2, &msg(7, xid_of(&rebind), &srv)).unwrap();
            assert_eq!(c.poll_event(), Some(Event::Lost));
            assert_eq!(c.state(), State::Init);
            assert_eq!(c.lease(), None);
            assert_eq!(
                c.poll_transmit(t2).unwrap().message_type,
                MessageType::Solicit
            );
        }
    }

    #[test]
    fn replies_for_others_are_ignored() {
        let t0 = Instant::now();
        let mut c = Client::new(config(), t0, 1);
        let s = c.poll_transmit(t0).unwrap();
        let xid = xid_of(&s);
        let other = Srv {
            client_id: Some(duid("cid-c2", "labnet")),
            ..Srv::default()
        };
        assert_eq!(
            c.handle(t0, &msg(2, xid, &other)),
            Err(Ignored::WrongClientId)
        );
        let none = Srv {
            client_id: None,
            ..Srv::default()
        };
        assert_eq!(c.handle(t0, &msg(2, xid, &none)), Err(Ignored::NoClientId));
        assert_eq!(
            c.handle(t0, &msg(2, xid ^ 1, &Srv::default())),
            Err(Ignored::WrongXid {
                expected: xid,
                got: xid ^ 1
            })
        );
        let mut no_server = header(2, xid);
        opt(&mut no_server, code::CLIENTID, &our_duid());
        assert_eq!(c.handle(t0, &no_server), Err(Ignored::NoServerId));
        assert_eq!(
            c.handle(t0, &s.payload),
            Err(Ignored::NotFromServer(MessageType::Solicit))
        );
        assert!(matches!(c.handle(t0, &[2, 0]), Err(Ignored::Malformed(_))));
        assert_eq!(c.state(), State::Soliciting);
        // An ADVERTISE when bound asks nothing.
        let mut c = bound(t0, &Srv::default());
        let m = msg(2, c.xid(), &Srv::default());
        assert!(matches!(c.handle(t0, &m), Err(Ignored::Unexpected { .. })));
    }

    #[test]
    fn release_and_decline_are_sent_once() {
        let t0 = Instant::now();
        let mut c = bound(t0, &Srv::default());
        let old_xid = c.xid();
        let r = c.release().unwrap();
        assert_eq!(r.message_type, MessageType::Release);
        assert_eq!(r.dst, ALL_SERVERS_SOCKET);
        let p = parse_reply(&r.payload).unwrap();
        assert_eq!(p.server_id.as_deref(), Some(SERVER_A));
        assert_eq!(ia_address(&r), Some(ADDR));
        assert_ne!(p.xid, old_xid);
        assert_eq!(elapsed(&r), 0);
        assert_eq!(c.state(), State::Released);
        assert_eq!(c.poll_at(), None);
        assert!(c.release().is_none());
        assert!(c.handle(t0, &msg(7, p.xid, &Srv::default())).is_err());

        let mut c = bound(t0, &Srv::default());
        let d = c.decline(t0).unwrap();
        assert_eq!(d.message_type, MessageType::Decline);
        assert_eq!(ia_address(&d), Some(ADDR));
        assert_eq!(c.state(), State::Declined);
        assert!(c.decline(t0).is_none());
        // In keep-trying mode a SOLICIT follows DECLINE_WAIT later.
        let mut c = bound(t0, &Srv::default());
        c.keep_trying(true);
        c.decline(t0).unwrap();
        assert_eq!(c.state(), State::Init);
        assert_eq!(c.poll_at(), Some(t0 + DECLINE_WAIT));
        // Nothing to release or decline without a lease.
        let mut c = Client::new(config(), t0, 1);
        assert!(c.decline(t0).is_none());
        assert!(c.release().is_none());
    }

    fn remembered() -> Lease6 {
        Lease6 {
            address: ADDR,
            preferred_lifetime: 200,
            valid_lifetime: 300,
            t1: 100,
            t2: 160,
            iaid: iaid("eth0"),
            server_id: SERVER_A.to_vec(),
            dns_servers: vec![],
            domain_search: vec![],
        }
    }

    #[test]
    fn reboot_rebinds_the_remembered_address() {
        let t0 = Instant::now();
        let mut c = Client::reboot(config(), remembered(), t0, 1);
        assert_eq!(c.state(), State::Rebooting);
        assert_eq!(c.lease(), None);
        let rb = c.poll_transmit(t0).unwrap();
        assert_eq!(rb.message_type, MessageType::Rebind);
        assert_eq!(parse_reply(&rb.payload).unwrap().server_id, None);
        assert_eq!(ia_address(&rb), Some(ADDR));
        c.handle(t0, &msg(7, xid_of(&rb), &Srv::default())).unwrap();
        assert!(matches!(c.poll_event(), Some(Event::Bound(_))));
        assert_eq!(c.state(), State::Bound);

        // NoBinding: REQUEST the address from the server that answered.
        let mut c = Client::reboot(config(), remembered(), t0, 1);
        let rb = c.poll_transmit(t0).unwrap();
        let nb = Srv {
            server: SERVER_B,
            ia_status: Some(3),
            no_address: true,
            ..Srv::default()
        };
        c.handle(t0, &msg(7, xid_of(&rb), &nb)).unwrap();
        assert_eq!(c.advertised(), Some((ADDR, SERVER_B)));
        let req = c.poll_transmit(t0).unwrap();
        assert_eq!(req.message_type, MessageType::Request);
        assert_eq!(ia_address(&req), Some(ADDR));

        // NotOnLink: SOLICIT at once, no hint.
        let mut c = Client::reboot(config(), remembered(), t0, 1);
        let rb = c.poll_transmit(t0).unwrap();
        let nol = Srv {
            top_status: Some(4),
            ..Srv::default()
        };
        c.handle(t0, &msg(7, xid_of(&rb), &nol)).unwrap();
        let s = c.poll_transmit(t0).unwrap();
        assert_eq!(s.message_type, MessageType::Solicit);
        assert_eq!(ia_address(&s), None);
    }

    #[test]
    fn silent_reboot_solicits_with_a_hint_at_half_the_budget() {
        let t0 = Instant::now();
        let mut c = Client::reboot(config(), remembered(), t0, 1);
        c.poll_transmit(t0).unwrap();
        assert_eq!(c.poll_at(), Some(t0 + secs(5)));
        let s = c.poll_transmit(t0 + secs(5)).unwrap();
        assert_eq!(s.message_type, MessageType::Solicit);
        assert_eq!(ia_address(&s), Some(ADDR));
        // Same budget: the timeout is still 10 s after the reboot began.
        let mut now = t0;
        while let Some(t) = c.poll_at() {
            now = t;
            while c.poll_transmit(now).is_some() {}
        }
        assert_eq!(now, t0 + secs(10));
        assert_eq!(c.poll_event(), Some(Event::Timeout));
    }

    #[test]
    fn resume_fires_the_timers_already_due() {
        let t0 = Instant::now();
        let mut c = Client::resume(config(), remembered(), t0, 1);
        assert_eq!(c.state(), State::Bound);
        assert!(c.poll_event().is_none());
        let renew = c.poll_transmit(t0 + secs(120)).unwrap();
        assert_eq!(renew.message_type, MessageType::Renew);
        let mut c = Client::resume(config(), remembered(), t0, 1);
        assert_eq!(
            c.poll_transmit(t0 + secs(170)).unwrap().message_type,
            MessageType::Rebind
        );
        let mut c = Client::resume(config(), remembered(), t0, 1);
        assert!(c.poll_transmit(t0 + secs(301)).is_none());
        assert_eq!(c.poll_event(), Some(Event::Expired));
        assert_eq!(c.state(), State::Expired);
    }

    #[test]
    fn keep_trying_acquires_again_after_expiry_without_a_budget() {
        let t0 = Instant::now();
        let mut c = Client::resume(config(), remembered(), t0, 1);
        c.keep_trying(true);
        let end = t0 + secs(300);
        assert!(c.poll_transmit(end).is_some());
        assert_eq!(c.poll_event(), Some(Event::Expired));
        assert_eq!(c.state(), State::Soliciting);
        let mut now = end;
        for _ in 0..30 {
            now = c.poll_at().unwrap();
            while c.poll_transmit(now).is_some() {}
        }
        assert!(now > end + secs(1000));
        assert_eq!(c.poll_event(), None, "no timeout in keep-trying mode");
        assert_eq!(c.state(), State::Soliciting);
    }

    #[test]
    fn infinite_lifetimes_never_renew() {
        let t0 = Instant::now();
        let c = bound(
            t0,
            &Srv {
                t1: INFINITY,
                t2: INFINITY,
                preferred: INFINITY,
                valid: INFINITY,
                ..Srv::default()
            },
        );
        assert_eq!(
            (c.renew_at(), c.rebind_at(), c.expires_at()),
            (None, None, None)
        );
        assert_eq!(c.poll_at(), None);
    }

    /// Drives `c` with `payload` (its header patched to our current xid and a Client
    /// Identifier of ours prepended to its options, to get past the first filters) at `now`,
    /// then runs it on: never a panic, and `poll_at` never in the past once `poll_transmit`
    /// returned None.
    fn drive(mut c: Client, now: Instant, t: u8, tail: &[u8]) {
        let mut m = header(t, c.xid());
        opt(&mut m, code::CLIENTID, &our_duid());
        m.extend_from_slice(tail);
        let _ = c.handle(now, &m);
        let _ = c.handle(now, tail);
        let mut now = now;
        for _ in 0..50 {
            while c.poll_transmit(now).is_some() {}
            while c.poll_event().is_some() {}
            match c.poll_at() {
                Some(t) => {
                    assert!(t > now);
                    now = t;
                }
                None => break,
            }
        }
        let _ = c.release();
    }

    proptest! {
        #[test]
        fn garbage_never_panics_in_any_state(
            t in prop_oneof![Just(2u8), Just(7u8), any::<u8>()],
            tail in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let t0 = Instant::now();
            let mut c = Client::new(ClientConfig { rapid_commit: true, ..config() }, t0, 1);
            c.poll_transmit(t0);
            drive(c, t0, t, &tail);
            let mut c = Client::new(config(), t0, 1);
            let s = c.poll_transmit(t0).unwrap();
            let p255 = Srv { preference: Some(255), ..Srv::default() };
            c.handle(t0, &msg(2, xid_of(&s), &p255)).unwrap();
            c.poll_transmit(t0);
            drive(c, t0, t, &tail);
            let c = bound(t0, &Srv::default());
            drive(c, t0, t, &tail);
            let mut c = bound(t0, &Srv::default());
            let t1 = c.renew_at().unwrap();
            c.poll_transmit(t1);
            drive(c, t1, t, &tail);
            let mut c = Client::reboot(config(), remembered(), t0, 1);
            c.poll_transmit(t0);
            drive(c, t0, t, &tail);
        }
    }
}
