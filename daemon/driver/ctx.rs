//! What a lease's driver knows besides its client ([`Ctx`]): the lease's slot in the table, the
//! namespace it holds and what it was granted on, the interface, the ADD waiting for it, and
//! what the acquisition saw so far; with the actions every part of the driver shares (open the
//! lease's socket in the held namespace, persist or forget the lease, drop a lost one, answer the
//! waiting ADD).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tracing::{debug, warn};

use super::error::AcquireError;
use super::unpersist;
use crate::daemon::identity::{self, NetnsForm, Verdict};
use crate::daemon::packet::LinkAddr;
use crate::daemon::shared::Shared;
use crate::daemon::table::Slot;
use crate::lease_file::{Identity, Stored};
use crate::lease_state::LeaseState;
use crate::netns::NetNs;
use crate::rpc::Direction;

/// What an acquisition found besides the lease: used to name the likely cause of a timeout.
#[derive(Debug, Default)]
pub(super) struct Trace {
    /// Messages sent.
    pub(super) sent: u32,
    /// Replies dropped by the client.
    pub(super) ignored: u32,
    /// Why the last one was dropped.
    pub(super) last_ignored: Option<String>,
    /// Send errors.
    pub(super) send_errors: u32,
    /// The last send error.
    pub(super) last_send_error: Option<String>,
}

/// Why a socket could not be opened for a lease.
pub(super) enum OpenError {
    /// The namespace path no longer names the lease's namespace: the container is gone. Its
    /// namespace is still held, so a DHCPRELEASE can go out from it.
    ContainerGone(String),
    /// The lease's interface is gone from its namespace, or another one has its name.
    LinkGone(String),
    /// Anything else (`EMFILE`, `ENOBUFS`...): keep the lease, try again later.
    Transient(std::io::Error),
}

/// Everything a driver knows besides its client.
pub(super) struct Ctx {
    pub(super) shared: Arc<Shared>,
    pub(super) slot: Arc<Slot>,
    /// `CNI_NETNS` as the daemon sees it (with `-hostprefix`).
    pub(super) netns_path: PathBuf,
    /// The shape of `CNI_NETNS` ([`identity::parse_cni_netns`]).
    pub(super) form: NetnsForm,
    /// The lease's namespace, held open for the lease's life.
    pub(super) ns: Arc<NetNs>,
    /// What the lease was granted on.
    pub(super) identity: Identity,
    pub(super) ifname: String,
    pub(super) link_kind: Option<String>,
    /// Metric of the routes the daemon puts back (ipam `priority`).
    pub(super) priority: Option<u32>,
    /// Link-layer destination of unicasts to the server: the source MAC of its last reply.
    pub(super) server_mac: Option<[u8; 6]>,
    /// Whether a first DHCPDISCOVER or DHCPREQUEST may go as an Ethernet unicast to a known
    /// server (ipam `unicastDiscover`, default on; never for DHCPv6).
    pub(super) unicast_discover: bool,
    /// Whether the leased address is on the interface as far as we know: the main plugin puts
    /// it there after ADD; we take it off on expiry or NAK and put it back.
    pub(super) configured: bool,
    /// The address of the last lease bound, to notice when the server hands out another one.
    pub(super) last_address: Option<IpAddr>,
    /// The ADD waiting for the first DHCPACK, if any.
    pub(super) bound_tx: Option<oneshot::Sender<Result<(), AcquireError>>>,
    /// The acquisition budget, for the timeout message.
    pub(super) timeout: Duration,
    pub(super) trace: Trace,
    /// The network's window permit held by the request in flight, and when (monotonic) it is
    /// given back if no reply comes ([`crate::daemon::pacer`]).
    pub(super) permit: Option<(OwnedSemaphorePermit, Instant)>,
}

impl Ctx {
    /// Why a lease is dropped when its interface is gone (`e`: the ENODEV or ENOENT seen).
    pub(super) fn link_gone(&self, e: &std::io::Error) -> String {
        format!("interface {} of the lease is gone: {e}", self.ifname)
    }

    pub(super) fn att(&self) -> String {
        self.slot.attachment.to_string()
    }

    /// Whether the namespace path still names the namespace this lease holds.
    pub(super) fn path_verdict(&self) -> std::io::Result<Verdict<()>> {
        identity::still_named(
            &self.netns_path,
            self.form,
            &self.identity,
            &self.shared.config.host_prefix,
        )
    }

    /// The container is gone without a DEL, or its interface is: forget the lease entirely
    /// (table and disk), so no task, fd, memory or file stays behind. Sends nothing itself
    /// (see [`container_gone`] for the DHCPRELEASE). A waiting ADD gets an error.
    pub(super) async fn lose(&mut self, reason: String) {
        warn!(reason = %reason, "lease dropped: container gone");
        self.shared.metrics.lease_lost();
        if self.bound_tx.is_some() {
            fail_add(self, AcquireError::ContainerGone(reason.clone()));
        }
        {
            let mut st = self.slot.status();
            st.state = LeaseState::Lost;
            st.last_error = Some(reason);
        }
        self.shared.table.remove(&self.slot);
        self.unpersist().await;
    }

