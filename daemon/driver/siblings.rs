//! Leases that share a chaddr (ipvlan slaves of one master) behind a server that keys leases by
//! MAC and ignores option 61: an offer is refused when it proves the server does
//! ([`on_offer`]), and an acknowledged address that another live lease holds is declined or
//! dropped, never handed out twice ([`refuse_duplicate`]). See docs/design.md, *DHCP servers*.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use tracing::warn;

use super::Next;
use super::ctx::{Ctx, fail_add};
use super::error::AcquireError;
use crate::daemon::clock;
use crate::daemon::table::Status;
use crate::dhcp::Lease;
use crate::dhcp::client::{Client, Transmit};
use crate::lease_state::LeaseState;
use crate::rpc::Direction;

/// A live lease of another attachment that shares our chaddr and holds a lease from `server`.
pub(super) struct Sibling {
    pub(super) attachment: String,
    pub(super) address: Ipv4Addr,
    pub(super) bound_at: Option<Instant>,
}

/// The first other live lease of the table for which `f` gives something (the lease's status
/// and lease), with its attachment: one unordered scan, as at every DHCPOFFER and DHCPACK.
pub(super) fn other_lease<T>(
    ctx: &Ctx,
    f: impl Fn(&Status, &Lease) -> Option<T>,
) -> Option<(String, T)> {
    ctx.shared.table.snapshot().into_iter().find_map(|other| {
        if Arc::ptr_eq(&other, &ctx.slot) {
            return None;
        }
        let st = other.status();
        let lease = st.lease.as_ref().filter(|_| st.state != LeaseState::Lost)?;
        f(&st, lease).map(|t| (other.attachment.to_string(), t))
    })
}

pub(super) fn sibling_of(ctx: &Ctx, server: Ipv4Addr, chaddr: [u8; 6]) -> Option<Sibling> {
    other_lease(ctx, |st, lease| {
        (st.chaddr == chaddr && lease.server_id == server).then_some((lease.address, st.bound_at))
    })
    .map(|(attachment, (address, bound_at))| Sibling {
        attachment,
        address,
        bound_at,
    })
}

/// The error of an ADD (and the `last_error` of a background acquisition) behind a server that
/// keys leases by MAC: the same explanation every time.
pub(super) fn mac_keyed_error(
    att: &str,
    server: Ipv4Addr,
    chaddr: [u8; 6],
    holder: &str,
) -> AcquireError {
    AcquireError::MacKeyed {
        server,
        chaddr,
        holder: holder.to_string(),
        attachment: att.to_string(),
    }
}

/// A DHCPOFFER was just accepted and is about to be requested. Behind a server that has shown
/// it keys by MAC (an earlier ACK or offer of a sibling's address for the same MAC), requesting
/// any address would move that MAC's only binding away from the sibling that holds it: refuse
/// the offer instead, without a word to the server. An offer of the very address a sibling
/// with our MAC holds from this server, in a transaction begun after the sibling was bound, is
/// such a proof (a server keying by option 61 had bound it to the sibling before it saw our
/// DHCPDISCOVER and would not offer it).
///
/// `discover` is the xid of the latest DHCPDISCOVER and when its transaction began.
pub(super) fn on_offer(
    ctx: &mut Ctx,
    client: &mut Client,
    discover: Option<(u32, Instant)>,
    now: Instant,
) -> Next {
    let Some((address, server)) = client.offered() else {
        return Next::Continue;
    };
    let chaddr = client.config().chaddr;
    let Some(sibling) = sibling_of(ctx, server, chaddr) else {
        return Next::Continue;
    };
    let known = ctx.shared.mac_keyed.lock().contains(&(server, chaddr));
    let began = discover
        .filter(|(xid, _)| *xid == client.xid())
        .map(|(_, at)| at);
    let proof = sibling.address == address
        && matches!((began, sibling.bound_at), (Some(b), Some(s)) if b > s);
    if !known && !proof {
        return Next::Continue;
    }
    mark_mac_keyed(ctx, server, chaddr);
    warn!(%address, %server, holder = %sibling.attachment, "offer refused: the server keys leases by MAC");
    let err = mac_keyed_error(&ctx.att(), server, chaddr, &sibling.attachment);
    refuse(ctx, client, now, err)
}

