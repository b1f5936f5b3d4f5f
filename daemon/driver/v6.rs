//! DHCPv6 as the driver's protocol ([`Dhcpv6`]): the sans-IO RFC 8415 client of
//! [`crate::dhcp6::client`] behind [`LeaseClient`], its UDP socket on port 546
//! ([`crate::daemon::udp6`]), and what DHCPv6 leaves to Router Advertisements: the on-link
//! prefix length of the address and the default router (docs/design.md, *Router
//! Advertisements*), read from the link in the container's namespace
//! ([`crate::daemon::ra_listen`]) when the first lease binds.
//!
//! An ADD ([`start`]) with DHCPv6 on enters the namespace once: it opens the UDP socket and the
//! RA socket, sends a Router Solicitation at once (so the RA is on its way while the SOLICIT
//! is), and waits for the interface's link-local address to leave duplicate address detection
//! (RFC 4862 §5.4) before the first SOLICIT, which must leave from it (RFC 8415 §13). The
//! identity is per container: DUID-UUID from the container ID and network name, IAID from the
//! ifname (docs/design.md, *DHCPv6 identity*), or the ipam `provide` overrides.
//!
//! A restarted daemon resumes a persisted lease ([`resume`]): within its lifetimes it waits
//! for T1 as before, past them it REBINDs the remembered address (RFC 8415 §18.2.5 after a
//! restart; the client's `reboot`).

use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::{debug, info};

use super::Next;
use super::ctx::{Ctx, OpenError};
use super::error::AcquireError;
use super::protocol::{
    Completes, DriverLease, Event, Exchange, Heard, LeaseClient, MessageKind, Received,
};
use super::resume::{Persisted, Resumed, start_resumed};
use super::start::{enter, launch, new_ctx};
use crate::daemon::clock;
use crate::daemon::iface;
use crate::daemon::ra_listen::{self, LinkLocal, RaSocket};
use crate::daemon::shared::Shared;
use crate::daemon::table::{Handle, Slot, Status, Timers};
use crate::daemon::udp6::{self, Udp6Socket};
use crate::dhcp6::client::{self, Client, State, Transmit};
use crate::dhcp6::{ClientConfig, Leased6, MessageType};
use crate::lease_file::{Granted, Record6, Stored};
use crate::netns::NetNs;
use crate::rpc::{AddOptions, Family};

/// Default of how long the first binding waits for a Router Advertisement that has not come
/// yet, counted from the Router Solicitation sent at ADD (`-ra-wait`, `Config::ra_wait`). RFC 4861 §6.3.7 has a host wait up to 1 s before
/// soliciting and routers answer within 0.5 s (§6.2.6); without an RA by then the lease is
/// configured as a /128 without a default route (README, *DHCPv6*).
pub(crate) const RA_WAIT: Duration = Duration::from_secs(2);

/// Longest wait for the interface's link-local address to leave DAD before the first SOLICIT:
/// DAD takes `RetransTimer` (1 s) per probe after a random delay of up to 1 s (RFC 4862
/// §5.4.2); a link just set up is given twice that.
pub(crate) const DAD_WAIT: Duration = Duration::from_secs(4);

/// How often the link-local address is looked at during [`DAD_WAIT`].
const DAD_POLL: Duration = Duration::from_millis(50);

/// How long after a binding, and then how often, the daemon looks whether the leased address
/// (put on the interface by the main plugin after ADD, or by the daemon after a lost lease came
/// back) failed duplicate address detection: DAD takes 1-2 s (RFC 4862 §5.4).
const DAD_CHECK_EVERY: Duration = Duration::from_secs(2);

/// How many times: the main plugin configures the address after the ADD's answer, which may
/// take a while; an address still absent after that is left alone.
const DAD_CHECKS: u32 = 5;

/// What the link's Router Advertisement gave for the lease: on-link prefix length, router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OnLink {
    prefix_len: u8,
    router: Option<Ipv6Addr>,
}

