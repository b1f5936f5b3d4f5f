//! CNI ADD of a new lease ([`start`]): what the lease asks of the server ([`Asks`], one builder
//! for ADD and resume), the namespace checks and the one trip into it (link kind, cookie, packet
//! socket), then the driver task, answered once its first DHCPACK is on disk.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::ctx::{Ctx, Trace};
use super::error::AcquireError;
use super::event_loop::drive;
use super::v4::Dhcpv4;
use super::{broadcast_policy, spawn_driver};
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
        }
    }
}

/// The client configuration for a lease: what it asks ([`Asks`]), the interface's MAC as
/// chaddr, the broadcast flag, and the daemon's `-timeout` and `-resendmax`.
pub(super) fn client_config(
    config: &crate::daemon::Config,
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

/// Starts keeping a lease for `slot`'s attachment (CNI ADD): checks and opens the namespace,
/// decides the broadcast policy, opens the socket, spawns the driver task and waits for its
/// first DHCPACK, which it answers only once the lease is on disk.
///
/// Returns the task's [`Handle`] once bound. Errors: what went wrong, as an [`AcquireError`];
/// the CNI code it answers with is chosen by the command (`daemon/command.rs`).
pub(crate) async fn start(
    shared: &Arc<Shared>,
    slot: Arc<Slot>,
    options: &AddOptions,
) -> Result<Handle, AcquireError> {
    let config = &shared.config;
    let attachment = slot.attachment.clone();
    let asks = Asks::from_add(&attachment, options)?;
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
        .map_err(|e| AcquireError::io(format!("cannot enter {}", netns_path.display()), e))?;
    let link_kind = kind.map_err(|e| AcquireError::NoInterface {
        ifname: ifname.clone(),
        netns: netns_path.clone(),
        error: e.to_string(),
    })?;
    let netns_cookie = cookie.map_err(|e| {
        AcquireError::io(
            format!("cannot read the cookie of {}", netns_path.display()),
            e,
        )
    })?;
    let (broadcast, broadcast_reason) =
        broadcast_policy(options.broadcast, config.broadcast, link_kind.as_deref());
    let (fd, link) = opened
        .unwrap_or_else(|| Err(std::io::Error::other("link lookup failed")))
        .map_err(|e| AcquireError::io(format!("cannot open a packet socket on {ifname}"), e))?;
    let socket =
        PacketSocket::new(fd, link).map_err(|e| AcquireError::io("cannot register socket", e))?;
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
    };
    let (commands, command_rx) = mpsc::channel(4);
    let task = spawn_driver(
        shared,
        &attachment,
        drive(ctx, Dhcpv4::new(client), Some(socket), command_rx),
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
            assert_eq!(
                crate::cni::Error::from(err).code,
                crate::cni::code::INVALID_NETWORK_CONFIG
            );
        }
    }
}
