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
use crate::dhcp::config::DEFAULT_PARAMETER_REQUEST_LIST;
use crate::dhcp::names;
use crate::dhcp6::Leased6;
use crate::rpc::{
    self, AddOptions, Attachment, CallError, PROTOCOL_VERSION, Request, Response, ValidAttachment,
};

/// How long the plugin waits for the daemon's answer. Longer than any acquisition budget
/// (`-timeout`, 10 s by default) so the daemon's own, explanatory error arrives first.
pub(crate) const DAEMON_TIMEOUT: Duration = Duration::from_secs(300);

/// The GC input key listing attachments still in use (CNI spec 1.1.0 §"GC").
pub const VALID_ATTACHMENTS: &str = "cni.dev/valid-attachments";

/// The `ipam` object of a network configuration with `"type": "dhcp"`.
///
/// Keys are the reference plugin's (docs/design.md, *The reference plugin*) plus `broadcast`,
/// `chaddr` and the others documented below.
/// Unknown keys are ignored as the reference does; known keys of the wrong type are a config error
/// (code 7).
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
    /// What to send as chaddr: `"link"` (the interface's MAC) or `"derived"` (one of the
    /// lease's own, from its client identifier). Absent: the daemon decides (its `-chaddr`
    /// flag, else `derived` on ipvlan slaves). See [`rpc::ChaddrPolicy`].
    #[serde(default)]
    pub chaddr: Option<rpc::ChaddrPolicy>,
    /// Options to send (the reference's `provide`): `[{"option": "host-name", "fromArg":
    /// "K8S_POD_NAME"}, {"option": "60", "value": "my-vendor"}]`.
    #[serde(default)]
    pub provide: Vec<ProvideOption>,
    /// Options to ask for (the reference's `request`): `[{"option": "ntp-servers"}]`; one entry
    /// with `"skipDefault": true` drops the default parameter request list.
    #[serde(default)]
    pub request: Vec<RequestOption>,
    /// Metric of every route in the result (the reference's `priority`); the main plugin
    /// installs routes with it.
    #[serde(default)]
    pub priority: Option<u32>,
    /// Send the first DHCPDISCOVER and DHCPREQUEST of an exchange as an Ethernet unicast to
    /// the network's known server (default `true`; the IP datagram stays a broadcast and every
    /// retransmission is an Ethernet broadcast: docs/design.md, *Ethernet unicast to a known
    /// server*). `false`: always broadcast.
    #[serde(default)]
    pub unicast_discover: Option<bool>,
    /// DHCPv4 on this network (default `true`); `false` with `dhcp6: true` makes an
    /// IPv6-only network.
    #[serde(default)]
    pub dhcp4: Option<bool>,
    /// DHCPv6 (RFC 8415 IA_NA) on this network too (default `false`): the ADD result then
    /// carries an IPv6 address as well, its prefix length and default route from the link's
    /// Router Advertisements.
    #[serde(default)]
    pub dhcp6: Option<bool>,
}

/// The `provide` option name of a DUID replacing the per-container DUID-UUID (hex bytes,
/// colons allowed: `"00:04:..."`).
pub const PROVIDE_DHCP6_DUID: &str = "dhcp6-duid";

/// The `provide` option name of an IAID replacing the one derived from the ifname (decimal, or
/// hex with `0x`).
pub const PROVIDE_DHCP6_IAID: &str = "dhcp6-iaid";

/// One `provide` entry. The value is sent as its bytes, as the reference does.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvideOption {
    /// Option name ([`crate::dhcp::names::OPTION_NAMES`]) or decimal code.
    pub option: String,
    /// A literal value.
    #[serde(default)]
    pub value: Option<String>,
    /// Take the value from this CNI_ARGS key instead (e.g. `K8S_POD_NAME`); the option is left
    /// out when the key is absent.
    #[serde(default)]
    pub from_arg: Option<String>,
}