/// A DHCPv6 lease's client and what the driver keeps for DHCPv6 alone.
pub(super) struct Dhcpv6 {
    /// The RFC 8415 client.
    client: Client,
    /// The RA socket, from ADD until the first binding has heard (or given up on) an RA.
    ra: Option<RaSocket>,
    /// Until when (monotonic) the first binding waits for an RA.
    ra_until: Instant,
    /// What the RA gave, once heard (or the persisted lease's): kept for renewals and for
    /// leases acquired again on the same link.
    on_link: Option<OnLink>,
    /// The next look (lease clock) at the bound address's DAD state and how many are left.
    dad_check: Option<(Instant, u32)>,
}

impl std::fmt::Debug for Dhcpv6 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dhcpv6")
            .field("client", &self.client)
            .field("ra", &self.ra.is_some())
            .field("on_link", &self.on_link)
            .field("dad_check", &self.dad_check)
            .finish()
    }
}

/// How the driver names, counts and paces a DHCPv6 message of type `t` (RFC 8415 §7.3). The
/// label set is closed ([`crate::daemon::metrics::MESSAGE_TYPES6`]): the nine types a client
/// and server exchange, anything else `OTHER`.
pub(super) fn kind_of(t: MessageType) -> MessageKind {
    let (label, name) = match t {
        MessageType::Solicit => ("SOLICIT", "SOLICIT"),
        MessageType::Advertise => ("ADVERTISE", "ADVERTISE"),
        MessageType::Request => ("REQUEST", "REQUEST"),
        MessageType::Confirm => ("CONFIRM", "CONFIRM"),
        MessageType::Renew => ("RENEW", "RENEW"),
        MessageType::Rebind => ("REBIND", "REBIND"),
        MessageType::Reply => ("REPLY", "REPLY"),
        MessageType::Release => ("RELEASE", "RELEASE"),
        MessageType::Decline => ("DECLINE", "DECLINE"),
        MessageType::Other(_) => ("OTHER", "OTHER"),
    };
    let exchange = match t {
        MessageType::Solicit
        | MessageType::Request
        | MessageType::Confirm
        | MessageType::Renew
        | MessageType::Rebind => Exchange::AwaitsReply,
        // Their REPLY is not waited for (RFC 8415 §18.2.7 would retransmit them; we send once).
        MessageType::Release | MessageType::Decline => Exchange::NoReply,
        _ => Exchange::Other,
    };
    MessageKind {
        label,
        name,
        exchange,
    }
}

impl DriverLease for Leased6 {
    fn address(&self) -> IpAddr {
        IpAddr::V6(self.lease.address)
    }

    fn describe(&self) -> String {
        let router = self
            .router
            .map_or_else(|| "no router".to_string(), |r| format!("router {r}"));
        format!(
            "{}/{} ({router}) for {}s valid, {}s preferred",
            self.lease.address,
            self.prefix_len,
            self.lease.valid_lifetime,
            self.lease.preferred_lifetime
        )
    }

    fn current(st: &Status) -> Option<Leased6> {
        st.lease6.clone()
    }

    fn store(&self, st: &mut Status) {
        st.lease6 = Some(self.clone());
    }

    fn take(st: &mut Status) -> Option<Leased6> {
        st.lease6.take()
    }

    async fn apply(
        &self,
        ns: Arc<NetNs>,
        ifindex: u32,
        metric: Option<u32>,
    ) -> io::Result<Vec<String>> {
        iface::apply6(ns, ifindex, self, metric).await
    }

    async fn withdraw(&self, ns: Arc<NetNs>, ifindex: u32) -> io::Result<bool> {
        iface::withdraw6(ns, ifindex, self).await
    }
}

