//! The one sweeper for all leases ([`sweep_lost_namespaces`]): every
//! [`super::NETNS_CHECK_INTERVAL`] it checks that each lease's namespace path still names the
//! namespace the lease holds, and wakes the driver of a lease whose container is gone without a
//! DEL.

use std::path::PathBuf;
use std::sync::Arc;

use tracing::debug;

use super::NETNS_CHECK_INTERVAL;
use crate::daemon::identity::{self, NetnsForm, Verdict};
use crate::daemon::shared::Shared;
use crate::daemon::table::Slot;
use crate::lease_file::Identity;
use crate::lease_state::LeaseState;

/// A lease the sweeper looks at: its slot, namespace path and form, and identity.
pub(super) type Watched = (Arc<Slot>, PathBuf, NetnsForm, Identity);

/// Finds leases whose container vanished without a DEL: every [`NETNS_CHECK_INTERVAL`], one
/// `stat(2)` per lease (on the blocking pool; one more small read for a `/proc/PID` path)
/// compares what its namespace path names now with the namespace it holds
/// ([`identity::still_named`]); the driver of a lease whose path is gone or names another
/// namespace is woken ([`Slot::gone`]) and releases and drops it. Only "gone" counts: a
/// `stat(2)` that fails otherwise (`EACCES`, `EIO`) wakes nobody. Runs until the daemon stops.
pub(crate) async fn sweep_lost_namespaces(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(NETNS_CHECK_INTERVAL).await;
        let watched: Vec<Watched> = shared
            .table
            .snapshot()
            .into_iter()
            .filter_map(|slot| {
                let st = slot.status();
                if st.state == LeaseState::Lost {
                    return None;
                }
                let identity = st.identity.clone()?;
                let form = identity::parse_cni_netns(&st.netns).ok()?;
                let path = shared.config.netns_path(&st.netns);
                drop(st);
                Some((slot, path, form, identity))
            })
            .collect();
        if watched.is_empty() {
            continue;
        }
        let host_prefix = shared.config.host_prefix.clone();
        let gone = tokio::task::spawn_blocking(move || {
            watched
                .into_iter()
                .filter(|(slot, path, form, identity)| {
                    match identity::still_named(path, *form, identity, &host_prefix) {
                        Ok(Verdict::Gone(_)) => true,
                        Ok(Verdict::Same(())) => false,
                        Err(e) => {
                            debug!(attachment = %slot.attachment, error = %e, "cannot check a namespace path; trying again later");
                            false
                        }
                    }
                })
                .map(|(slot, _, _, _)| slot)
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for slot in gone {
            slot.gone.notify_one();
        }
    }
}
