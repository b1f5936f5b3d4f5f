//! CNI results (spec 1.1.0, section "Success" / "ADD Success"): the interfaces, IP
//! configurations, routes and DNS settings a plugin reports after ADD.
//!
//! A [`CniResult`] is always held in the current (1.1.0) shape. [`CniResult::to_version`]
//! renders it for the `cniVersion` the runtime asked for (1.1.0, 1.0.0, 0.4.0, 0.3.1, 0.3.0);
//! [`CniResult::from_value`] reads a result of any of those versions (a `prevResult`, or a
//! delegated IPAM plugin's output, e.g. the reference `host-local`).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::error::{Error, code};
use super::version::{CURRENT_VERSION, check_version};

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn empty_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

fn zero_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Ok(Option::<u32>::deserialize(d)?.filter(|n| *n != 0))
}

/// An interface created or configured by the plugin (spec 1.1.0 "ADD Success", `interfaces`).
///
/// JSON: `{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "mtu": 1500, "sandbox": "/run/netns/x",
/// "socketPath": "...", "pciID": "..."}`; absent optional fields are omitted, and on input an
/// empty string (or an `mtu` of 0) counts as absent. `mtu`, `socketPath` and `pciID` are new in
/// 1.1.0 and are dropped when rendering 0.x results.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    /// Interface name (in the sandbox when `sandbox` is set, else on the host).
    pub name: String,
    /// Hardware address, lower-case `aa:bb:cc:dd:ee:ff` by convention.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none"
    )]
    pub mac: Option<String>,
    /// MTU in bytes (1.1.0).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "zero_as_none"
    )]
    pub mtu: Option<u32>,
    /// Isolation domain reference, i.e. the netns path (`CNI_NETNS`); `None` for host interfaces.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none"
    )]
    pub sandbox: Option<String>,
    /// Path to a socket for a vhost-user style interface (1.1.0).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none"
    )]
    pub socket_path: Option<String>,
    /// PCI address of a device-backed interface (1.1.0).
    #[serde(
        rename = "pciID",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none"
    )]
    pub pci_id: Option<String>,
}

/// One IP address configuration (spec 1.1.0 "ADD Success", `ips`).
///
/// JSON (1.x): `{"address": "198.18.0.5/24", "gateway": "198.18.0.1", "interface": 0}`; the
/// address keeps its host bits (CIDR notation of the address, not of the network). 0.3.x/0.4.0
/// add `"version": "4"` or `"6"` (see [`CniResult::to_version`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpConfig {
    /// Address with prefix length, e.g. `198.18.0.5/24`.
    pub address: IpNet,
    /// Default gateway for this subnet, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into [`CniResult::interfaces`] of the interface this address belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<u32>,
}

/// One route (spec 1.1.0 "ADD Success", `routes`, and "Network configuration", IPAM `routes`).
///
/// JSON: `{"dst": "0.0.0.0/0", "gw": "198.18.0.1", "mtu": 1400, "advmss": 1360,
/// "priority": 100, "table": 100, "scope": 0}`; absent fields omitted. `mtu`, `advmss`,
/// `priority`, `table` and `scope` come from spec 1.1.0 (libcni emits them for 1.0.0 too, and so
/// do we); 0.x renderings keep only `dst` and `gw`. On input, `mtu`, `advmss` and `priority` of 0
/// count as absent (libcni omits zeros).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination network, e.g. `0.0.0.0/0`.
    pub dst: IpNet,
    /// Next hop; `None` means "use the interface's gateway / on-link" as the plugin decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// Route MTU in bytes.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "zero_as_none"
    )]
    pub mtu: Option<u32>,
    /// Advertised MSS in bytes.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "zero_as_none"
    )]
    pub advmss: Option<u32>,
    /// Route priority (metric).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "zero_as_none"
    )]
    pub priority: Option<u32>,
    /// Routing table ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// Route scope (`RT_SCOPE_*`: 0 universe, 253 link, 254 host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

