//! CNI ADD of a new lease ([`start`]): what the lease asks of the server ([`Asks`], one builder
//! for ADD and resume), the namespace checks and the one trip into it (link kind, cookie, packet
//! socket), then the driver task, answered once its first DHCPACK is on disk.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::ctx::{Ctx, Trace};
use super::error::AcquireError;
use super::event_loop::drive;
use super::protocol::LeaseClient;
use super::v4::Dhcpv4;
use super::{chaddr_of, spawn_driver, v4_policies};
use crate::daemon::clock;
use crate::daemon::identity::{self};
use crate::daemon::packet::{self, PacketSocket};
use crate::daemon::shared::Shared;
use crate::daemon::table::{Handle, Slot, Status};
use crate::dhcp::client::{Client, State};
use crate::dhcp::config::{ClientConfig, DEFAULT_PARAMETER_REQUEST_LIST};
use crate::dhcp::message::client_id;
use crate::lease_file::{Identity, Record};
use crate::rpc::{AddOptions, Attachment};

/// What a lease asks of the server besides its attachment, from the ADD request
/// ([`Asks::from_add`]) or from the lease file ([`Asks::from_record`]). The client's
/// configuration is built from it in one place ([`client_config`]), so a resumed lease sends
/// exactly what its ADD did.
#[derive(Debug, Clone)]
pub(super) struct Asks {
    /// Option 61: the ipam `provide` of `dhcp-client-identifier` if given, else the
    /// reference's `0x00 containerID/network/ifname`.
    pub(super) client_id: Vec<u8>,
    /// Option 12.
    pub(super) hostname: Option<String>,
    /// Other options to send, (code, data).
    pub(super) provided: Vec<(u8, Vec<u8>)>,
    /// Option 55 when not the default list.
    pub(super) parameter_request_list: Option<Vec<u8>>,
    /// Route metric (ipam `priority`) for routes the daemon installs itself.
    pub(super) priority: Option<u32>,
    /// First DHCPDISCOVER and DHCPREQUEST as Ethernet unicasts to a known server (ipam
    /// `unicastDiscover`, default on).
    pub(super) unicast_discover: bool,
}

impl Asks {
    /// From an ADD. Errors: code 7 when a `dhcp-client-identifier` given in `provide` is empty
    /// or longer than the 255 bytes an option holds (RFC 2132 §9.14).
    pub(super) fn from_add(
        attachment: &Attachment,
        options: &AddOptions,
    ) -> Result<Asks, AcquireError> {
        let client_id = match &options.client_id {
            Some(id) if id.is_empty() || id.len() > 255 => {
                return Err(AcquireError::ClientIdLength(id.len()));
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
            unicast_discover: !options.no_unicast_discover,
        })
    }

    /// From a persisted lease (what its ADD asked, as stored).
    pub(super) fn from_record(record: &Record) -> Asks {
        Asks {
            client_id: record.client_id.clone(),
            hostname: record.hostname.clone(),
            provided: record.provided.clone(),
            parameter_request_list: record.parameter_request_list.clone(),
            priority: record.priority,
            unicast_discover: !record.no_unicast_discover,
        }
    }
}

