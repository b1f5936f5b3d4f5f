//! One lease's driver: the task that runs the sans-IO client against a real packet socket.
//!
//! The driver owns a [`Client`] and, while the client has something to say, a [`PacketSocket`]
//! opened inside the container's namespace. Its loop is the smoltcp pattern: send what
//! `poll_transmit` gives, act on `poll_event`s, then sleep until `poll_at`, a received datagram,
//! or a command (DEL), whichever comes first. Time is read from the monotonic clock and passed
//! in; the client never reads it itself.
//!
//! While BOUND the driver closes its socket: a bound lease costs a sleeping task and its
//! status, no file descriptor and no thread. At T1 it re-opens the namespace by path. One
//! sweeper for all leases ([`sweep_lost_namespaces`]) looks every [`NETNS_CHECK_INTERVAL`]
//! whether each bound lease's namespace path still names its namespace and wakes the driver of
//! one that does not, so a container that vanished without DEL is dropped, not leaked. (A timer
//! per lease did the same with 100 task wake-ups a second at 1000 leases.)
//!
//! After the ADD that created it, the driver keeps the lease alive whatever the server does
//! (RFC 2131 §4.4.5): on DHCPNAK or expiry it withdraws the address from the interface at once
//! and keeps acquiring in the background; when a lease comes back it puts the address and
//! routes back ([`super::iface`]). Every DHCPACK is persisted ([`super::store`]) so a restarted
//! daemon resumes the lease where it was ([`resume`]).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tracing::{Instrument, debug, info, warn};

use super::iface;
use super::metrics;
use super::pacer::WINDOW_HOLD;
use super::packet::{self, BROADCAST_MAC, PacketSocket};
use super::server::Shared;
use super::store::{Granted, Record};
use super::table::{DriverCommand, Handle, Slot, Status, Timers};
use crate::cni::{Error, code};
use crate::dhcp::client::{Client, ClientConfig, Event, State, Transmit};
use crate::dhcp::message::{DEFAULT_PARAMETER_REQUEST_LIST, client_id};
use crate::dhcp::{Lease, MessageType};
use crate::netns::NetNs;
use crate::rpc::{AddOptions, Direction};

/// How often the sweeper checks that bound leases' namespaces still exist.
pub const NETNS_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// How long a send keeps retrying while the link comes up (`ENETDOWN`: a slave created a few
/// milliseconds ago may not be running yet). The reference slept a random back-off here and
/// turned a 10 ms ADD into seconds (shared NOTES §2).
const LINK_UP_WAIT: Duration = Duration::from_millis(1000);

