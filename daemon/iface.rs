//! Keeping a container's interface in step with its lease after ADD.
//!
//! At ADD the main plugin (`ipvlan`, `macvlan`...) puts the leased address and routes on the
//! interface. Afterwards only the daemon knows when the lease changes, so it does the
//! interface's upkeep itself (the reference instead sets the link down on expiry, NOTES §2):
//! - on expiry or DHCPNAK it removes the address at once, so the LAN never sees a stale
//!   duplicate (RFC 2131 §4.4.5: "the client MUST immediately discontinue use");
//! - when a lease comes back, it puts the address and the lease's routes back, whatever the
//!   address is now.
//!
//! Netlink work happens on a short-lived thread inside the namespace ([`link::with_handle_in`]),
//! reached through `spawn_blocking` so no runtime worker blocks.

use std::io;
use std::path::PathBuf;

use ipnet::IpNet;

use crate::dhcp::Lease;
use crate::link::{self, RouteSpec};
use crate::netns::NetNs;

async fn in_netns<T, F, Fut>(netns: PathBuf, ifname: String, f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce(rtnetlink::Handle, u32) -> Fut + Send + 'static,
    Fut: Future<Output = io::Result<T>>,
{
    tokio::task::spawn_blocking(move || {
        let ns = NetNs::open(&netns)?;
        link::with_handle_in(&ns, |h| async move {
            let index = link::link_by_name(&h, &ifname).await?.index;
            f(h, index).await
        })
    })
    .await
    .map_err(io::Error::other)?
}

/// Removes the lease's address from `ifname` in `netns` (routes through it go with it).
/// Returns whether the address was there.
///
/// Errors: the namespace or link is gone (`NotFound`), netlink failures.
pub async fn withdraw(netns: PathBuf, ifname: String, lease: &Lease) -> io::Result<bool> {
    let addr = IpNet::V4(lease.address_net());
    in_netns(netns, ifname, move |h, index| async move {
        link::delete_address(&h, index, addr).await
    })
    .await
}

/// Puts the lease's address and routes ([`Lease::routes`]: option 121, else 33 plus a default
/// route via the router) on `ifname` in `netns`. What is already there is left as it is.
///
/// Errors: the namespace or link is gone (`NotFound`), netlink failures other than
/// "already exists".
pub async fn apply(netns: PathBuf, ifname: String, lease: &Lease) -> io::Result<()> {
    let addr = IpNet::V4(lease.address_net());
    let routes: Vec<RouteSpec> = lease
        .routes()
        .into_iter()
        .map(|r| RouteSpec {
            dst: IpNet::V4(r.dst),
            gw: (!r.gateway.is_unspecified()).then_some(std::net::IpAddr::V4(r.gateway)),
            metric: None,
        })
        .collect();
    in_netns(netns, ifname, move |h, index| async move {
        ignore_exists(link::add_address(&h, index, addr).await)?;
        for route in &routes {
            ignore_exists(link::add_route(&h, index, route).await)?;
        }
        Ok(())
    })
    .await
}

fn ignore_exists(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}