/// The client configuration for a lease: what it asks ([`Asks`]), the chaddr to send (the
/// interface's MAC or one derived, [`super::chaddr_of`]) and the interface's MAC, the
/// broadcast flag (on renewals too when the chaddr is derived), and the daemon's `-timeout` and `-resendmax`.
pub(super) fn client_config(
    config: &crate::daemon::Config,
    asks: &Asks,
    (chaddr, link_mac): ([u8; 6], [u8; 6]),
    broadcast: bool,
) -> ClientConfig {
    ClientConfig {
        client_id: asks.client_id.clone(),
        chaddr,
        broadcast,
        // A reply to a derived chaddr's Ethernet address reaches no interface.
        broadcast_renewals: broadcast && chaddr != link_mac,
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

/// What an ADD found on its one trip into the container's namespace, for any protocol: the
/// namespace (held from now on), what the lease is granted on, the link's kind, and what the
/// protocol's `open` returned there (its socket).
pub(super) struct Entered<T> {
    /// The namespace, open.
    pub(super) ns: crate::netns::NetNs,
    /// The shape of `CNI_NETNS`.
    pub(super) form: identity::NetnsForm,
    /// `CNI_NETNS` as the daemon sees it.
    pub(super) netns_path: std::path::PathBuf,
    /// What the lease is granted on.
    pub(super) identity: Identity,
    /// The link's kind (`ipvlan`, `macvlan`, `veth`...), if it has one.
    pub(super) link_kind: Option<String>,
    /// What `open` made.
    pub(super) opened: T,
}

/// The namespace checks of an ADD and its one trip into the namespace (a bounded thread, see
/// crate::netns): opens `CNI_NETNS` (checking its form and what it names), then there reads
/// the link's kind and the namespace's cookie and runs `open` (given the ifname; it returns
/// what it opened and the link's index and MAC).
///
/// Errors: `CNI_NETNS` of a refused form or not a namespace (code 4), no such interface (7),
/// anything the host refused (5); `open`'s own error as an I/O failure naming `what`.
pub(super) async fn enter<T, F>(
    shared: &Arc<Shared>,
    options: &AddOptions,
    ifname: &str,
    what: &'static str,
    open: F,
) -> Result<Entered<T>, AcquireError>
where
    T: Send + 'static,
    F: FnOnce(&str) -> std::io::Result<(T, packet::LinkAddr)> + Send + 'static,
{
    let config = &shared.config;
    let form = identity::parse_cni_netns(&options.netns).map_err(AcquireError::NetnsForm)?;
    let netns_path = config.netns_path(&options.netns);
    let opened = {
        let path = netns_path.clone();
        let host_prefix = config.host_prefix.clone();
        tokio::task::spawn_blocking(move || identity::open_with_start(&path, form, &host_prefix))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
    };
    let (ns, pid_start) = opened.map_err(|e| AcquireError::NetnsUnusable {
        path: netns_path.clone(),
        error: e.to_string(),
    })?;
    let (netns_dev, netns_ino) = ns
        .identity()
        .map_err(|e| AcquireError::io(format!("cannot stat {}", netns_path.display()), e))?;
    let ifname2 = ifname.to_owned();
    let (kind, opened, cookie) = ns
        .run_async(move || {
            let kind = crate::link::link_info_here(&ifname2).map(|info| info.kind);
            let opened = kind.is_ok().then(|| open(&ifname2));
            Ok((kind, opened, crate::netns::cookie_here()))
        })
        .await
        .map_err(|e| AcquireError::io(format!("cannot enter {}", netns_path.display()), e))?;
    let link_kind = kind.map_err(|e| AcquireError::NoInterface {
        ifname: ifname.to_owned(),
        netns: netns_path.clone(),
        error: e.to_string(),
    })?;
    let netns_cookie = cookie.map_err(|e| {
        AcquireError::io(
            format!("cannot read the cookie of {}", netns_path.display()),
            e,
        )
    })?;
    let (opened, link) = opened
        .unwrap_or_else(|| Err(std::io::Error::other("link lookup failed")))
        .map_err(|e| AcquireError::io(format!("cannot open {what} on {ifname}"), e))?;
    let boot_id = crate::lease_file::read_boot_id()
        .map_err(|e| AcquireError::io("cannot read the boot ID", e))?;
    let identity = Identity {
        boot_id,
        netns_dev,
        netns_ino,
        netns_cookie,
        pid_start,
        ifindex: link.ifindex,
        mac: link.mac,
    };
    Ok(Entered {
        ns,
        form,
        netns_path,
        identity,
        link_kind,
        opened,
    })
}

/// A new lease's context: nothing heard yet, an ADD waiting on `bound_tx`.
pub(super) fn new_ctx<T>(
    shared: &Arc<Shared>,
    slot: &Arc<Slot>,
    entered: Entered<T>,
    priority: Option<u32>,
    unicast_discover: bool,
    bound_tx: oneshot::Sender<Result<(), AcquireError>>,
) -> (Ctx, T) {
    let ctx = Ctx {
        shared: shared.clone(),
        slot: slot.clone(),
        netns_path: entered.netns_path,
        form: entered.form,
        ns: Arc::new(entered.ns),
        identity: entered.identity,
        ifname: slot.attachment.ifname.clone(),
        link_kind: entered.link_kind,
        priority,
        server_mac: None,
        unicast_discover,
        configured: false,
        last_address: None,
        bound_tx: Some(bound_tx),
        timeout: shared.config.timeout,
        trace: Trace::default(),
        permit: None,
    };
    (ctx, entered.opened)
}

/// Spawns the driver of a new lease and waits for its first binding (on disk by then).
pub(super) async fn launch<C: LeaseClient>(
    shared: &Arc<Shared>,
    ctx: Ctx,
    client: C,
    socket: C::Socket,
    bound_rx: oneshot::Receiver<Result<(), AcquireError>>,
) -> Result<Handle, AcquireError> {
    let attachment = ctx.slot.attachment.clone();
    let (commands, command_rx) = mpsc::channel(4);
    let task = spawn_driver(
        shared,
        &attachment,
        drive(ctx, client, Some(socket), command_rx),
    );
    match bound_rx.await {
        Ok(Ok(())) => Ok(Handle { commands, task }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(AcquireError::io(
            "lease driver ended unexpectedly",
            &attachment,
        )),
    }
}

/// Starts keeping a DHCPv4 lease for `slot`'s attachment (CNI ADD): checks and opens the
/// namespace ([`enter`]), decides the broadcast policy, opens the packet socket, spawns the
/// driver task and waits for its first DHCPACK, which it answers only once the lease is on
/// disk. (DHCPv6: [`super::v6::start`].)
///
/// Returns the task's [`Handle`] once bound. Errors: what went wrong, as an [`AcquireError`];
/// the CNI code it answers with is chosen by the command (`daemon/command.rs`).
pub(crate) async fn start(
    shared: &Arc<Shared>,
    slot: Arc<Slot>,
    options: &AddOptions,
) -> Result<Handle, AcquireError> {
    let config = &shared.config;
    let asks = Asks::from_add(&slot.attachment, options)?;
    // With DHCPv6 on too, the link this ADD may bring up gets an optimistic link-local
    // (`udp6::optimistic_dad`) whichever family's trip into the namespace comes first.
    let dhcp6 = options.dhcp6.is_some();
    let entered = enter(
        shared,
        options,
        &slot.attachment.ifname,
        "a packet socket",
        move |ifname| {
            if dhcp6 {
                packet::set_up_with(ifname, || crate::daemon::udp6::optimistic_dad(ifname))?;
            }
            packet::open(ifname)
        },
    )
    .await?;
    let ((broadcast, broadcast_reason), (chaddr_policy, chaddr_reason)) = v4_policies(
        (options.broadcast, config.broadcast),
        (options.chaddr, config.chaddr),
        entered.link_kind.as_deref(),
    );
    let mac = entered.identity.mac;
    let chaddr = chaddr_of(chaddr_policy, mac, &asks.client_id);
    if chaddr != mac {
        tracing::info!(
            chaddr = %crate::lease_file::mac::to_string(&chaddr),
            reason = %chaddr_reason,
            "chaddr derived from the client identifier (the link's MAC is shared)"
        );
    }
    *slot.status() = Status {
        netns: options.netns.clone(),
        identity: Some(entered.identity.clone()),
        client_id: asks.client_id.clone(),
        chaddr,
        state: State::Init.into(),
        broadcast,
        broadcast_reason,
        ..Status::default()
    };
    let client_config = client_config(config, &asks, (chaddr, mac), broadcast);
    let client = Client::new(client_config, clock::now(), rand::random());
    let (bound_tx, bound_rx) = oneshot::channel();
    let link = packet::LinkAddr {
        ifindex: entered.identity.ifindex,
        mac,
    };
    let (ctx, fd) = new_ctx(
        shared,
        &slot,
        entered,
        asks.priority,
        asks.unicast_discover,
        bound_tx,
    );
    let socket =
        PacketSocket::new(fd, link).map_err(|e| AcquireError::io("cannot register socket", e))?;
    launch(shared, ctx, Dhcpv4::new(client), socket, bound_rx).await
}

#[cfg(test)]
mod tests {
    use super::*;

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
            &crate::daemon::Config::default(),
            &asks,
            ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 1]),
            true,
        );
        assert!(!config.broadcast_renewals, "the link's MAC as chaddr");
        assert_eq!(config.client_id, b"reserved-1");
        assert_eq!(config.min_lease, crate::dhcp::config::MIN_LEASE_SECS);
        for bad in [Vec::new(), vec![b'x'; 256]] {
            let options = AddOptions {
                client_id: Some(bad),
                ..AddOptions::default()
            };
            let err = Asks::from_add(&att, &options).unwrap_err();
            assert_eq!(
                crate::cni::Error::from(err).code,
                crate::cni::code::INVALID_NETWORK_CONFIG
            );
        }
    }
}
