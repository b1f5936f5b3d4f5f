//! One lease's driver: the task that runs the sans-IO client against a real packet socket.
//!
//! The driver owns a [`Client`] and, while the client has something to say, a [`PacketSocket`]
//! opened inside the container's namespace. Its loop is the smoltcp pattern: send what
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

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tracing::{Instrument, debug, info, warn};

use super::clock;
use super::identity::{self, NetnsForm, Verdict};
use super::iface;
use super::metrics;
use super::pacer::WINDOW_HOLD;
use super::packet::{self, BROADCAST_MAC, LinkAddr, PacketSocket};
use super::shared::Shared;
use super::table::{DriverCommand, Handle, Slot, Status, Timers};
use crate::cni::{Error, code};
use crate::dhcp::client::{Client, Event, State, Transmit};
use crate::dhcp::config::{ClientConfig, DEFAULT_PARAMETER_REQUEST_LIST};
use crate::dhcp::message::client_id;
use crate::dhcp::{Lease, MessageType};
use crate::lease_file::{Granted, Identity, Record};
use crate::lease_state::LeaseState;
use crate::netns::NetNs;
use crate::rpc::{AddOptions, Attachment, Direction};

/// How often the sweeper checks that leases' namespaces still exist.
pub const NETNS_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// How long a send keeps retrying while the link comes up (`ENETDOWN`: a slave created a few
/// milliseconds ago may not be running yet). The reference slept a random back-off here and
/// turned a 10 ms ADD into seconds (docs/design.md, *The reference's bugs*).
const LINK_UP_WAIT: Duration = Duration::from_millis(1000);

/// First wait before a resumed lease whose namespace could not be entered (a transient error)
/// tries again; it doubles up to [`RESUME_RETRY_MAX`].
pub const RESUME_RETRY_MIN: Duration = Duration::from_secs(1);
/// Longest wait between two attempts to resume a lease.
pub const RESUME_RETRY_MAX: Duration = Duration::from_secs(60);

/// How the BOOTP broadcast flag was decided for a lease: the ipam key wins, then the daemon's
/// `-broadcast` flag, then the automatic policy (on for ipvlan slaves, whose shared MAC makes
/// servers' unicast replies undeliverable: docs/design.md, *ipvlan and DHCP*).
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

/// What a lease asks of the server besides its attachment, from the ADD request
/// ([`Asks::from_add`]) or from the lease file ([`Asks::from_record`]). The client's
/// configuration is built from it in one place ([`client_config`]), so a resumed lease sends
/// exactly what its ADD did.
#[derive(Debug, Clone)]
struct Asks {
    /// Option 61: the ipam `provide` of `dhcp-client-identifier` if given, else the
    /// reference's `0x00 containerID/network/ifname`.
    client_id: Vec<u8>,
    /// Option 12.
    hostname: Option<String>,
    /// Other options to send, (code, data).
    provided: Vec<(u8, Vec<u8>)>,
    /// Option 55 when not the default list.
    parameter_request_list: Option<Vec<u8>>,
    /// Route metric (ipam `priority`) for routes the daemon installs itself.
    priority: Option<u32>,
}

impl Asks {
    /// From an ADD. Errors: code 7 when a `dhcp-client-identifier` given in `provide` is empty
    /// or longer than the 255 bytes an option holds (RFC 2132 §9.14).
    fn from_add(attachment: &Attachment, options: &AddOptions) -> Result<Asks, Error> {
        let client_id = match &options.client_id {
            Some(id) if id.is_empty() || id.len() > 255 => {
                return Err(Error::new(
                    code::INVALID_NETWORK_CONFIG,
                    format!(
                        "dhcp-client-identifier is {} bytes; option 61 holds 1 to 255",
                        id.len()
                    ),
                    "ipam provide: dhcp-client-identifier",
                ));
            }
            Some(id) => id.clone(),
            None => client_id(
                &attachment.container_id,
                &attachment.network,
                &attachment.ifname,
            ),
        };
        Ok(Asks {
            client_id,
            hostname: options.hostname.clone(),
            provided: options.provided.clone(),
            parameter_request_list: options.parameter_request_list.clone(),
            priority: options.priority,
        })
    }

    /// From a persisted lease (what its ADD asked, as stored).
    fn from_record(record: &Record) -> Asks {
        Asks {
            client_id: record.client_id.clone(),
            hostname: record.hostname.clone(),
            provided: record.provided.clone(),
            parameter_request_list: record.parameter_request_list.clone(),
            priority: record.priority,
        }
    }
}

