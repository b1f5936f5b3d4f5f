//! The DHCP client state machine (RFC 2131 §4.4, figure 5), sans-IO in the style of smoltcp's
//! `dhcpv4` socket: it owns no socket and reads no clock. The driver (the lease daemon) feeds it
//! the current time and every UDP payload received on port 68, sends what
//! [`Client::poll_transmit`] returns, drains [`Client::poll_event`], and sleeps until
//! [`Client::poll_at`]. The machine parses each received payload once and says what it accepted
//! ([`Accepted`]) or why it dropped it ([`Ignored`]), and each [`Transmit`] carries its message
//! type, so the driver never parses a DHCP message itself. Because time is only ever an input,
//! every RFC rule below is unit-tested in microseconds with a fake clock, and a fuzzer can drive
//! the machine directly.
//!
//! Acquisition: INIT → DHCPDISCOVER → SELECTING → first acceptable DHCPOFFER → DHCPREQUEST →
//! REQUESTING → DHCPACK → BOUND ([`Event::Bound`]). A reply is accepted only when its xid and
//! chaddr are ours and its echoed option 61, when present (RFC 6842), is ours: on ipvlan every
//! slave sees every other slave's broadcast replies, all with one chaddr unless each sends one
//! of its own (docs/design.md, *ipvlan and DHCP*). A
//! DHCPNAK while REQUESTING restarts from INIT with a new xid inside the same time budget; when the
//! budget ([`ClientConfig::timeout`]) runs out: [`Event::Timeout`], state FAILED.
//!
//! Lease life: at T1 RENEWING (unicast DHCPREQUEST to the server from the leased address), at T2
//! REBINDING (broadcast DHCPREQUEST), at expiry EXPIRED ([`Event::Expired`], nothing more sent).
//! A DHCPACK there is [`Event::Renewed`]; a DHCPNAK is [`Event::Nak`]: the address must stop
//! being used, and the client starts a fresh acquisition (INIT) that the driver may continue or drop.
//! Retransmissions there wait half the time left to T2 (or expiry), at least
//! min(60 s, lease / 8) and never less than 500 ms (RFC 2131 §4.4.5 says 60 s; the scaled floor
//! keeps leases of a few seconds working).
//!
//! Leases that survive a daemon restart or a lost lease:
//! - [`Client::resume`]: a persisted lease whose times count from a past instant; timers already
//!   due fire on the first poll (RENEWING, REBINDING, or [`Event::Expired`]).
//! - [`Client::reboot`]: a persisted lease that has expired or whose state is unknown: INIT-REBOOT
//!   → broadcast DHCPREQUEST for the old address, no option 54 → REBOOTING → DHCPACK → BOUND
//!   ([`Event::Bound`], maybe with another address); DHCPNAK or silence → INIT (DISCOVER) in the
//!   same budget (RFC 2131 §3.2, §4.4.2); after silence the DISCOVER suggests the old address
//!   (option 50, §4.4.1).
//! - [`Client::keep_trying`]: once a lease has been bound, later acquisitions (after a DHCPNAK or
//!   expiry) never give up; after [`Event::Expired`] the client goes back to INIT instead of
//!   stopping (its DISCOVER suggests the expired address), and a new DHCPACK is
//!   [`Event::Bound`] again.
//!
//! [`Client::decline`] sends DHCPDECLINE for an address found in use (RFC 2131 §4.4.1) and stops
//! (state DECLINED).

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dhcproto::v4::MessageType;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::config::ClientConfig;
use super::message::{self, Kind};
use super::reply::{Lease, ParseError, lease_times, parse_reply};
use super::timing::{Budget, min_opt};

/// First retransmission delay in SELECTING and REQUESTING (RFC 2131 §4.1: "4 seconds").
const INITIAL_RETRANSMIT: Duration = Duration::from_secs(4);
/// Random fuzz of ±1 s on each SELECTING/REQUESTING retransmission (RFC 2131 §4.1), in ms.
const RETRANSMIT_FUZZ_MS: i64 = 1000;
/// Floor on any retransmission delay, so a zero `resend_max` cannot make the driver spin.
const MIN_RETRANSMIT: Duration = Duration::from_millis(100);
/// Minimum RENEWING/REBINDING retransmission delay (RFC 2131 §4.4.5: "down to a minimum of 60
/// seconds") for leases of 8 minutes or more; shorter leases scale it down to lease / 8.
const MIN_RENEW_RETRANSMIT: Duration = Duration::from_secs(60);
/// Floor of the scaled RENEWING/REBINDING minimum, so leases of a few seconds (or 0) cannot make
/// the client flood the server.
const MIN_RENEW_RETRANSMIT_SHORT: Duration = Duration::from_millis(500);
/// DHCPREQUESTs sent in REQUESTING without answer before going back to INIT (RFC 2131 §4.4.1:
/// "after employing the retransmission algorithm, the client reverts to INIT state").
const MAX_REQUESTS: u32 = 4;
/// DHCPREQUESTs sent in REBOOTING without answer before falling back to INIT (RFC 2131 §4.4.2:
/// "after employing the retransmission algorithm"); the reboot phase also never lasts longer than
/// half of [`ClientConfig::timeout`], so the DISCOVER that follows has time to finish.
const MAX_REBOOT_REQUESTS: u32 = 3;
/// How long to wait after a DHCPDECLINE (or an abandoned offer) before acquiring again in
/// [`Client::keep_trying`] mode (RFC 2131 §3.1 step 5: "a minimum of ten seconds ... to avoid
/// excessive network traffic in case of looping").
pub const DECLINE_WAIT: Duration = Duration::from_secs(10);
/// T1/T2 are moved earlier by a random fuzz of up to 1/20 of their value (RFC 2131 §4.4.5: "SHOULD
/// be chosen with some random fuzz"), so that leases granted together do not renew together.
const TIMER_FUZZ_DIVISOR: u64 = 20;

/// `lease` with [`ClientConfig::min_lease`] applied: a lease time under `min` (not infinite)
/// becomes `min` with the default T1 and T2 (RFC 2131 §4.4.5: 0.5 and 0.875 of it), and a T1
/// or T2 of 0 becomes its default fraction (as dhcpcd reads 0 as "not given").
fn floored(mut lease: Lease, min: u32) -> Lease {
    if lease.lease_time != u32::MAX && lease.lease_time < min {
        lease.lease_time = min;
        (lease.renewal_time, lease.rebinding_time) = lease_times(min, None, None);
    }
    if min > 0 && (lease.renewal_time == 0 || lease.rebinding_time == 0) {
        let (t1, t2) = lease_times(lease.lease_time, None, None);
        if lease.rebinding_time == 0 {
            lease.rebinding_time = t2;
        }
        if lease.renewal_time == 0 {
            lease.renewal_time = t1.min(lease.rebinding_time);
        }
    }
    lease
}

/// Client states (RFC 2131 §4.4, figure 5), plus the terminal states of this implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum State {
    /// INIT: about to send DHCPDISCOVER (on the next [`Client::poll_transmit`]).
    Init,
    /// SELECTING: DHCPDISCOVER sent, waiting for a DHCPOFFER.
    Selecting,
    /// REQUESTING: SELECTING DHCPREQUEST sent, waiting for DHCPACK/DHCPNAK.
    Requesting,
    /// BOUND: holding a lease, waiting for T1.
    Bound,
    /// RENEWING: past T1, unicasting DHCPREQUEST to the lease's server.
    Renewing,
    /// REBINDING: past T2, broadcasting DHCPREQUEST to any server.
    Rebinding,
    /// INIT-REBOOT (RFC 2131 §4.4.2): about to broadcast a DHCPREQUEST for the remembered address
    /// (on the next [`Client::poll_transmit`]); see [`Client::reboot`].
    InitReboot,
    /// REBOOTING: INIT-REBOOT DHCPREQUEST sent, waiting for DHCPACK/DHCPNAK from any server.
    Rebooting,
    /// The lease expired without renewal; terminal, nothing more is sent (unless in
    /// [`Client::keep_trying`] mode, where the client goes straight on to INIT).
    Expired,
    /// DHCPRELEASE sent (or released without a lease); terminal.
    Released,
    /// The acquisition budget ran out; terminal.
    Failed,
    /// DHCPDECLINE sent ([`Client::decline`]); terminal, the lease is forgotten.
    Declined,
}

impl State {
    /// The state's name as RFC 2131 figure 5 spells it ("INIT-REBOOT", "REBOOTING", ...), and
    /// "EXPIRED", "RELEASED", "FAILED", "DECLINED" for this implementation's terminal states.
    pub fn name(self) -> &'static str {
        match self {
            State::Init => "INIT",
            State::Selecting => "SELECTING",
            State::Requesting => "REQUESTING",
            State::Bound => "BOUND",
            State::Renewing => "RENEWING",
            State::Rebinding => "REBINDING",
            State::InitReboot => "INIT-REBOOT",
            State::Rebooting => "REBOOTING",
            State::Expired => "EXPIRED",
            State::Released => "RELEASED",
            State::Failed => "FAILED",
            State::Declined => "DECLINED",
        }
    }
}

/// A UDP datagram to send from client port 68 to server port 67.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Source address: 0.0.0.0 before a lease is configured (and for DHCPDECLINE), the leased
    /// address (ciaddr) in RENEWING, REBINDING and for DHCPRELEASE.
    pub src: Ipv4Addr,
    /// Destination: 255.255.255.255 (DHCPDISCOVER, SELECTING, INIT-REBOOT and REBINDING
    /// DHCPREQUEST, DHCPDECLINE), or the server identifier (RENEWING DHCPREQUEST, DHCPRELEASE).
    pub dst: Ipv4Addr,
    /// The DHCP message (UDP payload).
    pub payload: Vec<u8>,
    /// Its option 53 (RFC 2132 §9.6): DHCPDISCOVER, DHCPREQUEST, DHCPDECLINE or DHCPRELEASE, so
    /// that a driver can count, pace and name what it sends without parsing `payload`.
    pub message_type: MessageType,
    /// Which transmission of this message it is within its state: 1 for the first, 2 for the
    /// first retransmission, and so on; 1 for DHCPDECLINE and DHCPRELEASE, sent once. A driver
    /// may send a first transmission differently from its retransmissions (the daemon sends a
    /// first DHCPDISCOVER or DHCPREQUEST as an Ethernet unicast to a known server and every
    /// retransmission as a broadcast: docs/design.md, *Ethernet unicast to a known server*).
    pub attempt: u32,
}

/// A reply [`Client::handle`] accepted: what a driver records about it (history, metrics), so
/// that it never parses the payload itself. The state change it caused is seen in
/// [`Client::state`], its lease in [`Client::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Option 53 (RFC 2132 §9.6): DHCPOFFER (in SELECTING), DHCPACK or DHCPNAK.
    pub message_type: MessageType,
    /// yiaddr (RFC 2131 §2): the address offered or granted; 0.0.0.0 in a DHCPNAK.
    pub yiaddr: Ipv4Addr,
    /// Option 54, the server identifier (RFC 2132 §9.7); None only for a DHCPNAK without it,
    /// which is accepted leniently (an OFFER or ACK without it is not a usable lease).
    pub server_id: Option<Ipv4Addr>,
}

/// Something the driver must act on, from [`Client::poll_event`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// DHCPACK in REQUESTING or REBOOTING: configure this lease. Also after a lost lease was
    /// re-acquired in [`Client::keep_trying`] mode: the address may differ from the old one.
    Bound(Lease),
    /// DHCPACK in RENEWING/REBINDING: the lease (same address) with new times.
    Renewed(Lease),
    /// DHCPNAK in RENEWING/REBINDING: stop using the address now (RFC 2131 §4.4.5). The client is
    /// back in INIT and will DISCOVER again if polled. (A DHCPNAK in REQUESTING or REBOOTING, when
    /// no lease is held, gives no event: the acquisition just starts over.)
    Nak,
    /// The lease expired in REBINDING: stop using the address. State EXPIRED, or INIT (acquiring
    /// again) in [`Client::keep_trying`] mode.
    Expired,
    /// No lease within [`ClientConfig::timeout`]. State FAILED. Never after a first lease in
    /// [`Client::keep_trying`] mode.
    Timeout,
}

/// Why [`Client::handle`] dropped a received payload (for logs; dropping is always safe).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Ignored {
    /// Not a DHCP message.
    #[error("malformed: {0}")]
    Malformed(ParseError),
    /// op is not 2 (BOOTREPLY): another client's request.
    #[error("not a BOOTREPLY (op {0})")]
    NotReply(u8),
    /// xid is not our current transaction's.
    #[error("xid {got:#010x} is not ours ({expected:#010x})")]
    WrongXid {
        /// Ours.
        expected: u32,
        /// The message's.
        got: u32,
    },
    /// The echoed option 61 is another client's (another ipvlan slave's).
    #[error("client identifier is another client's")]
    WrongClientId,
    /// chaddr is not ours.
    #[error("chaddr is not ours")]
    WrongChaddr,
    /// No valid option 53.
    #[error("no DHCP message type")]
    NoMessageType,
    /// A message type we do not expect in this state (e.g. a late duplicate OFFER when BOUND).
    #[error("unexpected {message_type:?} in state {state:?}")]
    Unexpected {
        /// Our state.
        state: State,
        /// The message's option 53.
        message_type: MessageType,
    },
    /// DHCPACK/DHCPNAK from a server other than the one we are talking to.
    #[error("from server {got:?}, expected {expected}")]
    WrongServer {
        /// The server we requested from.
        expected: Ipv4Addr,
        /// The message's option 54.
        got: Option<Ipv4Addr>,
    },
    /// An OFFER/ACK that does not describe a usable lease.
    #[error("unusable lease: {0}")]
    BadLease(ParseError),
    /// A RENEWING/REBINDING DHCPACK for another address than the one held.
    #[error("ACK for {got}, we hold {held}")]
    AddressChanged {
        /// The address we hold.
        held: Ipv4Addr,
        /// The ACK's yiaddr.
        got: Ipv4Addr,
    },
}

