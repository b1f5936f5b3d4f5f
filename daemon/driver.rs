//! One lease's driver: the task that runs the sans-IO client against a real packet socket.
//!
//! The driver owns a [`Client`] and, while the client has something to say, a [`PacketSocket`]
//! opened inside the container's namespace. Its loop is the smoltcp pattern: send what
//! `poll_transmit` gives, report `poll_event`s, then sleep until `poll_at`, a received datagram,
//! or a command (DEL), whichever comes first. Time is read from the monotonic clock and passed
//! in; the client never reads it itself.
//!
//! While BOUND the driver closes its socket: a bound lease costs a sleeping task and its
//! status, no file descriptor and no thread. At T1 it re-opens the namespace by path (a
//! container that is gone shows up here as a lost lease, not as a leaked fd).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::Config;
use super::packet::{self, BROADCAST_MAC, PacketSocket};
use super::table::{DriverCommand, Handle, Slot, Timers};
use crate::cni::{Error, code};
use crate::dhcp::Lease;
use crate::dhcp::client::{Client, ClientConfig, Event, State, Transmit};
use crate::dhcp::message::{DEFAULT_PARAMETER_REQUEST_LIST, client_id};
use crate::netns::NetNs;
use crate::rpc::AddOptions;

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

/// What an acquisition found besides the lease: used to name the likely cause of a timeout.
#[derive(Debug, Default)]
struct Trace {
    /// Messages sent.
    sent: u32,
    /// Replies dropped by the client, with the last reason.
    ignored: u32,
    last_ignored: Option<String>,
    /// Send errors.
    send_errors: u32,
    last_send_error: Option<String>,
}

/// Everything a driver needs to reopen its socket later.
struct Ctx {
    slot: Arc<Slot>,
    netns_path: std::path::PathBuf,
    ifname: String,
    link_kind: Option<String>,
    /// Link-layer destination of unicasts to the server: the source MAC of its last reply.
    server_mac: Option<[u8; 6]>,
}

impl Ctx {
    fn set_state(&self, state: State) {
        self.slot.status().state = state_name(state);
    }

    async fn open_socket(&self) -> std::io::Result<PacketSocket> {
        let ns = NetNs::open(&self.netns_path)?;
        let ifname = self.ifname.clone();
        let (fd, link) = ns.run_async(move || packet::open(&ifname)).await?;
        PacketSocket::new(fd, link)
    }
}

/// RFC 2131 state names as operators know them.
pub fn state_name(state: State) -> String {
    match state {
        State::Init => "INIT",
        State::Selecting => "SELECTING",
        State::Requesting => "REQUESTING",
        State::Bound => "BOUND",
        State::Renewing => "RENEWING",
        State::Rebinding => "REBINDING",
        State::Expired => "EXPIRED",
        State::Released => "RELEASED",
        State::Failed => "FAILED",
        State::InitReboot => "INIT-REBOOT",
        State::Rebooting => "REBOOTING",
        State::Declined => "DECLINED",
    }
    .to_string()
}

