//! DHCPv4 as the driver's protocol ([`Dhcpv4`]): the sans-IO RFC 2131 client of
//! [`crate::dhcp::client`] plus what the driver keeps for DHCPv4 alone, behind
//! [`LeaseClient`]. Its messages go out through the IPv4 packet socket; its leases are
//! persisted with the options their ADD asked for; and behind a server that keys leases by MAC
//! ([`super::siblings`]) its offers and acknowledgements are checked against the leases of the
//! attachment's siblings.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use super::Next;
use super::ctx::{Ctx, OpenError};
use super::error::AcquireError;
use super::protocol::{
    Completes, DriverLease, Event, Exchange, Heard, LeaseClient, MessageKind, Received,
};
use super::send::send;
use super::siblings::{Duplicate, give_up, on_offer, refuse_duplicate};
use crate::daemon::iface;
use crate::daemon::packet::{self, BROADCAST_MAC, PacketSocket};
use crate::daemon::table::{Status, Timers};
use crate::dhcp::client::{self, Client, State, Transmit};
use crate::dhcp::config::DEFAULT_PARAMETER_REQUEST_LIST;
use crate::dhcp::{Lease, MessageType};
use crate::lease_file::{Granted, Record, Stored};
use crate::lease_state::LeaseState;
use crate::netns::NetNs;

/// A DHCPv4 lease's client and what the driver notes about it.
#[derive(Debug)]
pub(super) struct Dhcpv4 {
    /// The RFC 2131 client.
    pub(super) client: Client,
    /// The xid of the latest DHCPDISCOVER and when (lease clock) its first transmission was
    /// due: an offer in that transaction was built after then, which is what proves a server
    /// keys by MAC when it offers a sibling's address ([`on_offer`]).
    pub(super) discover: Option<(u32, Instant)>,
}

impl Dhcpv4 {
    /// Drives `client`.
    pub(super) fn new(client: Client) -> Dhcpv4 {
        Dhcpv4 {
            client,
            discover: None,
        }
    }
}

/// How the driver names, counts and paces a DHCPv4 message of type `t` (option 53). The
/// counters' label set is closed: the RFC 2131 types and FORCERENEW (RFC 3203) by name,
/// anything else `OTHER`, so a hostile server cannot create series at will.
pub(super) fn kind_of(t: MessageType) -> MessageKind {
    let (label, name) = match t {
        MessageType::Discover => ("DISCOVER", "DHCPDISCOVER"),
        MessageType::Offer => ("OFFER", "DHCPOFFER"),
        MessageType::Request => ("REQUEST", "DHCPREQUEST"),
        MessageType::Decline => ("DECLINE", "DHCPDECLINE"),
        MessageType::Ack => ("ACK", "DHCPACK"),
        MessageType::Nak => ("NAK", "DHCPNAK"),
        MessageType::Release => ("RELEASE", "DHCPRELEASE"),
        MessageType::Inform => ("INFORM", "DHCPINFORM"),
        MessageType::ForceRenew => ("FORCERENEW", "DHCPFORCERENEW"),
        _ => ("OTHER", "DHCPOTHER"),
    };
    let exchange = match t {
        MessageType::Discover | MessageType::Request => Exchange::AwaitsReply,
        MessageType::Release | MessageType::Decline => Exchange::NoReply,
        _ => Exchange::Other,
    };
    MessageKind {
        label,
        name,
        exchange,
    }
}

impl DriverLease for Lease {
    fn address(&self) -> IpAddr {
        IpAddr::V4(self.address)
    }

    fn describe(&self) -> String {
        format!(
            "{}/{} from {} for {}s",
            self.address, self.prefix_len, self.server_id, self.lease_time
        )
    }

    fn current(st: &Status) -> Option<Lease> {
        st.lease.clone()
    }

    fn store(&self, st: &mut Status) {
        st.lease = Some(self.clone());
    }