impl Dhcpv6 {
    /// The client's lease with what the RA gave.
    fn leased(&self, lease: crate::dhcp6::Lease6) -> Leased6 {
        match self.on_link {
            Some(o) => Leased6 {
                lease,
                prefix_len: o.prefix_len,
                router: o.router,
            },
            None => Leased6::without_ra(lease),
        }
    }

    /// Waits (until [`Dhcpv6::ra_until`]) for the link's RA and reads what it says of
    /// `address`; opens the RA socket first if the ADD's is gone. Never fails: without an RA
    /// the address is a /128 without a router.
    async fn hear_router(&mut self, ctx: &Ctx, address: Ipv6Addr) -> OnLink {
        if self.ra.is_none() {
            let ifname = ctx.ifname.clone();
            let (ifindex, mac) = (ctx.identity.ifindex, ctx.identity.mac);
            match ctx.ns.run_async(move || ra_listen::open(&ifname)).await {
                Ok(fd) => match RaSocket::new(fd) {
                    Ok(sock) => {
                        if let Err(e) = sock.solicit(ifindex, mac) {
                            debug!(error = %e, "cannot send a Router Solicitation");
                        }
                        self.ra = Some(sock);
                        self.ra_until = Instant::now() + ctx.shared.config.ra_wait;
                    }
                    Err(e) => debug!(error = %e, "cannot register the RA socket"),
                },
                Err(e) => debug!(error = %e, "cannot open the RA socket"),
            }
        }
        let none = OnLink {
            prefix_len: 128,
            router: None,
        };
        let Some(sock) = self.ra.take() else {
            return none;
        };
        let within = self.ra_until.saturating_duration_since(Instant::now());
        match ra_listen::first_router(&sock, within).await {
            Some(heard) => OnLink {
                prefix_len: heard.prefix_len_for(address).unwrap_or(128),
                router: heard.default_router().map(|(router, _)| router),
            },
            None => {
                info!(
                    wait_secs = ctx.shared.config.ra_wait.as_secs_f64(),
                    "no Router Advertisement heard: the address is configured as a /128 without a default route"
                );
                none
            }
        }
    }
}

impl LeaseClient for Dhcpv6 {
    type Transmit = Transmit;
    type Lease = Leased6;
    type Socket = Udp6Socket;

    fn state(&self) -> crate::lease_state::LeaseState {
        self.client.state().into()
    }

    fn poll_at(&self) -> Option<Instant> {
        crate::dhcp::timing::min_opt(self.client.poll_at(), self.dad_check.map(|(at, _)| at))
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.client.poll_transmit(now)
    }

    fn poll_event(&mut self) -> Option<Event<Leased6>> {
        Some(match self.client.poll_event()? {
            client::Event::Bound(lease) => Event::Bound(self.leased(lease)),
            client::Event::Renewed(lease) => Event::Renewed(self.leased(lease)),
            client::Event::Lost => Event::Withdrawn(
                "DHCPv6 server withdrew the address (NotOnLink, NoBinding or a valid lifetime of 0)",
            ),
            client::Event::Expired => Event::Expired,
            client::Event::Timeout => Event::Timeout,
        })
    }

    fn handle(&mut self, now: Instant, payload: &[u8]) -> Result<Heard, String> {
        let was = self.client.state();
        let accepted = self
            .client
            .handle(now, payload)
            .map_err(|e| e.to_string())?;
        let completes = match (accepted.message_type, was) {
            (MessageType::Reply, State::Renewing) => Some(Completes::Renewal),
            (MessageType::Reply, State::Rebinding) => Some(Completes::Rebind),
            _ => None,
        };
        Ok(Heard {
            kind: kind_of(accepted.message_type),
            address: IpAddr::V6(accepted.address),
            completes,
        })
    }

    fn release(&mut self) -> Option<Transmit> {
        self.client.release()
    }

    fn keep_trying(&mut self, yes: bool) {
        self.client.keep_trying(yes);
    }

    fn finished(&self) -> bool {
        matches!(
            self.client.state(),
            State::Released | State::Failed | State::Declined | State::Expired
        )
    }

