//! Sending one datagram of the client ([`send`]): the network's window permit for a request
//! that expects a reply, spacing for one that gets none (DHCPRELEASE, DHCPDECLINE), retries while
//! the link comes up (`ENETDOWN`) or the kernel's queue is full (`ENOBUFS`), and the counters and
//! history line of what went out (see [`crate::daemon::pacer`]).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use tracing::debug;

use super::ctx::Ctx;
use crate::daemon::metrics;
use crate::daemon::pacer::WINDOW_HOLD;
use crate::daemon::packet::{BROADCAST_MAC, PacketSocket};
use crate::dhcp::MessageType;
use crate::dhcp::client::Transmit;
use crate::rpc::Direction;

/// How long a send keeps retrying while the link comes up (`ENETDOWN`: a slave created a few
/// milliseconds ago may not be running yet). The reference slept a random back-off here and
/// turned a 10 ms ADD into seconds (docs/design.md, *The reference's bugs*).
pub(super) const LINK_UP_WAIT: Duration = Duration::from_millis(1000);

pub(super) async fn send(socket: &PacketSocket, tx: &Transmit, ctx: &mut Ctx) {
    let dst_mac = if tx.dst == Ipv4Addr::BROADCAST {
        BROADCAST_MAC
    } else {
        ctx.server_mac.unwrap_or(BROADCAST_MAC)
    };
    // A request that expects a reply holds a window permit until the reply (or WINDOW_HOLD);
    // its previous transmission's permit, if any, is given back first.
    let kind = tx.message_type;
    if matches!(kind, MessageType::Discover | MessageType::Request) {
        ctx.permit = None;
        let permit = ctx.shared.pacer.permit(&ctx.slot.attachment.network).await;
        ctx.permit = Some((permit, Instant::now() + WINDOW_HOLD));
    }
    if matches!(kind, MessageType::Release | MessageType::Decline) {
        // No reply will clock these: space them so a burst does not drown the server.
        ctx.shared
            .pacer
            .no_reply_turn(&ctx.slot.attachment.network)
            .await;
    }
    let give_up = Instant::now() + LINK_UP_WAIT;
    let mut result = socket.send(tx.src, tx.dst, dst_mac, &tx.payload);
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
        result = socket.send(tx.src, tx.dst, dst_mac, &tx.payload);
    }
    match result {
        Ok(()) => {
            ctx.trace.sent += 1;
            ctx.shared.metrics.message_sent(kind);
            let state = ctx.slot.status().state.clone();
            ctx.slot.push_history(
                Direction::Sent,
                format!(
                    "DHCP{} to {} ({state})",
                    metrics::message_type_name(kind),
                    tx.dst
                ),
            );
            debug!(src = %tx.src, dst = %tx.dst, bytes = tx.payload.len(), "sent");
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