/// One `request` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestOption {
    /// Option name or decimal code added to the parameter request list (option 55).
    pub option: String,
    /// Drop the default parameter request list, keeping only the requested options.
    #[serde(default)]
    pub skip_default: bool,
}

/// What `provide` and `request` mean for the DHCP messages of one ADD.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DhcpExtras {
    /// Option 12.
    pub hostname: Option<String>,
    /// Option 61 replacing the default client identifier.
    pub client_id: Option<Vec<u8>>,
    /// Other options to send, (code, data).
    pub provided: Vec<(u8, Vec<u8>)>,
    /// Option 55 when not the default list.
    pub parameter_request_list: Option<Vec<u8>>,
    /// DHCPv6 DUID override ([`PROVIDE_DHCP6_DUID`]).
    pub duid: Option<Vec<u8>>,
    /// DHCPv6 IAID override ([`PROVIDE_DHCP6_IAID`]).
    pub iaid: Option<u32>,
}

impl IpamConf {
    /// Resolves `provide` (values from the config or from CNI_ARGS via `arg`) and `request`
    /// into option bytes. Errors: code 7 for an unknown option name or a `provide` entry with
    /// neither `value` nor `fromArg`.
    ///
    /// Values with control characters ([`char::is_control`]: U+0000 to U+001F, DEL, U+0080 to
    /// U+009F) are refused where they would be text the daemon, the DHCP server or an operator's
    /// terminal shows (option 12 ends up in server logs and lease files):
    /// - any value taken from `CNI_ARGS` (`fromArg`), whatever the option: code 4
    ///   ([`code::INVALID_ENV`]), since the CNI spec reserves 4 for invalid environment
    ///   variables and requires the message to name them (`CNI_ARGS KEY ...`); the runtime, not
    ///   the network configuration, supplied the bad text;
    /// - a literal `value` for option 12 (host name, RFC 2132 §3.14, a name with the RFC 1035
    ///   character set): code 7 ([`code::INVALID_NETWORK_CONFIG`]), since the configuration is
    ///   what is wrong.
    ///
    /// Literal values of other options are sent as configured: binary option data (e.g. option
    /// 43 sub-options, option 61 type and identifier) needs bytes below 0x20, they are written
    /// by the operator who owns the configuration, and the daemon keeps them as byte arrays,
    /// never printed as text. `details` of a refusal is the value escaped with
    /// `str::escape_debug` (e.g. `web\u{1b}[2J`).
    pub fn dhcp_extras(&self, arg: impl Fn(&str) -> Option<String>) -> Result<DhcpExtras, Error> {
        let bad = |e: String| Error::new(code::INVALID_NETWORK_CONFIG, e, "");
        let has_control = |v: &str| v.chars().any(char::is_control);
        let mut extras = DhcpExtras::default();
        for p in &self.provide {
            let name = p.option.trim();
            if name.eq_ignore_ascii_case(PROVIDE_DHCP6_DUID)
                || name.eq_ignore_ascii_case(PROVIDE_DHCP6_IAID)
            {
                let value = match (&p.value, &p.from_arg) {
                    (Some(v), _) => Some(v.clone()),
                    (None, Some(key)) => arg(key),
                    (None, None) => {
                        return Err(bad(format!(
                            "provide option {:?} needs \"value\" or \"fromArg\"",
                            p.option
                        )));
                    }
                };
                let Some(value) = value else { continue };
                if name.eq_ignore_ascii_case(PROVIDE_DHCP6_DUID) {
                    let duid = hex::decode(value.trim().replace(':', "")).map_err(|e| {
                        bad(format!("provide {PROVIDE_DHCP6_DUID}: not hex bytes: {e}"))
                    })?;
                    crate::dhcp6::identity::check_duid(&duid).map_err(|len| {
                        bad(format!(
                            "provide {PROVIDE_DHCP6_DUID}: {len} bytes; a DUID has 3 to 130 (RFC 8415 §11.1)"
                        ))
                    })?;
                    extras.duid = Some(duid);
                } else {
                    let v = value.trim();
                    let parsed = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
                        Some(hex) => u32::from_str_radix(hex, 16),
                        None => v.parse(),
                    };
                    extras.iaid = Some(parsed.map_err(|e| {
                        bad(format!(
                            "provide {PROVIDE_DHCP6_IAID}: {v:?} is not a 32-bit number: {e}"
                        ))
                    })?);
                }
                continue;
            }
            let code = names::option_code(&p.option).map_err(bad)?;
            let value = match (&p.value, &p.from_arg) {
                (Some(v), _) => {
                    if code == 12 && has_control(v) {
                        return Err(Error::new(
                            code::INVALID_NETWORK_CONFIG,
                            format!(
                                "provide option {:?}: the value contains control characters",
                                p.option
                            ),
                            v.escape_debug().to_string(),
                        ));
                    }
                    Some(v.clone())
                }
                (None, Some(key)) => match arg(key) {
                    Some(v) if has_control(&v) => {
                        return Err(Error::new(
                            code::INVALID_ENV,
                            format!(
                                "CNI_ARGS {key} contains control characters (provide option {:?})",
                                p.option
                            ),
                            v.escape_debug().to_string(),
                        ));
                    }
                    v => v,
                },
                (None, None) => {
                    return Err(bad(format!(
                        "provide option {:?} needs \"value\" or \"fromArg\"",
                        p.option
                    )));
                }
            };
            let Some(value) = value else { continue };
            match code {
                12 => extras.hostname = Some(value),
                61 => extras.client_id = Some(value.into_bytes()),
                _ => extras.provided.push((code, value.into_bytes())),
            }
        }
        if !self.request.is_empty() {
            let skip_default = self.request.iter().any(|r| r.skip_default);
            let mut list = if skip_default {
                Vec::new()
            } else {
                DEFAULT_PARAMETER_REQUEST_LIST.to_vec()
            };
            for r in &self.request {
                let code = names::option_code(&r.option).map_err(bad)?;
                if !list.contains(&code) {
                    list.push(code);
                }
            }
            extras.parameter_request_list = Some(list);
        }
        Ok(extras)
    }
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