    fn resting(&self) -> bool {
        self.client.state() == State::Bound
    }

    fn timers(&self) -> Option<Timers> {
        let c = &self.client;
        Timers::of(c.renew_at(), c.rebind_at(), c.expires_at())
    }

    fn to_record(&self, ctx: &Ctx) -> Option<Stored> {
        let lease = self.leased(self.client.lease()?.clone());
        let config = self.client.config();
        let status = ctx.slot.status().clone();
        Some(Stored::V6(Record6 {
            attachment: ctx.slot.attachment.clone(),
            netns: status.netns.clone(),
            family: Family::Ipv6,
            duid: config.duid.clone(),
            iaid: config.iaid,
            lease,
            granted: self
                .client
                .granted_at()
                .map(Granted::from_instant)
                .unwrap_or_else(Granted::now),
            state: self.client.state().into(),
            renewals: status.renewals,
            identity: Some(ctx.identity.clone()),
            priority: ctx.priority,
        }))
    }

    fn timeout_error(&self, ctx: &Ctx) -> AcquireError {
        ctx.timeout_error(None)
    }

    fn kind(tx: &Transmit) -> MessageKind {
        kind_of(tx.message_type)
    }

    fn summary(tx: &Transmit) -> (IpAddr, IpAddr, usize) {
        // The source is the interface's link-local address, which the kernel picks.
        (
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            IpAddr::V6(*tx.dst.ip()),
            tx.payload.len(),
        )
    }

    async fn open(ctx: &Ctx, check_path: bool) -> Result<Udp6Socket, OpenError> {
        let (fd, link) = ctx
            .open_in_netns(check_path, |ifname, expect| {
                udp6::open(ifname, Some(expect))
            })
            .await?;
        Udp6Socket::new(fd, link).map_err(OpenError::Transient)
    }

    async fn recv(socket: &Udp6Socket) -> io::Result<Received> {
        let r = socket.recv().await?;
        Ok(Received {
            payload: r.payload,
            src_ip: IpAddr::V6(*r.src.ip()),
            src_mac: None,
        })
    }

    fn send_on(socket: &Udp6Socket, tx: &Transmit, _ctx: &Ctx) -> io::Result<Option<[u8; 6]>> {
        socket.send_to(&tx.payload, tx.dst).map(|()| None)
    }

    fn on_transmit(&mut self, _now: Instant) {}

    fn upkeep_due(&self, now: Instant) -> bool {
        self.dad_check.is_some_and(|(at, _)| at <= now)
    }

    /// DAD of the bound address: failed, it is DECLINEd (RFC 8415 §18.2.8), taken off the
    /// interface and a new one acquired in the background (after the client's DECLINE_WAIT);
    /// still tentative or not configured yet, looked at again.
    async fn upkeep(
        &mut self,
        ctx: &mut Ctx,
        socket: &mut Option<Udp6Socket>,
        now: Instant,
    ) -> Option<Next> {
        let (_, left) = self.dad_check.take()?;
        let address = self.client.lease()?.address;
        let ifindex = ctx.identity.ifindex;
        let state = ctx
            .ns
            .run_async(move || ra_listen::address_here(ifindex, address))
            .await;
        match state {
            Ok(LinkLocal::DadFailed) => {}
            Ok(LinkLocal::Ready(_)) => return None,
            Ok(LinkLocal::Tentative | LinkLocal::Missing) | Err(_) => {
                if left > 1 {
                    self.dad_check = now
                        .checked_add(DAD_CHECK_EVERY)
                        .map(|at| (at, left.saturating_sub(1)));
                }
                return None;
            }
        }
        let why = format!(
            "{address} failed duplicate address detection on {}: DECLINE sent, acquiring another",
            ctx.ifname
        );
        tracing::warn!(%address, "DAD failed for the leased address; declining it");
        let tx = self.client.decline(now)?;
        ctx.shared.metrics.decline();
        if socket.is_none() {
            match Self::open(ctx, true).await {
                Ok(s) => *socket = Some(s),
                Err(_) => debug!("cannot open the socket for the DECLINE"),
            }
        }
        if let Some(s) = socket.as_ref() {
            super::send::send::<Self>(s, &tx, ctx).await;
        }
        match super::upkeep::lose_address(ctx, self, socket, &why).await {
            Next::Stop => Some(Next::Stop),
            Next::Continue => None,
        }
    }

