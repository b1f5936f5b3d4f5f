//! The `dhcp` IPAM plugin: its ipam configuration keys, and a lease turned into a CNI result.
//!
//! The plugin process does no DHCP itself; it validates its input, forwards the command to the
//! daemon ([`crate::rpc`]) and converts the daemon's lease into the CNI result of the
//! configuration's `cniVersion` (CNI spec §"Result types"; IPAM results carry `ips`, `routes`
//! and `dns`, never `interfaces`).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde::Deserialize;

use crate::cni::{self, CniResult, Dns, Env, Error, IpConfig, NetConf, Plugin, code};
use crate::dhcp::Lease;
use crate::rpc::{
    self, AddOptions, Attachment, CallError, PROTOCOL_VERSION, Request, Response, ValidAttachment,
};

/// How long the plugin waits for the daemon's answer. Longer than any acquisition budget
/// (`-timeout`, 10 s by default) so the daemon's own, explanatory error arrives first.
pub const DAEMON_TIMEOUT: Duration = Duration::from_secs(300);

/// The GC input key listing attachments still in use (CNI spec 1.1.0 §"GC").
pub const VALID_ATTACHMENTS: &str = "cni.dev/valid-attachments";

/// The `ipam` object of a network configuration with `"type": "dhcp"`.
///
/// Keys are the reference plugin's (shared NOTES §2) plus `broadcast`. Unknown keys are ignored
/// as the reference does; known keys of the wrong type are a config error (code 7).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamConf {
    /// `"dhcp"`.
    #[serde(rename = "type", default)]
    pub ipam_type: String,
    /// The daemon's socket; default [`rpc::DEFAULT_SOCKET_PATH`].
    #[serde(default)]
    pub daemon_socket_path: Option<PathBuf>,
    /// Force the BOOTP broadcast flag (RFC 2131 §4.1) on or off for this network. Absent: the
    /// daemon decides (its `-broadcast` flag, else on for ipvlan slaves).
    #[serde(default)]
    pub broadcast: Option<bool>,
}

/// The parts of the network configuration this plugin reads.
#[derive(Debug, Clone)]
pub struct Conf {
    /// The generic network configuration.
    pub net: NetConf,
    /// Its `ipam` object.
    pub ipam: IpamConf,
}

impl Conf {
    /// Parses stdin. Errors: code 6 (not JSON), 7 (wrong types, missing `ipam`), 1 (version).
    pub fn parse(stdin: &[u8]) -> Result<Conf, Error> {
        let net: NetConf = cni::parse_conf(stdin)?;
        let ipam_value = net.ipam.clone().ok_or_else(|| {
            Error::new(
                code::INVALID_NETWORK_CONFIG,
                "missing \"ipam\" in network configuration",
                "",
            )
        })?;
        let ipam: IpamConf = serde_json::from_value(ipam_value).map_err(|e| {
            Error::new(
                code::INVALID_NETWORK_CONFIG,
                "invalid \"ipam\" configuration",
                e.to_string(),
            )
        })?;
        cni::validate_network_name(&net.name)?;
        Ok(Conf { net, ipam })
    }

    fn socket(&self) -> PathBuf {
        self.ipam
            .daemon_socket_path
            .clone()
            .unwrap_or_else(|| PathBuf::from(rpc::DEFAULT_SOCKET_PATH))
    }
}

/// The CNI result for a lease (CNI spec §"ADD Success"): one IPv4 address with its prefix from
/// option 1 and the first router as gateway; routes from option 121 when present, else option
/// 33 plus a default route via the router ([`Lease::routes`]); DNS from options 6, 15 and 119.
pub fn result_from_lease(lease: &Lease, cni_version: &str) -> CniResult {
    let address = ipnet::Ipv4Net::new(lease.address, lease.prefix_len.min(32))
        .unwrap_or_else(|_| ipnet::Ipv4Net::from(lease.address));
    CniResult {
        cni_version: cni_version.to_string(),
        interfaces: vec![],
        ips: vec![IpConfig {
            address: address.into(),
            gateway: lease.gateway().map(IpAddr::V4),
            interface: None,
        }],
        routes: lease
            .routes()
            .into_iter()
            .map(|r| cni::Route {
                dst: r.dst.into(),
                gw: (r.gateway != Ipv4Addr::UNSPECIFIED).then_some(IpAddr::V4(r.gateway)),
                mtu: None,
                advmss: None,
                priority: None,
                table: None,
                scope: None,
            })
            .collect(),
        dns: Dns {
            nameservers: lease.dns_servers.iter().map(|a| a.to_string()).collect(),
            domain: lease.domain_name.clone(),
            search: lease.domain_search.clone(),
            options: vec![],
        },
    }
}

fn attachment(env: &Env, conf: &Conf) -> Result<Attachment, Error> {
    let container_id = env.container_id()?;
    let ifname = env.ifname()?;
    Ok(Attachment {
        container_id: container_id.to_string(),
        network: conf.net.name.clone(),
        ifname: ifname.to_string(),
    })
}

