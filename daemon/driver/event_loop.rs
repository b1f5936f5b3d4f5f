//! The driver's event loop ([`drive`], the smoltcp pattern): send what the client transmits, act
//! on its events, then sleep until its `poll_at`, a received datagram, a suspend, the sweeper's
//! "gone" or a command (DEL), whichever comes first. Received replies and client events are
//! handled here ([`on_received`], [`on_event`]) for any [`LeaseClient`]; what a protocol checks
//! itself it does in its hooks (DHCPv4: [`super::v4`]), the interface's upkeep is in
//! [`super::upkeep`].

use std::time::Instant;

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::Next;
use super::ctx::{Ctx, OpenError, fail_add, persist_failed};
use super::protocol::{Completes, DriverLease, Event, LeaseClient, Received};
use super::release::{container_gone, release_now};
use super::send::send;
use super::upkeep::{lose_address, persist_failed_at_add, reconfigure};
use crate::daemon::clock;
use crate::daemon::identity::Verdict;
use crate::daemon::table::DriverCommand;
use crate::rpc::Direction;

/// The driver loop. Its rare, large steps (events, sends, a container gone) are boxed while
/// they run, so a resting lease's task (a thousand of them on a busy node) holds only the
/// loop's own state (measured in docs/performance.md).
pub(super) async fn drive<C: LeaseClient>(
    mut ctx: Ctx,
    mut client: C,
    mut socket: Option<C::Socket>,
    mut commands: mpsc::Receiver<DriverCommand>,
) {
    let mut suspend = ctx.shared.suspend.subscribe();
    loop {
        let now = clock::now();
        if client.upkeep_due(now)
            && let Some(Next::Stop) = Box::pin(client.upkeep(&mut ctx, &mut socket, now)).await
        {
            return;
        }
        while let Some(tx) = client.poll_transmit(now) {
            if socket.is_none() {
                match Box::pin(C::open(&ctx, true)).await {
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
            ctx.slot.status().state = client.state();
            client.on_transmit(now);
            if let Some(s) = &socket {
                Box::pin(send::<C>(s, &tx, &mut ctx)).await;
            }
        }
        ctx.slot.status().state = client.state();
        while let Some(event) = client.poll_event() {
            if let Next::Stop = Box::pin(on_event(&mut ctx, &mut client, &mut socket, event)).await
            {
                return;
            }
        }
        // An event may have moved the client on (a declined or abandoned lease: INIT).
        ctx.slot.status().state = client.state();
        if client.resting() {
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
                Some(s) => C::recv(s).await,
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
                    ctx.slot.status().state = client.state();
                    Box::pin(ctx.unpersist()).await;
                    let _ = done.send(());
                }
                return;
            }
        }
    }
}

/// A datagram for the client's port on the lease's interface: hand it to the client, count and
/// record what it accepted, then the protocol's own checks (for DHCPv4, a DHCPOFFER is looked
/// at before it is requested).
pub(super) async fn on_received<C: LeaseClient>(
    ctx: &mut Ctx,
    client: &mut C,
    r: Received,
) -> Next {
    let now = clock::now();
    let metrics = &ctx.shared.metrics;
    match client.handle(now, &r.payload) {
        Ok(heard) => {
            // The exchange is over: let the next one on this network go.
            ctx.permit = None;
            metrics.message_received(ctx.slot.family, heard.kind.label);
            match heard.completes {
                Some(Completes::Renewal) => metrics.renewal(),
                Some(Completes::Rebind) => metrics.rebind(),
                None => {}
            }
            if let Some(mac) = r.src_mac {
                ctx.server_mac = Some(mac);
                // The network's server for the next first DHCPDISCOVER (known_servers.rs).
                ctx.shared
                    .known_servers
                    .learn(&ctx.slot.attachment.network, mac);
            }
            ctx.slot.push_history(
                Direction::Received,
                format!("{} {} from {}", heard.kind.name, heard.address, r.src_ip),
            );
            debug!(from = %r.src_ip, "reply accepted");
            client.after_heard(ctx, &heard, now)
        }
        Err(why) => {
            metrics.reply_ignored();
            ctx.trace.ignored += 1;
            ctx.trace.last_ignored = Some(why.clone());
            debug!(from = %r.src_ip, reason = %why, "reply ignored");
            Next::Continue
        }
    }
}

/// Acts on one event of the client: a bound lease is checked, recorded, persisted and answered
/// (ADD) or put back on the interface (background); a renewal is recorded and persisted; a
/// withdrawal (DHCPNAK) or an expiry takes the address off; a timeout fails the ADD.
pub(super) async fn on_event<C: LeaseClient>(
    ctx: &mut Ctx,
    client: &mut C,
    socket: &mut Option<C::Socket>,
    event: Event<C::Lease>,
) -> Next {
    match event {
        Event::Bound(mut lease) => {
            // Every lease that binds (ADD, or one re-acquired after a NAK, an expiry or a
            // restart) may carry a duplicate.
            if let Some(next) = client.check_bound(ctx, socket, &mut lease).await {
                return next;
            }
            info!(lease = %lease.describe(), "bound");
            let previous = C::Lease::current(&ctx.slot.status());
            record(ctx, client, &lease, false);
            ctx.slot.status().bound_at = Some(clock::now());
            client.keep_trying(true);
            if ctx.bound_tx.is_some() {
                // Durable before answered: a configured address whose lease is not on disk is
                // one a restarted daemon would neither renew nor release.
                if let Err(e) = ctx.persist(client.to_record(ctx)).await {
                    return persist_failed_at_add(ctx, client, socket, e).await;
                }
                ctx.configured = true;
                if let Some(tx) = ctx.bound_tx.take() {
                    // The main plugin configures the interface from the ADD result.
                    let _ = tx.send(Ok(()));
                }
            } else {
                if let Err(e) = ctx.persist(client.to_record(ctx)).await {
                    persist_failed(ctx, &e);
                }
                return reconfigure(ctx, client, socket, previous.as_ref(), &lease).await;
            }
        }
        Event::Renewed(lease) => {
            info!(lease = %lease.describe(), "renewed");
            record(ctx, client, &lease, true);
            if let Err(e) = ctx.persist(client.to_record(ctx)).await {
                persist_failed(ctx, &e);
            }
        }
        Event::Withdrawn(why) => {
            ctx.shared.metrics.nak();
            warn!(
                reason = why,
                "address withdrawn by the server; acquiring again"
            );
            return lose_address(ctx, client, socket, why).await;
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
            ctx.slot.status().state = client.state();
            if client.finished() {
                // Terminal (not keeping on): nothing more to do.
                return Next::Stop;
            }
        }
        Event::Timeout => {
            let err = client.timeout_error(ctx);
            warn!(error = %err, "acquisition failed");
            fail_add(ctx, err);
            return Next::Stop;
        }
    }
    Next::Continue
}

/// A bound or renewed lease in the lease's status: address (and a change of it), times,
/// renewals.
pub(super) fn record<C: LeaseClient>(ctx: &mut Ctx, client: &C, lease: &C::Lease, renewal: bool) {
    let mut st = ctx.slot.status();
    let address = lease.address();
    if let Some(old) = ctx.last_address.filter(|old| *old != address) {
        info!(from = %old, to = %address, "address changed");
        st.previous_address = Some(old);
    }
    ctx.last_address = Some(address);
    st.last_error = None;
    lease.store(&mut st);
    st.timers = client.timers();
    if renewal {
        st.renewals += 1;
    }
}
