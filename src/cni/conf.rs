//! The network configuration a runtime writes on a plugin's stdin (spec 1.1.0, section "Network
//! configuration", "Plugin configuration objects" and "Derived execution configuration").
//!
//! [`parse_conf`] turns stdin into any plugin-specific configuration type with the spec's error
//! codes; [`NetConf`] holds the keys every plugin shares and keeps all other keys in
//! [`NetConf::extra`], so a plugin can either flatten `NetConf` into its own type or read its
//! keys from `extra` with [`NetConf::get`] / [`NetConf::require`] (whose errors name the key).

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::error::{Error, code};
use super::result::{CniResult, Dns};
use super::version::check_version;

/// The keys of a plugin's configuration object that every plugin understands (spec 1.1.0
/// "Plugin configuration objects" plus the runtime-derived `cniVersion`, `name`,
/// `runtimeConfig` and `prevResult`).
///
/// JSON: `{"cniVersion": "1.1.0", "name": "labnet", "type": "ipvlan", "ipam": {...},
/// "dns": {...}, "prevResult": {...}, "runtimeConfig": {...}, ...}`. `cniVersion`, `name` and
/// `type` are required. Every other key (`master`, `mode`, `args`, `capabilities`, ...) is kept
/// in `extra`, in serialisation too (`#[serde(flatten)]`).
///
/// Deserialising reports a wrong type with the key's name, e.g.
/// `name: invalid type: integer `5`, expected a string`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetConf {
    /// `cniVersion`: the protocol version of this configuration, see [`check_version`].
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// `name`: the network name, see [`super::validate_network_name`].
    pub name: String,
    /// `type`: the plugin executable's name.
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// `ipam`: the IPAM configuration (`{"type": "dhcp", ...}`), passed to the IPAM plugin as is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Value>,
    /// `dns`: DNS settings from the configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
    /// `prevResult`: the previous plugin's result in a chain; see [`NetConf::prev_result`].
    #[serde(rename = "prevResult", skip_serializing_if = "Option::is_none")]
    pub prev_result: Option<Value>,
    /// `runtimeConfig`: capability arguments from the runtime (e.g. `mac`, `ips`).
    #[serde(rename = "runtimeConfig", skip_serializing_if = "Option::is_none")]
    pub runtime_config: Option<Value>,
    /// Every other key of the configuration object, unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Removes `key` from `map` and deserialises it; `null` counts as absent. The error names the key.
fn take<T: DeserializeOwned>(map: &mut Map<String, Value>, key: &str) -> Result<Option<T>, String> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => T::deserialize(v)
            .map(Some)
            .map_err(|e| format!("{key}: {e}")),
    }
}

fn take_required<T: DeserializeOwned>(
    map: &mut Map<String, Value>,
    key: &str,
) -> Result<T, String> {
    take(map, key)?.ok_or_else(|| format!("missing field `{key}`"))
}

impl<'de> Deserialize<'de> for NetConf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut m = Map::<String, Value>::deserialize(d)?;
        let mut f = || -> Result<NetConf, String> {
            Ok(NetConf {
                cni_version: take_required(&mut m, "cniVersion")?,
                name: take_required(&mut m, "name")?,
                plugin_type: take_required(&mut m, "type")?,
                ipam: take(&mut m, "ipam")?,
                dns: take(&mut m, "dns")?,
                prev_result: take(&mut m, "prevResult")?,
                runtime_config: take(&mut m, "runtimeConfig")?,
                extra: Map::new(),
            })
        };
        let mut conf = f().map_err(D::Error::custom)?;
        conf.extra = m;
        Ok(conf)
    }
}

impl NetConf {
    /// The plugin-specific key `key` from [`NetConf::extra`], deserialised as `T`; `None` when
    /// absent or `null`. Errors: wrong type: code 7 ([`code::INVALID_NETWORK_CONFIG`]) with
    /// `details` `key: <serde message>`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        match self.extra.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => T::deserialize(v)
                .map(Some)
                .map_err(|e| invalid(format!("{key}: {e}"))),
        }
    }

    /// Like [`NetConf::get`] but the key is required: absent is code 7 with details
    /// ``missing field `key` ``.
    pub fn require<T: DeserializeOwned>(&self, key: &str) -> Result<T, Error> {
        self.get(key)?
            .ok_or_else(|| invalid(format!("missing field `{key}`")))
    }

    /// The parsed `prevResult` (any supported version, see [`CniResult::from_value`]), `None`
    /// when absent. A `prevResult` without its own `cniVersion` is read as this configuration's
    /// version, as libcni does.
    pub fn prev_result(&self) -> Result<Option<CniResult>, Error> {
        let Some(v) = &self.prev_result else {
            return Ok(None);
        };
        let mut r = CniResult::from_value(v)?;
        if v.get("cniVersion").is_none() {
            r.cni_version = self.cni_version.clone();
        }
        Ok(Some(r))
    }
}