    fn after_heard(&mut self, _ctx: &mut Ctx, _heard: &Heard, _now: Instant) -> Next {
        Next::Continue
    }

    async fn check_bound(
        &mut self,
        ctx: &mut Ctx,
        _socket: &Option<Udp6Socket>,
        lease: &mut Leased6,
    ) -> Option<Next> {
        let on_link = match self.on_link {
            Some(o) => o,
            None => {
                let o = self.hear_router(ctx, lease.lease.address).await;
                self.on_link = Some(o);
                o
            }
        };
        // The RA socket is for the first binding only: a bound lease holds no socket.
        self.ra = None;
        lease.prefix_len = on_link.prefix_len;
        lease.router = on_link.router;
        self.dad_check = clock::now()
            .checked_add(DAD_CHECK_EVERY)
            .map(|at| (at, DAD_CHECKS));
        None
    }
}

/// The client configuration of a DHCPv6 lease: its identity (derived, or the ADD's
/// overrides), Rapid Commit asked for (a server that allows it binds in one exchange, RFC 8415
/// §18.2.1), and the daemon's `-timeout`.
///
/// Errors: a DUID override of the wrong length.
fn client_config(
    config: &crate::daemon::Config,
    slot: &Slot,
    options: &AddOptions,
) -> Result<ClientConfig, AcquireError> {
    let a = &slot.attachment;
    let overrides = options.dhcp6.clone().unwrap_or_default();
    let mut c = ClientConfig::for_container(
        &a.container_id,
        &a.network,
        &a.ifname,
        overrides.duid.as_deref(),
    )
    .map_err(AcquireError::DuidLength)?;
    if let Some(iaid) = overrides.iaid {
        c.iaid = iaid;
    }
    c.rapid_commit = true;
    c.timeout = config.timeout;
    Ok(c)
}

/// Waits (on the namespace's threads) for the interface's link-local address to leave DAD.
///
/// Errors: none after [`DAD_WAIT`], DAD failed, IPv6 off on the interface.
async fn wait_for_link_local(
    ns: &NetNs,
    ifname: &str,
    ifindex: u32,
    first: LinkLocal,
) -> Result<Ipv6Addr, AcquireError> {
    let give_up = Instant::now() + DAD_WAIT;
    let mut state = first;
    loop {
        let reason = match state {
            LinkLocal::Ready(a) => return Ok(a),
            LinkLocal::DadFailed => {
                return Err(AcquireError::NoLinkLocal {
                    ifname: ifname.to_owned(),
                    reason: "its link-local address failed duplicate address detection".into(),
                });
            }
            LinkLocal::Tentative => "its link-local address is still tentative (DAD)",
            LinkLocal::Missing => "it has no link-local address",
        };
        if Instant::now() >= give_up {
            return Err(AcquireError::NoLinkLocal {
                ifname: ifname.to_owned(),
                reason: format!("after {}s {reason}", DAD_WAIT.as_secs()),
            });
        }
        tokio::time::sleep(DAD_POLL).await;
        state = ns
            .run_async(move || ra_listen::link_local_here(ifindex))
            .await
            .map_err(|e| AcquireError::io("cannot read the interface's IPv6 addresses", e))?;
    }
}

