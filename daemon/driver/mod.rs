//! One lease's driver: the task that runs the sans-IO client against a real packet socket.
//!
//! The driver owns a [`Client`](crate::dhcp::Client) and, while the client has
//! something to say, a [`PacketSocket`](crate::daemon::packet::PacketSocket) opened inside the
//! container's namespace. Its loop is the smoltcp pattern: send what
//! `poll_transmit` gives, act on `poll_event`s, then sleep until `poll_at`, a received datagram,
//! or a command (DEL), whichever comes first. Time is read from the lease clock
//! ([`super::clock`]: monotonic plus time suspended) and passed in; the client never reads it.
//!
//! Each lease holds its namespace open for its whole life (one descriptor, no thread) and acts
//! only on what it holds ([`super::identity`]): at T1 it re-opens its socket there, on the
//! interface with the lease's index and MAC, after checking that the namespace path still names
//! it. While BOUND the driver closes its socket: a bound lease costs a sleeping task, its status
//! and the namespace descriptor. One sweeper for all leases ([`sweep_lost_namespaces`]) looks
//! every [`NETNS_CHECK_INTERVAL`] whether each lease's namespace path still names its namespace
//! and wakes the driver of one that does not: the container is gone without DEL, so the driver
//! sends DHCPRELEASE from the namespace it still holds (RFC 2131 §4.4.6) and forgets the lease.
//! A DEL that comes after the runtime removed the namespace (containerd does this) releases the
//! same way.
//!
//! After the ADD that created it, the driver keeps the lease alive whatever the server does
//! (RFC 2131 §4.4.5): on DHCPNAK or expiry it withdraws the address from the interface at once
//! and keeps acquiring in the background; when a lease comes back it puts the address and
//! routes back ([`super::iface`]). Every DHCPACK is persisted ([`super::store`]) before anything
//! is answered or configured, so a restarted daemon resumes the lease where it was
//! ([`resume`]). Only "gone" drops a lease; a transient failure (no descriptor left, a netlink
//! error) keeps it and is retried (docs/reliability.md).
//!
//! The driver is written against [`protocol::LeaseClient`], the seam a second protocol plugs
//! into (see `protocol.rs`); `v4.rs` is DHCPv4's side of it, today the only one.
//!
//! Files: `start.rs` (ADD), `resume.rs` (leases of an earlier daemon), `event_loop.rs` (the
//! loop, replies and events), `send.rs` (sending and pacing), `release.rs` (DHCPRELEASE on DEL
//! or when the container is gone), `upkeep.rs` (the interface after ADD), `sweep.rs`
//! (containers gone without DEL), `ctx.rs` (what a driver knows and the actions its parts
//! share), `error.rs` (why an acquisition failed), `protocol.rs` (the seam), `v4.rs` and
//! `siblings.rs` (DHCPv4, and servers that key leases by MAC).

mod ctx;
mod error;
mod event_loop;
mod protocol;
mod release;
mod resume;
mod send;
mod siblings;
mod start;
mod sweep;
mod upkeep;
mod v4;
mod v6;

pub(crate) use error::AcquireError;
pub(crate) use release::release;
pub(crate) use resume::Resumed;
pub(crate) use start::start;
pub(crate) use sweep::sweep_lost_namespaces;
pub(crate) use v6::{RA_WAIT, start as start6};

use std::sync::Arc;
use std::time::Duration;

use tracing::{Instrument, warn};

use crate::daemon::shared::Shared;
use crate::rpc::{Attachment, ChaddrPolicy, Family};

/// Resumes a lease persisted by an earlier daemon, of either family (`resume.rs`; DHCPv6's
/// client side in `v6.rs`).
pub(crate) async fn resume(shared: &Arc<Shared>, stored: crate::lease_file::Stored) -> Resumed {
    match stored {
        crate::lease_file::Stored::V4(record) => resume::resume_v4(shared, record).await,
        crate::lease_file::Stored::V6(record) => v6::resume(shared, record).await,
    }
}

/// How often the sweeper checks that leases' namespaces still exist.
pub(crate) const NETNS_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// First wait before a resumed lease whose namespace could not be entered (a transient error)
/// tries again; it doubles up to [`RESUME_RETRY_MAX`].
pub(crate) const RESUME_RETRY_MIN: Duration = Duration::from_secs(1);

/// Longest wait between two attempts to resume a lease.
pub(crate) const RESUME_RETRY_MAX: Duration = Duration::from_secs(60);