/// Starts keeping a lease for `slot`'s attachment: enters the namespace, decides the broadcast
/// policy, opens the socket, spawns the driver task and waits for its first DHCPACK.
///
/// Returns the task's [`Handle`] once bound. Errors are CNI errors: code 4 when `CNI_NETNS`
/// cannot be opened, code 7 when the interface does not exist or when the timeout ran out on an
/// ipvlan slave without the broadcast flag (a configuration problem), code 11 (try again later)
/// when no server answered in time.
pub async fn start(
    config: &Config,
    slot: Arc<Slot>,
    options: &AddOptions,
) -> Result<Handle, Error> {
    let attachment = slot.attachment.clone();
    let netns_path = config.netns_path(&options.netns);
    let ns = NetNs::open(&netns_path).map_err(|e| {
        Error::new(
            code::INVALID_ENV,
            format!("cannot open network namespace {}", netns_path.display()),
            e.to_string(),
        )
    })?;
    let ifname = attachment.ifname.clone();
    // link_info_in blocks (it runs a netlink query on a thread inside the namespace): keep it
    // off the runtime's workers.
    let ifname2 = ifname.clone();
    let (ns, info) = tokio::task::spawn_blocking(move || {
        let info = crate::link::link_info_in(&ns, &ifname2);
        (ns, info)
    })
    .await
    .map_err(|e| Error::new(code::INTERNAL, "link query task failed", e.to_string()))?;
    let link_kind = info
        .map_err(|e| {
            Error::new(
                code::INVALID_NETWORK_CONFIG,
                format!("no interface {ifname} in {}", netns_path.display()),
                e.to_string(),
            )
        })?
        .kind;
    let (broadcast, broadcast_reason) =
        broadcast_policy(options.broadcast, config.broadcast, link_kind.as_deref());
    let ifname2 = ifname.clone();
    let (fd, link) = ns
        .run_async(move || packet::open(&ifname2))
        .await
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
    {
        let mut st = slot.status();
        *st = Default::default();
        st.netns = options.netns.clone();
        st.client_id = cid.clone();
        st.broadcast = broadcast;
        st.broadcast_reason = broadcast_reason.clone();
        st.state = state_name(State::Init);
    }
    let client_config = ClientConfig {
        client_id: cid,
        chaddr: link.mac,
        broadcast,
        parameter_request_list: DEFAULT_PARAMETER_REQUEST_LIST.to_vec(),
        hostname: options.hostname.clone(),
        timeout: config.timeout,
        resend_max: config.resend_max,
    };
    let client = Client::new(client_config, Instant::now(), rand::random());
    let ctx = Ctx {
        slot: slot.clone(),
        netns_path,
        ifname,
        link_kind,
        server_mac: None,
    };
    let (commands, command_rx) = mpsc::channel(4);
    let (bound_tx, bound_rx) = oneshot::channel();
    let task = tokio::spawn(drive(
        ctx,
        client,
        Some(socket),
        command_rx,
        Some(bound_tx),
        config.timeout,
        broadcast,
    ));
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

/// Stops a running driver: it sends DHCPRELEASE if it holds a lease, then ends. Waits for both.
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

fn timeout_error(ctx: &Ctx, trace: &Trace, timeout: Duration, broadcast: bool) -> Error {
    let mut details = format!(
        "sent {} message(s) on {} (link kind {}), broadcast flag {}; {} reply(ies) ignored",
        trace.sent,
        ctx.ifname,
        ctx.link_kind.as_deref().unwrap_or("unknown"),
        if broadcast { "on" } else { "off" },
        trace.ignored,
    );
    if let Some(r) = &trace.last_ignored {
        details.push_str(&format!(" (last: {r})"));
    }
    if let Some(e) = &trace.last_send_error {
        details.push_str(&format!("; {} send error(s), last: {e}", trace.send_errors));
    }
    if !broadcast && ctx.link_kind.as_deref() == Some("ipvlan") {
        Error::new(
            code::INVALID_NETWORK_CONFIG,
            format!(
                "no DHCP lease within {}s on ipvlan slave {}: likely cause: the BOOTP broadcast flag is off, so the server unicasts its reply to the offered address, which the ipvlan master drops because no slave owns that address yet; set \"broadcast\": true in ipam (or remove the key to let the daemon decide)",
                timeout.as_secs(),
                ctx.ifname
            ),
            details,
        )
    } else {
        Error::new(
            code::TRY_AGAIN_LATER,
            format!(
                "no DHCP lease within {}s on {}: no server answered; is a DHCP server reachable on the master's LAN, and does it answer clients with option 61?",
                timeout.as_secs(),
                ctx.ifname
            ),
            details,
        )
    }
}

/// The driver loop. `bound_tx` receives the outcome of the first acquisition.
async fn drive(
    mut ctx: Ctx,
    mut client: Client,
    mut socket: Option<PacketSocket>,
    mut commands: mpsc::Receiver<DriverCommand>,
    mut bound_tx: Option<oneshot::Sender<Result<Lease, Error>>>,
    timeout: Duration,
    broadcast: bool,
) {
    let att = ctx.slot.attachment.to_string();
    let mut trace = Trace::default();
    loop {
        let now = Instant::now();
        while let Some(tx) = client.poll_transmit(now) {
            if socket.is_none() {
                match ctx.open_socket().await {
                    Ok(s) => socket = Some(s),
                    Err(e) => {
                        warn!(attachment = %att, error = %e, "lease lost: cannot reopen the container's interface");
                        let mut st = ctx.slot.status();
                        st.state = "LOST".into();
                        st.last_error = Some(format!("cannot reopen {}: {e}", ctx.ifname));
                        return;
                    }
                }
            }
            if let Some(s) = &socket {
                send(s, &tx, &ctx, &mut trace, &att).await;
            }
        }
        ctx.set_state(client.state());
        while let Some(event) = client.poll_event() {
            match event {
                Event::Bound(lease) => {
                    info!(attachment = %att, address = %lease.address, prefix = lease.prefix_len, server = %lease.server_id, lease_secs = lease.lease_time, "bound");
                    record_lease(&ctx, &client, &lease, false);
                    if let Some(tx) = bound_tx.take() {
                        let _ = tx.send(Ok(lease));
                    }
                }
                Event::Renewed(lease) => {
                    info!(attachment = %att, address = %lease.address, lease_secs = lease.lease_time, "renewed");
                    record_lease(&ctx, &client, &lease, true);
                }
                Event::Nak => {
                    warn!(attachment = %att, "DHCPNAK: address withdrawn by the server");
                    // The client forgets the lease and starts over from INIT (RFC 2131 §4.4.5).
                    let mut st = ctx.slot.status();
                    st.lease = None;
                    st.timers = None;
                    st.last_error = Some("DHCPNAK from server: address withdrawn".into());
                }
                Event::Expired => {
                    warn!(attachment = %att, "lease expired without renewal");
                    let mut st = ctx.slot.status();
                    st.state = state_name(State::Expired);
                    st.last_error =
                        Some("lease expired: server did not answer RENEWING or REBINDING".into());
                    return;
                }
                Event::Timeout => {
                    let err = timeout_error(&ctx, &trace, timeout, broadcast);
                    warn!(attachment = %att, error = %err.msg, "acquisition failed");
                    ctx.slot.status().last_error = Some(err.msg.clone());
                    if let Some(tx) = bound_tx.take() {
                        let _ = tx.send(Err(err));
                    }
                    return;
                }
            }
        }
        if client.state() == State::Bound {
            // Nothing to hear until T1: give the fd back.
            socket = None;
        }
        let wake = client.poll_at();
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
            received = recv => match received {
                Ok(r) => {
                    let now = Instant::now();
                    match client.handle(now, &r.payload) {
                        Ok(()) => {
                            ctx.server_mac = Some(r.src_mac);
                            debug!(attachment = %att, from = %r.src_ip, "reply accepted");
                        }
                        Err(why) => {
                            trace.ignored += 1;
                            trace.last_ignored = Some(format!("{why:?}"));
                            debug!(attachment = %att, from = %r.src_ip, reason = ?why, "reply ignored");
                        }
                    }
                }
                Err(e) => {
                    warn!(attachment = %att, error = %e, "receive failed; reopening the socket");
                    socket = None;
                }
            },
            command = commands.recv() => {
                match command {
                    Some(DriverCommand::Release(done)) => {
                        if let Some(tx) = client.release() {
                            if socket.is_none() {
                                socket = ctx.open_socket().await.ok();
                            }
                            match &socket {
                                Some(s) => {
                                    send(s, &tx, &ctx, &mut trace, &att).await;
                                    info!(attachment = %att, "released");
                                }
                                None => warn!(attachment = %att, "DHCPRELEASE not sent: interface gone"),
                            }
                        }
                        ctx.set_state(client.state());
                        let _ = done.send(());
                    }
                    None => {}
                }
                return;
            }
        }
    }
}