/// Starts keeping a DHCPv6 lease for `slot`'s attachment (CNI ADD with `dhcp6` on): enters
/// the namespace ([`enter`]: the UDP socket on port 546, the RA socket, a Router
/// Solicitation), waits for the link-local address, spawns the driver and waits for its first
/// binding (on disk by then).
///
/// Errors: as DHCPv4's [`super::start`], and [`AcquireError::NoLinkLocal`],
/// [`AcquireError::DuidLength`].
pub(crate) async fn start(
    shared: &Arc<Shared>,
    slot: Arc<Slot>,
    options: &AddOptions,
) -> Result<Handle, AcquireError> {
    let client_config = client_config(&shared.config, &slot, options)?;
    let entered = enter(
        shared,
        options,
        &slot.attachment.ifname,
        "a DHCPv6 socket",
        |ifname| {
            // As for DHCPv4: a main plugin may hand over a link that is still down (the
            // reference macvlan sets it up after IPAM); up, it gets its link-local address,
            // optimistic so the SOLICIT need not wait for DAD.
            crate::daemon::packet::set_up_with(ifname, || udp6::optimistic_dad(ifname))?;
            let (fd, link) = udp6::open(ifname, None)?;
            // Without an RA socket the lease is still kept, as a /128 (hear_router says so).
            let ra = ra_listen::open(ifname).ok();
            let ll = if udp6::ipv6_disabled(ifname) {
                None
            } else {
                Some(ra_listen::link_local_here(link.ifindex)?)
            };
            Ok(((fd, ra, ll), link))
        },
    )
    .await?;
    let (ifindex, mac) = (entered.identity.ifindex, entered.identity.mac);
    *slot.status() = Status {
        netns: options.netns.clone(),
        identity: Some(entered.identity.clone()),
        client_id: client_config.duid.clone(),
        chaddr: mac,
        state: State::Init.into(),
        broadcast_reason: "DHCPv6: multicast to ff02::1:2".into(),
        ..Status::default()
    };
    let (bound_tx, bound_rx) = oneshot::channel();
    let (ctx, (fd, ra_fd, ll)) = new_ctx(
        shared,
        &slot,
        entered,
        options.priority,
        // DHCPv6 has no broadcast to replace: its SOLICIT goes to a multicast group.
        false,
        bound_tx,
    );
    let Some(ll) = ll else {
        return Err(AcquireError::NoLinkLocal {
            ifname: ctx.ifname.clone(),
            reason: format!(
                "IPv6 is disabled on it (net.ipv6.conf.{}.disable_ipv6 = 1)",
                ctx.ifname
            ),
        });
    };
    let link_local = wait_for_link_local(&ctx.ns, &ctx.ifname, ifindex, ll).await?;
    debug!(%link_local, "link-local address ready");
    // Solicited now (from the link-local address, RFC 4861 §6.3.7), the RA is on its way while
    // the SOLICIT is.
    let ra = ra_fd.and_then(|fd| RaSocket::new(fd).ok());
    if let Some(sock) = &ra
        && let Err(e) = sock.solicit(ifindex, mac)
    {
        debug!(error = %e, "cannot send a Router Solicitation");
    }
    let ra_until = Instant::now() + shared.config.ra_wait;
    let socket = Udp6Socket::new(fd, crate::daemon::packet::LinkAddr { ifindex, mac })
        .map_err(|e| AcquireError::io("cannot register socket", e))?;
    let client = Dhcpv6 {
        client: Client::new(client_config, clock::now(), rand::random()),
        ra,
        ra_until,
        on_link: None,
        dad_check: None,
    };
    launch(shared, ctx, client, socket, bound_rx).await
}

