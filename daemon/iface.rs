//! Keeping a container's interface in step with its lease after ADD.
//!
//! At ADD the main plugin (`ipvlan`, `macvlan`...) puts the leased address and routes on the
//! interface. Afterwards only the daemon knows when the lease changes, so it does the
//! interface's upkeep itself (the reference instead sets the link down on expiry, docs/design.md,
//! *The reference's bugs*):
//! - on expiry or DHCPNAK it removes the address at once, so the LAN never sees a stale
//!   duplicate (RFC 2131 §4.4.5: "the client MUST immediately discontinue use");
//! - when a lease comes back, it puts the address and the lease's routes back, whatever the
//!   address is now, with the metric of the ADD result (the ipam `priority`).
//!
//! Both act on the namespace the lease holds open ([`super::identity`]), never on a path, and
//! only on the interface with the lease's index: the caller checks the path first. Netlink work
//! happens on a short-lived thread inside the namespace ([`link::with_handle_in`]), reached
//! through `spawn_blocking` so no runtime worker blocks.

use std::io;
use std::sync::Arc;

use ipnet::IpNet;

use crate::dhcp::Lease;
use crate::dhcp6::Leased6;
use crate::link::{self, RouteSpec};
use crate::netns::NetNs;

async fn in_netns<T, F, Fut>(ns: Arc<NetNs>, ifindex: u32, f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce(rtnetlink::Handle, u32) -> Fut + Send + 'static,
    Fut: Future<Output = io::Result<T>>,
{
    tokio::task::spawn_blocking(move || {
        link::with_handle_in(&ns, |h| async move {
            // The index is the lease's interface; a link of another index is not touched.
            let index = link::link_by_index(&h, ifindex).await?.index;
            f(h, index).await
        })
    })
    .await
    .map_err(io::Error::other)?
}

/// Removes the lease's address from the interface `ifindex` in `ns` (routes through it go with
/// it). Returns whether the address was there.
///
/// Errors: the link is gone (`NotFound`), netlink failures.
pub(crate) async fn withdraw(ns: Arc<NetNs>, ifindex: u32, lease: &Lease) -> io::Result<bool> {
    withdraw_address(ns, ifindex, IpNet::V4(lease.address_net())).await
}

/// Deletes `addr` from link `ifindex` of `ns`; whether it was there.
async fn withdraw_address(ns: Arc<NetNs>, ifindex: u32, addr: IpNet) -> io::Result<bool> {
    in_netns(ns, ifindex, move |h, index| async move {
        link::delete_address(&h, index, addr).await
    })
    .await
}

/// The routes [`apply`] installs for `lease`: [`Lease::routes`] (option 121, else 33 plus a
/// default route via the router), each with `metric`, exactly as the ADD result lists them
/// (`crate::ipam::result_from_lease`).
pub(crate) fn routes_of(lease: &Lease, metric: Option<u32>) -> Vec<RouteSpec> {
    lease
        .routes()
        .into_iter()
        .map(|r| RouteSpec {
            dst: IpNet::V4(r.dst),
            gw: (!r.gateway.is_unspecified()).then_some(std::net::IpAddr::V4(r.gateway)),
            metric,
        })
        .collect()
}

/// Puts the lease's address and its routes ([`routes_of`] with `metric`) on the interface
/// `ifindex` in `ns`. What is already there is left as it is. Every route is tried even when
/// one fails (a route the server sent that the kernel refuses must not cost the default
/// route).
///
/// Returns the routes that could not be added, each as "destination: error" (empty when all
/// are in place); the address is on the interface either way.
///
/// Errors: the link is gone (`NotFound`); the address cannot be added (then no route was tried).
pub(crate) async fn apply(
    ns: Arc<NetNs>,
    ifindex: u32,
    lease: &Lease,
    metric: Option<u32>,
) -> io::Result<Vec<String>> {
    let addr = IpNet::V4(lease.address_net());
    apply_address(ns, ifindex, addr, routes_of(lease, metric)).await
}

/// Adds `addr` (present already is fine) and `routes` to link `ifindex` of `ns`; returns the
/// routes that failed, as text. Errors: the address could not be added.
async fn apply_address(
    ns: Arc<NetNs>,
    ifindex: u32,
    addr: IpNet,
    routes: Vec<RouteSpec>,
) -> io::Result<Vec<String>> {
    in_netns(ns, ifindex, move |h, index| async move {
        ignore_exists(link::add_address(&h, index, addr).await)?;
        let mut failed = Vec::new();
        for route in &routes {
            if let Err(e) = ignore_exists(link::add_route(&h, index, route).await) {
                failed.push(format!("{}: {e}", route.dst));
            }
        }
        Ok(failed)
    })
    .await
}

/// [`withdraw`] of a DHCPv6 lease: its address (and with it the kernel's prefix route).
pub(crate) async fn withdraw6(ns: Arc<NetNs>, ifindex: u32, lease: &Leased6) -> io::Result<bool> {
    withdraw_address(ns, ifindex, IpNet::V6(lease.address_net())).await
}

/// [`apply`] of a DHCPv6 lease: its address with the on-link prefix length the RA gave (the
/// kernel adds the prefix route), and the default route via the router's link-local address
/// when one was heard (docs/design.md, *Router Advertisements*).
pub(crate) async fn apply6(
    ns: Arc<NetNs>,
    ifindex: u32,
    lease: &Leased6,
    metric: Option<u32>,
) -> io::Result<Vec<String>> {
    let addr = IpNet::V6(lease.address_net());
    let routes: Vec<RouteSpec> = lease
        .default_route()
        .map(|(dst, gw)| RouteSpec {
            dst: IpNet::V6(dst),
            gw: Some(std::net::IpAddr::V6(gw)),
            metric,
        })
        .into_iter()
        .collect();
    apply_address(ns, ifindex, addr, routes).await
}

fn ignore_exists(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_carry_the_metric_of_the_add_result() {
        let lease = crate::dhcp::reply::test_lease("198.18.0.5");
        let cni = crate::ipam::result_from_lease(&lease, "1.1.0", Some(250));
        let ours = routes_of(&lease, Some(250));
        assert_eq!(ours.len(), cni.routes.len());
        for (r, c) in ours.iter().zip(&cni.routes) {
            assert_eq!(r.dst.to_string(), c.dst.to_string());
            assert_eq!(r.gw, c.gw);
            assert_eq!(r.metric, c.priority);
        }
        assert!(routes_of(&lease, None).iter().all(|r| r.metric.is_none()));
    }
}