/// The CNI result for a DHCPv4 lease (CNI spec §"ADD Success"): one IPv4 address with its
/// prefix from option 1 and the first router as gateway; routes from option 121 when present,
/// else option 33 plus a default route via the router ([`Lease::routes`]); DNS from options 6,
/// 15 and 119.
///
/// `priority` (the ipam key) becomes every route's metric.
pub fn result_from_lease(lease: &Lease, cni_version: &str, priority: Option<u32>) -> CniResult {
    result_from_leases(Some(lease), None, cni_version, priority)
}

/// The CNI result of an ADD with DHCPv4, DHCPv6 or both: the IPv4 part as
/// [`result_from_lease`]; then the IPv6 address with the on-link prefix length of the link's
/// RA (/128 without one) and the RA's router as gateway (the default route itself is the
/// kernel's, from the same RA); DNS name servers of DHCPv4 (options 6) then DHCPv6 (option 23), search domains of
/// options 119 then 24, each without repeats; the domain is option 15's.
pub fn result_from_leases(
    lease: Option<&Lease>,
    lease6: Option<&Leased6>,
    cni_version: &str,
    priority: Option<u32>,
) -> CniResult {
    let route = |dst: ipnet::IpNet, gw: Option<IpAddr>| cni::Route {
        dst,
        gw,
        mtu: None,
        advmss: None,
        priority,
        table: None,
        scope: None,
    };
    let mut ips = Vec::new();
    let mut routes = Vec::new();
    let mut dns = Dns::default();
    let add_unique = |list: &mut Vec<String>, item: String| {
        if !list.contains(&item) {
            list.push(item);
        }
    };
    if let Some(lease) = lease {
        let address = ipnet::Ipv4Net::new(lease.address, lease.prefix_len.min(32))
            .unwrap_or_else(|_| ipnet::Ipv4Net::from(lease.address));
        ips.push(IpConfig {
            address: address.into(),
            gateway: lease.gateway().map(IpAddr::V4),
            interface: None,
        });
        routes.extend(lease.routes().into_iter().map(|r| {
            route(
                r.dst.into(),
                (r.gateway != Ipv4Addr::UNSPECIFIED).then_some(IpAddr::V4(r.gateway)),
            )
        }));
        for a in &lease.dns_servers {
            add_unique(&mut dns.nameservers, a.to_string());
        }
        dns.domain = lease.domain_name.clone();
        for d in &lease.domain_search {
            add_unique(&mut dns.search, d.clone());
        }
    }
    if let Some(l6) = lease6 {
        ips.push(IpConfig {
            address: l6.address_net().into(),
            gateway: l6.router.map(IpAddr::V6),
            interface: None,
        });
        // No `::/0` route: the kernel installs it from the same RA (accept_ra, on in a
        // container's namespace by default), and a main plugin adding it again fails with
        // EEXIST (the reference's ConfigureIface does). docs/design.md, *Router Advertisements*.
        for a in &l6.lease.dns_servers {
            add_unique(&mut dns.nameservers, a.to_string());
        }
        for d in &l6.lease.domain_search {
            add_unique(&mut dns.search, d.clone());
        }
    }
    CniResult {
        cni_version: cni_version.to_string(),
        interfaces: vec![],
        ips,
        routes,
        dns,
    }
}