pub(super) fn mark_mac_keyed(ctx: &Ctx, server: Ipv4Addr, chaddr: [u8; 6]) {
    ctx.shared.mac_keyed.lock().insert((server, chaddr));
}

/// Gives up the offer or lease at hand without telling the server: an ADD fails with `err`;
/// a background acquisition records it and starts again later ([`Client::abandon`]).
pub(super) fn refuse(ctx: &mut Ctx, client: &mut Client, now: Instant, err: AcquireError) -> Next {
    client.abandon(now);
    give_up(ctx, err)
}

/// What a DHCPACK that duplicates a live lease's address means.
pub(super) enum Duplicate {
    /// No other live lease holds the address.
    None,
    /// Refused: continue with the client as it is now (a background acquisition), or stop.
    Refused(Next),
    /// Declined: send this DHCPDECLINE (if the client made one), then [`give_up`] with the
    /// error.
    Decline(Option<Transmit>, AcquireError),
}

/// A DHCPACK gave `lease`, whose address another live lease holds (from the same server, or
/// on the same master). When the holder has our chaddr and got it from the same server, the
/// server keys by MAC and its ACK just renewed the holder's own binding: that address must not
/// be declined (a DHCPDECLINE would make the server take it from the holder), so it is dropped
/// silently. Otherwise the address really is in use by someone else: DHCPDECLINE (RFC 2131
/// §4.4.1). Either way no duplicate is handed out: an ADD fails (code 7); a background
/// acquisition starts again 10 s later. Judged at the ACK (and at the OFFER only on proof,
/// [`on_offer`]): an OFFER is no commitment, and a correct server answering many simultaneous
/// DISCOVERs does offer an address that another client binds a moment later (seen with dnsmasq
/// at 200 parallel ADDs); REQUESTing it then just gets a DHCPNAK and a new DISCOVER.
pub(super) fn refuse_duplicate(ctx: &mut Ctx, client: &mut Client, lease: &Lease) -> Duplicate {
    let chaddr = client.config().chaddr;
    let (address, server) = (lease.address, lease.server_id);
    // On the same master: the same interface MAC (every ipvlan slave has the master's),
    // whatever chaddr each sends. Keying by MAC is told by the chaddr sent.
    let link_mac = ctx.identity.mac;
    let holder = other_lease(ctx, |st, held| {
        let same_master = st.identity.as_ref().is_some_and(|i| i.mac == link_mac);
        (held.address == address && (held.server_id == server || same_master))
            .then_some(st.chaddr == chaddr && held.server_id == server)
    });
    let Some((holder, mac_keyed)) = holder else {
        return Duplicate::None;
    };
    let now = clock::now();
    let att = ctx.att();
    if mac_keyed {
        mark_mac_keyed(ctx, server, chaddr);
        warn!(%address, %server, holder = %holder, "ACK for a sibling's address: the server keys leases by MAC; not declined");
        let err = mac_keyed_error(&att, server, chaddr, &holder);
        return Duplicate::Refused(refuse(ctx, client, now, err));
    }
    warn!(%address, %server, holder = %holder, "duplicate address acknowledged: declining");
    ctx.shared.metrics.decline();
    let err = AcquireError::Declined {
        server,
        address,
        attachment: att,
        holder,
    };
    Duplicate::Decline(client.decline(now), err)
}

/// An offer or lease given up (refused, or declined once its DHCPDECLINE went out): an ADD
/// fails with `err` and its slot goes; a background acquisition records `err` and goes on (the
/// client starts again later: [`Client::abandon`], [`crate::dhcp::client::DECLINE_WAIT`]).
pub(super) fn give_up(ctx: &mut Ctx, err: AcquireError) -> Next {
    if ctx.bound_tx.is_some() {
        fail_add(ctx, err);
        ctx.shared.table.remove(&ctx.slot);
        Next::Stop
    } else {
        ctx.slot.push_history(Direction::Event, err.to_string());
        ctx.slot.status().last_error = Some(err.to_string());
        Next::Continue
    }
}