/// [`super::resume`] of a DHCPv6 lease: within its valid lifetime the client resumes where
/// its times say; past it, it REBINDs the remembered address ([`Client::reboot`]).
pub(super) async fn resume(shared: &Arc<Shared>, record: Record6) -> Resumed {
    let persisted = Persisted::of_v6(&record);
    let expired = persisted.is_expired();
    let mut config = ClientConfig::new(record.duid.clone(), record.iaid);
    config.rapid_commit = true;
    config.timeout = shared.config.timeout;
    let seed = rand::random();
    let lease = record.lease.lease.clone();
    let mut client = if expired {
        Client::reboot(config, lease, clock::now(), seed)
    } else {
        Client::resume(config, lease, record.granted_instant(), seed)
    };
    client.keep_trying(true);
    let client = Dhcpv6 {
        client,
        ra: None,
        ra_until: Instant::now(),
        on_link: Some(OnLink {
            prefix_len: record.lease.prefix_len,
            router: record.lease.router,
        }),
        dad_check: None,
    };
    let slot = shared.table.slot(&record.attachment, Family::Ipv6);
    let op = slot.op.lock().await;
    *slot.status() = Status {
        netns: record.netns.clone(),
        identity: record.identity.clone(),
        client_id: record.duid.clone(),
        state: client.state(),
        broadcast_reason: "DHCPv6: multicast to ff02::1:2".into(),
        lease6: (!expired).then(|| record.lease.clone()),
        timers: client.timers(),
        renewals: record.renewals,
        bound_at: (!expired).then(|| record.granted_instant()),
        ..Status::default()
    };
    start_resumed(shared, &slot, op, persisted, client).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests are paced as exchanges, RELEASE and DECLINE as messages without a reply; every
    /// label is one the metrics know.
    #[test]
    fn message_kinds_name_count_and_pace() {
        let all = [
            MessageType::Solicit,
            MessageType::Advertise,
            MessageType::Request,
            MessageType::Confirm,
            MessageType::Renew,
            MessageType::Rebind,
            MessageType::Reply,
            MessageType::Release,
            MessageType::Decline,
            MessageType::Other(12),
        ];
        for t in all {
            let kind = kind_of(t);
            assert!(
                crate::daemon::metrics::MESSAGE_TYPES6.contains(&kind.label),
                "{}",
                kind.label
            );
        }
        assert_eq!(
            kind_of(MessageType::Solicit).exchange,
            Exchange::AwaitsReply
        );
        assert_eq!(kind_of(MessageType::Renew).exchange, Exchange::AwaitsReply);
        assert_eq!(kind_of(MessageType::Release).exchange, Exchange::NoReply);
        assert_eq!(kind_of(MessageType::Reply).exchange, Exchange::Other);
        assert_eq!(kind_of(MessageType::Other(12)).label, "OTHER");
    }

    /// The identity is the container's unless the ADD overrides it; a bad DUID is refused.
    #[test]
    fn identity_is_derived_or_overridden() {
        let table = crate::daemon::table::Table::default();
        let att = crate::rpc::Attachment {
            container_id: "c1".into(),
            network: "n".into(),
            ifname: "eth0".into(),
        };
        let slot = table.slot(&att, Family::Ipv6);
        let config = crate::daemon::Config::default();
        let mut options = AddOptions {
            dhcp6: Some(Default::default()),
            ..AddOptions::default()
        };
        let c = client_config(&config, &slot, &options).unwrap();
        assert_eq!(c.duid, crate::dhcp6::identity::duid("c1", "n"));
        assert_eq!(c.iaid, crate::dhcp6::identity::iaid("eth0"));
        assert!(c.rapid_commit);
        options.dhcp6 = Some(crate::rpc::Dhcp6Options {
            duid: Some(vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 1]),
            iaid: Some(7),
        });
        let c = client_config(&config, &slot, &options).unwrap();
        assert_eq!((c.duid.len(), c.iaid), (10, 7));
        options.dhcp6 = Some(crate::rpc::Dhcp6Options {
            duid: Some(vec![0, 3]),
            iaid: None,
        });
        assert_eq!(
            client_config(&config, &slot, &options).unwrap_err(),
            AcquireError::DuidLength(2)
        );
    }
}