fn invalid(details: String) -> Error {
    Error::new(
        code::INVALID_NETWORK_CONFIG,
        "invalid network configuration",
        details,
    )
}

/// The `cniVersion` of a decoded configuration object, checked with [`check_version`].
///
/// Errors: not an object or `cniVersion` not a string: code 7; absent or unsupported: code 1
/// (libcni reads an absent version as "0.1.0", which no plugin here supports).
pub fn conf_version(v: &Value) -> Result<&str, Error> {
    let Some(obj) = v.as_object() else {
        return Err(invalid("network configuration is not a JSON object".into()));
    };
    match obj.get("cniVersion") {
        None | Some(Value::Null) => {
            check_version("")?;
            Ok("")
        }
        Some(Value::String(s)) => {
            check_version(s)?;
            Ok(s)
        }
        Some(other) => Err(invalid(format!(
            "cniVersion: invalid type: {other}, expected a string"
        ))),
    }
}

/// Parses a network configuration from stdin bytes into `T` (e.g. [`NetConf`] or a plugin type
/// that flattens it).
///
/// Order and errors:
/// 1. not JSON: code 6 ([`code::DECODING_FAILURE`]), `msg` `decoding failure`, serde's message
///    in `details`;
/// 2. `cniVersion` (see [`conf_version`]): absent or unsupported: code 1; not a string or the
///    document not an object: code 7;
/// 3. `T` rejects it (missing key, wrong type): code 7 ([`code::INVALID_NETWORK_CONFIG`]),
///    `msg` `invalid network configuration`, serde's message in `details` (it names a missing
///    key; [`NetConf`] also names the key of a wrong type).
pub fn parse_conf<T: DeserializeOwned>(stdin: &[u8]) -> Result<T, Error> {
    let v: Value = serde_json::from_slice(stdin)
        .map_err(|e| Error::new(code::DECODING_FAILURE, "decoding failure", e.to_string()))?;
    conf_version(&v)?;
    T::deserialize(v).map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err_of<T: DeserializeOwned + std::fmt::Debug>(s: &str) -> Error {
        parse_conf::<T>(s.as_bytes()).unwrap_err()
    }

    const IPVLAN: &str = r#"{
        "cniVersion": "1.0.0", "name": "labnet", "type": "ipvlan",
        "master": "eth0", "mode": "l2", "mtu": 1400,
        "ipam": {"type": "dhcp", "daemonSocketPath": "/run/cni/dhcp.sock"},
        "dns": {"nameservers": ["198.18.0.1"]},
        "runtimeConfig": {"mac": "aa:bb:cc:dd:ee:ff"},
        "args": {"cni": {"ips": ["198.18.0.9"]}}
    }"#;

    #[test]
    fn netconf_keeps_shared_and_extra_keys() {
        let c: NetConf = parse_conf(IPVLAN.as_bytes()).unwrap();
        assert_eq!(
            (
                c.cni_version.as_str(),
                c.name.as_str(),
                c.plugin_type.as_str()
            ),
            ("1.0.0", "labnet", "ipvlan")
        );
        assert_eq!(c.ipam.as_ref().unwrap()["type"], "dhcp");
        assert_eq!(
            c.dns.as_ref().unwrap().nameservers,
            vec!["198.18.0.1".to_owned()]
        );
        assert_eq!(c.runtime_config, Some(json!({"mac": "aa:bb:cc:dd:ee:ff"})));
        assert_eq!(c.prev_result, None);
        let mut keys: Vec<&str> = c.extra.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["args", "master", "mode", "mtu"]);
        assert_eq!(c.get::<String>("master").unwrap().as_deref(), Some("eth0"));
        assert_eq!(c.require::<u32>("mtu").unwrap(), 1400);
        assert_eq!(c.get::<String>("absent").unwrap(), None);
        // Serialising gives back the same object.
        let original: Value = serde_json::from_str(IPVLAN).unwrap();
        assert_eq!(serde_json::to_value(&c).unwrap(), original);
    }

    #[test]
    fn netconf_helpers_name_the_key() {
        let c: NetConf = parse_conf(IPVLAN.as_bytes()).unwrap();
        let e = c.get::<u32>("master").unwrap_err();
        assert_eq!(e.code, code::INVALID_NETWORK_CONFIG);
        assert!(
            e.details.starts_with("master: invalid type"),
            "{}",
            e.details
        );
        let e = c.require::<String>("parent").unwrap_err();
        assert_eq!(e.code, code::INVALID_NETWORK_CONFIG);
        assert_eq!(e.details, "missing field `parent`");
    }

    #[test]
    fn not_json_is_a_decoding_failure() {
        for s in ["", "garbage", "{\"cniVersion\": \"1.0.0\"", "\u{0}"] {
            assert_eq!(err_of::<NetConf>(s).code, code::DECODING_FAILURE, "{s:?}");
        }
    }

    #[test]
    fn unsupported_or_missing_version_is_code_1() {
        for s in [
            r#"{"cniVersion": "0.2.0", "name": "n", "type": "t"}"#,
            r#"{"cniVersion": "9.9.9", "name": "n", "type": "t"}"#,
            r#"{"cniVersion": "", "name": "n", "type": "t"}"#,
            r#"{"name": "n", "type": "t"}"#,
        ] {
            let e = err_of::<NetConf>(s);
            assert_eq!(e.code, code::INCOMPATIBLE_VERSION, "{s}");
            assert_eq!(e.msg, "incompatible CNI versions");
        }
        let e = err_of::<NetConf>(r#"{"cniVersion": "9.9.9", "name": "n", "type": "t"}"#);
        assert_eq!(
            e.details,
            r#"config is "9.9.9", plugin supports ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]"#
        );
    }

    #[test]
    fn wrong_types_and_missing_keys_are_code_7_naming_the_key() {
        let cases = [
            (
                r#"{"cniVersion": "1.0.0", "name": 5, "type": "t"}"#,
                "name: invalid type",
            ),
            (
                r#"{"cniVersion": "1.0.0", "name": "n"}"#,
                "missing field `type`",
            ),
            (
                r#"{"cniVersion": "1.0.0", "type": "t"}"#,
                "missing field `name`",
            ),
            (
                r#"{"cniVersion": "1.0.0", "name": "n", "type": "t", "dns": {"nameservers": "x"}}"#,
                "dns: invalid type",
            ),
            (
                r#"{"cniVersion": 1, "name": "n", "type": "t"}"#,
                "cniVersion: invalid type",
            ),
            (r#"["cniVersion"]"#, "not a JSON object"),
        ];
        for (s, want) in cases {
            let e = err_of::<NetConf>(s);
            assert_eq!(e.code, code::INVALID_NETWORK_CONFIG, "{s}");
            assert!(e.details.contains(want), "{s}: {}", e.details);
        }
    }

    #[derive(Debug, Deserialize)]
    struct IpvlanConf {
        #[serde(flatten)]
        net: NetConf,
        master: String,
        #[serde(default)]
        mtu: Option<u32>,
    }

    #[test]
    fn plugin_types_can_flatten_netconf() {
        let c: IpvlanConf = parse_conf(IPVLAN.as_bytes()).unwrap();
        assert_eq!((c.master.as_str(), c.mtu), ("eth0", Some(1400)));
        assert_eq!(c.net.name, "labnet");
        assert!(c.net.extra.contains_key("mode"));
        let e = err_of::<IpvlanConf>(r#"{"cniVersion": "1.0.0", "name": "n", "type": "ipvlan"}"#);
        assert_eq!(e.code, code::INVALID_NETWORK_CONFIG);
        assert!(
            e.details.contains("missing field `master`"),
            "{}",
            e.details
        );
        let e = err_of::<IpvlanConf>(
            r#"{"cniVersion": "1.0.0", "name": [], "type": "ipvlan", "master": "x"}"#,
        );
        assert!(e.details.contains("name: invalid type"), "{}", e.details);
    }

    #[test]
    fn prev_result_is_parsed_with_the_conf_version_when_it_has_none() {
        let c: NetConf = parse_conf(
            br#"{"cniVersion": "0.4.0", "name": "n", "type": "t",
                 "prevResult": {"ips": [{"version": "4", "address": "198.18.0.2/24"}]}}"#,
        )
        .unwrap();
        let r = c.prev_result().unwrap().unwrap();
        assert_eq!(r.cni_version, "0.4.0");
        assert_eq!(r.ips[0].address.to_string(), "198.18.0.2/24");
        let bad: NetConf = parse_conf(
            br#"{"cniVersion": "1.0.0", "name": "n", "type": "t", "prevResult": {"ips": [{"address": "x"}]}}"#,
        )
        .unwrap();
        assert_eq!(
            bad.prev_result().unwrap_err().code,
            code::INVALID_NETWORK_CONFIG
        );
    }
}
