//! Giving a lease back: on DEL ([`release`]), and when the container is gone without one
//! ([`container_gone`]). A DHCPRELEASE (RFC 2131 §4.4.6) goes out from the namespace the lease
//! holds, whatever its path names now.

use tokio::sync::oneshot;
use tracing::{info, warn};

use super::ctx::{Ctx, OpenError};
use super::protocol::{DriverLease, LeaseClient};
use super::send::send;
use crate::daemon::table::{DriverCommand, Handle};

/// Stops a running driver: it sends DHCPRELEASE if it holds a lease, forgets the persisted
/// lease, then ends. Waits for both.
pub(crate) async fn release(handle: Handle) {
    let (tx, rx) = oneshot::channel();
    if handle
        .commands
        .send(DriverCommand::Release(tx))
        .await
        .is_ok()
    {
        let _ = rx.await;
    }
    let _ = handle.task.await;
}

/// Sends DHCPRELEASE if the client holds a lease (RFC 2131 §4.4.6), from the namespace the
/// lease holds, whatever its path names now.
pub(super) async fn release_now<C: LeaseClient>(
    ctx: &mut Ctx,
    client: &mut C,
    socket: &mut Option<C::Socket>,
) {
    // The address given back is the held lease's: a DHCPv6 RELEASE goes out from the
    // link-local address (its transmission's source is `::`, the kernel picks it), so only
    // DHCPv4's source is the leased address.
    let held = C::Lease::current(&ctx.slot.status()).map(|l| l.address());
    let Some(tx) = client.release() else {
        return;
    };
    if socket.is_none() {
        match C::open(ctx, false).await {
            Ok(s) => *socket = Some(s),
            Err(OpenError::LinkGone(why) | OpenError::ContainerGone(why)) => {
                warn!(reason = %why, "DHCPRELEASE not sent")
            }
            Err(OpenError::Transient(e)) => warn!(error = %e, "DHCPRELEASE not sent"),
        }
    }
    if let Some(s) = socket.as_ref() {
        send::<C>(s, &tx, ctx).await;
        let address = held.unwrap_or_else(|| C::summary(&tx).0);
        info!(%address, "released");
    }
}

/// The container is gone (its namespace path names nothing or another namespace): give the
/// lease back from the namespace still held, then forget it.
pub(super) async fn container_gone<C: LeaseClient>(
    ctx: &mut Ctx,
    client: &mut C,
    socket: &mut Option<C::Socket>,
    reason: String,
) {
    release_now(ctx, client, socket).await;
    ctx.lose(reason).await;
}
