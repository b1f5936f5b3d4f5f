//! The DHCP client state machine (RFC 2131 §4.4, figure 5), sans-IO in the style of smoltcp's
//! `dhcpv4` socket: it owns no socket and reads no clock. The driver (the lease daemon) feeds it
//! the current time and every UDP payload received on port 68, sends what
//! [`Client::poll_transmit`] returns, drains [`Client::poll_event`], and sleeps until
//! [`Client::poll_at`]. Because time is only ever an input, every RFC rule below is unit-tested in
//! microseconds with a fake clock, and a fuzzer can drive the machine directly.
//!
//! Acquisition: INIT → DHCPDISCOVER → SELECTING → first acceptable DHCPOFFER → DHCPREQUEST →
//! REQUESTING → DHCPACK → BOUND ([`Event::Bound`]). A reply is accepted only when its xid is ours
//! and its echoed option 61, when present (RFC 6842), is ours: on ipvlan every slave sees every
//! other slave's broadcast replies and chaddr is the same for all of them (shared NOTES §1). A
//! DHCPNAK while REQUESTING restarts from INIT with a new xid inside the same time budget; when the
//! budget ([`ClientConfig::timeout`]) runs out: [`Event::Timeout`], state FAILED.
//!
//! Lease life: at T1 RENEWING (unicast DHCPREQUEST to the server from the leased address), at T2
//! REBINDING (broadcast DHCPREQUEST), at expiry EXPIRED ([`Event::Expired`], nothing more sent).
//! A DHCPACK there is [`Event::Renewed`]; a DHCPNAK is [`Event::Nak`]: the address must stop
//! being used, and the client starts a fresh acquisition (INIT) that the driver may continue or drop.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dhcproto::v4::MessageType;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::message::{self, DEFAULT_PARAMETER_REQUEST_LIST, Kind};
use super::options::{Lease, ParseError, parse_reply};

/// First retransmission delay in SELECTING and REQUESTING (RFC 2131 §4.1: "4 seconds").
const INITIAL_RETRANSMIT: Duration = Duration::from_secs(4);
/// Random fuzz of ±1 s on each SELECTING/REQUESTING retransmission (RFC 2131 §4.1), in ms.
const RETRANSMIT_FUZZ_MS: i64 = 1000;
/// Floor on any retransmission delay, so a zero `resend_max` cannot make the driver spin.
const MIN_RETRANSMIT: Duration = Duration::from_millis(100);
/// Minimum RENEWING/REBINDING retransmission delay (RFC 2131 §4.4.5: "down to a minimum of 60
/// seconds").
const MIN_RENEW_RETRANSMIT: Duration = Duration::from_secs(60);
/// DHCPREQUESTs sent in REQUESTING without answer before going back to INIT (RFC 2131 §4.4.1:
/// "after employing the retransmission algorithm, the client reverts to INIT state").
const MAX_REQUESTS: u32 = 4;
/// T1/T2 are moved earlier by a random fuzz of up to 1/20 of their value (RFC 2131 §4.4.5: "SHOULD
/// be chosen with some random fuzz"), so that leases granted together do not renew together.
const TIMER_FUZZ_DIVISOR: u64 = 20;

/// What the client sends and how long it tries; one per container interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Option 61 data (RFC 2132 §9.14), e.g. from [`message::client_id`]; sent in every message
    /// (omitted when empty) and required to match in replies that echo it (RFC 6842).
    pub client_id: Vec<u8>,
    /// chaddr: the interface's MAC (on ipvlan, the master's).
    pub chaddr: [u8; 6],
    /// Set the BOOTP broadcast flag on DHCPDISCOVER and SELECTING DHCPREQUEST (RFC 2131 §4.1) so
    /// the server broadcasts its replies: needed on ipvlan (shared NOTES §1).
    pub broadcast: bool,
    /// Option 55 codes (RFC 2132 §9.8); omitted when empty.
    pub parameter_request_list: Vec<u8>,
    /// Option 12 host name (RFC 2132 §3.14), sent when set and non-empty.
    pub hostname: Option<String>,
    /// Budget for one acquisition, from INIT to BOUND, NAK restarts included (the daemon's
    /// `-timeout`, default 10 s).
    pub timeout: Duration,
    /// Cap on the SELECTING/REQUESTING retransmission interval (the daemon's `-resendmax`,
    /// default 62 s).
    pub resend_max: Duration,
}

impl ClientConfig {
    /// A configuration with the reference's defaults: broadcast flag set,
    /// [`DEFAULT_PARAMETER_REQUEST_LIST`], no host name, 10 s timeout, 62 s resend cap.
    pub fn new(client_id: Vec<u8>, chaddr: [u8; 6]) -> ClientConfig {
        ClientConfig {
            client_id,
            chaddr,
            broadcast: true,
            parameter_request_list: DEFAULT_PARAMETER_REQUEST_LIST.to_vec(),
            hostname: None,
            timeout: Duration::from_secs(10),
            resend_max: Duration::from_secs(62),
        }
    }
}