    fn take(st: &mut Status) -> Option<Lease> {
        st.lease.take()
    }

    async fn apply(
        &self,
        ns: Arc<NetNs>,
        ifindex: u32,
        metric: Option<u32>,
    ) -> io::Result<Vec<String>> {
        iface::apply(ns, ifindex, self, metric).await
    }

    async fn withdraw(&self, ns: Arc<NetNs>, ifindex: u32) -> io::Result<bool> {
        iface::withdraw(ns, ifindex, self).await
    }
}

impl LeaseClient for Dhcpv4 {
    type Transmit = Transmit;
    type Lease = Lease;
    type Socket = PacketSocket;

    fn state(&self) -> LeaseState {
        self.client.state().into()
    }

    fn poll_at(&self) -> Option<Instant> {
        self.client.poll_at()
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.client.poll_transmit(now)
    }

    fn poll_event(&mut self) -> Option<Event<Lease>> {
        Some(match self.client.poll_event()? {
            client::Event::Bound(lease) => Event::Bound(lease),
            client::Event::Renewed(lease) => Event::Renewed(lease),
            client::Event::Nak => Event::Withdrawn("DHCPNAK from server: address withdrawn"),
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
            (MessageType::Ack, State::Renewing) => Some(Completes::Renewal),
            (MessageType::Ack, State::Rebinding) => Some(Completes::Rebind),
            _ => None,
        };
        Ok(Heard {
            kind: kind_of(accepted.message_type),
            address: IpAddr::V4(accepted.yiaddr),
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
        let lease = self.client.lease()?.clone();
        let config = self.client.config();
        let status = ctx.slot.status().clone();
        Some(Stored::V4(Record {
            attachment: ctx.slot.attachment.clone(),
            netns: status.netns.clone(),
            client_id: config.client_id.clone(),
            chaddr: ctx.identity.mac,
            derived_chaddr: (config.chaddr != ctx.identity.mac).then_some(config.chaddr),
            broadcast: config.broadcast,
            broadcast_reason: status.broadcast_reason.clone(),
            hostname: config.hostname.clone(),
            provided: config.provided.clone(),
            parameter_request_list: (config.parameter_request_list
                != DEFAULT_PARAMETER_REQUEST_LIST)
                .then(|| config.parameter_request_list.clone()),
            lease,
            granted: self
                .client
                .granted_at()
                .map(Granted::from_instant)
                .unwrap_or_else(Granted::now),
            state: self.client.state().into(),
            renewals: status.renewals,
            server_mac: ctx.server_mac,
            identity: Some(ctx.identity.clone()),
            priority: ctx.priority,
            no_unicast_discover: !ctx.unicast_discover,
        }))
    }

    fn timeout_error(&self, ctx: &Ctx) -> AcquireError {
        ctx.timeout_error(Some(self.client.config().broadcast))
    }

    fn kind(tx: &Transmit) -> MessageKind {
        kind_of(tx.message_type)
    }

    fn summary(tx: &Transmit) -> (IpAddr, IpAddr, usize) {
        (IpAddr::V4(tx.src), IpAddr::V4(tx.dst), tx.payload.len())
    }

    async fn open(ctx: &Ctx, check_path: bool) -> Result<PacketSocket, OpenError> {
        let (fd, link) = ctx.open_in_netns(check_path, packet::open_existing).await?;
        PacketSocket::new(fd, link).map_err(OpenError::Transient)
    }

    async fn recv(socket: &PacketSocket) -> io::Result<Received> {
        let r = socket.recv().await?;
        Ok(Received {
            payload: r.payload,
            src_ip: IpAddr::V4(r.src_ip),
            src_mac: Some(r.src_mac),
        })
    }

    fn send_on(socket: &PacketSocket, tx: &Transmit, ctx: &Ctx) -> io::Result<Option<[u8; 6]>> {
        let known = ctx
            .unicast_discover
            .then(|| ctx.shared.known_servers.get(&ctx.slot.attachment.network))
            .flatten();
        let dst_mac = ethernet_destination(tx, ctx.unicast_discover, ctx.server_mac, known);
        socket.send(tx.src, tx.dst, dst_mac, &tx.payload)?;
        Ok((tx.dst == Ipv4Addr::BROADCAST && dst_mac != BROADCAST_MAC).then_some(dst_mac))
    }

    fn on_transmit(&mut self, now: Instant) {
        // What SELECTING sends is a DHCPDISCOVER: note when its transaction began.
        let xid = self.client.xid();
        if self.client.state() == State::Selecting && self.discover.map(|(x, _)| x) != Some(xid) {
            self.discover = Some((xid, now));
        }
    }

    fn after_heard(&mut self, ctx: &mut Ctx, heard: &Heard, now: Instant) -> Next {
        // A DHCPOFFER is accepted only in SELECTING, and moves the client to REQUESTING.
        if heard.kind == kind_of(MessageType::Offer) && self.client.state() == State::Requesting {
            return on_offer(ctx, &mut self.client, self.discover, now);
        }
        Next::Continue
    }

    async fn check_bound(
        &mut self,
        ctx: &mut Ctx,
        socket: &Option<PacketSocket>,
        lease: &mut Lease,
    ) -> Option<Next> {
        match refuse_duplicate(ctx, &mut self.client, lease) {
            Duplicate::None => None,
            Duplicate::Refused(next) => Some(next),
            Duplicate::Decline(tx, err) => {
                if let (Some(tx), Some(s)) = (tx, socket) {
                    send::<Dhcpv4>(s, &tx, ctx).await;
                }
                Some(give_up(ctx, err))
            }
        }
    }
}

/// The Ethernet destination of `tx` (docs/design.md, *Ethernet unicast to a known server*):
///
/// - an IP unicast (RENEWING DHCPREQUEST, DHCPRELEASE) goes to `own`, the source MAC of this
///   lease's server's last reply (broadcast when unknown);
/// - with `unicast` on, the *first* transmission of a DHCPDISCOVER goes to `known`, the MAC the
///   network's server last answered any lease from (else `own`), and the first SELECTING or
///   INIT-REBOOT DHCPREQUEST to `own` (the offering server's, or the one this lease was
///   granted by; else `known`): the IP datagram is unchanged, 0.0.0.0 to 255.255.255.255, so
///   the server treats it as the broadcast it is at the IP layer;
/// - everything else is an Ethernet broadcast: every retransmission (so a stale MAC costs one
///   retransmission timeout, never the lease), the REBINDING DHCPREQUEST (RFC 2131 §4.4.5: to
///   any server, its source is the leased address) and DHCPDECLINE.
pub(super) fn ethernet_destination(
    tx: &Transmit,
    unicast: bool,
    own: Option<[u8; 6]>,
    known: Option<[u8; 6]>,
) -> [u8; 6] {
    if tx.dst != Ipv4Addr::BROADCAST {
        return own.unwrap_or(BROADCAST_MAC);
    }
    if !unicast || tx.attempt != 1 || tx.src != Ipv4Addr::UNSPECIFIED {
        return BROADCAST_MAC;
    }
    let to = match tx.message_type {
        MessageType::Discover => known.or(own),
        MessageType::Request => own.or(known),
        _ => None,
    };
    to.filter(is_unicast_mac).unwrap_or(BROADCAST_MAC)
}

/// Whether `mac` can name one station: not all-zero, not a group address (I/G bit, IEEE 802
/// §8.2). A reply's source is one already; this keeps a damaged lease file from turning a
/// first DHCPDISCOVER into a multicast.
fn is_unicast_mac(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 0 && *mac != [0; 6]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(message_type: MessageType, src: Ipv4Addr, dst: Ipv4Addr, attempt: u32) -> Transmit {
        Transmit {
            src,
            dst,
            payload: Vec::new(),
            message_type,
            attempt,
        }
    }

    /// Which sends go to which MAC: first DISCOVER to the network's server, first SELECTING
    /// REQUEST to the offering one, retransmissions, REBINDING and DECLINE broadcast, IP
    /// unicasts to the lease's own server, and nothing unicast with the switch off.
    #[test]
    fn only_first_transmissions_go_to_a_known_server() {
        let (zero, bcast) = (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST);
        let (leased, server) = (Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(10, 0, 0, 1));
        let (own_mac, known_mac) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let (own, known) = (Some(own_mac), Some(known_mac));
        let d = |t: &Transmit, unicast, own, known| ethernet_destination(t, unicast, own, known);
        let discover = tx(MessageType::Discover, zero, bcast, 1);
        assert_eq!(d(&discover, true, own, known), known_mac);
        assert_eq!(d(&discover, true, own, None), own_mac);
        assert_eq!(d(&discover, true, None, None), BROADCAST_MAC);
        assert_eq!(d(&discover, false, own, known), BROADCAST_MAC);
        let again = tx(MessageType::Discover, zero, bcast, 2);
        assert_eq!(d(&again, true, own, known), BROADCAST_MAC);
        let select = tx(MessageType::Request, zero, bcast, 1);
        assert_eq!(d(&select, true, own, known), own_mac);
        assert_eq!(d(&select, true, None, known), known_mac);
        let select2 = tx(MessageType::Request, zero, bcast, 2);
        assert_eq!(d(&select2, true, own, known), BROADCAST_MAC);
        let rebind = tx(MessageType::Request, leased, bcast, 1);
        assert_eq!(d(&rebind, true, own, known), BROADCAST_MAC);
        let decline = tx(MessageType::Decline, zero, bcast, 1);
        assert_eq!(d(&decline, true, own, known), BROADCAST_MAC);
        let renew = tx(MessageType::Request, leased, server, 3);
        assert_eq!(d(&renew, false, own, known), own_mac);
        assert_eq!(d(&renew, true, None, known), BROADCAST_MAC);
        let group = Some([3, 0, 0, 0, 0, 1]);
        assert_eq!(d(&discover, true, None, group), BROADCAST_MAC);
        assert_eq!(d(&discover, true, None, Some([0; 6])), BROADCAST_MAC);
    }

    /// The counters' labels are the metrics' own, requests are paced as exchanges and
    /// DHCPRELEASE/DHCPDECLINE as messages without a reply; an unknown type is `OTHER`.
    #[test]
    fn message_kinds_name_count_and_pace() {
        let discover = kind_of(MessageType::Discover);
        assert_eq!(
            (discover.label, discover.name),
            ("DISCOVER", "DHCPDISCOVER")
        );
        assert_eq!(discover.exchange, Exchange::AwaitsReply);
        assert_eq!(
            kind_of(MessageType::Request).exchange,
            Exchange::AwaitsReply
        );
        assert_eq!(kind_of(MessageType::Release).exchange, Exchange::NoReply);
        assert_eq!(kind_of(MessageType::Decline).exchange, Exchange::NoReply);
        assert_eq!(kind_of(MessageType::Ack).exchange, Exchange::Other);
        let other = kind_of(MessageType::Unknown(77));
        assert_eq!((other.label, other.name), ("OTHER", "DHCPOTHER"));
        for t in [
            MessageType::Discover,
            MessageType::Offer,
            MessageType::Request,
            MessageType::Decline,
            MessageType::Ack,
            MessageType::Nak,
            MessageType::Release,
            MessageType::Inform,
            MessageType::ForceRenew,
            MessageType::Unknown(77),
        ] {
            let kind = kind_of(t);
            assert!(crate::daemon::metrics::MESSAGE_TYPES.contains(&kind.label));
            assert_eq!(kind.name.strip_prefix("DHCP"), Some(kind.label));
        }
    }
}