/// One DHCP client for one interface. See the module documentation.
#[derive(Debug)]
pub struct Client {
    /// What to send and how long to try; fixed for the client's life.
    config: ClientConfig,
    /// Seeded source for xids and timer fuzz, so tests are deterministic.
    rng: SmallRng,
    /// The RFC 2131 state with the data only that state uses; [`Client::state`] names it.
    state: ClientState,
    /// Current transaction id: new for each acquisition attempt, each renewal and the
    /// DHCPRELEASE. Outside the states because [`Client::xid`] still answers in the terminal ones.
    xid: u32,
    /// [`Client::keep_trying`] was switched on: the driver's choice, whatever the state.
    keep_trying: bool,
    /// A lease was held at some point (bound, resumed or rebooted from a persisted one): what
    /// makes `keep_trying` apply. Never cleared, so it outlives every state.
    ever_bound: bool,
    /// Events not yet taken by [`Client::poll_event`].
    events: VecDeque<Event>,
}

/// The client's state and what only it needs to know, as smoltcp's `dhcpv4` socket keeps its
/// `ClientState`: an offer exists only while REQUESTING, the remembered address only while
/// rebooting, lease timers only while a lease is held, so none of them can be stale or missing.
/// [`State`] is its public name ([`ClientState::state`]).
#[derive(Debug)]
enum ClientState {
    /// INIT: a DHCPDISCOVER is due at the data's [`Retransmit::at`] (at once, or
    /// [`DECLINE_WAIT`] after a decline); the next [`Client::poll_transmit`] sends it.
    Init(DiscoverState),
    /// SELECTING: DHCPDISCOVER sent, waiting for a DHCPOFFER, retransmitting with backoff.
    Selecting(DiscoverState),
    /// REQUESTING: an offer was accepted; its SELECTING DHCPREQUEST is due or sent.
    Requesting(RequestState),
    /// INIT-REBOOT: a DHCPREQUEST for a remembered address is due ([`Client::reboot`]).
    InitReboot(RebootState),
    /// REBOOTING: that DHCPREQUEST was sent; any server may answer.
    Rebooting(RebootState),
    /// BOUND: holding a lease, waiting for T1.
    Bound(Held),
    /// RENEWING: past T1, unicasting DHCPREQUEST to the lease's server.
    Renewing(RenewState),
    /// REBINDING: past T2, broadcasting DHCPREQUEST to any server.
    Rebinding(RenewState),
    /// EXPIRED: the lease ran out unrenewed. Still held here so [`Client::lease`] tells the
    /// driver which address to remove; nothing more is sent.
    Expired(Held),
    /// RELEASED: DHCPRELEASE sent (or nothing to release); nothing more is sent.
    Released,
    /// FAILED: the acquisition budget ran out, or an offer or lease was abandoned.
    Failed,
    /// DECLINED: DHCPDECLINE sent; the address is forgotten.
    Declined,
}

/// Retransmission bookkeeping of a state that sends (all but BOUND and the terminal ones).
#[derive(Debug, Clone, Copy)]
struct Retransmit {
    /// When the next (re)transmission is due; None when that is beyond `Instant`'s range.
    at: Option<Instant>,
    /// Transmissions so far in this state: the exponent of the RFC 2131 §4.1 backoff, and what
    /// REQUESTING ([`MAX_REQUESTS`]) and REBOOTING ([`MAX_REBOOT_REQUESTS`]) count to give up.
    attempts: u32,
}

impl Retransmit {
    /// Nothing sent yet in this state; the first transmission is due `at`.
    fn first(at: Option<Instant>) -> Retransmit {
        Retransmit { at, attempts: 0 }
    }
}

/// What INIT and SELECTING need: the DHCPDISCOVERs of an acquisition.
#[derive(Debug, Clone, Copy)]
struct DiscoverState {
    /// The acquisition's budget.
    budget: Budget,
    /// An address to suggest in DHCPDISCOVER (option 50, RFC 2131 §4.4.1): the lost lease's,
    /// after a silent REBOOTING or an expiry; None after a DHCPNAK (the server said no).
    prefer: Option<Ipv4Addr>,
    /// The DHCPDISCOVER schedule.
    tx: Retransmit,
}

/// What REQUESTING needs: the accepted offer.
#[derive(Debug, Clone, Copy)]
struct RequestState {
    /// The acquisition's budget.
    budget: Budget,
    /// SELECTING's suggestion, kept so that an unanswered REQUESTING goes back to INIT still
    /// suggesting it.
    prefer: Option<Ipv4Addr>,
    /// The offer's yiaddr: option 50 of the DHCPREQUEST, and what [`Client::offered`] and
    /// [`Client::decline`] name.
    address: Ipv4Addr,
    /// The offering server (option 54): the DHCPREQUEST names it and only its DHCPACK or
    /// DHCPNAK is accepted.
    server_id: Ipv4Addr,
    /// The DHCPREQUEST schedule.
    tx: Retransmit,
    /// When the latest DHCPREQUEST went out: the lease's times count from it (RFC 2131 §4.4.1).
    /// None before the first (an ACK that beats it counts from its own arrival).
    requested_at: Option<Instant>,
}

/// What INIT-REBOOT and REBOOTING need: the remembered address.
#[derive(Debug, Clone, Copy)]
struct RebootState {
    /// The acquisition's budget (it covers the fallback DISCOVER too).
    budget: Budget,
    /// The remembered lease's address: option 50 of the DHCPREQUEST, and what the DISCOVERs
    /// suggest if nobody answers.
    address: Ipv4Addr,
    /// The DHCPREQUEST schedule.
    tx: Retransmit,
    /// When the latest DHCPREQUEST went out (the lease's times count from it); None in
    /// INIT-REBOOT, before the first.
    requested_at: Option<Instant>,
}

/// A lease held (BOUND, RENEWING, REBINDING) or that expired (EXPIRED), with its timers.
#[derive(Debug, Clone)]
struct Held {
    /// The lease, with [`ClientConfig::min_lease`] applied.
    lease: Lease,
    /// The instant its times count from (the DHCPREQUEST that got the ACK, RFC 2131 §4.4.1):
    /// what the driver persists to [`Client::resume`] later.
    granted_at: Instant,
    /// T1 (fuzzed); None = never (infinite lease, or beyond `Instant`'s range).
    t1: Option<Instant>,
    /// T2 (fuzzed); None = never.
    t2: Option<Instant>,
    /// Expiry; None = never.
    expires: Option<Instant>,
}

/// What RENEWING and REBINDING need: the lease being extended and the renewal's requests.
#[derive(Debug, Clone)]
struct RenewState {
    /// The lease, still in use until a DHCPNAK or expiry.
    held: Held,
    /// When the renewal began (T1): `secs` counts from it (RFC 2131 §2).
    started: Instant,
    /// The DHCPREQUEST schedule (restarted at T2).
    tx: Retransmit,
    /// When the latest DHCPREQUEST went out: the renewed lease's times count from it. Before
    /// the first, the held lease's `granted_at`. Kept across T2, since a DHCPACK to a RENEWING
    /// request may arrive in REBINDING.
    requested_at: Instant,
}

impl ClientState {
    /// The RFC 2131 name of this state.
    fn state(&self) -> State {
        match self {
            ClientState::Init(_) => State::Init,
            ClientState::Selecting(_) => State::Selecting,
            ClientState::Requesting(_) => State::Requesting,
            ClientState::InitReboot(_) => State::InitReboot,
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
            ClientState::Init(d) | ClientState::Selecting(d) => Some(d.budget),
            ClientState::Requesting(r) => Some(r.budget),
            ClientState::InitReboot(r) | ClientState::Rebooting(r) => Some(r.budget),
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
            ClientState::Init(d) | ClientState::Selecting(d) => Some(d.tx),
            ClientState::Requesting(r) => Some(r.tx),
            ClientState::InitReboot(r) | ClientState::Rebooting(r) => Some(r.tx),
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
            | ClientState::Selecting(_)
            | ClientState::Requesting(_)
            | ClientState::InitReboot(_)
            | ClientState::Rebooting(_)
            | ClientState::Released
            | ClientState::Failed
            | ClientState::Declined => None,
        }
    }
}

/// T1, T2 and the lease time of `lease` in milliseconds, clamped so that T1 <= T2 <= lease (a
/// [`Lease`] may come from a persisted file rather than [`Reply::to_lease`](super::Reply::to_lease)).
/// When T1 and T2 are the whole-second defaults of RFC 2131 §4.4.5 (no option 58/59, or options
/// equal to them), they are taken at millisecond precision, lease × 1/2 and × 7/8: a 4 s lease
/// rebinds at 3.5 s, not 3 s. Differences are under a second, so this matters for short leases only.
fn timer_millis(lease: &Lease) -> (u64, u64, u64) {
    let lease_ms = u64::from(lease.lease_time) * 1000;
    let defaults = lease_times(lease.lease_time, None, None);
    let (t1, t2) = if (lease.renewal_time, lease.rebinding_time) == defaults {
        (lease_ms / 2, lease_ms * 7 / 8)
    } else {
        (
            u64::from(lease.renewal_time) * 1000,
            u64::from(lease.rebinding_time) * 1000,
        )
    };
    let t2 = t2.min(lease_ms);
    (t1.min(t2), t2, lease_ms)
}

/// The RENEWING/REBINDING retransmission floor for `lease`: RFC 2131 §4.4.5's 60 s, scaled down
/// to lease / 8 for leases under 8 minutes, but never under 500 ms.
fn renew_retransmit_floor(lease: &Lease) -> Duration {
    let lease_ms = u64::from(lease.lease_time) * 1000;
    Duration::from_millis(lease_ms / 8).clamp(MIN_RENEW_RETRANSMIT_SHORT, MIN_RENEW_RETRANSMIT)
}

/// When to retransmit a RENEWING or REBINDING DHCPREQUEST sent at `now` (RFC 2131 §4.4.5): half
/// the time left `until` T2 (RENEWING) or expiry (REBINDING), at least the floor for `lease`,
/// never past `until` (which then changes the state anyway); None beyond `Instant`'s range.
fn renew_retransmit_at(now: Instant, until: Option<Instant>, lease: &Lease) -> Option<Instant> {
    let floor = renew_retransmit_floor(lease);
    let wait = until.map_or(floor, |t| (t.saturating_duration_since(now) / 2).max(floor));
    min_opt(now.checked_add(wait), until)
}

impl Client {
    /// A client in INIT whose first DHCPDISCOVER goes out on the first
    /// [`poll_transmit`](Client::poll_transmit) at or after `now`; the acquisition budget starts
    /// at `now`. `seed` seeds the xid and fuzz generator (use a random one outside tests).
    pub fn new(config: ClientConfig, now: Instant, seed: u64) -> Client {
        let mut rng = SmallRng::seed_from_u64(seed);
        let xid = rng.random();
        Client {
            state: ClientState::Init(DiscoverState {
                budget: Budget::new(now, config.timeout),
                prefer: None,
                tx: Retransmit::first(Some(now)),
            }),
            config,
            rng,
            xid,
            keep_trying: false,
            ever_bound: false,
            events: VecDeque::new(),
        }
    }

    /// A client already BOUND to `lease`, whose times count from `granted_at` (which may be long
    /// past): for a daemon that persisted its leases and restarts. No event is queued: the driver
    /// already knows the lease. What the first [`poll_transmit`](Client::poll_transmit) at `now`
    /// does depends on how far `granted_at` is in the past (timers with fuzz, RFC 2131 §4.4.5):
    /// - before T1: nothing; [`poll_at`](Client::poll_at) is T1;
    /// - past T1: RENEWING, and it returns the unicast DHCPREQUEST;
    /// - past T2: REBINDING, and it returns the broadcast DHCPREQUEST;
    /// - past expiry: nothing is sent and [`Event::Expired`] is queued (state EXPIRED, or INIT in
    ///   [`keep_trying`](Client::keep_trying) mode). A driver that knows the lease has expired
    ///   should use [`reboot`](Client::reboot) instead; so should one that cannot express
    ///   `granted_at` as an `Instant` (the monotonic clock restarts with the host).
    pub fn resume(config: ClientConfig, lease: Lease, granted_at: Instant, seed: u64) -> Client {
        let mut c = Client::new(config, granted_at, seed);
        c.bind(granted_at, lease, Event::Bound);
        c.events.clear();
        c
    }

    /// A client in INIT-REBOOT for a remembered `lease` that has expired or whose state is
    /// unknown (RFC 2131 §3.2, §4.4.2): for a daemon restarting with a persisted lease. The first
    /// [`poll_transmit`](Client::poll_transmit) at or after `now` broadcasts a DHCPREQUEST from
    /// 0.0.0.0 with option 50 = `lease.address`, no option 54, ciaddr 0 and the broadcast flag per
    /// config (state REBOOTING). Then:
    /// - DHCPACK from any server: [`Event::Bound`] with the granted lease (usually the same
    ///   address, but check), state BOUND;
    /// - DHCPNAK: back to INIT and a DHCPDISCOVER at once, with no event: from there it is an
    ///   ordinary acquisition ([`Event::Bound`] or [`Event::Timeout`]);
    /// - silence: the DHCPREQUEST is retransmitted per RFC 2131 §4.1 up to 3 times in all, and
    ///   the phase never lasts longer than half of [`ClientConfig::timeout`]; then INIT as above,
    ///   but the DHCPDISCOVERs suggest the old address (option 50, §4.4.1) until a DHCPNAK.
    ///
    /// The acquisition budget ([`ClientConfig::timeout`]) starts at `now` and covers the fallback
    /// DISCOVER too. The remembered lease counts as held once, so [`keep_trying`](Client::keep_trying)
    /// applies to this acquisition: in that mode it never times out. [`lease`](Client::lease) is
    /// None until the DHCPACK.
    pub fn reboot(config: ClientConfig, lease: Lease, now: Instant, seed: u64) -> Client {
        let mut c = Client::new(config, now, seed);
        c.state = ClientState::InitReboot(RebootState {
            budget: Budget::new(now, c.config.timeout),
            address: lease.address,
            tx: Retransmit::first(Some(now)),
            requested_at: None,
        });
        c.ever_bound = true;
        c
    }