/// How the BOOTP broadcast flag was decided for a lease: the ipam key wins, then the daemon's
/// `-broadcast` flag, then the automatic policy (on for ipvlan slaves, whose shared MAC makes
/// servers' unicast replies undeliverable: docs/design.md, *ipvlan and DHCP*).
pub(crate) fn broadcast_policy(
    ipam: Option<bool>,
    daemon: Option<bool>,
    link_kind: Option<&str>,
) -> (bool, String) {
    match (ipam, daemon) {
        (Some(b), _) => (b, "ipam config".into()),
        (None, Some(b)) => (b, "daemon -broadcast flag".into()),
        (None, None) => {
            let ipvlan = link_kind == Some("ipvlan");
            let reason = match link_kind {
                Some(k) => format!("auto: link kind {k}"),
                None => "auto: link kind unknown".into(),
            };
            (ipvlan, reason)
        }
    }
}

/// What a DHCPv4 lease sends as chaddr, and why: the ipam key `chaddr`, else the daemon's
/// `-chaddr` flag, else by link kind: [`ChaddrPolicy::Derived`] on ipvlan slaves (they all
/// carry the master's MAC), [`ChaddrPolicy::Link`] on anything else (docs/design.md, *A chaddr
/// per container*).
pub(crate) fn chaddr_policy(
    ipam: Option<ChaddrPolicy>,
    daemon: Option<ChaddrPolicy>,
    link_kind: Option<&str>,
) -> (ChaddrPolicy, String) {
    match (ipam, daemon) {
        (Some(p), _) => (p, "ipam config".into()),
        (None, Some(p)) => (p, "daemon -chaddr flag".into()),
        (None, None) if link_kind == Some("ipvlan") => {
            (ChaddrPolicy::Derived, "auto: link kind ipvlan".into())
        }
        (None, None) => (
            ChaddrPolicy::Link,
            match link_kind {
                Some(k) => format!("auto: link kind {k}"),
                None => "auto: link kind unknown".into(),
            },
        ),
    }
}

/// The broadcast flag and the chaddr policy of a DHCPv4 lease together, each with its reason.
/// A derived chaddr needs the broadcast flag (a reply unicast to it reaches no interface), so
/// when the two disagree the one set more explicitly wins (the ipam config over the daemon's
/// flags over the automatic choice; on a tie the broadcast flag): an explicit `"broadcast":
/// false` on ipvlan turns the automatic derived chaddr back to `link`, and an ipam `"chaddr":
/// "derived"` overrides a daemon `-broadcast=false`.
pub(crate) fn v4_policies(
    broadcast: (Option<bool>, Option<bool>),
    chaddr: (Option<ChaddrPolicy>, Option<ChaddrPolicy>),
    link_kind: Option<&str>,
) -> ((bool, String), (ChaddrPolicy, String)) {
    let level = |ipam: bool, daemon: bool| if ipam { 2 } else { u8::from(daemon) };
    let (flag, flag_reason) = broadcast_policy(broadcast.0, broadcast.1, link_kind);
    let (policy, policy_reason) = chaddr_policy(chaddr.0, chaddr.1, link_kind);
    if policy == ChaddrPolicy::Link || flag {
        return ((flag, flag_reason), (policy, policy_reason));
    }
    let flag_level = level(broadcast.0.is_some(), broadcast.1.is_some());
    let policy_level = level(chaddr.0.is_some(), chaddr.1.is_some());
    if policy_level > flag_level {
        let why = format!("needed by the derived chaddr ({policy_reason})");
        ((true, why), (policy, policy_reason))
    } else {
        let why = format!("the broadcast flag is off ({flag_reason})");
        ((flag, flag_reason), (ChaddrPolicy::Link, why))
    }
}

/// The chaddr `policy` gives for a link with MAC `mac` and a lease with client identifier
/// `client_id` (option 61 data).
pub(crate) fn chaddr_of(policy: ChaddrPolicy, mac: [u8; 6], client_id: &[u8]) -> [u8; 6] {
    match policy {
        ChaddrPolicy::Link => mac,
        ChaddrPolicy::Derived => crate::dhcp::message::derived_chaddr(client_id),
    }
}

/// The span every log line about one lease is emitted in: its container ID, network and ifname
/// become fields of each line (flattened into JSON lines with `--log-format json`). A root span:
/// the driver task is spawned inside the ADD's span and would otherwise print the fields twice.
pub(crate) fn lease_span(attachment: &crate::rpc::Attachment) -> tracing::Span {
    tracing::info_span!(
        parent: None,
        "lease",
        container_id = %attachment.container_id,
        network = %attachment.network,
        ifname = %attachment.ifname
    )
}

/// Removes `attachment`'s file of `family` from the state directory (off the runtime's
/// workers).
pub(super) async fn unpersist(shared: &Arc<Shared>, attachment: &Attachment, family: Family) {
    let store_shared = shared.clone();
    let attachment = attachment.clone();
    let result =
        tokio::task::spawn_blocking(move || store_shared.store.remove(&attachment, family)).await;
    if let Err(e) = result.map_err(std::io::Error::other).and_then(|r| r) {
        warn!(error = %e, "cannot remove persisted lease");
    }
}