    /// Runs `open` (given the ifname and the interface's index and MAC the lease was granted
    /// on) inside the held namespace: how each protocol opens the lease's socket. With
    /// `check_path`, the namespace path must still name that namespace (not for a release,
    /// which must go out even after the runtime removed the path).
    pub(super) async fn open_in_netns<T, F>(
        &self,
        check_path: bool,
        open: F,
    ) -> Result<T, OpenError>
    where
        T: Send + 'static,
        F: FnOnce(&str, LinkAddr) -> std::io::Result<T> + Send + 'static,
    {
        if check_path {
            match self.path_verdict() {
                Ok(Verdict::Gone(why)) => return Err(OpenError::ContainerGone(why)),
                Ok(Verdict::Same(())) => {}
                // The held namespace is the lease's whatever the path does: go on.
                Err(e) => debug!(error = %e, "cannot check the namespace path"),
            }
        }
        let ifname = self.ifname.clone();
        let expect = LinkAddr {
            ifindex: self.identity.ifindex,
            mac: self.identity.mac,
        };
        match self.ns.run_async(move || open(&ifname, expect)).await {
            Ok(opened) => Ok(opened),
            Err(e) if identity::is_gone(&e) => Err(OpenError::LinkGone(self.link_gone(&e))),
            Err(e) => Err(OpenError::Transient(e)),
        }
    }

    /// Writes `record` (a lease's, from [`super::protocol::LeaseClient::to_record`]; None: nothing
    /// to write) to the state directory (atomically and durably; off the runtime's
    /// workers).
    ///
    /// Errors: the write failed; the previous file, if any, is unchanged.
    pub(super) async fn persist(&self, record: Option<Stored>) -> std::io::Result<()> {
        let Some(record) = record else {
            return Ok(());
        };
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.store.save(&record))
            .await
            .map_err(std::io::Error::other)?
    }

    /// Removes the lease's file from the state directory.
    pub(super) async fn unpersist(&self) {
        unpersist(&self.shared, &self.slot.attachment, self.slot.family).await;
    }

    /// The ADD's error when no DHCPACK came within the budget, with what was sent, ignored and
    /// failed.
    /// `broadcast`: the BOOTP broadcast flag of a DHCPv4 lease (None for DHCPv6).
    pub(super) fn timeout_error(&self, broadcast: Option<bool>) -> AcquireError {
        let trace = &self.trace;
        let flag = match broadcast {
            Some(true) => ", broadcast flag on",
            Some(false) => ", broadcast flag off",
            None => "",
        };
        let mut details = format!(
            "sent {} message(s) on {} (link kind {}){flag}; {} reply(ies) ignored",
            trace.sent,
            self.ifname,
            self.link_kind.as_deref().unwrap_or("unknown"),
            trace.ignored,
        );
        if let Some(r) = &trace.last_ignored {
            details.push_str(&format!(" (last: {r})"));
        }
        if let Some(e) = &trace.last_send_error {
            details.push_str(&format!("; {} send error(s), last: {e}", trace.send_errors));
        }
        let chaddr = self.slot.status().chaddr;
        if broadcast.is_some() && chaddr != self.identity.mac {
            details.push_str(&format!(
                "; chaddr {} was derived from the client identifier, not the link's MAC: a switch whose DHCP snooping checks chaddr against the frame's source MAC drops such requests; on such a network set \"chaddr\": \"link\" in ipam (or -chaddr link on the daemon)",
                crate::lease_file::mac::to_string(&chaddr)
            ));
        }
        AcquireError::Timeout {
            secs: self.timeout.as_secs_f64(),
            ifname: self.ifname.clone(),
            ipvlan_without_broadcast: broadcast == Some(false)
                && self.link_kind.as_deref() == Some("ipvlan"),
            details,
        }
    }
}

/// Answers the waiting ADD, if any, with `err`.
pub(super) fn fail_add(ctx: &mut Ctx, err: AcquireError) {
    let msg = err.to_string();
    ctx.slot
        .push_history(Direction::Event, format!("ADD failed: {msg}"));
    ctx.slot.status().last_error = Some(msg);
    if let Some(tx) = ctx.bound_tx.take() {
        let _ = tx.send(Err(err));
    }
}

/// A renewal's lease could not be written: the previous file (same lease, older times) stays,
/// so a restarted daemon just renews sooner. Reported; STATUS says not ready meanwhile.
pub(super) fn persist_failed(ctx: &Ctx, e: &std::io::Error) {
    let dir = ctx.shared.store.dir().display().to_string();
    warn!(error = %e, state_dir = %dir, "cannot persist lease");
    ctx.slot.status().last_error = Some(format!(
        "cannot write the lease to the state directory {dir}: {e}"
    ));
}