    /// Switch keep-trying (background) mode on or off; off by default. When on and a lease has
    /// been held at least once (bound, [`resume`](Client::resume)d or
    /// [`reboot`](Client::reboot)ed), acquisitions never give up: no [`Event::Timeout`], no
    /// FAILED; DHCPDISCOVER is retransmitted forever with the RFC 2131 §4.1 backoff capped at
    /// [`ClientConfig::resend_max`], and an unanswered REQUESTING goes back to DISCOVER as usual.
    /// At expiry the client queues [`Event::Expired`], forgets the lease and goes to INIT (a
    /// DHCPDISCOVER at once, with option 50 = the expired address, so a server that still has
    /// it free gives it back) instead of stopping in EXPIRED; a DHCPNAK while RENEWING/REBINDING
    /// gives [`Event::Nak`] and the same. A later DHCPACK is [`Event::Bound`] again: compare its
    /// address with the old one. The first acquisition of [`new`](Client::new) keeps its budget,
    /// so an ADD still fails in time. Takes effect at the next poll, also for an acquisition in
    /// progress; switching it off there restores that acquisition's budget (which may be spent).
    /// Switching it on in EXPIRED (terminal) does nothing.
    pub fn keep_trying(&mut self, yes: bool) {
        self.keep_trying = yes;
    }

    /// Whether [`keep_trying`](Client::keep_trying) mode is on.
    pub fn keeps_trying(&self) -> bool {
        self.keep_trying
    }

    /// When the held lease's times count from (RFC 2131 §4.4.1: the DHCPREQUEST that got the
    /// ACK); persist it with the lease to [`resume`](Client::resume) later.
    pub fn granted_at(&self) -> Option<Instant> {
        self.state.held().map(|h| h.granted_at)
    }

    /// T1 of the held lease (with fuzz); None when there is none or it is infinite.
    pub fn renew_at(&self) -> Option<Instant> {
        self.state.held().and_then(|h| h.t1)
    }

    /// T2 of the held lease (with fuzz); None when there is none or it is infinite.
    pub fn rebind_at(&self) -> Option<Instant> {
        self.state.held().and_then(|h| h.t2)
    }

    /// Expiry of the held lease; None when there is none or it is infinite.
    pub fn expires_at(&self) -> Option<Instant> {
        self.state.held().and_then(|h| h.expires)
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state.state()
    }

    /// The lease held in BOUND, RENEWING, REBINDING, or the one that expired in EXPIRED (so the
    /// driver can remove it); None otherwise (also in INIT-REBOOT and REBOOTING, where the
    /// remembered lease is not held, and in INIT after an expiry in
    /// [`keep_trying`](Client::keep_trying) mode).
    pub fn lease(&self) -> Option<&Lease> {
        self.state.held().map(|h| &h.lease)
    }

    /// The DHCPOFFER being requested while REQUESTING, as (yiaddr, server identifier), so the
    /// driver can check the address for conflicts before the DHCPACK and
    /// [`decline`](Client::decline) it; None in any other state.
    pub fn offered(&self) -> Option<(Ipv4Addr, Ipv4Addr)> {
        match &self.state {
            ClientState::Requesting(r) => Some((r.address, r.server_id)),
            _ => None,
        }
    }