impl IpamConf {
    /// The families this network's ADD asks for, as the ADD request carries them: DHCPv4
    /// unless `dhcp4` is false, DHCPv6 when `dhcp6` is true.
    pub fn families(&self) -> Vec<rpc::Family> {
        let mut f = Vec::new();
        if self.dhcp4 != Some(false) {
            f.push(rpc::Family::Ipv4);
        }
        if self.dhcp6 == Some(true) {
            f.push(rpc::Family::Ipv6);
        }
        f
    }
}

/// The records of a lease answer, all of them ([`Response::Lease`]'s `record` and `also`).
fn records_of(record: Box<rpc::LeaseRecord>, also: Vec<rpc::LeaseRecord>) -> Vec<rpc::LeaseRecord> {
    std::iter::once(*record).chain(also).collect()
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
        let extras = conf
            .ipam
            .dhcp_extras(|key| env.arg(key).map(str::to_string))?;
        let families = conf.ipam.families();
        if families.is_empty() {
            return Err(Error::new(
                code::INVALID_NETWORK_CONFIG,
                "ipam: \"dhcp4\": false needs \"dhcp6\": true",
                "with neither DHCPv4 nor DHCPv6 there is no address to acquire",
            ));
        }
        if conf.ipam.chaddr == Some(rpc::ChaddrPolicy::Derived)
            && conf.ipam.broadcast == Some(false)
        {
            return Err(Error::new(
                code::INVALID_NETWORK_CONFIG,
                "ipam: \"chaddr\": \"derived\" needs the broadcast flag, but \"broadcast\" is false",
                "a server unicasts its replies to chaddr when the broadcast flag is clear, and a derived chaddr is no interface's address: drop \"broadcast\": false or use \"chaddr\": \"link\"",
            ));
        }
        let dhcp6 = families
            .contains(&rpc::Family::Ipv6)
            .then(|| rpc::Dhcp6Options {
                duid: extras.duid.clone(),
                iaid: extras.iaid,
            });
        let request = Request::Add {
            version: PROTOCOL_VERSION,
            attachment,
            options: AddOptions {
                netns,
                broadcast: conf.ipam.broadcast,
                chaddr: conf.ipam.chaddr,
                hostname: extras.hostname,
                client_id: extras.client_id,
                provided: extras.provided,
                parameter_request_list: extras.parameter_request_list,
                priority: conf.ipam.priority,
                no_unicast_discover: conf.ipam.unicast_discover == Some(false),
                no_dhcp4: !families.contains(&rpc::Family::Ipv4),
                dhcp6,
            },
        };
        let records = match call(&conf, request)? {
            Response::Lease { record, also, .. } => records_of(record, also),
            other => return Err(unexpected(other)),
        };
        let lease = records.iter().find_map(|r| r.core.lease.as_ref());
        let lease6 = records.iter().find_map(|r| r.core.lease6.as_ref());
        let missing = families.iter().find(|f| match f {
            rpc::Family::Ipv4 => lease.is_none(),
            rpc::Family::Ipv6 => lease6.is_none(),
        });
        if let Some(f) = missing {
            return Err(Error::new(
                code::IO_FAILURE,
                format!("daemon answered without a {} lease", f.protocol()),
                "",
            ));
        }
        Ok(result_from_leases(
            lease,
            lease6,
            &conf.net.cni_version,
            conf.ipam.priority,
        ))
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
        let families = conf.ipam.families();
        let records = match call(
            &conf,
            Request::Check {
                version: PROTOCOL_VERSION,
                attachment,
                // IPv4 alone is what an older daemon checks without the key.
                families: if families == [rpc::Family::Ipv4] {
                    Vec::new()
                } else {
                    families.clone()
                },
            },
        )? {
            Response::Lease { record, also, .. } => records_of(record, also),
            other => return Err(unexpected(other)),
        };
        let mut held = Vec::new();
        for f in &families {
            let address = records.iter().find_map(|r| match f {
                rpc::Family::Ipv4 => r.core.lease.as_ref().map(|l| IpAddr::V4(l.address)),
                rpc::Family::Ipv6 => r.core.lease6.as_ref().map(|l| IpAddr::V6(l.lease.address)),
            });
            match address {
                Some(a) => held.push(a),
                None => {
                    return Err(Error::new(
                        code::UNKNOWN_CONTAINER,
                        format!("no {} lease held", f.protocol()),
                        "",
                    ));
                }
            }
        }
        if let Some(prev) = &conf.net.prev_result {
            let prev = CniResult::from_value(prev)?;
            for &held in &held {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// DHCPv4 and DHCPv6 in one result: both addresses, the IPv6 one with the RA's prefix and
    /// router; DNS merged without repeats, DHCPv4 first; no `::/0` route; IPv6 alone works.
    #[test]
    fn dual_stack_results_merge_both_leases() {
        let mut v4 = crate::dhcp::reply::test_lease("198.18.0.5");
        v4.dns_servers = vec!["198.18.0.1".parse().unwrap()];
        v4.domain_search = vec!["a.test".into()];
        let v6 = Leased6 {
            lease: crate::dhcp6::Lease6 {
                address: "fd00:cd::105".parse().unwrap(),
                preferred_lifetime: 1800,
                valid_lifetime: 3600,
                t1: 900,
                t2: 1440,
                iaid: 1,
                server_id: vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 6],
                dns_servers: vec!["fd00:cd::53".parse().unwrap()],
                domain_search: vec!["a.test".into(), "b.test".into()],
            },
            prefix_len: 64,
            router: Some("fe80::1".parse().unwrap()),
        };
        let r = result_from_leases(Some(&v4), Some(&v6), "1.1.0", Some(5));
        let ips: Vec<String> = r.ips.iter().map(|i| i.address.to_string()).collect();
        assert_eq!(ips, ["198.18.0.5/24", "fd00:cd::105/64"]);
        assert_eq!(r.ips[1].gateway, Some("fe80::1".parse().unwrap()));
        assert_eq!(r.dns.nameservers, ["198.18.0.1", "fd00:cd::53"]);
        assert_eq!(r.dns.search, ["a.test", "b.test"]);
        assert!(
            r.routes.iter().all(|r| r.dst.addr().is_ipv4()),
            "{:?}",
            r.routes
        );
        assert!(r.routes.iter().all(|r| r.priority == Some(5)));
        let only6 = result_from_leases(
            None,
            Some(&Leased6::without_ra(v6.lease.clone())),
            "1.1.0",
            None,
        );
        assert_eq!(only6.ips.len(), 1);
        assert_eq!(only6.ips[0].address.to_string(), "fd00:cd::105/128");
        assert_eq!(only6.ips[0].gateway, None);
        assert!(only6.routes.is_empty());
        // Rendered for an old CNI version, the IPv6 entry says version 6.
        let old = result_from_leases(Some(&v4), Some(&v6), "0.4.0", None)
            .to_version("0.4.0")
            .unwrap();
        assert_eq!(old["ips"][1]["version"], "6", "{old}");
    }

    /// The DHCPv6 keys: families from dhcp4/dhcp6, provide overrides parsed and checked.
    #[test]
    fn dhcp6_keys_and_provide_overrides() {
        let families = |v: serde_json::Value| ipam(v).families();
        use crate::rpc::Family::{Ipv4, Ipv6};
        assert_eq!(families(serde_json::json!({"type": "dhcp"})), [Ipv4]);
        assert_eq!(families(serde_json::json!({"dhcp6": true})), [Ipv4, Ipv6]);
        assert_eq!(
            families(serde_json::json!({"dhcp4": false, "dhcp6": true})),
            [Ipv6]
        );
        assert!(families(serde_json::json!({"dhcp4": false})).is_empty());
        let extras = ipam(serde_json::json!({"provide": [
            {"option": "dhcp6-duid", "value": "00:04:01:02:03"},
            {"option": "dhcp6-iaid", "value": "0x10"},
        ]}))
        .dhcp_extras(|_| None)
        .unwrap();
        assert_eq!(extras.duid, Some(vec![0, 4, 1, 2, 3]));
        assert_eq!(extras.iaid, Some(16));
        assert!(extras.provided.is_empty(), "not DHCPv4 options: {extras:?}");
        for bad in [
            serde_json::json!({"option": "dhcp6-duid", "value": "00:04"}),
            serde_json::json!({"option": "dhcp6-duid", "value": "zz"}),
            serde_json::json!({"option": "dhcp6-iaid", "value": "-1"}),
        ] {
            let e = ipam(serde_json::json!({"provide": [bad]}))
                .dhcp_extras(|_| None)
                .unwrap_err();
            assert_eq!(e.code, code::INVALID_NETWORK_CONFIG, "{}", e.msg);
        }
    }

    fn ipam(v: serde_json::Value) -> IpamConf {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn provide_from_args_and_values_request_and_skip_default() {
        let conf = ipam(serde_json::json!({
            "type": "dhcp",
            "provide": [
                {"option": "host-name", "fromArg": "K8S_POD_NAME"},
                {"option": "vendor-class-identifier", "value": "acme"},
                {"option": "77", "fromArg": "ABSENT"}
            ],
            "request": [{"option": "ntp-servers"}, {"option": "1"}]
        }));
        let args = |k: &str| (k == "K8S_POD_NAME").then(|| "web-0".to_string());
        let x = conf.dhcp_extras(args).unwrap();
        assert_eq!(x.hostname.as_deref(), Some("web-0"));
        assert_eq!(
            x.provided,
            vec![(60, b"acme".to_vec())],
            "absent fromArg is left out"
        );
        let list = x.parameter_request_list.unwrap();
        assert!(list.starts_with(DEFAULT_PARAMETER_REQUEST_LIST));
        assert_eq!(
            list.iter().filter(|&&c| c == 1).count(),
            1,
            "no duplicate codes"
        );
        assert!(list.contains(&42));

        let skip = ipam(serde_json::json!({"type": "dhcp",
            "request": [{"option": "ntp-servers", "skipDefault": true}]}));
        assert_eq!(
            skip.dhcp_extras(|_| None).unwrap().parameter_request_list,
            Some(vec![42])
        );
        let none = ipam(serde_json::json!({"type": "dhcp"}));
        assert_eq!(none.dhcp_extras(|_| None).unwrap(), DhcpExtras::default());
        let cid = ipam(serde_json::json!({"type": "dhcp",
            "provide": [{"option": "dhcp-client-identifier", "value": "reserved-1"}]}));
        assert_eq!(
            cid.dhcp_extras(|_| None).unwrap().client_id,
            Some(b"reserved-1".to_vec())
        );
    }

    #[test]
    fn unknown_option_names_are_config_errors() {
        for bad in [
            serde_json::json!({"type": "dhcp", "provide": [{"option": "hostname", "value": "x"}]}),
            serde_json::json!({"type": "dhcp", "request": [{"option": "time-travel"}]}),
            serde_json::json!({"type": "dhcp", "provide": [{"option": "host-name"}]}),
        ] {
            let err = ipam(bad.clone()).dhcp_extras(|_| None).unwrap_err();
            assert_eq!(err.code, code::INVALID_NETWORK_CONFIG, "{bad}");
        }
    }

    #[test]
    fn provided_values_with_control_characters_are_refused() {
        let conf = ipam(serde_json::json!({
            "type": "dhcp",
            "provide": [
                {"option": "host-name", "fromArg": "K8S_POD_NAME"},
                {"option": "vendor-class-identifier", "fromArg": "VENDOR"}
            ]
        }));
        for (key, evil) in [
            ("K8S_POD_NAME", "web\u{1b}[2J"),
            ("K8S_POD_NAME", "web-0\nFAKE LOG LINE"),
            ("K8S_POD_NAME", "web\r"),
            ("VENDOR", "acme\u{7f}"),
            ("VENDOR", "acme\u{9b}31m"),
        ] {
            let args = |k: &str| {
                Some(if k == key {
                    evil.to_string()
                } else {
                    "fine".to_string()
                })
            };
            let err = conf.dhcp_extras(args).unwrap_err();
            assert_eq!(err.code, code::INVALID_ENV, "{key} {evil:?}");
            assert!(
                err.msg.contains("CNI_ARGS") && err.msg.contains(key),
                "{}",
                err.msg
            );
            assert!(!err.details.chars().any(char::is_control), "{evil:?}");
            assert!(!err.msg.chars().any(char::is_control), "{evil:?}");
        }
        let err = conf
            .dhcp_extras(|_| Some("web\u{1b}0".to_string()))
            .unwrap_err();
        assert_eq!(err.details, "web\\u{1b}0");
        // Printable values, non-ASCII included, still go through.
        let x = conf.dhcp_extras(|_| Some("wéb-0".to_string())).unwrap();
        assert_eq!(x.hostname.as_deref(), Some("wéb-0"));

        // A literal host name with control characters is the configuration's fault: code 7.
        let literal = ipam(serde_json::json!({"type": "dhcp",
            "provide": [{"option": "12", "value": "host\u{1b}"}]}));
        let err = literal.dhcp_extras(|_| None).unwrap_err();
        assert_eq!(err.code, code::INVALID_NETWORK_CONFIG);
        // Literal binary data for other options is the operator's to send.
        let binary = ipam(serde_json::json!({"type": "dhcp",
            "provide": [{"option": "43", "value": "\u{1}\u{2}ab"}]}));
        assert_eq!(
            binary.dhcp_extras(|_| None).unwrap().provided,
            vec![(43, vec![1, 2, b'a', b'b'])]
        );
    }

    #[test]
    fn priority_becomes_the_route_metric() {
        let lease = crate::dhcp::reply::test_lease("198.18.0.5");
        let r = result_from_lease(&lease, "1.1.0", Some(250));
        assert_eq!(r.routes.len(), 1);
        assert_eq!(r.routes[0].priority, Some(250));
        assert_eq!(r.routes[0].dst.to_string(), "0.0.0.0/0");
        assert_eq!(r.ips[0].address.to_string(), "198.18.0.5/24");
        let r = result_from_lease(&lease, "1.1.0", None);
        assert_eq!(r.routes[0].priority, None);
    }
}
