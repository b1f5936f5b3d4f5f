//! The seam between the lease driver and a protocol's client.
//!
//! Everything the driver does for a lease that does not depend on the protocol is written
//! against [`LeaseClient`]: the loop that sends what the client transmits and sleeps until its
//! `poll_at` (`event_loop.rs`), the window permits and spacing of sends (`send.rs`), the lease's
//! status, history and counters, persistence before an ADD is answered, the interface's upkeep
//! on loss and return, release on DEL or when the container is gone, and the sweeper. What a
//! protocol brings is its sans-IO client (for DHCPv4, [`crate::dhcp::Client`], RFC 2131), how
//! its messages are named, paced and put on the wire, what of a lease goes to disk, and the
//! checks of its own that the driver must run at two points (a reply heard, a lease bound).
//! Two implement it: DHCPv4 ([`super::v4::Dhcpv4`], the IPv4 packet socket of
//! [`crate::daemon::packet`]) and DHCPv6 ([`super::v6::Dhcpv6`], RFC 8415, a UDP socket on port
//! 546 of [`crate::daemon::udp6`]). Each brings its lease type ([`DriverLease`]: what the
//! status shows and what goes on the interface) and its socket type; the driver's events
//! ([`Event`]) are the same for both.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::Next;
use super::ctx::{Ctx, OpenError};
use crate::daemon::table::{Status, Timers};
use crate::lease_file::Stored;
use crate::lease_state::LeaseState;
use crate::netns::NetNs;

/// What the driver must act on, from [`LeaseClient::poll_event`]: each protocol's client
/// events, in the driver's terms.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Event<L> {
    /// A lease to configure (the first, or one acquired again after a loss or a restart).
    Bound(L),
    /// The same lease with new times (RENEWING or REBINDING answered).
    Renewed(L),
    /// The server took the address back (DHCPNAK; DHCPv6 NotOnLink, a valid lifetime of 0,
    /// NoAddrsAvail after NoBinding): stop using it now. Why, for the history.
    Withdrawn(&'static str),
    /// The lease ran out unrenewed.
    Expired,
    /// No lease within the acquisition budget.
    Timeout,
}

/// A datagram received on a lease's socket.
#[derive(Debug)]
pub(crate) struct Received {
    /// The UDP payload.
    pub(crate) payload: Vec<u8>,
    /// Its source address.
    pub(crate) src_ip: IpAddr,
    /// Its link-layer source, when the socket sees it (the IPv4 packet socket does).
    pub(crate) src_mac: Option<[u8; 6]>,
}

/// A lease as the driver keeps it: in the lease's [`Status`], and on the interface when the
/// daemon puts it back after a loss ([`crate::daemon::iface`]).
pub(super) trait DriverLease: Clone + Send + Sync + 'static {
    /// The leased address.
    fn address(&self) -> IpAddr;
    /// One line for the "bound" log and history: address, prefix, server, lifetime.
    fn describe(&self) -> String;
    /// The status's lease of this type.
    fn current(st: &Status) -> Option<Self>;
    /// Puts `self` into the status as its lease.
    fn store(&self, st: &mut Status);
    /// Takes the lease out of the status.
    fn take(st: &mut Status) -> Option<Self>;
    /// Puts the address and routes on interface `ifindex` of `ns` (routes with `metric`);
    /// returns the routes that failed, as text. Errors: the address could not be added.
    fn apply(
        &self,
        ns: Arc<NetNs>,
        ifindex: u32,
        metric: Option<u32>,
    ) -> impl Future<Output = io::Result<Vec<String>>> + Send;
    /// Takes the address (and with it its routes) off the interface; whether it was there.
    fn withdraw(
        &self,
        ns: Arc<NetNs>,
        ifindex: u32,
    ) -> impl Future<Output = io::Result<bool>> + Send;
}

/// Whether a message opens an exchange that a reply closes, for pacing
/// ([`crate::daemon::pacer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exchange {
    /// A request that expects a reply (DHCPDISCOVER, DHCPREQUEST): it holds the network's
    /// window permit until the reply or [`crate::daemon::pacer::WINDOW_HOLD`].
    AwaitsReply,
    /// A message no reply will clock (DHCPRELEASE, DHCPDECLINE): spaced per network so a burst
    /// does not drown the server.
    NoReply,
    /// Neither (a message a client does not normally send).
    Other,
}

/// What a message is, as the driver needs to know it to pace, count and record it; given by
/// the protocol, so the driver never parses a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MessageKind {
    /// The value of the `type` label of the message counters ("DISCOVER", "ACK", ...; see
    /// [`crate::daemon::metrics`]).
    pub(crate) label: &'static str,
    /// The message as the lease's history shows it ("DHCPDISCOVER", "DHCPACK", ...).
    pub(crate) name: &'static str,
    /// How it is paced.
    pub(crate) exchange: Exchange,
}

/// A received reply the client accepted, as the driver records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Heard {
    /// What it was.
    pub(crate) kind: MessageKind,
    /// The address it offers or grants (DHCPv4 yiaddr, 0.0.0.0 in a DHCPNAK; DHCPv6 the IA
    /// Address, `::` when none).
    pub(crate) address: IpAddr,
    /// Which renewal it completed, if it did (for the renewal and rebind counters).
    pub(crate) completes: Option<Completes>,
}

/// The kind of lease extension a reply completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Completes {
    /// From the lease's server, past T1 (RFC 2131 §4.4.5 RENEWING).
    Renewal,
    /// From any server, past T2 (RENEWING timed out: REBINDING).
    Rebind,
}

