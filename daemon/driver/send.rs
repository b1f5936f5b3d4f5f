//! Sending one datagram of the client ([`send`]): the network's window permit for a request
//! that expects a reply, spacing for one that gets none (DHCPRELEASE, DHCPDECLINE), retries while
//! the link comes up (`ENETDOWN`) or the kernel's queue is full (`ENOBUFS`), and the counters and
//! history line of what went out (see [`crate::daemon::pacer`]).

use std::time::{Duration, Instant};

use tracing::debug;

use super::ctx::Ctx;
use super::protocol::{Exchange, LeaseClient};
use crate::daemon::pacer::WINDOW_HOLD;
use crate::rpc::Direction;

/// How long a send keeps retrying while the link comes up (`ENETDOWN`: a slave created a few
/// milliseconds ago may not be running yet). The reference slept a random back-off here and
/// turned a 10 ms ADD into seconds (docs/design.md, *The reference's bugs*).
pub(super) const LINK_UP_WAIT: Duration = Duration::from_millis(1000);

/// Sends `tx` on `socket` for the lease of `ctx`: paced by its kind (a window permit for a
/// request that awaits a reply, a turn for one that gets none), retried while the link comes
/// up or the kernel's queue is full, then counted and recorded in the lease's history. A send
/// that fails is left to the client's retransmission schedule.
pub(super) async fn send<C: LeaseClient>(socket: &C::Socket, tx: &C::Transmit, ctx: &mut Ctx) {
    let kind = C::kind(tx);
    // A request that expects a reply holds a window permit until the reply (or WINDOW_HOLD);
    // its previous transmission's permit, if any, is given back first.
    if kind.exchange == Exchange::AwaitsReply {
        ctx.permit = None;
        let permit = ctx.shared.pacer.permit(&ctx.slot.attachment.network).await;
        ctx.permit = Some((permit, Instant::now() + WINDOW_HOLD));
    }
    if kind.exchange == Exchange::NoReply {
        // No reply will clock these: space them so a burst does not drown the server.
        ctx.shared
            .pacer
            .no_reply_turn(&ctx.slot.attachment.network)
            .await;
    }
    let give_up = Instant::now() + LINK_UP_WAIT;
    let mut result = C::send_on(socket, tx, ctx);
    loop {
        let errno = result.as_ref().err().and_then(|e| e.raw_os_error());
        if Instant::now() >= give_up {
            break;
        }
        match errno {
            // A slave created milliseconds ago may not be running yet.
            Some(libc::ENETDOWN) => tokio::time::sleep(Duration::from_millis(5)).await,
            // The kernel's queue is full (the backlog behind a broadcast's fan-out, see
            // crate::daemon::pacer): nothing left the host. Wait for a retry turn and send
            // again, rather than wait out a 4-second retransmission for a loss we know of.
            Some(libc::ENOBUFS) => {
                ctx.shared.metrics.send_retried();
                ctx.shared.pacer.retry_turn().await
            }
            _ => break,
        }
        result = C::send_on(socket, tx, ctx);
    }
    let (src, dst, bytes) = C::summary(tx);
    match result {
        Ok(via) => {
            ctx.trace.sent += 1;
            ctx.shared.metrics.message_sent(ctx.slot.family, kind.label);
            let state = ctx.slot.status().state.clone();
            // An IP broadcast sent as an Ethernet unicast says so: "... to 255.255.255.255
            // via 52:54:00:12:34:56 (SELECTING)".
            let via = via.map(|mac| format!(" via {}", crate::lease_file::mac::to_string(&mac)));
            let via = via.unwrap_or_default();
            ctx.slot.push_history(
                Direction::Sent,
                format!("{} to {dst}{via} ({state})", kind.name),
            );
            debug!(%src, %dst, via, bytes, "sent");
        }
        Err(e) => {
            // The retransmission timer tries again. No reply can come: free the window permit.
            ctx.permit = None;
            ctx.trace.send_errors += 1;
            ctx.trace.last_send_error = Some(e.to_string());
            debug!(error = %e, "send failed");
        }
    }
}