/// Client states (RFC 2131 §4.4, figure 5), plus the terminal states of this implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// The lease expired without renewal; terminal, nothing more is sent.
    Expired,
    /// DHCPRELEASE sent (or released without a lease); terminal.
    Released,
    /// The acquisition budget ran out; terminal.
    Failed,
}

/// A UDP datagram to send from client port 68 to server port 67.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Source address: 0.0.0.0 before a lease is configured, the leased address (ciaddr) in
    /// RENEWING, REBINDING and for DHCPRELEASE.
    pub src: Ipv4Addr,
    /// Destination: 255.255.255.255 (DHCPDISCOVER, SELECTING and REBINDING DHCPREQUEST), or the
    /// server identifier (RENEWING DHCPREQUEST, DHCPRELEASE).
    pub dst: Ipv4Addr,
    /// The DHCP message (UDP payload).
    pub payload: Vec<u8>,
}

/// Something the driver must act on, from [`Client::poll_event`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// DHCPACK in REQUESTING: configure this lease.
    Bound(Lease),
    /// DHCPACK in RENEWING/REBINDING: the lease (same address) with new times.
    Renewed(Lease),
    /// DHCPNAK in RENEWING/REBINDING: stop using the address now (RFC 2131 §4.4.5). The client is
    /// back in INIT and will DISCOVER again if polled.
    Nak,
    /// The lease expired in REBINDING: stop using the address. State EXPIRED.
    Expired,
    /// No lease within [`ClientConfig::timeout`]. State FAILED.
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
    /// What to send; fixed for the client's life.
    config: ClientConfig,
    /// Seeded source for xids and timer fuzz, so tests are deterministic.
    rng: SmallRng,
    /// Current RFC 2131 state.
    state: State,
    /// Current transaction id: new for each acquisition attempt and each renewal.
    xid: u32,
    /// When the current acquisition or renewal began: `secs` counts from it (RFC 2131 §2).
    started: Instant,
    /// End of the acquisition budget; None outside INIT/SELECTING/REQUESTING.
    deadline: Option<Instant>,
    /// When the next (re)transmission is due; None when nothing is scheduled.
    next_tx: Option<Instant>,
    /// Transmissions so far in the current state (drives the exponential backoff).
    attempts: u32,
    /// The accepted offer while REQUESTING: (requested address, server identifier).
    offer: Option<(Ipv4Addr, Ipv4Addr)>,
    /// When the latest DHCPREQUEST was sent: lease times count from it (RFC 2131 §4.4.1).
    last_request: Option<Instant>,
    /// The lease held (BOUND, RENEWING, REBINDING) or that expired (EXPIRED).
    lease: Option<Lease>,
    /// T1 (fuzzed); None = never (infinite lease or beyond `Instant`'s range).
    t1_at: Option<Instant>,
    /// T2 (fuzzed); None = never.
    t2_at: Option<Instant>,
    /// Lease expiry; None = never.
    expires_at: Option<Instant>,
    /// Events not yet taken by [`Client::poll_event`].
    events: VecDeque<Event>,
}

fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