/// The client configuration for a lease: what it asks ([`Asks`]), the interface's MAC as
/// chaddr, the broadcast flag, and the daemon's `-timeout` and `-resendmax`.
fn client_config(
    config: &super::Config,
    asks: &Asks,
    chaddr: [u8; 6],
    broadcast: bool,
) -> ClientConfig {
    ClientConfig {
        client_id: asks.client_id.clone(),
        chaddr,
        broadcast,
        parameter_request_list: asks
            .parameter_request_list
            .clone()
            .unwrap_or_else(|| DEFAULT_PARAMETER_REQUEST_LIST.to_vec()),
        hostname: asks.hostname.clone(),
        provided: asks.provided.clone(),
        timeout: config.timeout,
        resend_max: config.resend_max,
        ..ClientConfig::new(Vec::new(), chaddr)
    }
}

/// Why a socket could not be opened for a lease.
enum OpenError {
    /// The namespace path no longer names the lease's namespace: the container is gone. Its
    /// namespace is still held, so a DHCPRELEASE can go out from it.
    ContainerGone(String),
    /// The lease's interface is gone from its namespace, or another one has its name.
    LinkGone(String),
    /// Anything else (`EMFILE`, `ENOBUFS`...): keep the lease, try again later.
    Transient(std::io::Error),
}

/// Everything a driver knows besides its client.
struct Ctx {
    shared: Arc<Shared>,
    slot: Arc<Slot>,
    /// `CNI_NETNS` as the daemon sees it (with `-hostprefix`).
    netns_path: PathBuf,
    /// The shape of `CNI_NETNS` ([`identity::parse_cni_netns`]).
    form: NetnsForm,
    /// The lease's namespace, held open for the lease's life.
    ns: Arc<NetNs>,
    /// What the lease was granted on.
    identity: Identity,
    ifname: String,
    link_kind: Option<String>,
    /// Metric of the routes the daemon puts back (ipam `priority`).
    priority: Option<u32>,
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
    /// The network's window permit held by the request in flight, and when (monotonic) it is
    /// given back if no reply comes ([`crate::daemon::pacer`]).
    permit: Option<(OwnedSemaphorePermit, Instant)>,
    /// The xid of the latest DHCPDISCOVER and when (lease clock) its first transmission was
    /// due: an offer in that transaction was built after then.
    discover: Option<(u32, Instant)>,
}

impl Ctx {
    fn att(&self) -> String {
        self.slot.attachment.to_string()
    }

    /// Whether the namespace path still names the namespace this lease holds.
    fn path_verdict(&self) -> std::io::Result<Verdict<()>> {
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
    async fn lose(&mut self, reason: String) {
        warn!(reason = %reason, "lease dropped: container gone");
        self.shared.metrics.lease_lost();
        if self.bound_tx.is_some() {
            fail_add(
                self,
                Error::new(
                    code::INVALID_ENV,
                    format!("the container went away during ADD: {reason}"),
                    "",
                ),
            );
        }
        {
            let mut st = self.slot.status();
            st.state = LeaseState::Lost;
            st.last_error = Some(reason);
        }
        self.shared.table.remove(&self.slot);
        self.unpersist().await;
    }

    /// The lease's socket, on its interface inside the held namespace. With `check_path`, the
    /// namespace path must still name that namespace (not for a DHCPRELEASE, which must go out
    /// even after the runtime removed the path).
    async fn open_socket(&self, check_path: bool) -> Result<PacketSocket, OpenError> {
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
        let opened = self
            .ns
            .run_async(move || packet::open_existing(&ifname, expect))
            .await;
        match opened {
            Ok((fd, link)) => PacketSocket::new(fd, link).map_err(OpenError::Transient),
            Err(e) if identity::is_gone(&e) => Err(OpenError::LinkGone(format!(
                "interface {} of the lease is gone: {e}",
                self.ifname
            ))),
            Err(e) => Err(OpenError::Transient(e)),
        }
    }

    /// Writes the lease to the state directory (atomically and durably; off the runtime's
    /// workers).
    ///
    /// Errors: the write failed; the previous file, if any, is unchanged.
    async fn persist(&self, client: &Client) -> std::io::Result<()> {
        let Some(lease) = client.lease().cloned() else {
            return Ok(());
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
            state: client.state().into(),
            renewals: status.renewals,
            server_mac: self.server_mac,
            identity: Some(self.identity.clone()),
            priority: self.priority,
        };
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.store.save(&record))
            .await
            .map_err(std::io::Error::other)?
    }