    /// The current transaction id (the xid replies must carry).
    pub fn xid(&self) -> u32 {
        self.xid
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Next pending event, oldest first. Drain after every `poll_transmit` and `handle`.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`poll_transmit`](Client::poll_transmit) next has something to do (a transmission, a
    /// T1/T2/expiry timer, the acquisition timeout); None when only a received message can change
    /// anything (BOUND with an infinite lease) or the state is terminal. May be in the past, but
    /// once `poll_transmit(now)` has returned None it is None or later than `now`: a driver that
    /// sleeps until it cannot spin.
    pub fn poll_at(&self) -> Option<Instant> {
        match &self.state {
            ClientState::Init(d) | ClientState::Selecting(d) => {
                min_opt(d.tx.at, self.budget_end(d.budget))
            }
            ClientState::Requesting(r) => min_opt(r.tx.at, self.budget_end(r.budget)),
            ClientState::InitReboot(r) | ClientState::Rebooting(r) => {
                min_opt(r.tx.at, self.budget_end(r.budget))
            }
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

    /// When REBOOTING gives up and falls back to INIT: half the budget after the reboot began.
    fn reboot_phase_end(&self, budget: Budget) -> Option<Instant> {
        budget.started.checked_add(self.config.timeout / 2)
    }

    /// Run the timers up to `now`, then return the message due now, if any. Call it again until
    /// it returns None: each call returns at most one message.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.advance(now);
        let tx = self.state.retransmit()?;
        if tx.at.is_none_or(|t| now < t) {
            return None;
        }
        // The server went quiet after offering: look for another (same budget, same
        // suggestion). Nobody answers for the old address: DISCOVER (RFC 2131 §4.4.2), same
        // budget, suggesting the old address.
        let given_up = match &self.state {
            ClientState::Requesting(r) => {
                (r.tx.attempts >= MAX_REQUESTS).then_some((r.budget, r.prefer))
            }
            ClientState::Rebooting(r) => (r.tx.attempts >= MAX_REBOOT_REQUESTS
                || self.reboot_phase_end(r.budget).is_none_or(|end| now >= end))
            .then_some((r.budget, Some(r.address))),
            ClientState::Init(_)
            | ClientState::Selecting(_)
            | ClientState::InitReboot(_)
            | ClientState::Bound(_)
            | ClientState::Renewing(_)
            | ClientState::Rebinding(_)
            | ClientState::Expired(_)
            | ClientState::Released
            | ClientState::Failed
            | ClientState::Declined => None,
        };
        if let Some((budget, prefer)) = given_up {
            self.state = self.restarted(budget, prefer, Some(now));
        }
        let broadcast = Ipv4Addr::BROADCAST;
        let unspecified = Ipv4Addr::UNSPECIFIED;
        let (state, kind, src, dst, started) = match self.take_state() {
            ClientState::Init(d) | ClientState::Selecting(d) => {
                let tx = self.backoff(now, d.tx);
                let kind = Kind::Discover {
                    requested: d.prefer,
                };
                let started = d.budget.started;
                let state = ClientState::Selecting(DiscoverState { tx, ..d });
                (state, kind, unspecified, broadcast, started)
            }
            ClientState::Requesting(r) => {
                let tx = self.backoff(now, r.tx);
                let kind = Kind::Select {
                    requested: r.address,
                    server_id: r.server_id,
                };
                let started = r.budget.started;
                let state = ClientState::Requesting(RequestState {
                    tx,
                    requested_at: Some(now),
                    ..r
                });
                (state, kind, unspecified, broadcast, started)
            }
            ClientState::InitReboot(r) | ClientState::Rebooting(r) => {
                let mut tx = self.backoff(now, r.tx);
                tx.at = min_opt(tx.at, self.reboot_phase_end(r.budget));
                let kind = Kind::Reboot {
                    requested: r.address,
                };
                let started = r.budget.started;
                let state = ClientState::Rebooting(RebootState {
                    tx,
                    requested_at: Some(now),
                    ..r
                });
                (state, kind, unspecified, broadcast, started)
            }
            ClientState::Renewing(r) => {
                let (address, server_id) = (r.held.lease.address, r.held.lease.server_id);
                let tx = Retransmit {
                    at: renew_retransmit_at(now, r.held.t2, &r.held.lease),
                    attempts: r.tx.attempts.saturating_add(1),
                };
                let kind = Kind::Renew { ciaddr: address };
                let started = r.started;
                let state = ClientState::Renewing(RenewState {
                    tx,
                    requested_at: now,
                    ..r
                });
                (state, kind, address, server_id, started)
            }
            ClientState::Rebinding(r) => {
                let address = r.held.lease.address;
                let tx = Retransmit {
                    at: renew_retransmit_at(now, r.held.expires, &r.held.lease),
                    attempts: r.tx.attempts.saturating_add(1),
                };
                let kind = Kind::Renew { ciaddr: address };
                let started = r.started;
                let state = ClientState::Rebinding(RenewState {
                    tx,
                    requested_at: now,
                    ..r
                });
                (state, kind, address, broadcast, started)
            }
            // Nothing is ever due in these (no retransmission schedule: returned above).
            state @ (ClientState::Bound(_)
            | ClientState::Expired(_)
            | ClientState::Released
            | ClientState::Failed
            | ClientState::Declined) => {
                self.state = state;
                return None;
            }
        };
        self.state = state;
        let secs =
            u16::try_from(now.saturating_duration_since(started).as_secs()).unwrap_or(u16::MAX);
        let attempt = self.state.retransmit().map_or(1, |r| r.attempts.max(1));
        Some(self.transmit(kind, src, dst, secs, attempt))
    }

    /// The datagram of a `kind` message from `src` to `dst`, with the current xid and `secs`,
    /// transmission number `attempt` of its state.
    fn transmit(
        &self,
        kind: Kind,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        secs: u16,
        attempt: u32,
    ) -> Transmit {
        Transmit {
            src,
            dst,
            payload: message::build(&self.config, kind, self.xid, secs),
            message_type: kind.message_type(),
            attempt,
        }
    }

    /// `tx` after one more SELECTING, REQUESTING or REBOOTING transmission at `now`: the next
    /// one per RFC 2131 §4.1, 4 s, 8 s, 16 s... ±1 s, capped at [`ClientConfig::resend_max`].
    fn backoff(&mut self, now: Instant, tx: Retransmit) -> Retransmit {
        let attempts = tx.attempts.saturating_add(1);
        let exp = attempts.saturating_sub(1).min(16);
        let base = INITIAL_RETRANSMIT
            .saturating_mul(1 << exp)
            .min(self.config.resend_max);
        let fuzz = self
            .rng
            .random_range(-RETRANSMIT_FUZZ_MS..=RETRANSMIT_FUZZ_MS);
        let fuzz_abs = Duration::from_millis(fuzz.unsigned_abs());
        let wait = if fuzz < 0 {
            base.saturating_sub(fuzz_abs)
        } else {
            base.saturating_add(fuzz_abs)
        };
        Retransmit {
            at: now.checked_add(wait.min(self.config.resend_max).max(MIN_RETRANSMIT)),
            attempts,
        }
    }

    /// The state, leaving a placeholder for the caller to replace at once.
    fn take_state(&mut self) -> ClientState {
        std::mem::replace(&mut self.state, ClientState::Failed)
    }

    /// INIT again, with a new xid: within `budget` (the current acquisition's, or a fresh one
    /// after a lease was lost), suggesting `prefer`, the DHCPDISCOVER due `discover_at`.
    fn restarted(
        &mut self,
        budget: Budget,
        prefer: Option<Ipv4Addr>,
        discover_at: Option<Instant>,
    ) -> ClientState {
        self.xid = self.rng.random();
        ClientState::Init(DiscoverState {
            budget,
            prefer,
            tx: Retransmit::first(discover_at),
        })
    }

    /// Fire the timers that are due at `now`: acquisition timeout, T1, T2, expiry (in order, so a
    /// driver that wakes late still passes through every state).
    fn advance(&mut self, now: Instant) {
        let due = |t: Option<Instant>| t.is_some_and(|t| now >= t);
        if self
            .state
            .budget()
            .is_some_and(|budget| due(self.budget_end(budget)))
        {
            self.state = ClientState::Failed;
            self.events.push_back(Event::Timeout);
        }
        self.state = match self.take_state() {
            ClientState::Bound(held) if due(held.t1) => {
                self.xid = self.rng.random();
                ClientState::Renewing(RenewState {
                    requested_at: held.granted_at,
                    held,
                    started: now,
                    tx: Retransmit::first(Some(now)),
                })
            }
            state => state,
        };
        self.state = match self.take_state() {
            ClientState::Renewing(r) if due(r.held.t2) => ClientState::Rebinding(RenewState {
                tx: Retransmit::first(Some(now)),
                ..r
            }),
            state => state,
        };
        self.state = match self.take_state() {
            ClientState::Rebinding(r) if due(r.held.expires) => {
                self.events.push_back(Event::Expired);
                if self.keep_trying {
                    // Background mode: acquire again, from now, with no budget, asking for the
                    // same address.
                    let budget = Budget::new(now, self.config.timeout);
                    self.restarted(budget, Some(r.held.lease.address), Some(now))
                } else {
                    ClientState::Expired(r.held)
                }
            }
            state => state,
        };
    }

    /// Feed one UDP payload received on port 68 at `now`, parsed once here. `Ok` says what was
    /// accepted (and acted on); `Err` says why it was dropped, the state then unchanged (except
    /// for timers due at `now`, which fire first).
    pub fn handle(&mut self, now: Instant, payload: &[u8]) -> Result<Accepted, Ignored> {
        self.advance(now);
        let reply = parse_reply(payload).map_err(Ignored::Malformed)?;
        if reply.op != 2 {
            return Err(Ignored::NotReply(reply.op));
        }
        if reply.xid != self.xid {
            return Err(Ignored::WrongXid {
                expected: self.xid,
                got: reply.xid,
            });
        }
        if reply
            .client_id
            .as_ref()
            .is_some_and(|id| *id != self.config.client_id)
        {
            return Err(Ignored::WrongClientId);
        }
        if reply.chaddr[..6] != self.config.chaddr {
            return Err(Ignored::WrongChaddr);
        }
        let message_type = reply.message_type.ok_or(Ignored::NoMessageType)?;
        let nak = message_type == MessageType::Nak;
        let accepted = Accepted {
            message_type,
            yiaddr: reply.yiaddr,
            server_id: reply.server_id,
        };
        match (&self.state, message_type) {
            (ClientState::Selecting(d), MessageType::Offer) => {
                let d = *d;
                let lease = reply.to_lease().map_err(Ignored::BadLease)?;
                self.state = ClientState::Requesting(RequestState {
                    budget: d.budget,
                    prefer: d.prefer,
                    address: lease.address,
                    server_id: lease.server_id,
                    tx: Retransmit::first(Some(now)),
                    requested_at: None,
                });
                Ok(accepted)
            }
            (ClientState::Requesting(r), MessageType::Ack | MessageType::Nak) => {
                let r = *r;
                // A NAK MUST carry option 54 (RFC 2131 table 3) but be lenient if it does not.
                if reply.server_id != Some(r.server_id) && !(nak && reply.server_id.is_none()) {
                    return Err(Ignored::WrongServer {
                        expected: r.server_id,
                        got: reply.server_id,
                    });
                }
                if nak {
                    self.state = self.restarted(r.budget, None, Some(now));
                    return Ok(accepted);
                }
                let lease = reply.to_lease().map_err(Ignored::BadLease)?;
                self.bind(r.requested_at.unwrap_or(now), lease, Event::Bound);
                Ok(accepted)
            }
            (ClientState::Rebooting(r), MessageType::Ack | MessageType::Nak) => {
                let r = *r;
                // The request named no server (RFC 2131 §4.3.2): any server may answer. A NAK
                // says the old address is wrong for this link: DISCOVER, same budget, no event.
                if nak {
                    self.state = self.restarted(r.budget, None, Some(now));
                    return Ok(accepted);
                }
                let lease = reply.to_lease().map_err(Ignored::BadLease)?;
                self.bind(r.requested_at.unwrap_or(now), lease, Event::Bound);
                Ok(accepted)
            }
            (
                ClientState::Renewing(r) | ClientState::Rebinding(r),
                MessageType::Ack | MessageType::Nak,
            ) => {
                let renewing = matches!(self.state, ClientState::Renewing(_));
                let (held, server_id) = (r.held.lease.address, r.held.lease.server_id);
                let requested_at = r.requested_at;
                // In RENEWING we talk to the lease's server only; in REBINDING any server may
                // answer (RFC 2131 §4.4.5).
                if renewing
                    && reply.server_id != Some(server_id)
                    && !(nak && reply.server_id.is_none())
                {
                    return Err(Ignored::WrongServer {
                        expected: server_id,
                        got: reply.server_id,
                    });
                }
                if nak {
                    self.events.push_back(Event::Nak);
                    let budget = Budget::new(now, self.config.timeout);
                    self.state = self.restarted(budget, None, Some(now));
                    return Ok(accepted);
                }
                let lease = reply.to_lease().map_err(Ignored::BadLease)?;
                if lease.address != held {
                    return Err(Ignored::AddressChanged {
                        held,
                        got: lease.address,
                    });
                }
                self.bind(requested_at, lease, Event::Renewed);
                Ok(accepted)
            }
            // Any other message type in these states, and anything at all in the others (INIT,
            // INIT-REBOOT, BOUND, the terminal states), where nothing was asked.
            _ => Err(Ignored::Unexpected {
                state: self.state(),
                message_type,
            }),
        }
    }

    /// Enter BOUND with `lease`, timers counted from `base` (the latest DHCPREQUEST, RFC 2131
    /// §4.4.1), T1 and T2 moved earlier by up to 1/20 of their value (fuzz), always T1 <= T2 <=
    /// expiry.
    fn bind(&mut self, base: Instant, lease: Lease, event: fn(Lease) -> Event) {
        let lease = floored(lease, self.config.min_lease);
        let (t1, t2, expires) = if lease.lease_time == u32::MAX {
            // Infinite lease (RFC 2131 §3.3): never renew, never expire.
            (None, None, None)
        } else {
            let (t1_ms, t2_ms, lease_ms) = timer_millis(&lease);
            let fuzzed = |rng: &mut SmallRng, ms: u64| {
                let fuzz = rng.random_range(0..=ms / TIMER_FUZZ_DIVISOR);
                base.checked_add(Duration::from_millis(ms - fuzz))
            };
            let expires = base.checked_add(Duration::from_millis(lease_ms));
            let t2 = min_opt(fuzzed(&mut self.rng, t2_ms), expires);
            let t1 = min_opt(fuzzed(&mut self.rng, t1_ms), t2);
            (t1, t2, expires)
        };
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

    /// Refuse the address (RFC 2131 §4.4.1, §3.1 step 5): the driver found it in use (e.g. by
    /// ARP, or another ipvlan slave holds it) after the DHCPACK (BOUND) or, with
    /// [`offered`](Client::offered), while REQUESTING. Returns the DHCPDECLINE to broadcast from
    /// 0.0.0.0 to 255.255.255.255: ciaddr 0, option 50 = the address, option 54 = its server,
    /// option 61, the current xid. The lease or offer is forgotten and the state becomes DECLINED
    /// (terminal: the driver fails the acquisition), or, in [`keep_trying`](Client::keep_trying)
    /// mode once a lease was held, INIT with the next DHCPDISCOVER [`DECLINE_WAIT`] later (RFC
    /// 2131 §3.1 step 5).
    /// In any other state (timers due at `now` fire first) it returns None and changes nothing.
    pub fn decline(&mut self, now: Instant) -> Option<Transmit> {
        self.advance(now);
        let (requested, server_id) = match &self.state {
            ClientState::Requesting(r) => (r.address, r.server_id),
            ClientState::Bound(h) => (h.lease.address, h.lease.server_id),
            ClientState::Init(_)
            | ClientState::Selecting(_)
            | ClientState::InitReboot(_)
            | ClientState::Rebooting(_)
            | ClientState::Renewing(_)
            | ClientState::Rebinding(_)
            | ClientState::Expired(_)
            | ClientState::Released
            | ClientState::Failed
            | ClientState::Declined => return None,
        };
        let kind = Kind::Decline {
            requested,
            server_id,
        };
        let transmit = self.transmit(kind, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 0, 1);
        self.give_up_offer(now, ClientState::Declined);
        Some(transmit)
    }

    /// Drop the offer being requested (REQUESTING) or the lease just granted (BOUND) without a
    /// word to the server: for an address that is a sibling's valid binding at a server keying
    /// by MAC, where a DHCPDECLINE would make the server take it from the sibling. Timers due
    /// at `now` fire first. Returns whether there was something to drop; in any other state it
    /// changes nothing.
    ///
    /// Afterwards, as after [`decline`](Client::decline): in [`keep_trying`](Client::keep_trying)
    /// mode once a lease was held, INIT with a DHCPDISCOVER [`DECLINE_WAIT`] later; otherwise
    /// FAILED (terminal, no [`Event::Timeout`]: the driver reports why).
    pub fn abandon(&mut self, now: Instant) -> bool {
        self.advance(now);
        let holding = match &self.state {
            ClientState::Requesting(_) | ClientState::Bound(_) => true,
            ClientState::Init(_)
            | ClientState::Selecting(_)
            | ClientState::InitReboot(_)
            | ClientState::Rebooting(_)
            | ClientState::Renewing(_)
            | ClientState::Rebinding(_)
            | ClientState::Expired(_)
            | ClientState::Released
            | ClientState::Failed
            | ClientState::Declined => false,
        };
        if holding {
            self.give_up_offer(now, ClientState::Failed);
        }
        holding
    }

    /// After a DHCPDECLINE or an abandoned offer: forget it; acquire again after
    /// [`DECLINE_WAIT`] in keep-trying mode, else stop in `terminal`.
    fn give_up_offer(&mut self, now: Instant, terminal: ClientState) {
        self.state = if self.keep_trying && self.ever_bound {
            let budget = Budget::new(now, self.config.timeout);
            self.restarted(budget, None, now.checked_add(DECLINE_WAIT))
        } else {
            terminal
        };
    }

    /// Give the lease back: a DHCPRELEASE (RFC 2131 §4.4.6) unicast from the leased address
    /// (ciaddr) to the server identifier, with a fresh xid, when a lease is held (BOUND, RENEWING,
    /// REBINDING); None otherwise (also in INIT-REBOOT/REBOOTING: the remembered lease is not
    /// held). Either way the state becomes RELEASED and nothing more is sent.
    pub fn release(&mut self) -> Option<Transmit> {
        let held = match &self.state {
            ClientState::Bound(h) => Some(h),
            ClientState::Renewing(r) | ClientState::Rebinding(r) => Some(&r.held),
            // An expired lease is no longer ours to give back.
            ClientState::Expired(_)
            | ClientState::Init(_)
            | ClientState::Selecting(_)
            | ClientState::Requesting(_)
            | ClientState::InitReboot(_)
            | ClientState::Rebooting(_)
            | ClientState::Released
            | ClientState::Failed
            | ClientState::Declined => None,
        }
        .map(|h| (h.lease.address, h.lease.server_id));
        self.state = ClientState::Released;
        let (ciaddr, server_id) = held?;
        self.xid = self.rng.random();
        let kind = Kind::Release { ciaddr, server_id };
        Some(self.transmit(kind, ciaddr, server_id, 0, 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::message::client_id;
    use crate::dhcp::reply::{Reply, code};
    use dhcproto::Encodable;
    use dhcproto::v4::{self, DhcpOption, Flags};

    const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const OTHER_SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    fn our_id() -> Vec<u8> {
        client_id("cid-c1", "labnet", "eth0")
    }

    /// The reference's defaults, without the lease floor, so that the timer tests can use
    /// leases of a few seconds (the floor has its own tests).
    fn config() -> ClientConfig {
        ClientConfig {
            min_lease: 0,
            ..ClientConfig::new(our_id(), MAC)
        }
    }

    /// What the fake server puts in a reply.
    struct Srv {
        server: Ipv4Addr,
        yiaddr: Ipv4Addr,
        client_id: Option<Vec<u8>>,
        lease: u32,
        t1: Option<u32>,
        t2: Option<u32>,
    }

    impl Default for Srv {
        fn default() -> Srv {
            Srv {
                server: SERVER,
                yiaddr: ADDR,
                client_id: Some(our_id()),
                lease: 3600,
                t1: None,
                t2: None,
            }
        }
    }

    /// A server reply built with dhcproto, the way a real server would encode it.
    fn reply(mtype: MessageType, xid: u32, s: &Srv) -> Vec<u8> {
        let yiaddr = if mtype == MessageType::Nak {
            Ipv4Addr::UNSPECIFIED
        } else {
            s.yiaddr
        };
        let z = Ipv4Addr::UNSPECIFIED;
        let mut m = v4::Message::new_with_id(xid, z, yiaddr, z, z, &MAC);
        m.set_opcode(v4::Opcode::BootReply);
        m.set_flags(Flags::default().set_broadcast());
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(mtype));
        o.insert(DhcpOption::ServerIdentifier(s.server));
        if let Some(id) = &s.client_id {
            o.insert(DhcpOption::ClientIdentifier(id.clone()));
        }
        if mtype != MessageType::Nak {
            o.insert(DhcpOption::AddressLeaseTime(s.lease));
            o.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
            o.insert(DhcpOption::Router(vec![SERVER]));
            if let Some(t1) = s.t1 {
                o.insert(DhcpOption::Renewal(t1));
            }
            if let Some(t2) = s.t2 {
                o.insert(DhcpOption::Rebinding(t2));
            }
        }
        m.to_vec().unwrap()
    }

    fn parsed(t: &Transmit) -> Reply {
        parse_reply(&t.payload).unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// Runs DORA at `t0` with no client time passing; returns the client in BOUND.
    fn bound(t0: Instant, srv: &Srv) -> Client {
        let mut c = Client::new(config(), t0, 1);
        let d = c.poll_transmit(t0).unwrap();
        let xid = parsed(&d).xid;
        c.handle(t0, &reply(MessageType::Offer, xid, srv)).unwrap();
        c.poll_transmit(t0).unwrap();
        c.handle(t0, &reply(MessageType::Ack, xid, srv)).unwrap();
        assert!(matches!(c.poll_event(), Some(Event::Bound(_))));
        c
    }

    #[test]
    fn full_dora_without_waiting() {
        let t0 = Instant::now();
        let mut c = Client::new(config(), t0, 1);
        assert_eq!(c.state(), State::Init);
        assert_eq!(c.poll_at(), Some(t0));

        let d = c.poll_transmit(t0).expect("DISCOVER goes out at once");
        assert_eq!((d.src, d.dst), (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST));
        let dr = parsed(&d);
        assert_eq!(dr.message_type, Some(MessageType::Discover));
        assert_eq!(dr.xid, c.xid());
        assert!(dr.broadcast());
        assert_eq!(dr.option(code::REQUESTED_IP), None, "nothing to suggest");
        assert_eq!(dr.client_id, Some(our_id()));
        assert_eq!(c.state(), State::Selecting);
        assert!(c.poll_transmit(t0).is_none(), "no duplicate send");

        c.handle(t0, &reply(MessageType::Offer, dr.xid, &Srv::default()))
            .unwrap();
        assert_eq!(c.state(), State::Requesting);
        let r = c.poll_transmit(t0).expect("REQUEST goes out at once");
        assert_eq!((r.src, r.dst), (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST));
        let rr = parsed(&r);
        assert_eq!(rr.message_type, Some(MessageType::Request));
        assert_eq!(rr.xid, dr.xid);
        assert!(rr.broadcast());
        assert_eq!(rr.option(code::REQUESTED_IP), Some(&ADDR.octets()[..]));
        assert_eq!(rr.server_id, Some(SERVER));
        assert_eq!(rr.ciaddr, Ipv4Addr::UNSPECIFIED);

        c.handle(t0, &reply(MessageType::Ack, dr.xid, &Srv::default()))
            .unwrap();
        assert_eq!(c.state(), State::Bound);
        let Some(Event::Bound(lease)) = c.poll_event() else {
            panic!("no Bound event")
        };
        assert_eq!(lease.address, ADDR);
        assert_eq!(lease.prefix_len, 24);
        assert_eq!(c.lease(), Some(&lease));
        assert!(c.poll_event().is_none());
        // T1 = 1800 s minus up to 5 % fuzz.
        let t1 = c.poll_at().unwrap() - t0;
        assert!(t1 <= secs(1800) && t1 >= secs(1710), "{t1:?}");
        assert!(c.poll_transmit(t0 + secs(1000)).is_none());
    }

    #[test]
    fn replies_for_other_slaves_are_ignored() {
        let t0 = Instant::now();
        let mut c = Client::new(config(), t0, 2);
        let xid = parsed(&c.poll_transmit(t0).unwrap()).xid;
        let theirs = Srv {
            client_id: Some(client_id("cid-c2", "labnet", "eth0")),
            yiaddr: Ipv4Addr::new(198, 18, 0, 11),
            ..Srv::default()
        };
        // Same xid (worst case), another slave's client id: ignored.
        assert_eq!(
            c.handle(t0, &reply(MessageType::Offer, xid, &theirs)),
            Err(Ignored::WrongClientId)
        );
        assert_eq!(
            c.handle(t0, &reply(MessageType::Offer, xid ^ 1, &Srv::default())),
            Err(Ignored::WrongXid {
                expected: xid,
                got: xid ^ 1
            })
        );
        assert_eq!(c.state(), State::Selecting);
        // A server that does not echo option 61 is accepted (RFC 6842 is optional).
        let no_echo = Srv {
            client_id: None,
            ..Srv::default()
        };
        c.handle(t0, &reply(MessageType::Offer, xid, &no_echo))
            .unwrap();
        c.poll_transmit(t0).unwrap();
        assert_eq!(
            c.handle(t0, &reply(MessageType::Ack, xid, &theirs)),
            Err(Ignored::WrongClientId)
        );
        assert_eq!(c.state(), State::Requesting);
        c.handle(t0, &reply(MessageType::Ack, xid, &Srv::default()))
            .unwrap();
        let lease = c.lease().cloned().unwrap();
        assert_eq!(lease.address, ADDR);
        // Bound: another slave's ACK, even with our xid, does not disturb the lease.
        assert_eq!(
            c.handle(t0, &reply(MessageType::Ack, xid, &theirs)),
            Err(Ignored::WrongClientId)
        );
        assert!(
            c.handle(t0, &reply(MessageType::Nak, xid, &theirs))
                .is_err()
        );
        assert_eq!(c.lease(), Some(&lease));
        assert_eq!(c.state(), State::Bound);
    }

    #[test]
    fn other_junk_is_ignored_with_a_reason() {
        let t0 = Instant::now();
        let mut c = Client::new(config(), t0, 3);
        let d = c.poll_transmit(t0).unwrap();
        // Another client's DISCOVER (op 1) seen on the shared link.
        assert_eq!(c.handle(t0, &d.payload), Err(Ignored::NotReply(1)));
        assert!(matches!(
            c.handle(t0, &[0u8; 10]),
            Err(Ignored::Malformed(ParseError::TooShort(10)))
        ));
        let xid = c.xid();
        // An ACK while SELECTING is not an OFFER.
        assert!(matches!(
            c.handle(t0, &reply(MessageType::Ack, xid, &Srv::default())),
            Err(Ignored::Unexpected { .. })
        ));
        // An OFFER without a usable address.
        let bad = Srv {
            yiaddr: Ipv4Addr::UNSPECIFIED,
            ..Srv::default()
        };
        assert!(matches!(
            c.handle(t0, &reply(MessageType::Offer, xid, &bad)),
            Err(Ignored::BadLease(_))
        ));
        // chaddr (offset 28) of another interface.
        let mut other_mac = reply(MessageType::Offer, xid, &Srv::default());
        other_mac[33] ^= 0xff;
        assert_eq!(c.handle(t0, &other_mac), Err(Ignored::WrongChaddr));
        assert_eq!(c.state(), State::Selecting);
    }

    #[test]
    fn ack_from_another_server_is_ignored_while_requesting() {
        let t0 = Instant::now();
        let mut c = Client::new(config(), t0, 4);
        let xid = parsed(&c.poll_transmit(t0).unwrap()).xid;
        c.handle(t0, &reply(MessageType::Offer, xid, &Srv::default()))
            .unwrap();
        c.poll_transmit(t0).unwrap();
        let other = Srv {
            server: OTHER_SERVER,
            ..Srv::default()
        };
        assert_eq!(
            c.handle(t0, &reply(MessageType::Ack, xid, &other)),
            Err(Ignored::WrongServer {
                expected: SERVER,
                got: Some(OTHER_SERVER)
            })
        );
        assert_eq!(c.state(), State::Requesting);
    }

    #[test]
    fn nak_while_requesting_restarts_with_new_xid_in_same_budget() {
        let t0 = Instant::now();
        let mut c = Client::new(config(), t0, 5);
        let xid = parsed(&c.poll_transmit(t0).unwrap()).xid;
        c.handle(t0, &reply(MessageType::Offer, xid, &Srv::default()))
            .unwrap();
        let select = c.poll_transmit(t0).unwrap();
        assert_eq!(
            (select.message_type, select.attempt),
            (MessageType::Request, 1),
            "the SELECTING DHCPREQUEST is a first transmission of its own"
        );
        let t = t0 + secs(2);
        c.handle(t, &reply(MessageType::Nak, xid, &Srv::default()))
            .unwrap();
        assert_eq!(c.state(), State::Init);
        assert!(
            c.poll_event().is_none(),
            "no lease was held: nothing to report"
        );
        assert_ne!(c.xid(), xid);
        let d = c.poll_transmit(t).expect("DISCOVER again at once");
        let dr = parsed(&d);
        assert_eq!(dr.message_type, Some(MessageType::Discover));
        assert_eq!(dr.xid, c.xid());
        assert_eq!(dr.secs, 2, "secs counts from the start of the acquisition");
        assert_eq!(
            d.attempt, 1,
            "the DHCPDISCOVER after a NAK starts a new exchange"
        );
        // The budget is the original one: timeout at t0 + 10 s.
        assert!(c.poll_at().unwrap() <= t0 + secs(10));
        assert!(c.poll_transmit(t0 + secs(10)).is_none());
        assert_eq!(c.state(), State::Failed);
        assert_eq!(c.poll_event(), Some(Event::Timeout));
    }

    #[test]
    fn retransmit_schedule_and_timeout() {
        let t0 = Instant::now();
        let mut cfg = config();
        cfg.timeout = secs(120);
        cfg.resend_max = secs(20);
        let mut c = Client::new(cfg, t0, 6);
        let mut sent = Vec::new();
        let mut now = t0;
        while let Some(at) = c.poll_at() {
            now = at;
            if let Some(t) = c.poll_transmit(now) {
                let r = parsed(&t);
                assert_eq!(r.message_type, Some(MessageType::Discover));
                assert_eq!(r.xid, c.xid(), "retransmissions keep the xid");
                assert_eq!(u64::from(r.secs), (now - t0).as_secs());
                assert_eq!(
                    usize::try_from(t.attempt).unwrap(),
                    sent.len() + 1,
                    "the first DHCPDISCOVER is attempt 1, each retransmission one more"
                );
                sent.push(now - t0);
            }
            assert!(sent.len() < 100, "runaway");
        }
        assert_eq!(sent[0], Duration::ZERO);
        let gaps: Vec<Duration> = sent.windows(2).map(|w| w[1] - w[0]).collect();
        for (i, (gap, base)) in gaps.iter().zip([4u64, 8, 16, 20, 20]).enumerate() {
            let lo = secs(base) - secs(1);
            let hi = (secs(base) + secs(1)).min(secs(20));
            assert!(*gap >= lo && *gap <= hi, "gap {i} = {gap:?}, base {base}");
        }
        assert!(gaps.iter().all(|g| *g <= secs(20)));
        assert_eq!(now, t0 + secs(120), "stops exactly at the budget");
        assert_eq!(c.state(), State::Failed);
        assert_eq!(c.poll_event(), Some(Event::Timeout));
        assert!(c.poll_event().is_none());
        assert!(c.poll_transmit(now + secs(100)).is_none());
    }

    #[test]
    fn silent_server_after_offer_sends_us_back_to_discover() {
        let t0 = Instant::now();
        let mut cfg = config();
        cfg.timeout = secs(300);
        let mut c = Client::new(cfg, t0, 7);
        let xid = parsed(&c.poll_transmit(t0).unwrap()).xid;
        c.handle(t0, &reply(MessageType::Offer, xid, &Srv::default()))
            .unwrap();
        let mut kinds = Vec::new();
        for _ in 0..100 {
            if kinds.len() >= 6 {
                break;
            }
            let at = c.poll_at().unwrap();
            if let Some(t) = c.poll_transmit(at) {
                kinds.push(parsed(&t).message_type.unwrap());
            }
        }
        let req = MessageType::Request;
        assert_eq!(&kinds[..4], &[req, req, req, req]);
        assert_eq!(kinds[4], MessageType::Discover);
        assert_ne!(c.xid(), xid);
    }

    #[test]
    fn renewing_rebinding_expired() {
        let t0 = Instant::now();
        let srv = Srv {
            lease: 1000,
            t1: Some(500),
            t2: Some(875),
            ..Srv::default()
        };
        let mut c = bound(t0, &srv);
        let bound_xid = c.xid();
        let t1 = c.poll_at().unwrap();
        assert!(t1 > t0 + secs(474) && t1 <= t0 + secs(500), "{:?}", t1 - t0);
        assert!(c.poll_transmit(t1 - Duration::from_millis(1)).is_none());

        // T1: unicast REQUEST from the leased address to the server, ciaddr set, no 50/54.
        let r = c.poll_transmit(t1).unwrap();
        assert_eq!(c.state(), State::Renewing);
        assert_eq!((r.src, r.dst), (ADDR, SERVER));
        let rr = parsed(&r);
        assert_eq!(rr.message_type, Some(MessageType::Request));
        assert_eq!(rr.ciaddr, ADDR);
        assert_eq!(rr.option(code::REQUESTED_IP), None);
        assert_eq!(rr.server_id, None);
        assert!(!rr.broadcast());
        assert_ne!(rr.xid, bound_xid, "a renewal is a new transaction");
        assert_eq!(rr.secs, 0);

        // Retransmission: half the time to T2, at least 60 s, never past T2.
        let mut renew_sends = vec![t1];
        let t2 = loop {
            assert!(renew_sends.len() < 100, "runaway");
            let at = c.poll_at().unwrap();
            let before = c.state();
            let t = c.poll_transmit(at).unwrap();
            if c.state() == State::Rebinding {
                assert_eq!(before, State::Renewing);
                break (at, t);
            }
            assert_eq!((t.src, t.dst), (ADDR, SERVER));
            renew_sends.push(at);
        };
        let (t2_at, rebind) = t2;
        assert!(t2_at > t0 + secs(831) && t2_at <= t0 + secs(875));
        for w in renew_sends.windows(2) {
            let gap = w[1] - w[0];
            let half = (t2_at - w[0]) / 2;
            assert_eq!(gap, half.max(secs(60)), "gap {gap:?}");
        }
        assert!(renew_sends.len() >= 2);
        // T2: broadcast REQUEST with ciaddr, from the leased address.
        assert_eq!((rebind.src, rebind.dst), (ADDR, Ipv4Addr::BROADCAST));
        let rb = parsed(&rebind);
        assert_eq!(rb.ciaddr, ADDR);
        assert_eq!(rb.server_id, None);
        assert_eq!(rb.option(code::REQUESTED_IP), None);

        // Rebinding until expiry at exactly t0 + 1000 s (times count from the REQUEST at t0).
        let mut last = t2_at;
        for wakeups in 0.. {
            assert!(wakeups < 100, "runaway");
            let at = c.poll_at().unwrap();
            assert!(at <= t0 + secs(1000));
            let t = c.poll_transmit(at);
            if c.state() == State::Expired {
                assert!(t.is_none());
                assert_eq!(at, t0 + secs(1000));
                break;
            }
            let gap = at - last;
            assert_eq!(
                gap,
                ((t0 + secs(1000) - last) / 2)
                    .max(secs(60))
                    .min(t0 + secs(1000) - last)
            );
            assert_eq!(t.unwrap().dst, Ipv4Addr::BROADCAST);
            last = at;
        }
        assert_eq!(c.poll_event(), Some(Event::Expired));
        assert_eq!(c.poll_at(), None);
        assert!(c.poll_transmit(t0 + secs(5000)).is_none());
        assert_eq!(c.lease().map(|l| l.address), Some(ADDR));
    }

    #[test]
    fn ack_while_renewing_renews_from_request_time() {
        let t0 = Instant::now();
        let mut c = bound(t0, &Srv::default());
        let t1 = c.poll_at().unwrap();
        let req = parsed(&c.poll_transmit(t1).unwrap());
        let later = t1 + secs(3);
        // An ACK from another server is not accepted while RENEWING.
        let other = Srv {
            server: OTHER_SERVER,
            ..Srv::default()
        };
        assert!(matches!(
            c.handle(later, &reply(MessageType::Ack, req.xid, &other)),
            Err(Ignored::WrongServer { .. })
        ));
        // An ACK for a different address is refused.
        let moved = Srv {
            yiaddr: Ipv4Addr::new(198, 18, 0, 99),
            ..Srv::default()
        };
        assert!(matches!(
            c.handle(later, &reply(MessageType::Ack, req.xid, &moved)),
            Err(Ignored::AddressChanged { .. })
        ));
        assert_eq!(c.state(), State::Renewing);
        c.handle(later, &reply(MessageType::Ack, req.xid, &Srv::default()))
            .unwrap();
        assert_eq!(c.state(), State::Bound);
        assert!(matches!(c.poll_event(), Some(Event::Renewed(l)) if l.address == ADDR));
        let next_t1 = c.poll_at().unwrap();
        assert!(next_t1 <= t1 + secs(1800) && next_t1 >= t1 + secs(1710));
    }

    #[test]
    fn ack_from_any_server_while_rebinding() {
        let t0 = Instant::now();
        let mut c = bound(t0, &Srv::default());
        let mut now = t0;
        for wakeups in 0.. {
            if c.state() == State::Rebinding {
                break;
            }
            assert!(wakeups < 100, "runaway");
            now = c.poll_at().unwrap();
            c.poll_transmit(now);
        }
        let other = Srv {
            server: OTHER_SERVER,
            ..Srv::default()
        };
        c.handle(now, &reply(MessageType::Ack, c.xid(), &other))
            .unwrap();
        assert!(matches!(c.poll_event(), Some(Event::Renewed(l)) if l.server_id == OTHER_SERVER));
        // Next renewal goes to the new server.
        let t1 = c.poll_at().unwrap();
        assert_eq!(c.poll_transmit(t1).unwrap().dst, OTHER_SERVER);
    }

    #[test]
    fn nak_while_renewing_drops_the_lease_and_restarts() {
        let t0 = Instant::now();
        let mut c = bound(t0, &Srv::default());
        let t1 = c.poll_at().unwrap();
        let xid = parsed(&c.poll_transmit(t1).unwrap()).xid;
        c.handle(t1, &reply(MessageType::Nak, xid, &Srv::default()))
            .unwrap();
        assert_eq!(c.poll_event(), Some(Event::Nak));
        assert_eq!(c.state(), State::Init);
        assert!(c.lease().is_none());
        let d = c.poll_transmit(t1).unwrap();
        assert_eq!(parsed(&d).message_type, Some(MessageType::Discover));
        assert_eq!(d.src, Ipv4Addr::UNSPECIFIED);
        // A fresh budget of `timeout` from the NAK: FAILED exactly 10 s later.
        let mut now = t1;
        for _ in 0..1000 {
            let Some(at) = c.poll_at() else { break };
            now = at;
            c.poll_transmit(now);
        }
        assert_eq!(now, t1 + secs(10));
        assert_eq!(c.state(), State::Failed);
        assert_eq!(c.poll_event(), Some(Event::Timeout));
    }

    #[test]
    fn release_contents_and_final_state() {
        let t0 = Instant::now();
        let mut c = bound(t0, &Srv::default());
        let bound_xid = c.xid();
        let t = c.release().expect("a lease is held");
        assert_eq!((t.src, t.dst), (ADDR, SERVER));
        let r = parsed(&t);
        assert_eq!(r.message_type, Some(MessageType::Release));
        assert_eq!(r.ciaddr, ADDR);
        assert_eq!(r.server_id, Some(SERVER));
        assert_eq!(r.client_id, Some(our_id()));
        assert_eq!(r.option(code::REQUESTED_IP), None);
        assert_ne!(r.xid, bound_xid);
        assert_eq!(c.state(), State::Released);
        assert!(c.lease().is_none());
        assert_eq!(c.poll_at(), None);
        assert!(c.poll_transmit(t0 + secs(1_000_000)).is_none());
        // Nothing to release without a lease.
        let mut fresh = Client::new(config(), t0, 9);
        assert!(fresh.release().is_none());
        assert_eq!(fresh.state(), State::Released);
        assert!(fresh.poll_transmit(t0).is_none());
    }

    #[test]
    fn zero_and_infinite_leases() {
        let t0 = Instant::now();
        let mut c = bound(
            t0,
            &Srv {
                lease: 0,
                ..Srv::default()
            },
        );
        assert_eq!(c.poll_at(), Some(t0));
        // One poll passes through RENEWING and REBINDING to EXPIRED.
        assert!(c.poll_transmit(t0).is_none());
        assert_eq!(c.state(), State::Expired);
        assert_eq!(c.poll_event(), Some(Event::Expired));

        let mut c = bound(
            t0,
            &Srv {
                lease: u32::MAX,
                t1: Some(u32::MAX),
                ..Srv::default()
            },
        );
        assert_eq!(c.poll_at(), None);
        assert!(
            c.poll_transmit(t0 + secs(u64::from(u32::MAX) * 2))
                .is_none()
        );
        assert_eq!(c.state(), State::Bound);
        // A huge finite lease: no overflow either.
        let c = bound(
            t0,
            &Srv {
                lease: u32::MAX - 1,
                ..Srv::default()
            },
        );
        let t1 = c.poll_at().unwrap();
        assert!(t1 > t0 + secs(1_000_000_000));
    }

    #[test]
    fn late_wakeup_passes_through_every_state() {
        let t0 = Instant::now();
        let mut c = bound(t0, &Srv::default());
        assert!(c.poll_transmit(t0 + secs(10_000)).is_none());
        assert_eq!(c.state(), State::Expired);
        assert_eq!(c.poll_event(), Some(Event::Expired));
        // A reply arriving after expiry cannot resurrect the lease.
        let xid = c.xid();
        assert!(
            c.handle(
                t0 + secs(10_001),
                &reply(MessageType::Ack, xid, &Srv::default())
            )
            .is_err()
        );
        assert_eq!(c.state(), State::Expired);
    }

    #[test]
    fn lease_times_count_from_the_request_not_the_ack() {
        let t0 = Instant::now();
        let mut c = Client::new(config(), t0, 11);
        let xid = parsed(&c.poll_transmit(t0).unwrap()).xid;
        let srv = Srv {
            lease: 100,
            ..Srv::default()
        };
        c.handle(t0 + secs(1), &reply(MessageType::Offer, xid, &srv))
            .unwrap();
        c.poll_transmit(t0 + secs(2)).unwrap();
        c.handle(t0 + secs(7), &reply(MessageType::Ack, xid, &srv))
            .unwrap();
        assert_eq!(c.expires_at(), Some(t0 + secs(102)));
        let mut now = t0;
        for _ in 0..1000 {
            let Some(at) = c.poll_at() else { break };
            now = at;
            c.poll_transmit(now);
        }
        assert_eq!(now, t0 + secs(102));
        assert_eq!(c.state(), State::Expired);
    }

    #[test]
    fn resume_a_persisted_lease() {
        let t0 = Instant::now();
        let lease = bound(t0, &Srv::default()).lease().cloned().unwrap();
        let later = t0 + secs(100);
        let mut c = Client::resume(config(), lease.clone(), later, 5);
        assert_eq!(c.state(), State::Bound);
        assert_eq!(c.lease(), Some(&lease));
        assert_eq!(c.granted_at(), Some(later));
        assert_eq!(c.expires_at(), Some(later + secs(3600)));
        assert!(c.poll_event().is_none());
        assert_eq!(c.poll_at(), c.renew_at());
        // Resumed past T2: the first poll rebinds at once.
        let mut c = Client::resume(config(), lease, t0, 5);
        let t = c.poll_transmit(t0 + secs(3200)).unwrap();
        assert_eq!(c.state(), State::Rebinding);
        assert_eq!(t.dst, Ipv4Addr::BROADCAST);
        assert_eq!(parsed(&t).ciaddr, ADDR);
    }

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    /// The lease a default fake server grants (3600 s, ADDR from SERVER).
    fn granted(srv: &Srv) -> Lease {
        bound(Instant::now(), srv).lease().cloned().unwrap()
    }

    /// Poll at `now` until nothing more is due; returns what was sent.
    fn drain(c: &mut Client, now: Instant) -> Vec<Transmit> {
        let mut out = Vec::new();
        while let Some(t) = c.poll_transmit(now) {
            out.push(t);
            assert!(out.len() < 10, "runaway at one instant");
        }
        out
    }

    #[test]
    fn reboot_requests_the_old_address_and_binds_on_ack() {
        let t0 = Instant::now();
        let old = granted(&Srv::default());
        let mut c = Client::reboot(config(), old.clone(), t0, 21);
        assert_eq!(c.state(), State::InitReboot);
        assert_eq!(c.state().name(), "INIT-REBOOT");
        assert_eq!(c.lease(), None, "the remembered lease is not held");
        assert_eq!(c.poll_at(), Some(t0));
        let t = c.poll_transmit(t0).expect("REQUEST at once");
        assert_eq!(c.state(), State::Rebooting);
        assert_eq!(c.state().name(), "REBOOTING");
        assert_eq!((t.src, t.dst), (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST));
        let r = parsed(&t);
        assert_eq!(r.message_type, Some(MessageType::Request));
        assert_eq!(r.xid, c.xid());
        assert_eq!(r.ciaddr, Ipv4Addr::UNSPECIFIED);
        assert_eq!(r.option(code::REQUESTED_IP), Some(&ADDR.octets()[..]));
        assert_eq!(r.server_id, None, "RFC 2131 §4.3.2: no option 54");
        assert!(r.broadcast());
        assert_eq!(r.client_id, Some(our_id()));
        assert!(c.poll_transmit(t0).is_none(), "no duplicate send");
        assert!(c.poll_event().is_none());
        // An OFFER is not an answer to a REQUEST.
        assert!(matches!(
            c.handle(t0, &reply(MessageType::Offer, r.xid, &Srv::default())),
            Err(Ignored::Unexpected { .. })
        ));
        // Any server may answer: this one is not the lease's old server.
        let other = Srv {
            server: OTHER_SERVER,
            ..Srv::default()
        };
        c.handle(t0 + secs(1), &reply(MessageType::Ack, r.xid, &other))
            .unwrap();
        assert_eq!(c.state(), State::Bound);
        let Some(Event::Bound(l)) = c.poll_event() else {
            panic!("no Bound event")
        };
        assert_eq!((l.address, l.server_id), (ADDR, OTHER_SERVER));
        assert!(c.poll_event().is_none());
        assert_eq!(c.granted_at(), Some(t0), "times count from the REQUEST");
        assert_eq!(c.expires_at(), Some(t0 + secs(3600)));
        // Renewal goes to the server that answered.
        let t1 = c.poll_at().unwrap();
        assert_eq!(c.poll_transmit(t1).unwrap().dst, OTHER_SERVER);

        // The broadcast flag follows the config; an ACK for another address is taken as is.
        let mut cfg = config();
        cfg.broadcast = false;
        let mut c = Client::reboot(cfg, old, t0, 22);
        let r = parsed(&c.poll_transmit(t0).unwrap());
        assert!(!r.broadcast());
        let moved = Srv {
            yiaddr: Ipv4Addr::new(198, 18, 0, 99),
            ..Srv::default()
        };
        c.handle(t0, &reply(MessageType::Ack, r.xid, &moved))
            .unwrap();
        assert!(
            matches!(c.poll_event(), Some(Event::Bound(l)) if l.address == Ipv4Addr::new(198, 18, 0, 99))
        );
    }

    #[test]
    fn reboot_nak_falls_back_to_discover_without_an_event() {
        let t0 = Instant::now();
        let mut c = Client::reboot(config(), granted(&Srv::default()), t0, 23);
        let xid = parsed(&c.poll_transmit(t0).unwrap()).xid;
        // A NAK without option 54 is accepted too (lenient, as in REQUESTING).
        let t = t0 + secs(2);
        c.handle(t, &reply(MessageType::Nak, xid, &Srv::default()))
            .unwrap();
        assert_eq!(c.state(), State::Init);
        assert!(c.poll_event().is_none(), "no lease was held: no Nak event");
        assert_ne!(c.xid(), xid);
        let d = c.poll_transmit(t).expect("DISCOVER at once");
        let dr = parsed(&d);
        assert_eq!(dr.message_type, Some(MessageType::Discover));
        assert_eq!(dr.option(code::REQUESTED_IP), None);
        assert_eq!(dr.secs, 2, "same acquisition: secs from the reboot");
        // An ordinary acquisition follows, within the reboot's budget.
        let other = Srv {
            yiaddr: Ipv4Addr::new(198, 18, 0, 77),
            ..Srv::default()
        };
        c.handle(t, &reply(MessageType::Offer, dr.xid, &other))
            .unwrap();
        c.poll_transmit(t).unwrap();
        c.handle(t, &reply(MessageType::Ack, dr.xid, &other))
            .unwrap();
        assert!(
            matches!(c.poll_event(), Some(Event::Bound(l)) if l.address == Ipv4Addr::new(198, 18, 0, 77))
        );
        // Without an answer, the budget that began at the reboot runs out: Timeout at t0 + 10 s.
        let mut c = Client::reboot(config(), granted(&Srv::default()), t0, 24);
        let xid = parsed(&c.poll_transmit(t0).unwrap()).xid;
        c.handle(t, &reply(MessageType::Nak, xid, &Srv::default()))
            .unwrap();
        assert_eq!(run_out(&mut c, t), t0 + secs(10));
        assert_eq!(c.state(), State::Failed);
        assert_eq!(c.poll_event(), Some(Event::Timeout));
        // In keep-trying mode the remembered lease counts as held: it never times out.
        let mut c = Client::reboot(config(), granted(&Srv::default()), t0, 24);
        c.keep_trying(true);
        let xid = parsed(&c.poll_transmit(t0).unwrap()).xid;
        c.handle(t, &reply(MessageType::Nak, xid, &Srv::default()))
            .unwrap();
        assert!(unanswered(&mut c, t, secs(600)).len() > 5);
        assert_eq!(c.state(), State::Selecting);
    }

    #[test]
    fn reboot_silence_falls_back_to_discover_within_the_budget() {
        for (timeout, seed) in [(10, 25), (10, 26), (100, 27), (100, 28)] {
            let t0 = Instant::now();
            let mut cfg = config();
            cfg.timeout = secs(timeout);
            let mut c = Client::reboot(cfg, granted(&Srv::default()), t0, seed);
            let mut requests = Vec::new();
            let discover_at = loop {
                let at = c.poll_at().unwrap();
                let sent = drain(&mut c, at);
                let kinds: Vec<_> = sent.iter().map(|t| parsed(t).message_type).collect();
                if kinds.contains(&Some(MessageType::Discover)) {
                    assert_eq!(kinds, [Some(MessageType::Discover)]);
                    let d = parsed(&sent[0]);
                    assert_eq!(d.option(code::REQUESTED_IP), Some(&ADDR.octets()[..]));
                    assert_eq!(c.state(), State::Selecting);
                    assert_eq!(parsed(&sent[0]).secs as u64, (at - t0).as_secs());
                    break at;
                }
                assert_eq!(c.state(), State::Rebooting);
                for t in &sent {
                    let r = parsed(t);
                    assert_eq!(r.message_type, Some(MessageType::Request));
                    assert_eq!(r.xid, c.xid(), "retransmissions keep the xid");
                    requests.push(at);
                }
            };
            // RFC 2131 §4.1 spacing: 4 s ±1 then 8 s ±1.
            for (w, base) in requests.windows(2).zip([4u64, 8]) {
                let gap = w[1] - w[0];
                assert!(gap >= secs(base - 1) && gap <= secs(base + 1), "{gap:?}");
            }
            assert!(!requests.is_empty() && requests.len() <= MAX_REBOOT_REQUESTS as usize);
            assert!(discover_at <= t0 + secs(timeout) / 2);
            if timeout == 10 {
                // Half the budget: the DISCOVER gets the other 5 s.
                assert_eq!(discover_at, t0 + secs(5));
            } else {
                assert_eq!(requests.len(), 3, "three tries, then DISCOVER");
                assert!(
                    discover_at - requests[2] >= secs(15),
                    "the 4th would be due"
                );
            }
            assert!(c.poll_event().is_none());
            // Still the same budget.
            assert_eq!(run_out(&mut c, discover_at), t0 + secs(timeout));
            assert_eq!(c.poll_event(), Some(Event::Timeout));
        }
    }

    #[test]
    fn a_nak_stops_suggesting_the_old_address() {
        let t0 = Instant::now();
        let mut c = Client::reboot(config(), granted(&Srv::default()), t0, 29);
        let mut now = t0;
        while c.state() != State::Selecting {
            now = c.poll_at().unwrap();
            drain(&mut c, now);
            assert!(now <= t0 + secs(5), "fell back by half the budget");
        }
        let xid = c.xid();
        let other = Srv {
            yiaddr: Ipv4Addr::new(198, 18, 0, 60),
            ..Srv::default()
        };
        c.handle(now, &reply(MessageType::Offer, xid, &other))
            .unwrap();
        c.poll_transmit(now).unwrap();
        c.handle(now, &reply(MessageType::Nak, xid, &other))
            .unwrap();
        let d = parsed(&c.poll_transmit(now).unwrap());
        assert_eq!(d.message_type, Some(MessageType::Discover));
        assert_eq!(d.option(code::REQUESTED_IP), None);
        assert!(c.poll_event().is_none());

        // Bound to another address after suggesting the old one, then NAKed while RENEWING: the
        // old address is not suggested again.
        let mut c = Client::reboot(config(), granted(&Srv::default()), t0, 30);
        c.keep_trying(true);
        let mut now = t0;
        while c.state() != State::Selecting {
            now = c.poll_at().unwrap();
            drain(&mut c, now);
            assert!(now <= t0 + secs(5));
        }
        let xid = c.xid();
        c.handle(now, &reply(MessageType::Offer, xid, &other))
            .unwrap();
        c.poll_transmit(now).unwrap();
        c.handle(now, &reply(MessageType::Ack, xid, &other))
            .unwrap();
        assert!(matches!(c.poll_event(), Some(Event::Bound(_))));
        let t1 = c.poll_at().unwrap();
        let xid = parsed(&c.poll_transmit(t1).unwrap()).xid;
        c.handle(t1, &reply(MessageType::Nak, xid, &other)).unwrap();
        assert_eq!(c.poll_event(), Some(Event::Nak));
        let d = parsed(&c.poll_transmit(t1).unwrap());
        assert_eq!(d.message_type, Some(MessageType::Discover));
        assert_eq!(d.option(code::REQUESTED_IP), None);
    }

    #[test]
    fn resume_fires_the_timers_already_due() {
        let t0 = Instant::now();
        let srv = Srv {
            lease: 1000,
            t1: Some(500),
            t2: Some(800),
            ..Srv::default()
        };
        let lease = granted(&srv);
        // Before T1: nothing to do until T1.
        let mut c = Client::resume(config(), lease.clone(), t0, 31);
        let now = t0 + secs(400);
        assert!(c.poll_transmit(now).is_none());
        assert_eq!(c.state(), State::Bound);
        assert!(c.poll_event().is_none());
        let t1 = c.poll_at().unwrap();
        assert_eq!(Some(t1), c.renew_at());
        assert!(t1 > now && t1 <= t0 + secs(500));
        // Past T1: RENEWING, the first poll unicasts the REQUEST from the leased address.
        let mut c = Client::resume(config(), lease.clone(), t0, 31);
        let now = t0 + secs(600);
        assert!(c.poll_at().unwrap() <= now, "due now");
        let t = c.poll_transmit(now).unwrap();
        assert_eq!(c.state(), State::Renewing);
        assert_eq!((t.src, t.dst), (ADDR, SERVER));
        assert_eq!(parsed(&t).ciaddr, ADDR);
        assert!(c.poll_event().is_none());
        assert!(c.poll_at().unwrap() > now);
        // Past T2: REBINDING, broadcast.
        let mut c = Client::resume(config(), lease.clone(), t0, 31);
        let now = t0 + secs(900);
        let t = c.poll_transmit(now).unwrap();
        assert_eq!(c.state(), State::Rebinding);
        assert_eq!((t.src, t.dst), (ADDR, Ipv4Addr::BROADCAST));
        assert!(c.poll_event().is_none());
        // Past expiry: Expired at once, nothing sent, terminal.
        let mut c = Client::resume(config(), lease.clone(), t0, 31);
        let now = t0 + secs(1000);
        assert!(c.poll_transmit(now).is_none());
        assert_eq!(c.state(), State::Expired);
        assert_eq!(c.poll_event(), Some(Event::Expired));
        assert!(c.poll_event().is_none());
        assert_eq!(c.poll_at(), None);
        assert_eq!(
            c.lease(),
            Some(&lease),
            "the driver can still see what expired"
        );
        // Past expiry in keep-trying mode: Expired, then acquiring again at once.
        let mut c = Client::resume(config(), lease, t0, 31);
        c.keep_trying(true);
        let now = t0 + secs(5000);
        let d = c.poll_transmit(now).unwrap();
        assert_eq!(c.poll_event(), Some(Event::Expired));
        assert_eq!(parsed(&d).message_type, Some(MessageType::Discover));
        assert_eq!(d.src, Ipv4Addr::UNSPECIFIED);
        assert_eq!(c.state(), State::Selecting);
        assert_eq!(c.lease(), None);
    }

    /// Drives `c` without any answer until it has nothing more to do (a terminal state); returns
    /// when that was. Panics after 1000 wake-ups: a client that never stops is a failure here.
    fn run_out(c: &mut Client, from: Instant) -> Instant {
        let mut now = from;
        for _ in 0..1000 {
            let Some(at) = c.poll_at() else { return now };
            now = at;
            drain(c, now);
        }
        panic!("still {:?} after 1000 wake-ups", c.state());
    }

    /// Drives `c` without any answer from `from` for `span`; returns the DISCOVERs with their
    /// send times.
    fn unanswered(c: &mut Client, from: Instant, span: Duration) -> Vec<(Instant, Reply)> {
        let mut sends = Vec::new();
        let mut now = from;
        let mut wakeups = 0;
        while now < from + span {
            wakeups += 1;
            assert!(wakeups < 100_000, "runaway");
            now = c.poll_at().expect("never gives up");
            for t in drain(c, now) {
                let r = parsed(&t);
                assert_eq!(r.message_type, Some(MessageType::Discover));
                sends.push((now, r));
            }
            assert_ne!(c.poll_event(), Some(Event::Timeout));
            assert_ne!(c.state(), State::Failed);
        }
        sends
    }

    #[test]
    fn keep_trying_after_expiry_acquires_again_forever() {
        let t0 = Instant::now();
        let mut cfg = config();
        cfg.resend_max = secs(20);
        let mut c = Client::new(cfg, t0, 41);
        c.keep_trying(true);
        assert!(c.keeps_trying());
        let xid = parsed(&c.poll_transmit(t0).unwrap()).xid;
        let srv = Srv {
            lease: 100,
            ..Srv::default()
        };
        c.handle(t0, &reply(MessageType::Offer, xid, &srv)).unwrap();
        c.poll_transmit(t0).unwrap();
        c.handle(t0, &reply(MessageType::Ack, xid, &srv)).unwrap();
        assert!(matches!(c.poll_event(), Some(Event::Bound(_))));
        // Nobody answers RENEWING or REBINDING: Expired at t0 + 100 s, then INIT and DISCOVER.
        let mut now = t0;
        for wakeups in 0.. {
            if c.state() == State::Selecting {
                break;
            }
            assert!(wakeups < 100, "runaway");
            now = c.poll_at().unwrap();
            drain(&mut c, now);
            assert!(now <= t0 + secs(100));
        }
        assert_eq!(now, t0 + secs(100));
        assert_eq!(c.poll_event(), Some(Event::Expired));
        assert!(c.poll_event().is_none());
        assert_eq!(c.lease(), None);
        assert_eq!(c.expires_at(), None);
        // An hour of silence: DISCOVERs with the §4.1 backoff capped at resend_max, never Timeout.
        let sends = unanswered(&mut c, now, secs(3600));
        assert!(sends.len() > 150, "{}", sends.len());
        // Each asks for the expired address back (option 50), with one xid.
        for (_, d) in &sends {
            assert_eq!(d.option(code::REQUESTED_IP), Some(&ADDR.octets()[..]));
            assert_eq!(d.xid, sends[0].1.xid);
        }
        let gaps: Vec<Duration> = sends.windows(2).map(|w| w[1].0 - w[0].0).collect();
        assert!(gaps.iter().all(|g| *g <= secs(20) && *g >= secs(3)));
        assert!(gaps[10..].iter().all(|g| *g >= secs(19)), "capped backoff");
        assert_eq!(c.state(), State::Selecting);
        // The server comes back with another address: Bound again.
        let now = sends.last().unwrap().0;
        let xid = c.xid();
        let back = Srv {
            yiaddr: Ipv4Addr::new(198, 18, 0, 50),
            ..Srv::default()
        };
        c.handle(now, &reply(MessageType::Offer, xid, &back))
            .unwrap();
        c.poll_transmit(now).unwrap();
        c.handle(now, &reply(MessageType::Ack, xid, &back)).unwrap();
        assert!(
            matches!(c.poll_event(), Some(Event::Bound(l)) if l.address == Ipv4Addr::new(198, 18, 0, 50))
        );
        assert_eq!(c.state(), State::Bound);
        assert_eq!(c.expires_at(), Some(now + secs(3600)));
    }

    #[test]
    fn keep_trying_after_nak_never_times_out() {
        let t0 = Instant::now();
        let mut c = bound(t0, &Srv::default());
        c.keep_trying(true);
        let t1 = c.poll_at().unwrap();
        let xid = parsed(&c.poll_transmit(t1).unwrap()).xid;
        c.handle(t1, &reply(MessageType::Nak, xid, &Srv::default()))
            .unwrap();
        assert_eq!(c.poll_event(), Some(Event::Nak));
        assert_eq!(c.state(), State::Init);
        // Well past the 10 s budget, and a silent server after an OFFER: back to DISCOVER.
        let sends = unanswered(&mut c, t1, secs(600));
        assert!(sends.len() > 5);
        assert!(
            sends
                .iter()
                .all(|(_, d)| d.option(code::REQUESTED_IP).is_none()),
            "the server refused that address: do not ask for it again"
        );
        let now = sends.last().unwrap().0;
        let xid = c.xid();
        c.handle(now, &reply(MessageType::Offer, xid, &Srv::default()))
            .unwrap();
        let mut requests = 0;
        let mut t = now;
        while c.state() != State::Selecting {
            assert!(t <= now + secs(600), "runaway");
            t = c.poll_at().unwrap();
            requests += drain(&mut c, t)
                .iter()
                .filter(|t| parsed(t).message_type == Some(MessageType::Request))
                .count();
        }
        assert_eq!(requests, MAX_REQUESTS as usize);
        assert_ne!(c.xid(), xid, "a new transaction");
        let xid = c.xid();
        c.handle(t, &reply(MessageType::Offer, xid, &Srv::default()))
            .unwrap();
        c.poll_transmit(t).unwrap();
        c.handle(t, &reply(MessageType::Ack, xid, &Srv::default()))
            .unwrap();
        assert!(matches!(c.poll_event(), Some(Event::Bound(l)) if l.address == ADDR));
        assert!(c.poll_event().is_none(), "no Timeout ever");
    }

    #[test]
    fn keep_trying_leaves_the_first_acquisition_its_budget() {
        let t0 = Instant::now();
        let mut c = Client::new(config(), t0, 42);
        c.keep_trying(true);
        assert_eq!(run_out(&mut c, t0), t0 + secs(10));
        assert_eq!(c.state(), State::Failed);
        assert_eq!(c.poll_event(), Some(Event::Timeout));
        // And off (the default), a lost lease still gets one budget: see
        // nak_while_renewing_drops_the_lease_and_restarts; expiry stays terminal: see
        // renewing_rebinding_expired. Switching it off mid-way restores that budget.
        let mut c = bound(t0, &Srv::default());
        c.keep_trying(true);
        let t1 = c.poll_at().unwrap();
        let xid = parsed(&c.poll_transmit(t1).unwrap()).xid;
        c.handle(t1, &reply(MessageType::Nak, xid, &Srv::default()))
            .unwrap();
        assert_eq!(c.poll_event(), Some(Event::Nak));
        unanswered(&mut c, t1, secs(5));
        c.keep_trying(false);
        assert_eq!(c.poll_at().map(|at| at <= t1 + secs(10)), Some(true));
        assert!(c.poll_transmit(t1 + secs(10)).is_none());
        assert_eq!(c.poll_event(), Some(Event::Timeout));
    }

    #[test]
    fn decline_after_ack() {
        let t0 = Instant::now();
        let mut c = bound(t0, &Srv::default());
        assert_eq!(c.offered(), None, "only while REQUESTING");
        let xid = c.xid();
        let t = c.decline(t0 + secs(1)).expect("a lease was just granted");
        assert_eq!((t.src, t.dst), (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST));
        let r = parsed(&t);
        assert_eq!(r.message_type, Some(MessageType::Decline));
        assert_eq!(r.ciaddr, Ipv4Addr::UNSPECIFIED);
        assert_eq!(r.option(code::REQUESTED_IP), Some(&ADDR.octets()[..]));
        assert_eq!(r.server_id, Some(SERVER));
        assert_eq!(r.client_id, Some(our_id()));
        assert_eq!(r.xid, xid);
        assert_eq!(c.state(), State::Declined);
        assert_eq!(c.state().name(), "DECLINED");
        assert_eq!(c.lease(), None);
        assert_eq!((c.renew_at(), c.expires_at()), (None, None));
        assert_eq!(c.poll_at(), None);
        assert!(c.poll_event().is_none());
        assert!(c.poll_transmit(t0 + secs(100_000)).is_none());
        // A late ACK does not bring it back; nor does a second decline or a release.
        assert!(
            c.handle(t0, &reply(MessageType::Ack, xid, &Srv::default()))
                .is_err()
        );
        assert!(c.decline(t0).is_none());
        assert_eq!(c.state(), State::Declined);
        assert!(c.release().is_none());
    }

    #[test]
    fn decline_while_requesting_an_offer() {
        let t0 = Instant::now();
        let mut c = Client::new(config(), t0, 43);
        let xid = parsed(&c.poll_transmit(t0).unwrap()).xid;
        assert_eq!(c.offered(), None);
        let srv = Srv {
            server: OTHER_SERVER,
            yiaddr: Ipv4Addr::new(198, 18, 0, 33),
            ..Srv::default()
        };
        c.handle(t0, &reply(MessageType::Offer, xid, &srv)).unwrap();
        assert_eq!(
            c.offered(),
            Some((Ipv4Addr::new(198, 18, 0, 33), OTHER_SERVER))
        );
        c.poll_transmit(t0).unwrap();
        assert_eq!(
            c.offered(),
            Some((Ipv4Addr::new(198, 18, 0, 33), OTHER_SERVER))
        );
        let t = c.decline(t0).unwrap();
        let r = parsed(&t);
        assert_eq!(r.message_type, Some(MessageType::Decline));
        assert_eq!(r.option(code::REQUESTED_IP), Some(&[198, 18, 0, 33][..]));
        assert_eq!(r.server_id, Some(OTHER_SERVER));
        assert_eq!(c.state(), State::Declined);
        assert_eq!(c.offered(), None);
        assert!(
            c.handle(t0, &reply(MessageType::Ack, xid, &srv)).is_err(),
            "the ACK to the declined offer is ignored"
        );
        assert!(c.poll_event().is_none());
        assert_eq!(c.poll_at(), None);
    }

    #[test]
    fn decline_is_refused_where_nothing_was_offered_or_acked() {
        let t0 = Instant::now();
        // SELECTING: nothing offered yet.
        let mut c = Client::new(config(), t0, 44);
        c.poll_transmit(t0).unwrap();
        assert!(c.decline(t0).is_none());
        assert_eq!(c.state(), State::Selecting);
        // RENEWING: the address has been in use for a while; declining it now is wrong.
        let mut c = bound(t0, &Srv::default());
        let t1 = c.poll_at().unwrap();
        c.poll_transmit(t1).unwrap();
        assert!(c.decline(t1).is_none());
        assert_eq!(c.state(), State::Renewing);
        assert!(c.lease().is_some());
        // REBOOTING.
        let mut c = Client::reboot(config(), granted(&Srv::default()), t0, 45);
        c.poll_transmit(t0).unwrap();
        assert!(c.decline(t0).is_none());
        assert_eq!(c.state(), State::Rebooting);
        // Timers due at `now` fire first: BOUND at T1 is RENEWING, so no decline.
        let mut c = bound(t0, &Srv::default());
        let t1 = c.poll_at().unwrap();
        assert!(c.decline(t1).is_none());
        assert_eq!(c.state(), State::Renewing);
    }

    #[test]
    fn four_second_lease_renews_rebinds_and_expires() {
        for seed in 0..20 {
            let t0 = Instant::now();
            let mut c = Client::new(config(), t0, seed);
            let xid = parsed(&c.poll_transmit(t0).unwrap()).xid;
            let srv = Srv {
                lease: 4,
                ..Srv::default()
            };
            c.handle(t0, &reply(MessageType::Offer, xid, &srv)).unwrap();
            c.poll_transmit(t0).unwrap();
            c.handle(t0, &reply(MessageType::Ack, xid, &srv)).unwrap();
            assert!(matches!(c.poll_event(), Some(Event::Bound(_))));
            // T1 = 2 s and T2 = 3.5 s, each minus up to 5 % fuzz; expiry exactly 4 s.
            let (t1, t2) = (c.renew_at().unwrap(), c.rebind_at().unwrap());
            assert!(t1 >= t0 + ms(1900) && t1 <= t0 + ms(2000), "{:?}", t1 - t0);
            assert!(t2 >= t0 + ms(3325) && t2 <= t0 + ms(3500), "{:?}", t2 - t0);
            assert_eq!(c.expires_at(), Some(t0 + secs(4)));
            let mut log = Vec::new();
            while let Some(at) = c.poll_at() {
                for t in drain(&mut c, at) {
                    log.push((at, c.state(), t.src, t.dst));
                }
                assert!(log.len() < 20, "runaway");
            }
            assert_eq!(c.state(), State::Expired);
            assert_eq!(c.poll_event(), Some(Event::Expired));
            let renewing: Vec<_> = log.iter().filter(|e| e.1 == State::Renewing).collect();
            let rebinding: Vec<_> = log.iter().filter(|e| e.1 == State::Rebinding).collect();
            assert_eq!(renewing.len() + rebinding.len(), log.len());
            // Renews at T1, unicast, and retransmits at least once before T2.
            assert_eq!(renewing[0].0, t1);
            assert!(renewing.len() >= 2, "seed {seed}: {log:?}");
            assert!(
                renewing
                    .iter()
                    .all(|e| e.0 < t2 && (e.2, e.3) == (ADDR, SERVER))
            );
            // Rebinds at T2, broadcast, until expiry.
            assert_eq!(rebinding[0].0, t2);
            assert!(
                rebinding
                    .iter()
                    .all(|e| e.0 < t0 + secs(4) && (e.2, e.3) == (ADDR, Ipv4Addr::BROADCAST))
            );
            // Never closer than the 500 ms floor, except when cut short by T2.
            for w in log.windows(2) {
                if w[1].0 != t2 {
                    assert!(w[1].0 - w[0].0 >= ms(500), "seed {seed}: {log:?}");
                }
            }
        }
    }

    #[test]
    fn renew_retransmission_floor_scales_with_the_lease() {
        let t0 = Instant::now();
        for (lease, floor) in [(4, ms(500)), (0, ms(500)), (120, secs(15)), (480, secs(60))] {
            let c = bound(
                t0,
                &Srv {
                    lease,
                    ..Srv::default()
                },
            );
            assert_eq!(
                renew_retransmit_floor(c.lease().unwrap()),
                floor,
                "lease {lease}"
            );
        }
        // A 2-minute lease (dnsmasq's minimum): T1 60 s, T2 105 s; renewal retransmits at
        // half the remaining time (22.5 s), then at the 15 s floor, then T2 cuts it short.
        let mut c = bound(
            t0,
            &Srv {
                lease: 120,
                t1: Some(60),
                t2: Some(105),
                ..Srv::default()
            },
        );
        let t1 = c.poll_at().unwrap();
        c.poll_transmit(t1).unwrap();
        let t2 = c.rebind_at().unwrap();
        let a = c.poll_at().unwrap();
        assert_eq!(a - t1, ((t2 - t1) / 2).max(secs(15)));
        c.poll_transmit(a).unwrap();
        let b = c.poll_at().unwrap();
        assert_eq!(b, (a + ((t2 - a) / 2).max(secs(15))).min(t2));
    }

    #[test]
    fn timers_are_ordered_for_any_lease_time() {
        let t0 = Instant::now();
        let times = [0, 1, 2, 3, 4, 7, 100, 3600, u32::MAX - 1, u32::MAX];
        for lease in times {
            for (t1, t2) in [
                (None, None),
                (Some(0), Some(0)),
                (Some(u32::MAX), Some(u32::MAX)),
                (Some(lease), None),
                (None, Some(lease / 3)),
            ] {
                for seed in 0..20 {
                    let mut c = Client::new(config(), t0, seed);
                    let xid = parsed(&c.poll_transmit(t0).unwrap()).xid;
                    let srv = Srv {
                        lease,
                        t1,
                        t2,
                        ..Srv::default()
                    };
                    c.handle(t0, &reply(MessageType::Offer, xid, &srv)).unwrap();
                    c.poll_transmit(t0).unwrap();
                    c.handle(t0, &reply(MessageType::Ack, xid, &srv)).unwrap();
                    check_timers(&c, t0, lease);
                }
            }
        }
        // A persisted lease that breaks the invariant (hand-edited file) is clamped on resume.
        let mut l = granted(&Srv::default());
        (l.lease_time, l.renewal_time, l.rebinding_time) = (100, 500, 300);
        check_timers(&Client::resume(config(), l.clone(), t0, 1), t0, 100);
        (l.renewal_time, l.rebinding_time) = (90, 80);
        let c = Client::resume(config(), l, t0, 1);
        check_timers(&c, t0, 100);
        assert!(c.renew_at().unwrap() <= t0 + secs(80));
    }

    fn check_timers(c: &Client, t0: Instant, lease: u32) {
        let (a, b, e) = (c.renew_at(), c.rebind_at(), c.expires_at());
        if lease == u32::MAX {
            assert_eq!((a, b, e), (None, None, None), "infinite");
            assert_eq!(c.poll_at(), None);
            return;
        }
        let (a, b, e) = (a.unwrap(), b.unwrap(), e.unwrap());
        assert!(t0 <= a && a <= b && b <= e, "lease {lease}");
        assert_eq!(e, t0 + secs(u64::from(lease)));
        assert_eq!(c.poll_at(), Some(a));
    }

    #[test]
    fn poll_at_is_never_stuck_in_the_past() {
        use rand::rngs::SmallRng;
        use rand::{Rng, SeedableRng};
        let mut rng = SmallRng::seed_from_u64(7);
        let t0 = Instant::now();
        let old = granted(&Srv::default());
        for seed in 0..300 {
            let mut cfg = config();
            cfg.timeout = ms(rng.random_range(0..30_000));
            cfg.resend_max = ms(rng.random_range(0..70_000));
            let mut c = match seed % 3 {
                0 => Client::new(cfg, t0, seed),
                1 => Client::reboot(cfg, old.clone(), t0, seed),
                _ => Client::resume(cfg, old.clone(), t0, seed),
            };
            c.keep_trying(rng.random());
            let mut now = t0;
            for _ in 0..60 {
                // Either sleep until poll_at, as a driver does, or be woken earlier or later.
                now = match (c.poll_at(), rng.random_range(0..3)) {
                    (Some(at), 0) => at.max(now),
                    _ => now + ms(rng.random_range(0..200_000)),
                };
                drain(&mut c, now);
                if let Some(at) = c.poll_at() {
                    assert!(
                        at > now,
                        "seed {seed}: {:?} stuck at {:?}",
                        c.state(),
                        now - at
                    );
                }
                if rng.random_range(0..2) == 0 {
                    let mtype = [MessageType::Offer, MessageType::Ack, MessageType::Nak]
                        [rng.random_range(0..3)];
                    let srv = Srv {
                        lease: [0, 1, 4, 60, u32::MAX - 1, u32::MAX][rng.random_range(0..6)],
                        ..Srv::default()
                    };
                    let _ = c.handle(now, &reply(mtype, c.xid(), &srv));
                }
                while let Some(e) = c.poll_event() {
                    // Rebooted and resumed clients held a lease: in keep-trying mode, never give up.
                    if c.keeps_trying() && seed % 3 != 0 {
                        assert_ne!(e, Event::Timeout, "seed {seed}");
                    }
                }
                if c.keeps_trying() && seed % 3 != 0 {
                    assert!(!matches!(c.state(), State::Failed | State::Expired));
                }
                if let (Some(a), Some(b), Some(e)) = (c.renew_at(), c.rebind_at(), c.expires_at()) {
                    assert!(a <= b && b <= e);
                }
            }
        }
    }

    #[test]
    fn random_replies_and_times_never_panic_or_break_invariants() {
        use rand::rngs::SmallRng;
        use rand::{Rng, SeedableRng};
        let mut rng = SmallRng::seed_from_u64(99);
        let t0 = Instant::now();
        for seed in 0..300 {
            let mut c = Client::new(config(), t0, seed);
            let mut now = t0;
            for _ in 0..40 {
                now += Duration::from_millis(rng.random_range(0..5_000_000));
                let _ = c.poll_transmit(now);
                let mtype = [MessageType::Offer, MessageType::Ack, MessageType::Nak]
                    [rng.random_range(0..3)];
                let srv = Srv {
                    lease: rng.random(),
                    t1: rng.random::<bool>().then(|| rng.random()),
                    t2: rng.random::<bool>().then(|| rng.random()),
                    ..Srv::default()
                };
                let mut m = reply(mtype, c.xid(), &srv);
                if rng.random_range(0..4) == 0 {
                    let i = rng.random_range(240..m.len());
                    m[i] = rng.random();
                }
                let _ = c.handle(now, &m);
                while c.poll_event().is_some() {}
                if let Some(at) = c.poll_at() {
                    assert!(c.state() != State::Failed && c.state() != State::Expired);
                    let _ = at;
                }
                if let (Some(a), Some(b), Some(e)) = (c.renew_at(), c.rebind_at(), c.expires_at()) {
                    assert!(a <= b && b <= e);
                }
            }
        }
    }

    #[test]
    fn seeds_make_xids_deterministic_and_distinct() {
        let t0 = Instant::now();
        let a = Client::new(config(), t0, 42).xid();
        assert_eq!(Client::new(config(), t0, 42).xid(), a);
        assert_ne!(Client::new(config(), t0, 43).xid(), a);
    }

    #[test]
    fn fuzzed_timers_keep_t1_before_t2_before_expiry() {
        let t0 = Instant::now();
        for seed in 0..200 {
            let mut c = Client::new(config(), t0, seed);
            let xid = parsed(&c.poll_transmit(t0).unwrap()).xid;
            let srv = Srv {
                lease: 100,
                t1: Some(90),
                t2: Some(90),
                ..Srv::default()
            };
            c.handle(t0, &reply(MessageType::Offer, xid, &srv)).unwrap();
            c.poll_transmit(t0).unwrap();
            c.handle(t0, &reply(MessageType::Ack, xid, &srv)).unwrap();
            let (t1, t2, exp) = (
                c.renew_at().unwrap(),
                c.rebind_at().unwrap(),
                c.expires_at().unwrap(),
            );
            assert!(t1 <= t2 && t2 <= exp, "seed {seed}");
            assert_eq!(exp, t0 + secs(100));
        }
    }
}
