//! The driver's event loop ([`drive`], the smoltcp pattern): send what the client transmits, act
//! on its events, then sleep until its `poll_at`, a received datagram, a suspend, the sweeper's
//! "gone" or a command (DEL), whichever comes first. Received replies and client events are
//! handled here ([`on_received`], [`on_event`]); what is specific to servers that key leases by
//! MAC is in [`super::siblings`], the interface's upkeep in [`super::upkeep`].

use std::time::Instant;

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::Next;
use super::ctx::{Ctx, OpenError, fail_add, persist_failed, record};
use super::release::{container_gone, release_now};
use super::send::send;
use super::siblings::{Duplicate, on_offer, refuse_duplicate};
use super::upkeep::{lose_address, persist_failed_at_add, reconfigure};
use crate::daemon::clock;
use crate::daemon::identity::Verdict;
use crate::daemon::metrics;
use crate::daemon::packet::{self, PacketSocket};
use crate::daemon::table::DriverCommand;
use crate::dhcp::MessageType;
use crate::dhcp::client::{Client, Event, State};
use crate::rpc::Direction;

/// The driver loop. Its rare, large steps (events, sends, a container gone) are boxed while
/// they run, so a resting lease's task (a thousand of them on a busy node) holds only the
/// loop's own state (measured in docs/performance.md).
pub(super) async fn drive(
    mut ctx: Ctx,
    mut client: Client,
    mut socket: Option<PacketSocket>,
    mut commands: mpsc::Receiver<DriverCommand>,
) {
    let mut suspend = ctx.shared.suspend.subscribe();
    loop {
        let now = clock::now();
        while let Some(tx) = client.poll_transmit(now) {
            if socket.is_none() {
                match Box::pin(ctx.open_socket(true)).await {
                    Ok(s) => socket = Some(s),
                    Err(OpenError::ContainerGone(why)) => {
                        Box::pin(container_gone(&mut ctx, &mut client, &mut socket, why)).await;
                        return;
                    }
                    Err(OpenError::LinkGone(why)) => {
                        Box::pin(ctx.lose(why)).await;
                        return;
                    }
                    Err(OpenError::Transient(e)) => {
                        // Keep the lease: the client's retransmission schedule tries again.
                        warn!(error = %e, "cannot open the lease's socket; trying again at the next retransmission");
                        ctx.slot.status().last_error =
                            Some(format!("cannot open a socket on {}: {e}", ctx.ifname));
                        continue;
                    }
                }
            }
            // The client has moved on (SELECTING, REQUESTING...): history shows the new state.
            ctx.slot.status().state = client.state().into();
            // What SELECTING sends is a DHCPDISCOVER: note when its transaction began.
            if client.state() == State::Selecting
                && ctx.discover.map(|(xid, _)| xid) != Some(client.xid())
            {
                ctx.discover = Some((client.xid(), now));
            }
            if let Some(s) = &socket {
                Box::pin(send(s, &tx, &mut ctx)).await;
            }
        }
        ctx.slot.status().state = client.state().into();
        while let Some(event) = client.poll_event() {
            if let Next::Stop = Box::pin(on_event(&mut ctx, &mut client, &mut socket, event)).await
            {
                return;
            }
        }
        // An event may have moved the client on (a declined or abandoned lease: INIT).
        ctx.slot.status().state = client.state().into();
        if client.state() == State::Bound {
            // Nothing to hear until T1: give the fd back.
            socket = None;
        }
        // A permit whose reply did not come in time goes back (an accepted reply freed it already).
        if ctx
            .permit
            .as_ref()
            .is_some_and(|(_, until)| *until <= Instant::now())
        {
            ctx.permit = None;
        }
        let mut wake = client.poll_at().map(clock::to_monotonic);
        if let Some((_, until)) = &ctx.permit {
            wake = Some(wake.map_or(*until, |w| w.min(*until)));
        }
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let recv = async {
            match &socket {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            // A suspend was noticed: the lease clock jumped; run the timers that came due.
            Ok(()) = suspend.changed() => {}
            // The sweeper saw the namespace path change: confirm, then release and drop.
            _ = ctx.slot.gone.notified() => {
                match ctx.path_verdict() {
                    Ok(Verdict::Gone(why)) => {
                        Box::pin(container_gone(&mut ctx, &mut client, &mut socket, why)).await;
                        return;
                    }
                    Ok(Verdict::Same(())) => {}
                    Err(e) => debug!(error = %e, "cannot check the namespace path"),
                }
            }
            received = recv => match received {
                Ok(r) => {
                    if let Next::Stop = Box::pin(on_received(&mut ctx, &mut client, r)).await {
                        return;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "receive failed; reopening the socket");
                    socket = None;
                }
            },
            command = commands.recv() => {
                if let Some(DriverCommand::Release(done)) = command {
                    Box::pin(release_now(&mut ctx, &mut client, &mut socket)).await;
                    ctx.slot.status().state = client.state().into();
                    Box::pin(ctx.unpersist()).await;
                    let _ = done.send(());
                }
                return;
            }
        }
    }
}

/// A datagram for port 68 on the lease's interface: hand it to the client, count and record
/// what it accepted, and look at a DHCPOFFER before it is requested.
pub(super) async fn on_received(ctx: &mut Ctx, client: &mut Client, r: packet::Received) -> Next {
    let now = clock::now();
    let was = client.state();
    let metrics = &ctx.shared.metrics;
    match client.handle(now, &r.payload) {
        Ok(accepted) => {
            // The exchange is over: let the next one on this network go.
            ctx.permit = None;
            let t = accepted.message_type;
            metrics.message_received(t);
            if t == MessageType::Ack {
                match was {
                    State::Renewing => metrics.renewal(),
                    State::Rebinding => metrics.rebind(),
                    _ => {}
                }
            }
            ctx.server_mac = Some(r.src_mac);
            ctx.slot.push_history(
                Direction::Received,
                format!(
                    "DHCP{} {} from {}",
                    metrics::message_type_name(t),
                    accepted.yiaddr,
                    r.src_ip
                ),
            );
            debug!(from = %r.src_ip, "reply accepted");
            if was == State::Selecting && client.state() == State::Requesting {
                return on_offer(ctx, client, now);
            }
            Next::Continue
        }
        Err(why) => {
            metrics.reply_ignored();
            ctx.trace.ignored += 1;
            ctx.trace.last_ignored = Some(why.to_string());
            debug!(from = %r.src_ip, reason = %why, "reply ignored");
            Next::Continue
        }
    }
}

pub(super) async fn on_event(
    ctx: &mut Ctx,
    client: &mut Client,
    socket: &mut Option<PacketSocket>,
    event: Event,
) -> Next {
    match event {
        Event::Bound(lease) => {
            // Every ACK that binds (ADD, or a lease re-acquired after a NAK, an expiry or a
            // restart) may carry a duplicate.
            if let Duplicate::Refused(next) = refuse_duplicate(ctx, client, socket, &lease).await {
                return next;
            }
            info!(address = %lease.address, prefix = lease.prefix_len, server = %lease.server_id, lease_secs = lease.lease_time, "bound");
            let previous = ctx.slot.status().lease.clone();
            record(ctx, client, &lease, false);
            ctx.slot.status().bound_at = Some(clock::now());
            client.keep_trying(true);
            if ctx.bound_tx.is_some() {
                // Durable before answered: a configured address whose lease is not on disk is
                // one a restarted daemon would neither renew nor release.
                if let Err(e) = ctx.persist(client).await {
                    return persist_failed_at_add(ctx, client, socket, e).await;
                }
                ctx.configured = true;
                if let Some(tx) = ctx.bound_tx.take() {
                    // The main plugin configures the interface from the ADD result.
                    let _ = tx.send(Ok(lease.clone()));
                }
            } else {
                if let Err(e) = ctx.persist(client).await {
                    persist_failed(ctx, &e);
                }
                return reconfigure(ctx, client, socket, previous.as_ref(), &lease).await;
            }
        }
        Event::Renewed(lease) => {
            info!(address = %lease.address, lease_secs = lease.lease_time, "renewed");
            record(ctx, client, &lease, true);
            if let Err(e) = ctx.persist(client).await {
                persist_failed(ctx, &e);
            }
        }
        Event::Nak => {
            ctx.shared.metrics.nak();
            warn!("DHCPNAK: address withdrawn by the server; acquiring again");
            return lose_address(
                ctx,
                client,
                socket,
                "DHCPNAK from server: address withdrawn",
            )
            .await;
        }
        Event::Expired => {
            ctx.shared.metrics.expiry();
            warn!("lease expired without renewal; acquiring again");
            if let Next::Stop = lose_address(
                ctx,
                client,
                socket,
                "lease expired: no answer while RENEWING and REBINDING",
            )
            .await
            {
                return Next::Stop;
            }
            ctx.slot.status().state = State::Expired.into();
            if client.state() == State::Expired {
                // Terminal (not keeping on): nothing more to do.
                return Next::Stop;
            }
        }
        Event::Timeout => {
            let err = ctx.timeout_error(client.config().broadcast);
            warn!(error = %err, "acquisition failed");
            fail_add(ctx, err);
            return Next::Stop;
        }
    }
    Next::Continue
}