/// A protocol's client as the lease driver drives it. Time is the lease clock
/// ([`crate::daemon::clock`]), passed in, as the sans-IO client expects.
pub(super) trait LeaseClient: Send + Sized + 'static {
    /// A datagram the client wants sent.
    type Transmit: Send + Sync;
    /// The lease it grants.
    type Lease: DriverLease;
    /// The socket its messages go through, on the lease's interface in its namespace.
    type Socket: Send + Sync + 'static;

    /// The client's state, as the table and the lease files name it.
    fn state(&self) -> LeaseState;
    /// When the client next needs [`LeaseClient::poll_transmit`] or
    /// [`LeaseClient::poll_event`] called, if ever.
    fn poll_at(&self) -> Option<Instant>;
    /// The next datagram due at `now`, if any.
    fn poll_transmit(&mut self, now: Instant) -> Option<Self::Transmit>;
    /// The next event to act on (bound, renewed, lost, timed out), if any.
    fn poll_event(&mut self) -> Option<Event<Self::Lease>>;
    /// A UDP payload received on the lease's interface: what it was if the client took it,
    /// else why it was dropped (for logs and the timeout's details).
    fn handle(&mut self, now: Instant, payload: &[u8]) -> Result<Heard, String>;
    /// The message that gives the lease back, if one is held; the client is then done.
    fn release(&mut self) -> Option<Self::Transmit>;
    /// Whether a lost lease is acquired again in the background rather than given up.
    fn keep_trying(&mut self, yes: bool);
    /// Whether the client is done for good (released, failed, declined, or expired without
    /// keeping on).
    fn finished(&self) -> bool;
    /// Whether nothing can arrive until the next timer (a bound lease before T1): the driver
    /// gives its socket back meanwhile.
    fn resting(&self) -> bool;
    /// The held lease's renewal, rebinding and expiry instants (None without a lease, or for
    /// an infinite one).
    fn timers(&self) -> Option<Timers>;
    /// What to write to the state directory for the held lease (None without one), from the
    /// client and the lease's context.
    fn to_record(&self, ctx: &Ctx) -> Option<Stored>;
    /// The error an ADD gets when no lease came within the budget.
    fn timeout_error(&self, ctx: &Ctx) -> super::AcquireError;

    /// What `tx` is.
    fn kind(tx: &Self::Transmit) -> MessageKind;
    /// `tx`'s source and destination addresses and its payload's length in bytes (for logs
    /// and history).
    fn summary(tx: &Self::Transmit) -> (IpAddr, IpAddr, usize);
    /// Opens the lease's socket on its interface inside the namespace the lease holds
    /// ([`Ctx::open_in_netns`]); with `check_path`, only while the namespace path still names
    /// that namespace.
    fn open(
        ctx: &Ctx,
        check_path: bool,
    ) -> impl Future<Output = Result<Self::Socket, OpenError>> + Send;
    /// The next datagram for the client's port on `socket`.
    fn recv(socket: &Self::Socket) -> impl Future<Output = io::Result<Received>> + Send;
    /// Puts `tx` on the wire through `socket` for the lease of `ctx` (whose `server_mac` is the
    /// link-layer source of its server's last reply, the destination of unicasts to it).
    /// Returns the MAC an IP broadcast was sent to as an Ethernet unicast, if it was
    /// (DHCPv4's first DHCPDISCOVER or DHCPREQUEST to a known server), for the history.
    ///
    /// Errors: the socket's send error (`ENETDOWN`, `ENOBUFS`... are retried by the caller).
    fn send_on(
        socket: &Self::Socket,
        tx: &Self::Transmit,
        ctx: &Ctx,
    ) -> io::Result<Option<[u8; 6]>>;

    /// Called just before the transmission of `tx` at `now` (DHCPv4 notes when a
    /// DHCPDISCOVER's transaction began).
    fn on_transmit(&mut self, now: Instant);
    /// A reply was just accepted: the protocol's own checks (DHCPv4: an offer that proves the
    /// server keys leases by MAC is refused, [`super::siblings::on_offer`]).
    fn after_heard(&mut self, ctx: &mut Ctx, heard: &Heard, now: Instant) -> Next;
    /// Whether [`LeaseClient::upkeep`] has something to do at `now` (cheap; the loop asks every
    /// turn). Its time is part of [`LeaseClient::poll_at`].
    fn upkeep_due(&self, _now: Instant) -> bool {
        false
    }
    /// The protocol's own upkeep of a bound lease, when [`LeaseClient::upkeep_due`] says so
    /// (DHCPv6: DECLINE an address whose duplicate address detection failed); `Some` stops the
    /// loop there with what it does next.
    fn upkeep(
        &mut self,
        _ctx: &mut Ctx,
        _socket: &mut Option<Self::Socket>,
        _now: Instant,
    ) -> impl Future<Output = Option<Next>> + Send {
        async { None }
    }
    /// A lease was just bound, before it is recorded or answered: `Some` stops there with what
    /// the loop does next (DHCPv4: an address another live lease holds is declined or
    /// dropped, [`super::siblings::refuse_duplicate`]). It may complete the lease (DHCPv6:
    /// the on-link prefix and router from the link's Router Advertisements).
    fn check_bound(
        &mut self,
        ctx: &mut Ctx,
        socket: &Option<Self::Socket>,
        lease: &mut Self::Lease,
    ) -> impl Future<Output = Option<Next>> + Send;
}
