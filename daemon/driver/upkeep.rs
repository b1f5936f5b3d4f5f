//! The interface's upkeep when a lease changes after its ADD: the address withdrawn when the
//! lease is lost (DHCPNAK, expiry; RFC 2131 §4.4.5), address and routes put back when it returns
//! ([`reconfigure`]), and a first lease that could not be persisted given back
//! ([`persist_failed_at_add`]).

use tracing::{info, warn};

use super::Next;
use super::ctx::{Ctx, fail_add};
use super::error::AcquireError;
use super::protocol::{DriverLease, LeaseClient};
use super::release::{container_gone, release_now};
use crate::daemon::identity::{self, Verdict};
use crate::rpc::Direction;

/// The first DHCPACK of an ADD could not be written: give the lease back (DHCPRELEASE) and fail
/// the ADD naming the state directory, so no address exists that nobody would renew.
pub(super) async fn persist_failed_at_add<C: LeaseClient>(
    ctx: &mut Ctx,
    client: &mut C,
    socket: &mut Option<C::Socket>,
    e: std::io::Error,
) -> Next {
    let dir = ctx.shared.store.dir().to_path_buf();
    warn!(error = %e, state_dir = %dir.display(), "cannot persist the new lease; releasing it and failing the ADD");
    release_now(ctx, client, socket).await;
    {
        let mut st = ctx.slot.status();
        C::Lease::take(&mut st);
        st.timers = None;
        st.bound_at = None;
    }
    fail_add(
        ctx,
        AcquireError::NotPersisted {
            dir,
            error: e.to_string(),
        },
    );
    ctx.shared.table.remove(&ctx.slot);
    ctx.unpersist().await;
    Next::Stop
}

/// The lease is gone (NAK, expiry): take the address off the interface at once (RFC 2131
/// §4.4.5), keep the slot and keep acquiring. Checks first that the namespace path still names
/// the lease's namespace: if not, the container is gone and so is the lease.
pub(super) async fn lose_address<C: LeaseClient>(
    ctx: &mut Ctx,
    client: &mut C,
    socket: &mut Option<C::Socket>,
    why: &str,
) -> Next {
    ctx.slot.push_history(Direction::Event, why.to_string());
    let old = {
        let mut st = ctx.slot.status();
        st.timers = None;
        st.bound_at = None;
        st.last_error = Some(why.to_string());
        C::Lease::take(&mut st)
    };
    if let Ok(Verdict::Gone(gone)) = ctx.path_verdict() {
        container_gone(ctx, client, socket, gone).await;
        return Next::Stop;
    }
    if let (true, Some(old)) = (ctx.configured, old) {
        match old.withdraw(ctx.ns.clone(), ctx.identity.ifindex).await {
            Ok(_) => {
                info!(address = %old.address(), "address withdrawn from the interface")
            }
            Err(e) if identity::is_gone(&e) => {
                ctx.lose(ctx.link_gone(&e)).await;
                return Next::Stop;
            }
            Err(e) => warn!(error = %e, "cannot withdraw the address"),
        }
        ctx.configured = false;
    }
    Next::Continue
}

/// A lease came back after a loss (or was re-acquired after a restart): put its address and
/// routes on the interface, replacing a different old address. Checks first that the namespace
/// path still names the lease's namespace.
pub(super) async fn reconfigure<C: LeaseClient>(
    ctx: &mut Ctx,
    client: &mut C,
    socket: &mut Option<C::Socket>,
    previous: Option<&C::Lease>,
    lease: &C::Lease,
) -> Next {
    if let Ok(Verdict::Gone(gone)) = ctx.path_verdict() {
        container_gone(ctx, client, socket, gone).await;
        return Next::Stop;
    }
    let (ns, ifindex) = (ctx.ns.clone(), ctx.identity.ifindex);
    if let Some(old) = previous.filter(|old| ctx.configured && old.address() != lease.address()) {
        let _ = old.withdraw(ns.clone(), ifindex).await;
        ctx.configured = false;
    }
    if ctx.configured {
        return Next::Continue;
    }
    match lease.apply(ns, ifindex, ctx.priority).await {
        Ok(failed) => {
            ctx.configured = true;
            if !failed.is_empty() {
                warn!(routes = %failed.join("; "), "some routes of the lease could not be put back");
                ctx.slot.status().last_error = Some(format!(
                    "routes not put back on {}: {}",
                    ctx.ifname,
                    failed.join("; ")
                ));
            }
            ctx.slot.push_history(
                Direction::Event,
                format!(
                    "{} and its routes put back on {}",
                    lease.address(),
                    ctx.ifname
                ),
            );
            info!(address = %lease.address(), "address and routes put back on the interface");
        }
        Err(e) if identity::is_gone(&e) => {
            ctx.lose(ctx.link_gone(&e)).await;
            return Next::Stop;
        }
        Err(e) => {
            warn!(error = %e, "cannot configure the interface");
            ctx.slot.status().last_error = Some(format!("cannot configure {}: {e}", ctx.ifname));
        }
    }
    Next::Continue
}