    /// Removes the lease's file from the state directory.
    async fn unpersist(&self) {
        unpersist(&self.shared, &self.slot.attachment).await;
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

/// Removes `attachment`'s file from the state directory (off the runtime's workers).
async fn unpersist(shared: &Arc<Shared>, attachment: &Attachment) {
    let store_shared = shared.clone();
    let attachment = attachment.clone();
    let result = tokio::task::spawn_blocking(move || store_shared.store.remove(&attachment)).await;
    if let Err(e) = result.map_err(std::io::Error::other).and_then(|r| r) {
        warn!(error = %e, "cannot remove persisted lease");
    }
}

/// Spawns a lease task that counts as a driver in the metrics while it runs.
fn spawn_driver<F>(
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

/// Starts keeping a lease for `slot`'s attachment (CNI ADD): checks and opens the namespace,
/// decides the broadcast policy, opens the socket, spawns the driver task and waits for its
/// first DHCPACK, which it answers only once the lease is on disk.
///
/// Returns the task's [`Handle`] once bound. Errors are CNI errors: code 4 when `CNI_NETNS`
/// is not of an accepted form or not a network namespace; code 7 when the interface does not
/// exist, when the server offers an address another live lease holds (it keys by MAC), or when
/// the timeout ran out on an ipvlan slave without the broadcast flag (a configuration problem);
/// code 11 (try again later) when no server answered in time; code 5 when the lease cannot be
/// written to the state directory (it is then released).
pub async fn start(
    shared: &Arc<Shared>,
    slot: Arc<Slot>,
    options: &AddOptions,
) -> Result<Handle, Error> {
    let config = &shared.config;
    let attachment = slot.attachment.clone();
    let asks = Asks::from_add(&attachment, options)?;
    let form = identity::parse_cni_netns(&options.netns)
        .map_err(|why| Error::new(code::INVALID_ENV, why, ""))?;
    let netns_path = config.netns_path(&options.netns);
    let opened = {
        let path = netns_path.clone();
        let host_prefix = config.host_prefix.clone();
        tokio::task::spawn_blocking(move || identity::open_with_start(&path, form, &host_prefix))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
    };
    let (ns, pid_start) = opened.map_err(|e| {
        Error::new(
            code::INVALID_ENV,
            format!("CNI_NETNS {} is not usable", netns_path.display()),
            e.to_string(),
        )
    })?;
    let (netns_dev, netns_ino) = ns.identity().map_err(|e| {
        Error::new(
            code::IO_FAILURE,
            format!("cannot stat {}", netns_path.display()),
            e.to_string(),
        )
    })?;
    let ifname = attachment.ifname.clone();
    // One trip into the namespace (a bounded thread, see crate::netns) reads the link's kind,
    // the namespace's cookie and opens the packet socket.
    let ifname2 = ifname.clone();
    let (kind, opened, cookie) = ns
        .run_async(move || {
            let kind = crate::link::link_info_here(&ifname2).map(|info| info.kind);
            let opened = kind.is_ok().then(|| packet::open(&ifname2));
            Ok((kind, opened, crate::netns::cookie_here()))
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
    let netns_cookie = cookie.map_err(|e| {
        Error::new(
            code::IO_FAILURE,
            format!("cannot read the cookie of {}", netns_path.display()),
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
    let boot_id = crate::lease_file::read_boot_id()
        .map_err(|e| Error::new(code::IO_FAILURE, "cannot read the boot ID", e.to_string()))?;
    let identity = Identity {
        boot_id,
        netns_dev,
        netns_ino,
        netns_cookie,
        pid_start,
        ifindex: link.ifindex,
        mac: link.mac,
    };
    *slot.status() = Status {
        netns: options.netns.clone(),
        identity: Some(identity.clone()),
        client_id: asks.client_id.clone(),
        chaddr: link.mac,
        state: State::Init.into(),
        broadcast,
        broadcast_reason,
        ..Status::default()
    };
    let client_config = client_config(config, &asks, link.mac, broadcast);
    let client = Client::new(client_config, clock::now(), rand::random());
    let (bound_tx, bound_rx) = oneshot::channel();
    let ctx = Ctx {
        shared: shared.clone(),
        slot: slot.clone(),
        netns_path,
        form,
        ns: Arc::new(ns),
        identity,
        ifname,
        link_kind,
        priority: asks.priority,
        server_mac: None,
        configured: false,
        last_address: None,
        bound_tx: Some(bound_tx),
        timeout: config.timeout,
        trace: Trace::default(),
        permit: None,
        discover: None,
    };
    let (commands, command_rx) = mpsc::channel(4);
    let task = spawn_driver(
        shared,
        &attachment,
        drive(ctx, client, Some(socket), command_rx),
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

/// A lease the sweeper looks at: its slot, namespace path and form, and identity.
type Watched = (Arc<Slot>, PathBuf, NetnsForm, Identity);

/// Finds leases whose container vanished without a DEL: every [`NETNS_CHECK_INTERVAL`], one
/// `stat(2)` per lease (on the blocking pool; one more small read for a `/proc/PID` path)
/// compares what its namespace path names now with the namespace it holds
/// ([`identity::still_named`]); the driver of a lease whose path is gone or names another
/// namespace is woken ([`Slot::gone`]) and releases and drops it. Only "gone" counts: a
/// `stat(2)` that fails otherwise (`EACCES`, `EIO`) wakes nobody. Runs until the daemon stops.
pub async fn sweep_lost_namespaces(shared: Arc<Shared>) {
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

/// How [`resume`] left a persisted lease.
#[derive(Debug)]
pub enum Resumed {
    /// Its driver runs.
    Running,
    /// Its container is gone (or it is from another boot): the file was removed. The reason.
    Dropped(String),
    /// Its namespace could not be entered for now (a transient error, given): the lease and its
    /// file are kept, and its task tries again with back-off.
    Retrying(String),
}

/// What the daemon found of a persisted lease's namespace and interface.
struct Attached {
    entered: identity::Entered,
    form: NetnsForm,
    identity: Identity,
}

/// Opens a persisted lease's namespace and checks it is the lease's ([`identity::reopen`]). A
/// record from a daemon before identities were kept is checked on what it holds (the boot of
/// its grant, the MAC as chaddr) and gets the identity found.
async fn attach(shared: &Arc<Shared>, record: &Record) -> std::io::Result<Verdict<Attached>> {
    let config = &shared.config;
    let form = match identity::parse_cni_netns(&record.netns) {
        Ok(form) => form,
        Err(why) => return Ok(Verdict::Gone(why)),
    };
    let path = config.netns_path(&record.netns);
    let ifname = record.attachment.ifname.clone();
    let host_prefix = config.host_prefix.clone();
    if let Some(known) = &record.identity {
        return Ok(
            match identity::reopen(path, form, ifname, known.clone(), host_prefix).await? {
                Verdict::Same(entered) => Verdict::Same(Attached {
                    entered,
                    form,
                    identity: known.clone(),
                }),
                Verdict::Gone(why) => Verdict::Gone(why),
            },
        );
    }
    let boot_id = crate::lease_file::read_boot_id()?;
    if record.granted.boot_id != boot_id {
        return Ok(Verdict::Gone(
            "the lease is from another boot: its network namespace cannot have survived".into(),
        ));
    }
    let entered = match identity::enter(path.clone(), form, ifname, host_prefix).await? {
        Verdict::Same(entered) => entered,
        Verdict::Gone(why) => return Ok(Verdict::Gone(why)),
    };
    if entered.link.mac != Some(record.chaddr) {
        return Ok(Verdict::Gone(format!(
            "interface {} in {} has another MAC than the lease's chaddr",
            record.attachment.ifname,
            path.display()
        )));
    }
    let identity = Identity {
        boot_id,
        netns_dev: entered.netns_id.0,
        netns_ino: entered.netns_id.1,
        netns_cookie: entered.cookie,
        pid_start: entered.pid_start,
        ifindex: entered.link.index,
        mac: record.chaddr,
    };
    Ok(Verdict::Same(Attached {
        entered,
        form,
        identity,
    }))
}

/// Resumes a lease persisted by an earlier daemon (at start-up). Drops it when its container
/// is gone ([`attach`]: namespace path gone or naming another namespace, interface gone or
/// replaced, another boot); otherwise starts its driver in the right state: within T1 it just
/// waits; past T1 it renews at once, past T2 it rebinds; past expiry it asks for the same
/// address again (INIT-REBOOT, RFC 2131 §3.2, §4.3.2). When the namespace cannot be entered for
/// a transient reason (no descriptor left, a netlink error) the lease, its slot and its file
/// are kept and its task tries again, [`RESUME_RETRY_MIN`] doubling to [`RESUME_RETRY_MAX`]
/// apart (each wait between half and one and a half times that, at random), with the error in
/// the lease record.
pub async fn resume(shared: &Arc<Shared>, record: Record) -> Resumed {
    let config = &shared.config;
    let expired = record.is_expired();
    let asks = Asks::from_record(&record);
    let client_config = client_config(config, &asks, record.chaddr, record.broadcast);
    let seed = rand::random();
    let mut client = if expired {
        Client::reboot(client_config, record.lease.clone(), clock::now(), seed)
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
        identity: record.identity.clone(),
        client_id: record.client_id.clone(),
        chaddr: record.chaddr,
        state: client.state().into(),
        broadcast: record.broadcast,
        broadcast_reason: record.broadcast_reason.clone(),
        lease: (!expired).then(|| record.lease.clone()),
        timers: timers(&client),
        renewals: record.renewals,
        // The server granted it then: an offer of its address to a sibling's DHCPDISCOVER
        // sent after this proves keying by MAC (`on_offer`).
        bound_at: (!expired).then(|| record.granted_instant()),
        ..Status::default()
    };
    let first = attach(shared, &record).await;
    let (commands, command_rx) = mpsc::channel(4);
    let (outcome, task) = match first {
        Ok(Verdict::Gone(why)) => {
            slot.status().state = LeaseState::Lost;
            shared.table.remove(&slot);
            unpersist(shared, &record.attachment).await;
            return Resumed::Dropped(why);
        }
        Ok(Verdict::Same(attached)) => {
            slot.push_history(
                Direction::Event,
                format!(
                    "resumed from the state directory ({}, {})",
                    record.lease.address,
                    client.state().name()
                ),
            );
            info!(
                attachment = %record.attachment,
                address = %record.lease.address,
                state = %client.state().name(),
                "resumed persisted lease"
            );
            let ctx = resumed_ctx(shared, &slot, &record, attached, expired);
            (
                Resumed::Running,
                spawn_driver(
                    shared,
                    &record.attachment,
                    drive(ctx, client, None, command_rx),
                ),
            )
        }
        Err(e) => {
            let why = e.to_string();
            note_resume_error(&slot, &why, RESUME_RETRY_MIN);
            let attachment = record.attachment.clone();
            (
                Resumed::Retrying(why),
                spawn_driver(
                    shared,
                    &attachment,
                    retry_resume(shared.clone(), slot.clone(), record, client, command_rx),
                ),
            )
        }
    };
    *op = Some(Handle { commands, task });
    outcome
}

fn note_resume_error(slot: &Slot, why: &str, retry_in: Duration) {
    warn!(attachment = %slot.attachment, error = %why, retry_in_secs = retry_in.as_secs(), "cannot resume persisted lease; keeping it and trying again");
    slot.status().last_error = Some(format!(
        "cannot resume after restart: {why}; trying again in {}s",
        retry_in.as_secs()
    ));
}

/// The context of a resumed lease whose namespace was found.
fn resumed_ctx(
    shared: &Arc<Shared>,
    slot: &Arc<Slot>,
    record: &Record,
    attached: Attached,
    expired: bool,
) -> Ctx {
    {
        let mut st = slot.status();
        st.identity = Some(attached.identity.clone());
        st.last_error = None;
    }
    Ctx {
        shared: shared.clone(),
        slot: slot.clone(),
        netns_path: shared.config.netns_path(&record.netns),
        form: attached.form,
        ns: Arc::new(attached.entered.ns),
        identity: attached.identity,
        ifname: record.attachment.ifname.clone(),
        link_kind: attached.entered.link.kind,
        priority: record.priority,
        server_mac: record.server_mac,
        // An expired lease's address was (or should have been) withdrawn already.
        configured: !expired,
        last_address: Some(record.lease.address),
        bound_tx: None,
        timeout: shared.config.timeout,
        trace: Trace::default(),
        permit: None,
        discover: None,
    }
}

/// The task of a resumed lease whose namespace could not be entered yet: tries again with
/// back-off until it can (then drives the lease), finds the container gone (then drops it), or
/// is told to release (DEL: the file goes; no DHCPRELEASE can be sent from a namespace that
/// cannot be entered).
async fn retry_resume(
    shared: Arc<Shared>,
    slot: Arc<Slot>,
    record: Record,
    client: Client,
    mut commands: mpsc::Receiver<DriverCommand>,
) {
    let mut wait = RESUME_RETRY_MIN;
    loop {
        // Leases that failed together (a burst of EMFILE at start-up) must not retry together.
        let jittered = wait.mul_f64(rand::random_range(0.5..1.5));
        tokio::select! {
            _ = tokio::time::sleep(jittered) => {}
            command = commands.recv() => {
                if let Some(DriverCommand::Release(done)) = command {
                    warn!("DHCPRELEASE not sent: the lease's namespace could not be entered since the restart");
                    unpersist(&shared, &record.attachment).await;
                    let _ = done.send(());
                }
                return;
            }
        }
        wait = wait.saturating_mul(2).min(RESUME_RETRY_MAX);
        match attach(&shared, &record).await {
            Ok(Verdict::Same(attached)) => {
                info!(address = %record.lease.address, "resumed persisted lease after earlier failures");
                slot.push_history(
                    Direction::Event,
                    "resumed from the state directory after earlier failures",
                );
                let expired = record.is_expired();
                let ctx = resumed_ctx(&shared, &slot, &record, attached, expired);
                drive(ctx, client, None, commands).await;
                return;
            }
            Ok(Verdict::Gone(why)) => {
                info!(reason = %why, "persisted lease dropped");
                shared.metrics.lease_lost();
                slot.status().state = LeaseState::Lost;
                shared.table.remove(&slot);
                unpersist(&shared, &record.attachment).await;
                return;
            }
            Err(e) => note_resume_error(&slot, &e.to_string(), wait),
        }
    }
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

/// Sends DHCPRELEASE if the client holds a lease (RFC 2131 §4.4.6), from the namespace the
/// lease holds, whatever its path names now.
async fn release_now(ctx: &mut Ctx, client: &mut Client, socket: &mut Option<PacketSocket>) {
    let Some(tx) = client.release() else {
        return;
    };
    if socket.is_none() {
        match ctx.open_socket(false).await {
            Ok(s) => *socket = Some(s),
            Err(OpenError::LinkGone(why) | OpenError::ContainerGone(why)) => {
                warn!(reason = %why, "DHCPRELEASE not sent")
            }
            Err(OpenError::Transient(e)) => warn!(error = %e, "DHCPRELEASE not sent"),
        }
    }
    if let Some(s) = socket.as_ref() {
        send(s, &tx, ctx).await;
        info!(address = %tx.src, "released");
    }
}

/// The container is gone (its namespace path names nothing or another namespace): give the
/// lease back from the namespace still held, then forget it.
async fn container_gone(
    ctx: &mut Ctx,
    client: &mut Client,
    socket: &mut Option<PacketSocket>,
    reason: String,
) {
    release_now(ctx, client, socket).await;
    ctx.lose(reason).await;
}

/// The driver loop. Its rare, large steps (events, sends, a container gone) are boxed while
/// they run, so a resting lease's task (a thousand of them on a busy node) holds only the
/// loop's own state (measured in docs/performance.md).
async fn drive(
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
async fn on_received(ctx: &mut Ctx, client: &mut Client, r: packet::Received) -> Next {
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

/// A live lease of another attachment that shares our chaddr and holds a lease from `server`.
struct Sibling {
    attachment: String,
    address: Ipv4Addr,
    bound_at: Option<Instant>,
}

/// The first other live lease of the table for which `f` gives something (the lease's status
/// and lease), with its attachment: one unordered scan, as at every DHCPOFFER and DHCPACK.
fn other_lease<T>(ctx: &Ctx, f: impl Fn(&Status, &Lease) -> Option<T>) -> Option<(String, T)> {
    ctx.shared.table.snapshot().into_iter().find_map(|other| {
        if Arc::ptr_eq(&other, &ctx.slot) {
            return None;
        }
        let st = other.status();
        let lease = st.lease.as_ref().filter(|_| st.state != LeaseState::Lost)?;
        f(&st, lease).map(|t| (other.attachment.to_string(), t))
    })
}

fn sibling_of(ctx: &Ctx, server: Ipv4Addr, chaddr: [u8; 6]) -> Option<Sibling> {
    other_lease(ctx, |st, lease| {
        (st.chaddr == chaddr && lease.server_id == server).then_some((lease.address, st.bound_at))
    })
    .map(|(attachment, (address, bound_at))| Sibling {
        attachment,
        address,
        bound_at,
    })
}

/// The error of an ADD (and the `last_error` of a background acquisition) behind a server that
/// keys leases by MAC: the same explanation every time.
fn mac_keyed_error(att: &str, server: Ipv4Addr, chaddr: [u8; 6], holder: &str) -> Error {
    Error::new(
        code::INVALID_NETWORK_CONFIG,
        format!(
            "DHCP server {server} keys leases by MAC address (chaddr) and ignores the client identifier (option 61): {holder} already holds this server's lease for MAC {}, which every ipvlan slave of the master shares, so {att} cannot get a lease of its own; configure the server to identify clients by option 61 (dnsmasq does by default)",
            crate::lease_file::mac::to_string(&chaddr)
        ),
        format!(
            "nothing was requested or declined: the server's only binding for that MAC is {holder}'s, which keeps it"
        ),
    )
}

/// A DHCPOFFER was just accepted and is about to be requested. Behind a server that has shown
/// it keys by MAC (an earlier ACK or offer of a sibling's address for the same MAC), requesting
/// any address would move that MAC's only binding away from the sibling that holds it: refuse
/// the offer instead, without a word to the server. An offer of the very address a sibling
/// with our MAC holds from this server, in a transaction begun after the sibling was bound, is
/// such a proof (a server keying by option 61 had bound it to the sibling before it saw our
/// DHCPDISCOVER and would not offer it).
fn on_offer(ctx: &mut Ctx, client: &mut Client, now: Instant) -> Next {
    let Some((address, server)) = client.offered() else {
        return Next::Continue;
    };
    let chaddr = client.config().chaddr;
    let Some(sibling) = sibling_of(ctx, server, chaddr) else {
        return Next::Continue;
    };
    let known = ctx
        .shared
        .mac_keyed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&(server, chaddr));
    let began = ctx
        .discover
        .filter(|(xid, _)| *xid == client.xid())
        .map(|(_, at)| at);
    let proof = sibling.address == address
        && matches!((began, sibling.bound_at), (Some(b), Some(s)) if b > s);
    if !known && !proof {
        return Next::Continue;
    }
    mark_mac_keyed(ctx, server, chaddr);
    warn!(%address, %server, holder = %sibling.attachment, "offer refused: the server keys leases by MAC");
    let err = mac_keyed_error(&ctx.att(), server, chaddr, &sibling.attachment);
    refuse(ctx, client, now, err)
}

fn mark_mac_keyed(ctx: &Ctx, server: Ipv4Addr, chaddr: [u8; 6]) {
    ctx.shared
        .mac_keyed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert((server, chaddr));
}

/// Gives up the offer or lease at hand without telling the server: an ADD fails with `err`;
/// a background acquisition records it and starts again later ([`Client::abandon`]).
fn refuse(ctx: &mut Ctx, client: &mut Client, now: Instant, err: Error) -> Next {
    client.abandon(now);
    if ctx.bound_tx.is_some() {
        fail_add(ctx, err);
        ctx.shared.table.remove(&ctx.slot);
        Next::Stop
    } else {
        ctx.slot.push_history(Direction::Event, err.msg.clone());
        ctx.slot.status().last_error = Some(err.msg);
        Next::Continue
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

/// What a DHCPACK that duplicates a live lease's address means.
enum Duplicate {
    /// No other live lease holds the address.
    None,
    /// Refused: continue with the client as it is now (a background acquisition), or stop.
    Refused(Next),
}

/// A DHCPACK gave `lease`, whose address another live lease holds (from the same server, or
/// on the same master). When the holder has our chaddr and got it from the same server, the
/// server keys by MAC and its ACK just renewed the holder's own binding: that address must not
/// be declined (a DHCPDECLINE would make the server take it from the holder), so it is dropped
/// silently. Otherwise the address really is in use by someone else: DHCPDECLINE (RFC 2131
/// §4.4.1). Either way no duplicate is handed out: an ADD fails (code 7); a background
/// acquisition starts again 10 s later. Judged at the ACK (and at the OFFER only on proof,
/// [`on_offer`]): an OFFER is no commitment, and a correct server answering many simultaneous
/// DISCOVERs does offer an address that another client binds a moment later (seen with dnsmasq
/// at 200 parallel ADDs); REQUESTing it then just gets a DHCPNAK and a new DISCOVER.
async fn refuse_duplicate(
    ctx: &mut Ctx,
    client: &mut Client,
    socket: &Option<PacketSocket>,
    lease: &Lease,
) -> Duplicate {
    let chaddr = client.config().chaddr;
    let (address, server) = (lease.address, lease.server_id);
    let holder = other_lease(ctx, |st, held| {
        (held.address == address && (held.server_id == server || st.chaddr == chaddr))
            .then_some(st.chaddr == chaddr && held.server_id == server)
    });
    let Some((holder, mac_keyed)) = holder else {
        return Duplicate::None;
    };
    let now = clock::now();
    let att = ctx.att();
    if mac_keyed {
        mark_mac_keyed(ctx, server, chaddr);
        warn!(%address, %server, holder = %holder, "ACK for a sibling's address: the server keys leases by MAC; not declined");
        let err = mac_keyed_error(&att, server, chaddr, &holder);
        return Duplicate::Refused(refuse(ctx, client, now, err));
    }
    warn!(%address, %server, holder = %holder, "duplicate address acknowledged: declining");
    ctx.shared.metrics.decline();
    if let Some(tx) = client.decline(now)
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
        Duplicate::Refused(Next::Stop)
    } else {
        ctx.slot.push_history(Direction::Event, err.msg.clone());
        ctx.slot.status().last_error = Some(err.msg);
        Duplicate::Refused(Next::Continue)
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
            warn!(error = %err.msg, "acquisition failed");
            fail_add(ctx, err);
            return Next::Stop;
        }
    }
    Next::Continue
}

/// A renewal's lease could not be written: the previous file (same lease, older times) stays,
/// so a restarted daemon just renews sooner. Reported; STATUS says not ready meanwhile.
fn persist_failed(ctx: &Ctx, e: &std::io::Error) {
    let dir = ctx.shared.store.dir().display().to_string();
    warn!(error = %e, state_dir = %dir, "cannot persist lease");
    ctx.slot.status().last_error = Some(format!(
        "cannot write the lease to the state directory {dir}: {e}"
    ));
}

/// The first DHCPACK of an ADD could not be written: give the lease back (DHCPRELEASE) and fail
/// the ADD naming the state directory, so no address exists that nobody would renew.
async fn persist_failed_at_add(
    ctx: &mut Ctx,
    client: &mut Client,
    socket: &mut Option<PacketSocket>,
    e: std::io::Error,
) -> Next {
    let dir = ctx.shared.store.dir().display().to_string();
    warn!(error = %e, state_dir = %dir, "cannot persist the new lease; releasing it and failing the ADD");
    release_now(ctx, client, socket).await;
    {
        let mut st = ctx.slot.status();
        st.lease = None;
        st.timers = None;
        st.bound_at = None;
    }
    fail_add(
        ctx,
        Error::new(
            code::IO_FAILURE,
            format!(
                "cannot keep the DHCP lease: the daemon's state directory {dir} refused the write"
            ),
            format!("{e}; the lease was released (DHCPRELEASE), nothing is configured"),
        ),
    );
    ctx.shared.table.remove(&ctx.slot);
    ctx.unpersist().await;
    Next::Stop
}

/// The lease is gone (NAK, expiry): take the address off the interface at once (RFC 2131
/// §4.4.5), keep the slot and keep acquiring. Checks first that the namespace path still names
/// the lease's namespace: if not, the container is gone and so is the lease.
async fn lose_address(
    ctx: &mut Ctx,
    client: &mut Client,
    socket: &mut Option<PacketSocket>,
    why: &str,
) -> Next {
    ctx.slot.push_history(Direction::Event, why.to_string());
    let old = {
        let mut st = ctx.slot.status();
        st.timers = None;
        st.bound_at = None;
        st.last_error = Some(why.to_string());
        st.lease.take()
    };
    if let Ok(Verdict::Gone(gone)) = ctx.path_verdict() {
        container_gone(ctx, client, socket, gone).await;
        return Next::Stop;
    }
    if let (true, Some(old)) = (ctx.configured, old) {
        match iface::withdraw(ctx.ns.clone(), ctx.identity.ifindex, &old).await {
            Ok(_) => {
                info!(address = %old.address, "address withdrawn from the interface")
            }
            Err(e) if identity::is_gone(&e) => {
                ctx.lose(format!(
                    "interface {} of the lease is gone: {e}",
                    ctx.ifname
                ))
                .await;
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
async fn reconfigure(
    ctx: &mut Ctx,
    client: &mut Client,
    socket: &mut Option<PacketSocket>,
    previous: Option<&Lease>,
    lease: &Lease,
) -> Next {
    if let Ok(Verdict::Gone(gone)) = ctx.path_verdict() {
        container_gone(ctx, client, socket, gone).await;
        return Next::Stop;
    }
    let (ns, ifindex) = (ctx.ns.clone(), ctx.identity.ifindex);
    if let Some(old) = previous.filter(|old| ctx.configured && old.address != lease.address) {
        let _ = iface::withdraw(ns.clone(), ifindex, old).await;
        ctx.configured = false;
    }
    if ctx.configured {
        return Next::Continue;
    }
    match iface::apply(ns, ifindex, lease, ctx.priority).await {
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
                    lease.address, ctx.ifname
                ),
            );
            info!(address = %lease.address, "address and routes put back on the interface");
        }
        Err(e) if identity::is_gone(&e) => {
            ctx.lose(format!(
                "interface {} of the lease is gone: {e}",
                ctx.ifname
            ))
            .await;
            return Next::Stop;
        }
        Err(e) => {
            warn!(error = %e, "cannot configure the interface");
            ctx.slot.status().last_error = Some(format!("cannot configure {}: {e}", ctx.ifname));
        }
    }
    Next::Continue
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
    let kind = tx.message_type;
    if matches!(kind, MessageType::Discover | MessageType::Request) {
        ctx.permit = None;
        let permit = ctx.shared.pacer.permit(&ctx.slot.attachment.network).await;
        ctx.permit = Some((permit, Instant::now() + WINDOW_HOLD));
    }
    if matches!(kind, MessageType::Release | MessageType::Decline) {
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
            ctx.shared.metrics.message_sent(kind);
            let state = ctx.slot.status().state.clone();
            ctx.slot.push_history(
                Direction::Sent,
                format!(
                    "DHCP{} to {} ({state})",
                    metrics::message_type_name(kind),
                    tx.dst
                ),
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

    #[test]
    fn the_client_identifier_override_is_used_and_checked() {
        let att = Attachment {
            container_id: "c1".into(),
            network: "n".into(),
            ifname: "eth0".into(),
        };
        let default = Asks::from_add(&att, &AddOptions::default()).unwrap();
        assert_eq!(default.client_id, client_id("c1", "n", "eth0"));
        let options = AddOptions {
            client_id: Some(b"reserved-1".to_vec()),
            priority: Some(7),
            ..AddOptions::default()
        };
        let asks = Asks::from_add(&att, &options).unwrap();
        assert_eq!(asks.client_id, b"reserved-1");
        let config = client_config(
            &super::super::Config::default(),
            &asks,
            [2, 0, 0, 0, 0, 1],
            true,
        );
        assert_eq!(config.client_id, b"reserved-1");
        assert_eq!(config.min_lease, crate::dhcp::config::MIN_LEASE_SECS);
        for bad in [Vec::new(), vec![b'x'; 256]] {
            let options = AddOptions {
                client_id: Some(bad),
                ..AddOptions::default()
            };
            let err = Asks::from_add(&att, &options).unwrap_err();
            assert_eq!(err.code, code::INVALID_NETWORK_CONFIG);
        }
    }
}