/// DNS settings (spec 1.1.0 "Network configuration" `dns` and "ADD Success" `dns`).
///
/// JSON: `{"nameservers": ["198.18.0.1"], "domain": "example.net", "search": ["example.net"],
/// "options": ["ndots:2"]}`; empty lists and `None` are omitted on output; `null` and absent keys
/// are accepted on input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name server addresses, in priority order (strings, as in the spec).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub nameservers: Vec<String>,
    /// Local domain used for short host-name lookups.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none"
    )]
    pub domain: Option<String>,
    /// Search domains, in priority order.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub search: Vec<String>,
    /// Resolver options (`resolv.conf` `options`), e.g. `ndots:2`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub options: Vec<String>,
}

impl Dns {
    /// True when no field is set (then a result omits `dns`).
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// A CNI result in the current (1.1.0) shape (spec 1.1.0 "ADD Success").
///
/// `Serialize` produces the 1.1.0 JSON (empty lists and an empty `dns` omitted, as libcni does);
/// use [`CniResult::to_version`] to render for the runtime's `cniVersion`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    /// The version this result was produced for or read from; [`CniResult::to_version`] replaces it.
    pub cni_version: String,
    /// Interfaces created or touched; [`IpConfig::interface`] indexes into this list.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// IP configurations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    /// Routes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// DNS settings; omitted when empty.
    #[serde(skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

impl Default for CniResult {
    /// An empty result with `cni_version` = [`CURRENT_VERSION`].
    fn default() -> Self {
        CniResult {
            cni_version: CURRENT_VERSION.to_owned(),
            interfaces: Vec::new(),
            ips: Vec::new(),
            routes: Vec::new(),
            dns: Dns::default(),
        }
    }
}

/// Input shape of an IP configuration, any version (0.3.x/0.4.0 carry `version`).
#[derive(Deserialize)]
struct RawIp {
    #[serde(default)]
    version: Option<String>,
    address: IpNet,
    #[serde(default)]
    gateway: Option<IpAddr>,
    #[serde(default)]
    interface: Option<u32>,
}

/// Input shape of a result, any supported version.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawResult {
    #[serde(default, deserialize_with = "null_default")]
    interfaces: Vec<Interface>,
    #[serde(default, deserialize_with = "null_default")]
    ips: Vec<RawIp>,
    #[serde(default, deserialize_with = "null_default")]
    routes: Vec<Route>,
    #[serde(default, deserialize_with = "null_default")]
    dns: Dns,
}

fn is_0x(version: &str) -> bool {
    version.starts_with("0.")
}

impl CniResult {
    /// Renders the result for `version` (the `cniVersion` of the configuration on stdin).
    ///
    /// - `1.1.0`, `1.0.0`: the [`Serialize`] shape with `cniVersion` = `version` (the 1.1.0
    ///   additions are kept for 1.0.0, as libcni does, so a route `priority` survives a 1.0.0
    ///   chain);
    /// - `0.4.0`, `0.3.1`, `0.3.0`: each `ips[]` gains `"version": "4"` or `"6"` (by address
    ///   family); interfaces keep only `name`, `mac`, `sandbox`; routes keep only `dst`, `gw`.
    ///
    /// Errors: an unsupported `version`: code 1 ([`code::INCOMPATIBLE_VERSION`]).
    pub fn to_version(&self, version: &str) -> Result<Value, Error> {
        check_version(version)?;
        let mut v = serde_json::to_value(self)
            .map_err(|e| Error::new(code::INTERNAL, "failed to encode result", e.to_string()))?;
        let Some(obj) = v.as_object_mut() else {
            return Err(Error::new(code::INTERNAL, "failed to encode result", ""));
        };
        obj.insert("cniVersion".into(), Value::from(version));
        if is_0x(version) {
            if let Some(Value::Array(ifs)) = obj.get_mut("interfaces") {
                for i in ifs.iter_mut().filter_map(Value::as_object_mut) {
                    i.retain(|k, _| matches!(k.as_str(), "name" | "mac" | "sandbox"));
                }
            }
            if let Some(Value::Array(routes)) = obj.get_mut("routes") {
                for r in routes.iter_mut().filter_map(Value::as_object_mut) {
                    r.retain(|k, _| matches!(k.as_str(), "dst" | "gw"));
                }
            }
            if let Some(Value::Array(ips)) = obj.get_mut("ips") {
                for (ip, cfg) in ips.iter_mut().zip(&self.ips) {
                    if let Some(o) = ip.as_object_mut() {
                        let fam = if cfg.address.addr().is_ipv4() {
                            "4"
                        } else {
                            "6"
                        };
                        o.insert("version".into(), Value::from(fam));
                    }
                }
            }
        }
        Ok(v)
    }