impl Client {
    /// A client in INIT whose first DHCPDISCOVER goes out on the first
    /// [`poll_transmit`](Client::poll_transmit) at or after `now`; the acquisition budget starts
    /// at `now`. `seed` seeds the xid and fuzz generator (use a random one outside tests).
    pub fn new(config: ClientConfig, now: Instant, seed: u64) -> Client {
        let mut rng = SmallRng::seed_from_u64(seed);
        let xid = rng.random();
        Client {
            deadline: now.checked_add(config.timeout),
            config,
            rng,
            state: State::Init,
            xid,
            started: now,
            next_tx: Some(now),
            attempts: 0,
            offer: None,
            last_request: None,
            lease: None,
            t1_at: None,
            t2_at: None,
            expires_at: None,
            events: VecDeque::new(),
        }
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The lease held in BOUND, RENEWING, REBINDING, or the one that expired in EXPIRED (so the
    /// driver can remove it); None otherwise.
    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
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
    /// anything (BOUND with an infinite lease) or the state is terminal. May be in the past.
    pub fn poll_at(&self) -> Option<Instant> {
        match self.state {
            State::Init => self.next_tx,
            State::Selecting | State::Requesting => min_opt(self.next_tx, self.deadline),
            State::Bound => self.t1_at,
            State::Renewing => min_opt(self.next_tx, self.t2_at),
            State::Rebinding => min_opt(self.next_tx, self.expires_at),
            State::Expired | State::Released | State::Failed => None,
        }
    }

    /// Run the timers up to `now`, then return the message due now, if any.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.advance(now);
        if self.next_tx.is_none_or(|t| now < t) {
            return None;
        }
        if self.state == State::Requesting && self.attempts >= MAX_REQUESTS {
            // The server went quiet after offering: look for another (same budget).
            self.restart(now, false);
        }
        let secs = u16::try_from(now.saturating_duration_since(self.started).as_secs())
            .unwrap_or(u16::MAX);
        let broadcast = Ipv4Addr::BROADCAST;
        let (kind, src, dst) = match (self.state, self.offer, self.lease.as_ref()) {
            (State::Init | State::Selecting, _, _) => {
                self.state = State::Selecting;
                (Kind::Discover, Ipv4Addr::UNSPECIFIED, broadcast)
            }
            (State::Requesting, Some((requested, server_id)), _) => (
                Kind::Select {
                    requested,
                    server_id,
                },
                Ipv4Addr::UNSPECIFIED,
                broadcast,
            ),
            (State::Renewing, _, Some(l)) => {
                (Kind::Renew { ciaddr: l.address }, l.address, l.server_id)
            }
            (State::Rebinding, _, Some(l)) => {
                (Kind::Renew { ciaddr: l.address }, l.address, broadcast)
            }
            _ => {
                self.next_tx = None;
                return None;
            }
        };
        self.attempts = self.attempts.saturating_add(1);
        if matches!(kind, Kind::Select { .. } | Kind::Renew { .. }) {
            self.last_request = Some(now);
        }
        self.next_tx = Some(self.retransmit_at(now));
        Some(Transmit {
            src,
            dst,
            payload: message::build(&self.config, kind, self.xid, secs),
        })
    }

    /// When to retransmit after a transmission at `now` in the current state.
    fn retransmit_at(&mut self, now: Instant) -> Instant {
        let far = |d: Duration| now.checked_add(d).unwrap_or(now);
        match self.state {
            State::Renewing | State::Rebinding => {
                // RFC 2131 §4.4.5: half the time left until T2 (RENEWING) or expiry (REBINDING),
                // at least 60 s, never past that timer (which then changes state anyway).
                let until = if self.state == State::Renewing {
                    self.t2_at
                } else {
                    self.expires_at
                };
                let wait = until.map_or(MIN_RENEW_RETRANSMIT, |t| {
                    (t.saturating_duration_since(now) / 2).max(MIN_RENEW_RETRANSMIT)
                });
                min_opt(Some(far(wait)), until).unwrap_or(now)
            }
            _ => {
                // RFC 2131 §4.1: 4 s, 8 s, 16 s... ±1 s, capped at resend_max.
                let exp = self.attempts.saturating_sub(1).min(16);
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
                far(wait.min(self.config.resend_max).max(MIN_RETRANSMIT))
            }
        }
    }

    /// Back to INIT with a new xid, DISCOVER due at `now`. `new_budget` starts a fresh
    /// acquisition budget (after a lease was lost) rather than continuing the current one.
    fn restart(&mut self, now: Instant, new_budget: bool) {
        self.state = State::Init;
        self.xid = self.rng.random();
        self.next_tx = Some(now);
        self.attempts = 0;
        self.offer = None;
        self.last_request = None;
        if new_budget {
            self.started = now;
            self.deadline = now.checked_add(self.config.timeout);
        }
    }

    /// Fire the timers that are due at `now`: acquisition timeout, T1, T2, expiry (in order, so a
    /// driver that wakes late still passes through every state).
    fn advance(&mut self, now: Instant) {
        let due = |t: Option<Instant>| t.is_some_and(|t| now >= t);
        if matches!(
            self.state,
            State::Init | State::Selecting | State::Requesting
        ) && due(self.deadline)
        {
            self.state = State::Failed;
            self.next_tx = None;
            self.deadline = None;
            self.offer = None;
            self.events.push_back(Event::Timeout);
        }
        if self.state == State::Bound && due(self.t1_at) {
            self.state = State::Renewing;
            self.xid = self.rng.random();
            self.started = now;
            self.attempts = 0;
            self.next_tx = Some(now);
        }
        if self.state == State::Renewing && due(self.t2_at) {
            self.state = State::Rebinding;
            self.attempts = 0;
            self.next_tx = Some(now);
        }
        if self.state == State::Rebinding && due(self.expires_at) {
            self.state = State::Expired;
            self.next_tx = None;
            self.events.push_back(Event::Expired);
        }
    }

    /// Feed one UDP payload received on port 68 at `now`. `Err` says why it was dropped; the
    /// state is then unchanged (except for timers due at `now`, which fire first).
    pub fn handle(&mut self, now: Instant, payload: &[u8]) -> Result<(), Ignored> {
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
        let state = self.state;
        match (state, message_type) {
            (State::Selecting, MessageType::Offer) => {
                let lease = reply.to_lease().map_err(Ignored::BadLease)?;
                self.offer = Some((lease.address, lease.server_id));
                self.state = State::Requesting;
                self.attempts = 0;
                self.next_tx = Some(now);
                Ok(())
            }
            (State::Requesting, MessageType::Ack | MessageType::Nak) => {
                let expected = self.offer.map_or(Ipv4Addr::UNSPECIFIED, |(_, s)| s);
                let nak = message_type == MessageType::Nak;
                // A NAK MUST carry option 54 (RFC 2131 table 3) but be lenient if it does not.
                if reply.server_id != Some(expected) && !(nak && reply.server_id.is_none()) {
                    return Err(Ignored::WrongServer {
                        expected,
                        got: reply.server_id,
                    });
                }
                if nak {
                    self.restart(now, false);
                    return Ok(());
                }
                let lease = reply.to_lease().map_err(Ignored::BadLease)?;
                self.bind(now, lease, Event::Bound);
                Ok(())
            }
            (State::Renewing | State::Rebinding, MessageType::Ack | MessageType::Nak) => {
                let Some(held) = self.lease.as_ref() else {
                    return Err(Ignored::Unexpected {
                        state,
                        message_type,
                    });
                };
                // In RENEWING we talk to the lease's server only; in REBINDING any server may
                // answer (RFC 2131 §4.4.5).
                let nak = message_type == MessageType::Nak;
                if state == State::Renewing
                    && reply.server_id != Some(held.server_id)
                    && !(nak && reply.server_id.is_none())
                {
                    return Err(Ignored::WrongServer {
                        expected: held.server_id,
                        got: reply.server_id,
                    });
                }
                if nak {
                    self.lease = None;
                    self.t1_at = None;
                    self.t2_at = None;
                    self.expires_at = None;
                    self.events.push_back(Event::Nak);
                    self.restart(now, true);
                    return Ok(());
                }
                let lease = reply.to_lease().map_err(Ignored::BadLease)?;
                if lease.address != held.address {
                    return Err(Ignored::AddressChanged {
                        held: held.address,
                        got: lease.address,
                    });
                }
                self.bind(now, lease, Event::Renewed);
                Ok(())
            }
            _ => Err(Ignored::Unexpected {
                state,
                message_type,
            }),
        }
    }

    /// Enter BOUND with `lease`, timers counted from the latest DHCPREQUEST (RFC 2131 §4.4.1).
    fn bind(&mut self, now: Instant, lease: Lease, event: fn(Lease) -> Event) {
        let base = self.last_request.unwrap_or(now);
        if lease.lease_time == u32::MAX {
            // Infinite lease (RFC 2131 §3.3): never renew, never expire.
            self.t1_at = None;
            self.t2_at = None;
            self.expires_at = None;
        } else {
            let secs = |s: u32| Duration::from_secs(u64::from(s));
            let fuzzed = |rng: &mut SmallRng, s: u32| {
                let max_ms = u64::from(s) * 1000 / TIMER_FUZZ_DIVISOR;
                let fuzz = Duration::from_millis(rng.random_range(0..=max_ms));
                base.checked_add(secs(s).saturating_sub(fuzz))
            };
            self.expires_at = base.checked_add(secs(lease.lease_time));
            self.t2_at = fuzzed(&mut self.rng, lease.rebinding_time);
            self.t1_at = min_opt(fuzzed(&mut self.rng, lease.renewal_time), self.t2_at);
        }
        self.state = State::Bound;
        self.deadline = None;
        self.next_tx = None;
        self.attempts = 0;
        self.offer = None;
        self.events.push_back(event(lease.clone()));
        self.lease = Some(lease);
    }

    /// Give the lease back: a DHCPRELEASE (RFC 2131 §4.4.6) unicast from the leased address
    /// (ciaddr) to the server identifier, with a fresh xid, when a lease is held (BOUND, RENEWING,
    /// REBINDING); None otherwise. Either way the state becomes RELEASED and nothing more is sent.
    pub fn release(&mut self) -> Option<Transmit> {
        let held = matches!(
            self.state,
            State::Bound | State::Renewing | State::Rebinding
        );
        let out = match self.lease.take() {
            Some(lease) if held => {
                self.xid = self.rng.random();
                Some(Transmit {
                    src: lease.address,
                    dst: lease.server_id,
                    payload: message::build(
                        &self.config,
                        Kind::Release {
                            ciaddr: lease.address,
                            server_id: lease.server_id,
                        },
                        self.xid,
                        0,
                    ),
                })
            }
            _ => None,
        };
        self.state = State::Released;
        self.next_tx = None;
        self.deadline = None;
        self.t1_at = None;
        self.t2_at = None;
        self.expires_at = None;
        out
    }
}