/// How the BOOTP broadcast flag was decided for a lease: the ipam key wins, then the daemon's
/// `-broadcast` flag, then the automatic policy (on for ipvlan slaves, whose shared MAC makes
/// servers' unicast replies undeliverable: shared NOTES §1).
pub fn broadcast_policy(
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

/// The span every log line about one lease is emitted in: its container ID, network and ifname
/// become fields of each line (flattened into JSON lines with `--log-format json`). A root span:
/// the driver task is spawned inside the ADD's span and would otherwise print the fields twice.
pub fn lease_span(attachment: &crate::rpc::Attachment) -> tracing::Span {
    tracing::info_span!(
        parent: None,
        "lease",
        container_id = %attachment.container_id,
        network = %attachment.network,
        ifname = %attachment.ifname
    )
}

/// "DHCPDISCOVER", "DHCPACK", ... for a message we built or received; "DHCP?" if unreadable.
fn message_name(payload: &[u8]) -> String {
    match crate::dhcp::parse_reply(payload)
        .ok()
        .and_then(|r| r.message_type)
    {
        Some(t) => format!("DHCP{}", format!("{t:?}").to_uppercase()),
        None => "DHCP?".into(),
    }
}

/// RFC 2131 state names as operators know them ("INIT-REBOOT", "BOUND", ...).
pub fn state_name(state: State) -> String {
    state.name().to_string()
}

/// What an acquisition found besides the lease: used to name the likely cause of a timeout.
#[derive(Debug, Default)]
struct Trace {
    /// Messages sent.
    sent: u32,
    /// Replies dropped by the client.
    ignored: u32,
    /// Why the last one was dropped.
    last_ignored: Option<String>,
    /// Send errors.
    send_errors: u32,
    /// The last send error.
    last_send_error: Option<String>,
}

/// Everything a driver knows besides its client.
struct Ctx {
    shared: Arc<Shared>,
    slot: Arc<Slot>,
    /// `CNI_NETNS` as the daemon sees it (with `-hostprefix`).
    netns_path: PathBuf,
    ifname: String,
    link_kind: Option<String>,
    /// Link-layer destination of unicasts to the server: the source MAC of its last reply.
    server_mac: Option<[u8; 6]>,
    /// Whether the leased address is on the interface as far as we know: the main plugin puts
    /// it there after ADD; we take it off on expiry or NAK and put it back.
    configured: bool,
    /// The address of the last DHCPACK, to notice when the server hands out another one.
    last_address: Option<Ipv4Addr>,
    /// The ADD waiting for the first DHCPACK, if any.
    bound_tx: Option<oneshot::Sender<Result<Lease, Error>>>,
    /// The acquisition budget, for the timeout message.
    timeout: Duration,
    trace: Trace,
    /// The network's window permit held by the request in flight, and when it is given back
    /// if no reply comes ([`crate::daemon::pacer`]).
    permit: Option<(OwnedSemaphorePermit, Instant)>,
}

impl Ctx {
    fn att(&self) -> String {
        self.slot.attachment.to_string()
    }

    /// Whether the container's namespace still exists and is one.
    fn netns_alive(&self) -> bool {
        NetNs::open(&self.netns_path).is_ok()
    }

    /// Whether the namespace path now names another namespace than the lease's.
    fn netns_changed(&self) -> bool {
        let known = self.slot.status().netns_id;
        known.is_some_and(|id| crate::netns::identity_of(&self.netns_path).ok() != Some(id))
    }

    /// The container is gone without a DEL: forget the lease entirely (table and disk), so no
    /// task, fd, memory or file stays behind. Nothing is sent: the interface is gone too.
    async fn lose(&self, reason: String) {
        warn!(reason = %reason, "lease dropped: container gone");
        self.shared.metrics.lease_lost();
        {
            let mut st = self.slot.status();
            st.state = "LOST".into();
            st.last_error = Some(reason);
        }
        self.shared.table.remove(&self.slot);
        self.unpersist().await;
    }

    async fn open_socket(&self) -> std::io::Result<PacketSocket> {
        let ns = NetNs::open(&self.netns_path)?;
        let ifname = self.ifname.clone();
        let (fd, link) = ns.run_async(move || packet::open(&ifname)).await?;
        PacketSocket::new(fd, link)
    }

    /// Writes the lease to the state directory (atomically; off the runtime's workers).
    async fn persist(&self, client: &Client) {
        let Some(lease) = client.lease().cloned() else {
            return;
        };
        let config = client.config();
        let status = self.slot.status().clone();
        let record = Record {
            attachment: self.slot.attachment.clone(),
            netns: status.netns.clone(),
            client_id: config.client_id.clone(),
            chaddr: config.chaddr,
            broadcast: config.broadcast,
            broadcast_reason: status.broadcast_reason.clone(),
            hostname: config.hostname.clone(),
            provided: config.provided.clone(),
            parameter_request_list: (config.parameter_request_list
                != DEFAULT_PARAMETER_REQUEST_LIST)
                .then(|| config.parameter_request_list.clone()),
            lease,
            granted: client
                .granted_at()
                .map(Granted::from_instant)
                .unwrap_or_else(Granted::now),
            state: state_name(client.state()),
            renewals: status.renewals,
            server_mac: self.server_mac,
        };
        let shared = self.shared.clone();
        let result = tokio::task::spawn_blocking(move || shared.store.save(&record)).await;
        if let Err(e) = result.map_err(std::io::Error::other).and_then(|r| r) {
            warn!(error = %e, "cannot persist lease");
            self.slot.status().last_error = Some(format!("cannot persist lease: {e}"));
        }
    }

    /// Removes the lease's file from the state directory.
    async fn unpersist(&self) {
        let shared = self.shared.clone();
        let attachment = self.slot.attachment.clone();
        let result = tokio::task::spawn_blocking(move || shared.store.remove(&attachment)).await;
        if let Err(e) = result.map_err(std::io::Error::other).and_then(|r| r) {
            warn!(error = %e, "cannot remove persisted lease");
        }
    }

    /// Another live lease that already holds `address` from the same server or on the same
    /// master (same chaddr): a server keying by MAC behind ipvlan (NOTES §4).
    fn conflict(&self, address: Ipv4Addr, server: Ipv4Addr, chaddr: [u8; 6]) -> Option<String> {
        self.shared.table.snapshot().into_iter().find_map(|other| {
            if Arc::ptr_eq(&other, &self.slot) {
                return None;
            }
            let st = other.status();
            let lease = st.lease.as_ref()?;
            (lease.address == address && (lease.server_id == server || st.chaddr == chaddr))
                .then(|| other.attachment.to_string())
        })
    }

    fn timeout_error(&self, broadcast: bool) -> Error {
        let trace = &self.trace;
        let mut details = format!(
            "sent {} message(s) on {} (link kind {}), broadcast flag {}; {} reply(ies) ignored",
            trace.sent,
            self.ifname,
            self.link_kind.as_deref().unwrap_or("unknown"),
            if broadcast { "on" } else { "off" },
            trace.ignored,
        );
        if let Some(r) = &trace.last_ignored {
            details.push_str(&format!(" (last: {r})"));
        }
        if let Some(e) = &trace.last_send_error {
            details.push_str(&format!("; {} send error(s), last: {e}", trace.send_errors));
        }
        let secs = self.timeout.as_secs_f64();
        if !broadcast && self.link_kind.as_deref() == Some("ipvlan") {
            Error::new(
                code::INVALID_NETWORK_CONFIG,
                format!(
                    "no DHCP lease within {secs}s on ipvlan slave {}: likely cause: the BOOTP broadcast flag is off, so the server unicasts its reply to the offered address, which the ipvlan master drops because no slave owns that address yet; set \"broadcast\": true in ipam (or remove the key to let the daemon decide)",
                    self.ifname
                ),
                details,
            )
        } else {
            Error::new(
                code::TRY_AGAIN_LATER,
                format!(
                    "no DHCP lease within {secs}s on {}: no server answered; is a DHCP server reachable on the master's LAN, and does it answer clients with option 61?",
                    self.ifname
                ),
                details,
            )
        }
    }
}

/// Starts keeping a lease for `slot`'s attachment (CNI ADD): enters the namespace, decides the
/// broadcast policy, opens the socket, spawns the driver task and waits for its first DHCPACK.
///
/// Returns the task's [`Handle`] once bound. Errors are CNI errors: code 4 when `CNI_NETNS`
/// is not a network namespace, code 7 when the interface does not exist, when the server
/// offers an address another live lease holds (it keys by MAC), or when the timeout ran out on
/// an ipvlan slave without the broadcast flag (a configuration problem); code 11 (try again
/// later) when no server answered in time.
pub async fn start(
    shared: &Arc<Shared>,
    slot: Arc<Slot>,
    options: &AddOptions,
) -> Result<Handle, Error> {
    let config = &shared.config;
    let attachment = slot.attachment.clone();
    let netns_path = config.netns_path(&options.netns);
    let ns = NetNs::open(&netns_path).map_err(|e| {
        Error::new(
            code::INVALID_ENV,
            format!("CNI_NETNS {} is not usable", netns_path.display()),
            e.to_string(),
        )
    })?;
    let netns_id = ns.identity();
    let ifname = attachment.ifname.clone();
    // One trip into the namespace (a bounded thread, see crate::netns) reads the link's kind
    // and opens the packet socket.
    let ifname2 = ifname.clone();
    let (kind, opened) = ns
        .run_async(move || {
            let kind = crate::link::link_info_here(&ifname2).map(|info| info.kind);
            let opened = kind.is_ok().then(|| packet::open(&ifname2));
            Ok((kind, opened))
        })
        .await
        .map_err(|e| {
            Error::new(
                code::IO_FAILURE,
                format!("cannot enter {}", netns_path.display()),
                e.to_string(),
            )
        })?;
    let link_kind = kind.map_err(|e| {
        Error::new(
            code::INVALID_NETWORK_CONFIG,
            format!("no interface {ifname} in {}", netns_path.display()),
            e.to_string(),
        )
    })?;
    let (broadcast, broadcast_reason) =
        broadcast_policy(options.broadcast, config.broadcast, link_kind.as_deref());
    let (fd, link) = opened
        .unwrap_or_else(|| Err(std::io::Error::other("link lookup failed")))
        .map_err(|e| {
            Error::new(
                code::IO_FAILURE,
                format!("cannot open a packet socket on {ifname}"),
                e.to_string(),
            )
        })?;
    let socket = PacketSocket::new(fd, link)
        .map_err(|e| Error::new(code::IO_FAILURE, "cannot register socket", e.to_string()))?;
    drop(ns);

    let cid = client_id(
        &attachment.container_id,
        &attachment.network,
        &attachment.ifname,
    );
    *slot.status() = Status {
        netns: options.netns.clone(),
        netns_id: netns_id.ok(),
        client_id: cid.clone(),
        chaddr: link.mac,
        state: state_name(State::Init),
        broadcast,
        broadcast_reason,
        ..Status::default()
    };
    let client_config = ClientConfig {
        client_id: cid,
        chaddr: link.mac,
        broadcast,
        parameter_request_list: options
            .parameter_request_list
            .clone()
            .unwrap_or_else(|| DEFAULT_PARAMETER_REQUEST_LIST.to_vec()),
        hostname: options.hostname.clone(),
        provided: options.provided.clone(),
        timeout: config.timeout,
        resend_max: config.resend_max,
    };
    let client = Client::new(client_config, Instant::now(), rand::random());
    let (bound_tx, bound_rx) = oneshot::channel();
    let ctx = Ctx {
        shared: shared.clone(),
        slot: slot.clone(),
        netns_path,
        ifname,
        link_kind,
        server_mac: None,
        configured: false,
        last_address: None,
        bound_tx: Some(bound_tx),
        timeout: config.timeout,
        trace: Trace::default(),
        permit: None,
    };
    let (commands, command_rx) = mpsc::channel(4);
    let task = tokio::spawn(
        drive(ctx, client, Some(socket), command_rx).instrument(lease_span(&attachment)),
    );
    match bound_rx.await {
        Ok(Ok(_lease)) => Ok(Handle { commands, task }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::new(
            code::IO_FAILURE,
            "lease driver ended unexpectedly",
            attachment.to_string(),
        )),
    }
}

/// The link kind (`ipvlan`, `macvlan`, `veth`...) of `ifname` inside `ns`, read over netlink on
/// one of [`NetNs::run_async`]'s bounded threads (kept off the runtime's workers).
async fn link_kind(ns: &NetNs, ifname: &str) -> std::io::Result<Option<String>> {
    let ifname = ifname.to_string();
    ns.run_async(move || crate::link::link_info_here(&ifname).map(|info| info.kind))
        .await
}

/// A bound lease the sweeper looks at: its slot, namespace path and namespace identity.
type Watched = (Arc<Slot>, PathBuf, Option<(u64, u64)>);

/// Drops leases whose container vanished without a DEL: every [`NETNS_CHECK_INTERVAL`], one
/// `stat(2)` per bound lease (on the blocking pool) compares what its namespace path names now
/// with the namespace it started in ([`Status::netns_id`]); the driver of a lease whose path is
/// gone or names another namespace is woken ([`Slot::gone`]) and drops it. Runs until the
/// daemon stops.
pub async fn sweep_lost_namespaces(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(NETNS_CHECK_INTERVAL).await;
        let bound_state = state_name(State::Bound);
        let bound: Vec<Watched> = shared
            .table
            .snapshot()
            .into_iter()
            .filter_map(|slot| {
                let st = slot.status();
                let path = shared.config.netns_path(&st.netns);
                let id = st.netns_id;
                let bound = st.state == bound_state;
                drop(st);
                bound.then_some((slot, path, id))
            })
            .collect();
        if bound.is_empty() {
            continue;
        }
        let gone = tokio::task::spawn_blocking(move || {
            bound
                .into_iter()
                .filter(|(_, path, id)| match crate::netns::identity_of(path) {
                    Ok(now) => id.is_some_and(|id| id != now),
                    Err(_) => true,
                })
                .map(|(slot, _, _)| slot)
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for slot in gone {
            slot.gone.notify_one();
        }
    }
}

/// Resumes a lease persisted by an earlier daemon (at start-up): drops it when its namespace
/// or interface is gone; otherwise starts its driver in the right state: within T1 it just
/// waits; past T1 it renews at once, past T2 it rebinds; past expiry it asks for the same
/// address again (INIT-REBOOT, RFC 2131 §3.2, §4.3.2).
///
/// Errors: why the lease was dropped (the caller logs it and removes the file).
pub async fn resume(shared: &Arc<Shared>, record: Record) -> Result<(), String> {
    let config = &shared.config;
    let netns_path = config.netns_path(&record.netns);
    let ns = NetNs::open(&netns_path)
        .map_err(|e| format!("namespace {} gone: {e}", netns_path.display()))?;
    let netns_id = ns.identity();
    let link_kind = link_kind(&ns, &record.attachment.ifname)
        .await
        .map_err(|e| format!("interface {} gone: {e}", record.attachment.ifname))?;
    let expired = record.is_expired();
    let client_config = ClientConfig {
        client_id: record.client_id.clone(),
        chaddr: record.chaddr,
        broadcast: record.broadcast,
        parameter_request_list: record
            .parameter_request_list
            .clone()
            .unwrap_or_else(|| DEFAULT_PARAMETER_REQUEST_LIST.to_vec()),
        hostname: record.hostname.clone(),
        provided: record.provided.clone(),
        timeout: config.timeout,
        resend_max: config.resend_max,
    };
    let seed = rand::random();
    let mut client = if expired {
        Client::reboot(client_config, record.lease.clone(), Instant::now(), seed)
    } else {
        Client::resume(
            client_config,
            record.lease.clone(),
            record.granted_instant(),
            seed,
        )
    };
    client.keep_trying(true);
    let slot = shared.table.slot(&record.attachment);
    let mut op = slot.op.lock().await;
    *slot.status() = Status {
        netns: record.netns.clone(),
        netns_id: netns_id.ok(),
        client_id: record.client_id.clone(),
        chaddr: record.chaddr,
        state: state_name(client.state()),
        broadcast: record.broadcast,
        broadcast_reason: record.broadcast_reason.clone(),
        lease: (!expired).then(|| record.lease.clone()),
        timers: timers(&client),
        renewals: record.renewals,
        previous_address: None,
        last_error: None,
    };
    slot.push_history(
        Direction::Event,
        format!(
            "resumed from the state directory ({}, {})",
            record.lease.address,
            state_name(client.state())
        ),
    );
    info!(
        attachment = %record.attachment,
        address = %record.lease.address,
        state = %state_name(client.state()),
        "resumed persisted lease"
    );
    let ctx = Ctx {
        shared: shared.clone(),
        slot: slot.clone(),
        netns_path,
        ifname: record.attachment.ifname.clone(),
        link_kind,
        server_mac: record.server_mac,
        // An expired lease's address was (or should have been) withdrawn already.
        configured: !expired,
        last_address: Some(record.lease.address),
        bound_tx: None,
        timeout: config.timeout,
        trace: Trace::default(),
        permit: None,
    };
    let (commands, command_rx) = mpsc::channel(4);
    let task = tokio::spawn(
        drive(ctx, client, None, command_rx).instrument(lease_span(&record.attachment)),
    );
    *op = Some(Handle { commands, task });
    Ok(())
}

/// Stops a running driver: it sends DHCPRELEASE if it holds a lease, forgets the persisted
/// lease, then ends. Waits for both.
pub async fn release(handle: Handle) {
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

fn timers(client: &Client) -> Option<Timers> {
    match (client.renew_at(), client.rebind_at(), client.expires_at()) {
        (Some(renew_at), Some(rebind_at), Some(expires_at)) => Some(Timers {
            renew_at,
            rebind_at,
            expires_at,
        }),
        // No lease, or an infinite one (u32::MAX seconds): no timers.
        _ => None,
    }
}

/// What the driver loop does after an event.
enum Next {
    Continue,
    Stop,
}

/// The driver loop.
async fn drive(
    mut ctx: Ctx,
    mut client: Client,
    mut socket: Option<PacketSocket>,
    mut commands: mpsc::Receiver<DriverCommand>,
) {
    loop {
        let now = Instant::now();
        while let Some(tx) = client.poll_transmit(now) {
            if socket.is_none() {
                match ctx.open_socket().await {
                    Ok(s) => socket = Some(s),
                    Err(e) => {
                        let reason = format!("cannot reopen {}: {e}", ctx.ifname);
                        fail_add(&mut ctx, Error::new(code::IO_FAILURE, reason.clone(), ""));
                        ctx.lose(reason).await;
                        return;
                    }
                }
            }
            // The client has moved on (SELECTING, REQUESTING...): history shows the new state.
            ctx.slot.status().state = state_name(client.state());
            if let Some(s) = &socket {
                send(s, &tx, &mut ctx).await;
            }
        }
        ctx.slot.status().state = state_name(client.state());
        while let Some(event) = client.poll_event() {
            if let Next::Stop = on_event(&mut ctx, &mut client, &mut socket, event).await {
                return;
            }
        }
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
        let mut wake = client.poll_at();
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
            // The sweeper saw the namespace path change: confirm, then drop the lease.
            _ = ctx.slot.gone.notified() => {
                if !ctx.netns_alive() || ctx.netns_changed() {
                    let reason = format!("network namespace {} is gone", ctx.netns_path.display());
                    ctx.lose(reason).await;
                    return;
                }
            }
            received = recv => match received {
                Ok(r) => {
                    let now = Instant::now();
                    let was = client.state();
                    let metrics = &ctx.shared.metrics;
                    match client.handle(now, &r.payload) {
                        Ok(()) => {
                            // The exchange is over: let the next one on this network go.
                            ctx.permit = None;
                            if let Some(t) = metrics::message_type(&r.payload) {
                                metrics.message_received(t);
                                if t == MessageType::Ack {
                                    match was {
                                        State::Renewing => metrics.renewal(),
                                        State::Rebinding => metrics.rebind(),
                                        _ => {}
                                    }
                                }
                            }
                            ctx.server_mac = Some(r.src_mac);
                            let yiaddr = crate::dhcp::parse_reply(&r.payload)
                                .map(|m| m.yiaddr.to_string())
                                .unwrap_or_default();
                            ctx.slot.push_history(
                                Direction::Received,
                                format!("{} {yiaddr} from {}", message_name(&r.payload), r.src_ip),
                            );
                            debug!(from = %r.src_ip, "reply accepted");
                        }
                        Err(why) => {
                            metrics.reply_ignored();
                            ctx.trace.ignored += 1;
                            ctx.trace.last_ignored = Some(why.to_string());
                            debug!(from = %r.src_ip, reason = %why, "reply ignored");
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, "receive failed; reopening the socket");
                    socket = None;
                }
            },
            command = commands.recv() => {
                if let Some(DriverCommand::Release(done)) = command {
                    if let Some(tx) = client.release() {
                        if socket.is_none() {
                            socket = ctx.open_socket().await.ok();
                        }
                        match &socket {
                            Some(s) => {
                                send(s, &tx, &mut ctx).await;
                                info!("released");
                            }
                            None => warn!("DHCPRELEASE not sent: interface gone"),
                        }
                    }
                    ctx.slot.status().state = state_name(client.state());
                    ctx.unpersist().await;
                    let _ = done.send(());
                }
                return;
            }
        }
    }
}

/// Answers the waiting ADD, if any, with `err`.
fn fail_add(ctx: &mut Ctx, err: Error) {
    ctx.slot
        .push_history(Direction::Event, format!("ADD failed: {}", err.msg));
    ctx.slot.status().last_error = Some(err.msg.clone());
    if let Some(tx) = ctx.bound_tx.take() {
        let _ = tx.send(Err(err));
    }
}

/// When a DHCPACK gives an address that another live lease holds (from the same server, or on
/// the same master), the server keys by MAC: decline it and fail the ADD rather than hand out
/// a duplicate. Judged at the ACK, not the OFFER: an OFFER is no commitment, and a correct
/// server answering many simultaneous DISCOVERs does offer an address that another client
/// binds a moment later (seen with dnsmasq at 200 parallel ADDs); REQUESTing it then just gets
/// a DHCPNAK and a new DISCOVER.
async fn decline_if_conflict(
    ctx: &mut Ctx,
    client: &mut Client,
    socket: &Option<PacketSocket>,
    address: Ipv4Addr,
    server: Ipv4Addr,
) -> Next {
    let chaddr = client.config().chaddr;
    let Some(holder) = ctx.conflict(address, server, chaddr) else {
        return Next::Continue;
    };
    let att = ctx.att();
    warn!(%address, %server, holder = %holder, "duplicate address offered: declining");
    ctx.shared.metrics.decline();
    if let Some(tx) = client.decline(Instant::now())
        && let Some(s) = socket
    {
        send(s, &tx, ctx).await;
    }
    let err = Error::new(
        code::INVALID_NETWORK_CONFIG,
        format!(
            "DHCP server {server} offered {address} to {att}, but {holder} already holds it on the same master: the server keys leases by MAC address (chaddr), which all ipvlan slaves share, and ignores the client identifier (option 61); configure it to identify clients by option 61 (dnsmasq does by default)"
        ),
        "the address was declined (DHCPDECLINE); no duplicate was handed out",
    );
    if ctx.bound_tx.is_some() {
        fail_add(ctx, err);
        ctx.shared.table.remove(&ctx.slot);
        Next::Stop
    } else {
        // A background re-acquisition: keep the lease slot, report, and let the client retry.
        ctx.slot.status().last_error = Some(err.msg);
        Next::Continue
    }
}

async fn on_event(
    ctx: &mut Ctx,
    client: &mut Client,
    socket: &mut Option<PacketSocket>,
    event: Event,
) -> Next {
    match event {
        Event::Bound(lease) => {
            if ctx.bound_tx.is_some() {
                // ADD: the ACK may still carry a duplicate (a server that skipped the check at
                // OFFER time, or an INIT-REBOOT ACK).
                if let Next::Stop =
                    decline_if_conflict(ctx, client, socket, lease.address, lease.server_id).await
                {
                    return Next::Stop;
                }
            }
            info!(address = %lease.address, prefix = lease.prefix_len, server = %lease.server_id, lease_secs = lease.lease_time, "bound");
            let previous = ctx.slot.status().lease.clone();
            record(ctx, client, &lease, false);
            client.keep_trying(true);
            if let Some(tx) = ctx.bound_tx.take() {
                // The main plugin configures the interface from the ADD result.
                ctx.configured = true;
                let _ = tx.send(Ok(lease.clone()));
            } else {
                reconfigure(ctx, previous.as_ref(), &lease).await;
            }
            ctx.persist(client).await;
        }
        Event::Renewed(lease) => {
            info!(address = %lease.address, lease_secs = lease.lease_time, "renewed");
            record(ctx, client, &lease, true);
            ctx.persist(client).await;
        }
        Event::Nak => {
            ctx.shared.metrics.nak();
            warn!("DHCPNAK: address withdrawn by the server; acquiring again");
            lose_address(ctx, "DHCPNAK from server: address withdrawn").await;
        }
        Event::Expired => {
            ctx.shared.metrics.expiry();
            warn!("lease expired without renewal; acquiring again");
            lose_address(ctx, "lease expired: no answer while RENEWING and REBINDING").await;
            ctx.slot.status().state = state_name(State::Expired);
            if client.state() == State::Expired {
                // Terminal (not keeping on): nothing more to do.
                return Next::Stop;
            }
        }
        Event::Timeout => {
            let err = ctx.timeout_error(client.config().broadcast);
            warn!(error = %err.msg, "acquisition failed");
            fail_add(ctx, err);
            return Next::Stop;
        }
    }
    Next::Continue
}

/// The lease is gone (NAK, expiry): take the address off the interface at once (RFC 2131
/// §4.4.5), keep the slot and keep acquiring.
async fn lose_address(ctx: &mut Ctx, why: &str) {
    ctx.slot.push_history(Direction::Event, why.to_string());
    let old = {
        let mut st = ctx.slot.status();
        st.timers = None;
        st.last_error = Some(why.to_string());
        st.lease.take()
    };
    if let (true, Some(old)) = (ctx.configured, old) {
        match iface::withdraw(ctx.netns_path.clone(), ctx.ifname.clone(), &old).await {
            Ok(_) => {
                info!(address = %old.address, "address withdrawn from the interface")
            }
            Err(e) => warn!(error = %e, "cannot withdraw the address"),
        }
        ctx.configured = false;
    }
}

/// A lease came back after a loss (or was re-acquired after a restart): put its address and
/// routes on the interface, replacing a different old address.
async fn reconfigure(ctx: &mut Ctx, previous: Option<&Lease>, lease: &Lease) {
    if let Some(old) = previous.filter(|old| ctx.configured && old.address != lease.address) {
        let _ = iface::withdraw(ctx.netns_path.clone(), ctx.ifname.clone(), old).await;
        ctx.configured = false;
    }
    if ctx.configured {
        return;
    }
    match iface::apply(ctx.netns_path.clone(), ctx.ifname.clone(), lease).await {
        Ok(()) => {
            ctx.configured = true;
            ctx.slot.push_history(
                Direction::Event,
                format!(
                    "{} and its routes put back on {}",
                    lease.address, ctx.ifname
                ),
            );
            info!(address = %lease.address, "address and routes put back on the interface");
        }
        Err(e) => {
            warn!(error = %e, "cannot configure the interface");
            ctx.slot.status().last_error = Some(format!("cannot configure {}: {e}", ctx.ifname));
        }
    }
}

fn record(ctx: &mut Ctx, client: &Client, lease: &Lease, renewal: bool) {
    let mut st = ctx.slot.status();
    if let Some(old) = ctx.last_address.filter(|old| *old != lease.address) {
        info!(from = %old, to = %lease.address, "address changed");
        st.previous_address = Some(old);
    }
    ctx.last_address = Some(lease.address);
    st.last_error = None;
    st.lease = Some(lease.clone());
    st.timers = timers(client);
    if renewal {
        st.renewals += 1;
    }
}

async fn send(socket: &PacketSocket, tx: &Transmit, ctx: &mut Ctx) {
    let dst_mac = if tx.dst == Ipv4Addr::BROADCAST {
        BROADCAST_MAC
    } else {
        ctx.server_mac.unwrap_or(BROADCAST_MAC)
    };
    // A request that expects a reply holds a window permit until the reply (or WINDOW_HOLD);
    // its previous transmission's permit, if any, is given back first.
    let kind = metrics::message_type(&tx.payload);
    if matches!(kind, Some(MessageType::Discover | MessageType::Request)) {
        ctx.permit = None;
        let permit = ctx.shared.pacer.permit(&ctx.slot.attachment.network).await;
        ctx.permit = Some((permit, Instant::now() + WINDOW_HOLD));
    }
    if matches!(kind, Some(MessageType::Release | MessageType::Decline)) {
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
            if let Some(t) = kind {
                ctx.shared.metrics.message_sent(t);
            }
            let state = ctx.slot.status().state.clone();
            ctx.slot.push_history(
                Direction::Sent,
                format!("{} to {} ({state})", message_name(&tx.payload), tx.dst),
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
}