    /// Reads a result of any supported version (a `prevResult`, or a delegated plugin's output).
    ///
    /// `cniVersion` is taken from the object; when absent (libcni parses a `prevResult` with the
    /// configuration's version, not its own) the result is read by shape and gets
    /// [`CURRENT_VERSION`]. The returned result's `cni_version` is the version read.
    ///
    /// Errors:
    /// - code 1 ([`code::INCOMPATIBLE_VERSION`]): `cniVersion` not supported (e.g. a 0.2.0
    ///   result with `ip4`/`ip6`), or `ip4`/`ip6` keys without `cniVersion`;
    /// - code 7 ([`code::INVALID_NETWORK_CONFIG`]): not an object, a key with the wrong type
    ///   (serde's message in `details`), an `ips[].version` other than `"4"`/`"6"` or not matching
    ///   the address family, an `ips[].interface` index past the end of `interfaces`.
    pub fn from_value(v: &Value) -> Result<CniResult, Error> {
        let bad = |details: String| {
            Error::new(code::INVALID_NETWORK_CONFIG, "invalid CNI result", details)
        };
        let Some(obj) = v.as_object() else {
            return Err(bad("result is not a JSON object".into()));
        };
        let version = match obj.get("cniVersion") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                check_version(s)?;
                Some(s.clone())
            }
            Some(other) => return Err(bad(format!("cniVersion: expected a string, got {other}"))),
        };
        if version.is_none() && (obj.contains_key("ip4") || obj.contains_key("ip6")) {
            return Err(Error::new(
                code::INCOMPATIBLE_VERSION,
                "unsupported CNI result version",
                "result has ip4/ip6 (cniVersion 0.2.0 or older)",
            ));
        }
        let raw = RawResult::deserialize(v).map_err(|e| bad(e.to_string()))?;
        let mut ips = Vec::with_capacity(raw.ips.len());
        for (n, ip) in raw.ips.into_iter().enumerate() {
            if let Some(fam) = &ip.version {
                let want = if ip.address.addr().is_ipv4() {
                    "4"
                } else {
                    "6"
                };
                if fam != want {
                    return Err(bad(format!(
                        "ips[{n}]: version {fam:?} does not match address {}",
                        ip.address
                    )));
                }
            }
            if let Some(i) = ip.interface {
                if i as usize >= raw.interfaces.len() {
                    return Err(bad(format!(
                        "ips[{n}]: interface index {i} out of range ({} interfaces)",
                        raw.interfaces.len()
                    )));
                }
            }
            ips.push(IpConfig {
                address: ip.address,
                gateway: ip.gateway,
                interface: ip.interface,
            });
        }
        Ok(CniResult {
            cni_version: version.unwrap_or_else(|| CURRENT_VERSION.to_owned()),
            interfaces: raw.interfaces,
            ips,
            routes: raw.routes,
            dns: raw.dns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> CniResult {
        CniResult {
            cni_version: "1.1.0".into(),
            interfaces: vec![
                Interface {
                    name: "ipvl0".into(),
                    mac: Some("aa:bb:cc:dd:ee:ff".into()),
                    ..Interface::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: Some("aa:bb:cc:dd:ee:ff".into()),
                    mtu: Some(1400),
                    sandbox: Some("/run/netns/c1".into()),
                    socket_path: None,
                    pci_id: Some("0000:00:1f.6".into()),
                },
            ],
            ips: vec![
                IpConfig {
                    address: "198.18.0.5/24".parse().unwrap(),
                    gateway: Some("198.18.0.1".parse().unwrap()),
                    interface: Some(1),
                },
                IpConfig {
                    address: "2001:db8::5/64".parse().unwrap(),
                    gateway: None,
                    interface: Some(1),
                },
            ],
            routes: vec![
                Route {
                    dst: "0.0.0.0/0".parse().unwrap(),
                    gw: Some("198.18.0.1".parse().unwrap()),
                    mtu: None,
                    advmss: None,
                    priority: Some(100),
                    table: None,
                    scope: None,
                },
                Route {
                    dst: "198.19.0.0/16".parse().unwrap(),
                    gw: None,
                    mtu: Some(1300),
                    advmss: Some(1260),
                    priority: None,
                    table: Some(200),
                    scope: Some(253),
                },
            ],
            dns: Dns {
                nameservers: vec!["198.18.0.1".into()],
                domain: Some("lab.example".into()),
                search: vec!["lab.example".into()],
                options: vec![],
            },
        }
    }

    /// Written by hand from spec 1.1.0 "ADD Success".
    fn expected_1x(version: &str) -> Value {
        json!({
            "cniVersion": version,
            "interfaces": [
                {"name": "ipvl0", "mac": "aa:bb:cc:dd:ee:ff"},
                {"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "mtu": 1400,
                 "sandbox": "/run/netns/c1", "pciID": "0000:00:1f.6"}
            ],
            "ips": [
                {"address": "198.18.0.5/24", "gateway": "198.18.0.1", "interface": 1},
                {"address": "2001:db8::5/64", "interface": 1}
            ],
            "routes": [
                {"dst": "0.0.0.0/0", "gw": "198.18.0.1", "priority": 100},
                {"dst": "198.19.0.0/16", "mtu": 1300, "advmss": 1260, "table": 200, "scope": 253}
            ],
            "dns": {"nameservers": ["198.18.0.1"], "domain": "lab.example", "search": ["lab.example"]}
        })
    }

    /// Written by hand from spec 0.4.0 "Result" (same shape in 0.3.0 and 0.3.1).
    fn expected_0x(version: &str) -> Value {
        json!({
            "cniVersion": version,
            "interfaces": [
                {"name": "ipvl0", "mac": "aa:bb:cc:dd:ee:ff"},
                {"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/run/netns/c1"}
            ],
            "ips": [
                {"version": "4", "address": "198.18.0.5/24", "gateway": "198.18.0.1", "interface": 1},
                {"version": "6", "address": "2001:db8::5/64", "interface": 1}
            ],
            "routes": [
                {"dst": "0.0.0.0/0", "gw": "198.18.0.1"},
                {"dst": "198.19.0.0/16"}
            ],
            "dns": {"nameservers": ["198.18.0.1"], "domain": "lab.example", "search": ["lab.example"]}
        })
    }

    #[test]
    fn renders_1x_shape() {
        for v in ["1.1.0", "1.0.0"] {
            assert_eq!(sample().to_version(v).unwrap(), expected_1x(v), "{v}");
        }
        assert!(
            sample().to_version("1.0.0").unwrap()["ips"][0]
                .get("version")
                .is_none()
        );
    }

    #[test]
    fn renders_0x_shape() {
        for v in ["0.4.0", "0.3.1", "0.3.0"] {
            assert_eq!(sample().to_version(v).unwrap(), expected_0x(v), "{v}");
        }
    }

    #[test]
    fn unsupported_output_version_is_code_1() {
        for v in ["0.2.0", "0.1.0", "2.0.0", ""] {
            assert_eq!(
                sample().to_version(v).unwrap_err().code,
                code::INCOMPATIBLE_VERSION
            );
        }
    }

    #[test]
    fn empty_parts_are_omitted() {
        let r = CniResult {
            ips: vec![IpConfig {
                address: "198.18.0.5/24".parse().unwrap(),
                gateway: None,
                interface: None,
            }],
            ..CniResult::default()
        };
        assert_eq!(
            r.to_version("1.1.0").unwrap(),
            json!({"cniVersion": "1.1.0", "ips": [{"address": "198.18.0.5/24"}]})
        );
    }

    #[test]
    fn round_trips_through_every_version() {
        let r = sample();
        assert_eq!(
            CniResult::from_value(&r.to_version("1.1.0").unwrap()).unwrap(),
            r
        );
        let r10 = CniResult::from_value(&r.to_version("1.0.0").unwrap()).unwrap();
        assert_eq!(
            r10,
            CniResult {
                cni_version: "1.0.0".into(),
                ..r.clone()
            }
        );
        // 0.x loses the 1.1.0-only fields and nothing else.
        let mut lossy = r.clone();
        for i in &mut lossy.interfaces {
            (i.mtu, i.socket_path, i.pci_id) = (None, None, None);
        }
        for rt in &mut lossy.routes {
            (rt.mtu, rt.advmss, rt.priority, rt.table, rt.scope) = (None, None, None, None, None);
        }
        for v in ["0.4.0", "0.3.1", "0.3.0"] {
            let back = CniResult::from_value(&r.to_version(v).unwrap()).unwrap();
            assert_eq!(
                back,
                CniResult {
                    cni_version: v.into(),
                    ..lossy.clone()
                },
                "{v}"
            );
        }
    }

    /// Output of the reference host-local 1.1.1 (Debian containernetworking-plugins), ADD with
    /// cniVersion 0.3.1, captured on this machine.
    const HOST_LOCAL_031: &str = r#"{
        "cniVersion": "0.3.1",
        "ips": [
            {"version": "4", "address": "198.18.0.2/24", "gateway": "198.18.0.1"},
            {"version": "6", "address": "2001:db8::2/64", "gateway": "2001:db8::1"}
        ],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "198.19.0.0/16", "gw": "198.18.0.254"}],
        "dns": {}
    }"#;

    /// The same, with cniVersion 1.0.0.
    const HOST_LOCAL_100: &str = r#"{
        "cniVersion": "1.0.0",
        "ips": [
            {"address": "198.18.0.2/24", "gateway": "198.18.0.1"},
            {"address": "2001:db8::2/64", "gateway": "2001:db8::1"}
        ],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "198.19.0.0/16", "gw": "198.18.0.254"}],
        "dns": {}
    }"#;

    #[test]
    fn reads_reference_host_local_output() {
        for (text, version) in [(HOST_LOCAL_031, "0.3.1"), (HOST_LOCAL_100, "1.0.0")] {
            let r = CniResult::from_value(&serde_json::from_str(text).unwrap()).unwrap();
            assert_eq!(r.cni_version, version);
            assert!(r.interfaces.is_empty());
            assert_eq!(r.ips.len(), 2);
            assert_eq!(r.ips[0].address, "198.18.0.2/24".parse::<IpNet>().unwrap());
            assert_eq!(r.ips[0].address.addr().to_string(), "198.18.0.2");
            assert_eq!(r.ips[0].gateway, Some("198.18.0.1".parse().unwrap()));
            assert_eq!(r.ips[1].gateway, Some("2001:db8::1".parse().unwrap()));
            assert_eq!(r.ips[1].interface, None);
            assert_eq!(r.routes[0].dst.to_string(), "0.0.0.0/0");
            assert_eq!(r.routes[0].gw, None);
            assert_eq!(r.routes[1].gw, Some("198.18.0.254".parse().unwrap()));
            assert!(r.dns.is_empty());
        }
        // And back out in the version of the chain (0.3.1 -> 1.1.0 -> 0.3.1 loses nothing).
        let v: Value = serde_json::from_str(HOST_LOCAL_031).unwrap();
        let mut want = v.clone();
        want.as_object_mut().unwrap().remove("dns");
        let r = CniResult::from_value(&v).unwrap();
        assert_eq!(r.to_version("0.3.1").unwrap(), want);
    }

    #[test]
    fn lenient_input_nulls_empties_and_no_version() {
        let v = json!({
            "interfaces": [{"name": "eth0", "mac": "", "sandbox": "", "mtu": 0}],
            "ips": null, "routes": [{"dst": "0.0.0.0/0", "priority": 0}],
            "dns": {"nameservers": null, "domain": "", "search": null}
        });
        let r = CniResult::from_value(&v).unwrap();
        assert_eq!(r.cni_version, CURRENT_VERSION);
        assert_eq!(
            r.interfaces,
            vec![Interface {
                name: "eth0".into(),
                ..Interface::default()
            }]
        );
        assert!(r.ips.is_empty() && r.dns.is_empty());
        assert_eq!(r.routes[0].priority, None);
    }

    #[test]
    fn from_value_refuses_bad_input() {
        let invalid = [
            json!("1.0.0"),
            json!({"cniVersion": 100}),
            json!({"cniVersion": "1.0.0", "ips": [{"address": "198.18.0.2"}]}),
            json!({"cniVersion": "1.0.0", "ips": [{"address": "not-an-ip/24"}]}),
            json!({"cniVersion": "1.0.0", "ips": {"address": "198.18.0.2/24"}}),
            json!({"cniVersion": "1.0.0", "ips": [{"address": "198.18.0.2/24", "interface": -1}]}),
            json!({"cniVersion": "1.0.0", "ips": [{"address": "198.18.0.2/24", "interface": 0}]}),
            json!({"cniVersion": "0.4.0", "ips": [{"version": "6", "address": "198.18.0.2/24"}]}),
            json!({"cniVersion": "0.4.0", "ips": [{"version": "5", "address": "198.18.0.2/24"}]}),
            json!({"cniVersion": "1.0.0", "routes": [{"gw": "198.18.0.1"}]}),
            json!({"cniVersion": "1.0.0", "interfaces": [{"mac": "aa:bb:cc:dd:ee:ff"}]}),
            json!({"cniVersion": "1.0.0", "dns": {"nameservers": "198.18.0.1"}}),
        ];
        for v in invalid {
            let e = CniResult::from_value(&v).unwrap_err();
            assert_eq!(e.code, code::INVALID_NETWORK_CONFIG, "{v}");
        }
        let old = [
            json!({"cniVersion": "0.2.0", "ip4": {"ip": "198.18.0.2/24"}}),
            json!({"ip4": {"ip": "198.18.0.2/24"}}),
            json!({"cniVersion": "7.0.0"}),
        ];
        for v in old {
            let e = CniResult::from_value(&v).unwrap_err();
            assert_eq!(e.code, code::INCOMPATIBLE_VERSION, "{v}");
        }
    }

    #[test]
    fn dns_serialises_without_empty_fields() {
        let d = Dns {
            nameservers: vec!["198.18.0.1".into()],
            ..Dns::default()
        };
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            json!({"nameservers": ["198.18.0.1"]})
        );
        assert_eq!(serde_json::to_value(Dns::default()).unwrap(), json!({}));
        let back: Dns = serde_json::from_value(json!({"options": ["ndots:2"]})).unwrap();
        assert_eq!(back.options, vec!["ndots:2".to_owned()]);
        assert!(!back.is_empty());
    }
}