/// Spawns a lease task that counts as a driver in the metrics while it runs.
pub(super) fn spawn_driver<F>(
    shared: &Arc<Shared>,
    attachment: &Attachment,
    task: F,
) -> tokio::task::JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let running = shared.metrics.driver_started();
    tokio::spawn(
        async move {
            let _running = running;
            task.await
        }
        .instrument(lease_span(attachment)),
    )
}

/// What the driver loop does after an event.
pub(super) enum Next {
    Continue,
    Stop,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipam_key_beats_daemon_flag_beats_auto() {
        assert!(!broadcast_policy(Some(false), Some(true), Some("ipvlan")).0);
        assert!(broadcast_policy(Some(true), Some(false), Some("veth")).0);
        assert!(!broadcast_policy(None, Some(false), Some("ipvlan")).0);
        assert!(broadcast_policy(None, Some(true), Some("veth")).0);
        assert!(broadcast_policy(None, None, Some("ipvlan")).0);
        assert!(!broadcast_policy(None, None, Some("macvlan")).0);
        assert!(!broadcast_policy(None, None, None).0);
    }

    #[test]
    fn chaddr_is_derived_on_ipvlan_unless_configured() {
        use ChaddrPolicy::{Derived, Link};
        assert_eq!(chaddr_policy(None, None, Some("ipvlan")).0, Derived);
        assert_eq!(chaddr_policy(None, None, Some("macvlan")).0, Link);
        assert_eq!(chaddr_policy(None, None, None).0, Link);
        assert_eq!(chaddr_policy(None, Some(Link), Some("ipvlan")).0, Link);
        assert_eq!(chaddr_policy(None, Some(Derived), Some("veth")).0, Derived);
        assert_eq!(
            chaddr_policy(Some(Link), Some(Derived), Some("ipvlan")).0,
            Link
        );
        assert_eq!(
            chaddr_policy(Some(Derived), Some(Link), Some("veth")).0,
            Derived
        );
        assert_eq!(
            chaddr_policy(None, None, Some("ipvlan")).1,
            "auto: link kind ipvlan"
        );
        let mac = [2, 0, 0, 0, 0, 1];
        let id = crate::dhcp::client_id("c", "n", "eth0");
        assert_eq!(chaddr_of(Link, mac, &id), mac);
        assert_eq!(
            chaddr_of(Derived, mac, &id),
            crate::dhcp::message::derived_chaddr(&id)
        );
        assert_ne!(chaddr_of(Derived, mac, &id), mac);
    }

    #[test]
    fn a_derived_chaddr_and_the_broadcast_flag_agree() {
        use ChaddrPolicy::{Derived, Link};
        let (d, l, no) = (Some(Derived), Some(Link), Some(false));
        // ((ipam broadcast, daemon -broadcast), (ipam chaddr, daemon -chaddr), link kind) ->
        // (broadcast flag, chaddr policy).
        let cases = [
            ((None, None), (None, None), "ipvlan", (true, Derived)),
            ((None, None), (None, None), "macvlan", (false, Link)),
            ((None, None), (l, None), "ipvlan", (true, Link)),
            // An explicit "broadcast": false on ipvlan beats the automatic chaddr.
            ((no, None), (None, None), "ipvlan", (false, Link)),
            ((None, no), (None, None), "ipvlan", (false, Link)),
            // An ipam "chaddr": "derived" beats the daemon's -broadcast=false and the auto flag.
            ((None, no), (d, None), "ipvlan", (true, Derived)),
            ((None, None), (d, None), "veth", (true, Derived)),
            ((None, None), (None, d), "veth", (true, Derived)),
            // The ipam broadcast key beats the daemon's -chaddr; on a tie the flag wins.
            ((no, None), (None, d), "ipvlan", (false, Link)),
            ((no, None), (d, None), "ipvlan", (false, Link)),
            ((None, no), (None, d), "ipvlan", (false, Link)),
        ];
        for (broadcast, chaddr, kind, want) in cases {
            let ((flag, _), (policy, _)) = v4_policies(broadcast, chaddr, Some(kind));
            assert_eq!((flag, policy), want, "{broadcast:?} {chaddr:?} {kind}");
        }
        let (_, (_, why)) = v4_policies((no, None), (None, None), Some("ipvlan"));
        assert!(why.contains("broadcast flag is off"), "{why}");
        let ((_, why), _) = v4_policies((None, no), (d, None), Some("ipvlan"));
        assert!(why.contains("needed by the derived chaddr"), "{why}");
    }
}