fn record_lease(ctx: &Ctx, client: &Client, lease: &Lease, renewal: bool) {
    let mut st = ctx.slot.status();
    st.lease = Some(lease.clone());
    st.timers = match (client.renew_at(), client.rebind_at(), client.expires_at()) {
        (Some(renew_at), Some(rebind_at), Some(expires_at)) => Some(Timers {
            renew_at,
            rebind_at,
            expires_at,
        }),
        // An infinite lease (u32::MAX seconds) has no timers.
        _ => None,
    };
    if renewal {
        st.renewals += 1;
    }
    st.last_error = None;
}

/// How long a send keeps retrying while the link comes up (`ENETDOWN`: a slave created a few
/// milliseconds ago may not be running yet). The reference slept a random back-off here and
/// turned a 10 ms ADD into seconds (shared NOTES §2).
const LINK_UP_WAIT: Duration = Duration::from_millis(1000);

async fn send(socket: &PacketSocket, tx: &Transmit, ctx: &Ctx, trace: &mut Trace, att: &str) {
    let dst_mac = if tx.dst == Ipv4Addr::BROADCAST {
        BROADCAST_MAC
    } else {
        ctx.server_mac.unwrap_or(BROADCAST_MAC)
    };
    let give_up = Instant::now() + LINK_UP_WAIT;
    let mut result = socket.send(tx.src, tx.dst, dst_mac, &tx.payload);
    while matches!(&result, Err(e) if e.raw_os_error() == Some(libc::ENETDOWN))
        && Instant::now() < give_up
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
        result = socket.send(tx.src, tx.dst, dst_mac, &tx.payload);
    }
    match result {
        Ok(()) => {
            trace.sent += 1;
            debug!(attachment = %att, src = %tx.src, dst = %tx.dst, bytes = tx.payload.len(), "sent");
        }
        Err(e) => {
            // The retransmission timer tries again; a just-created link may still be down.
            trace.send_errors += 1;
            trace.last_send_error = Some(e.to_string());
            debug!(attachment = %att, error = %e, "send failed");
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