fn call(conf: &Conf, request: Request) -> Result<Response, Error> {
    let socket = conf.socket();
    match rpc::call(&socket, &request, DAEMON_TIMEOUT) {
        Ok(Response::Error {
            code, msg, details, ..
        }) => Err(Error::new(code, msg, details)),
        Ok(response) => Ok(response),
        Err(e @ CallError::Connect { .. }) => Err(Error::new(
            code::TRY_AGAIN_LATER,
            e.to_string(),
            "the dhcp IPAM plugin needs its daemon running on the host",
        )),
        Err(e) => Err(Error::new(code::IO_FAILURE, e.to_string(), "")),
    }
}

/// The plugin.
#[derive(Debug, Default)]
pub struct DhcpPlugin;

impl Plugin for DhcpPlugin {
    fn add(&self, env: &Env, stdin: &[u8]) -> Result<CniResult, Error> {
        let conf = Conf::parse(stdin)?;
        let attachment = attachment(env, &conf)?;
        let netns = env.netns()?.display().to_string();
        let request = Request::Add {
            version: PROTOCOL_VERSION,
            attachment,
            options: AddOptions {
                netns,
                broadcast: conf.ipam.broadcast,
                hostname: None,
            },
        };
        match call(&conf, request)? {
            Response::Lease { record, .. } => match &record.lease {
                Some(lease) => Ok(result_from_lease(lease, &conf.net.cni_version)),
                None => Err(Error::new(
                    code::IO_FAILURE,
                    "daemon answered without a lease",
                    "",
                )),
            },
            other => Err(unexpected(other)),
        }
    }

    fn del(&self, env: &Env, stdin: &[u8]) -> Result<(), Error> {
        let conf = Conf::parse(stdin)?;
        let attachment = attachment(env, &conf)?;
        call(
            &conf,
            Request::Del {
                version: PROTOCOL_VERSION,
                attachment,
            },
        )
        .map(|_| ())
    }

    fn check(&self, env: &Env, stdin: &[u8]) -> Result<(), Error> {
        let conf = Conf::parse(stdin)?;
        let attachment = attachment(env, &conf)?;
        let record = match call(
            &conf,
            Request::Check {
                version: PROTOCOL_VERSION,
                attachment,
            },
        )? {
            Response::Lease { record, .. } => record,
            other => return Err(unexpected(other)),
        };
        let Some(lease) = &record.lease else {
            return Err(Error::new(code::UNKNOWN_CONTAINER, "no lease held", ""));
        };
        if let Some(prev) = &conf.net.prev_result {
            let prev = CniResult::from_value(prev)?;
            let held = IpAddr::V4(lease.address);
            if !prev.ips.is_empty() && !prev.ips.iter().any(|ip| ip.address.addr() == held) {
                return Err(Error::new(
                    code::INVALID_NETWORK_CONFIG,
                    format!("the DHCP lease holds {held}, which prevResult does not list"),
                    format!(
                        "prevResult ips: {:?}",
                        prev.ips.iter().map(|i| i.address).collect::<Vec<_>>()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// CNI 1.1.0 GC: the daemon releases every lease of this network whose attachment is not in
    /// `cni.dev/valid-attachments`. Without that key nothing is released (code 7): an absent
    /// list must never mean "release everything".
    fn gc(&self, _env: &Env, stdin: &[u8]) -> Result<(), Error> {
        let conf = Conf::parse(stdin)?;
        let valid: Vec<ValidAttachment> = match conf.net.extra.get(VALID_ATTACHMENTS) {
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                Error::new(
                    code::INVALID_NETWORK_CONFIG,
                    format!("invalid {VALID_ATTACHMENTS}"),
                    e.to_string(),
                )
            })?,
            None => {
                return Err(Error::new(
                    code::INVALID_NETWORK_CONFIG,
                    format!("GC needs {VALID_ATTACHMENTS}"),
                    "CNI spec 1.1.0 GC: the runtime passes the attachments still in use",
                ));
            }
        };
        call(
            &conf,
            Request::Gc {
                version: PROTOCOL_VERSION,
                network: conf.net.name.clone(),
                valid,
            },
        )
        .map(|_| ())
    }

    fn status(&self, _env: &Env, stdin: &[u8]) -> Result<(), Error> {
        let conf = Conf::parse(stdin)?;
        call(
            &conf,
            Request::Status {
                version: PROTOCOL_VERSION,
            },
        )
        .map(|_| ())
        .map_err(|e| Error::new(code::PLUGIN_NOT_AVAILABLE, e.msg, e.details))
    }
}

fn unexpected(response: Response) -> Error {
    Error::new(
        code::IO_FAILURE,
        "unexpected answer from the daemon",
        format!("{response:?}"),
    )
}

/// The `dhcp` binary's plugin mode.
pub fn main() -> ExitCode {
    cni::run(
        &DhcpPlugin,
        "CNI dhcp IPAM plugin (cni-dhcp); run `dhcp daemon` to start its lease daemon",
    )
}
