//! The CNI error result (spec 1.1.0, section "Error": `{"cniVersion", "code", "msg", "details"}`)
//! and its well-known error codes.
//!
//! Every fallible function in [`crate::cni`] returns this [`Error`], so a plugin can print any
//! failure as the JSON object the runtime expects on stdout (with exit status 1, see
//! [`crate::cni::run`]). Codes 1-99 are reserved by the spec ([`code`]); plugins may use 100 and
//! above for their own errors.

use serde_json::{Map, Value};

/// Well-known error codes (spec 1.1.0, section "Error", table of well-known codes).
pub mod code {
    /// Incompatible CNI version: the configuration's `cniVersion` is not supported, or the
    /// command is not allowed in that version (CHECK before 0.4.0, STATUS/GC before 1.1.0).
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration; `details` names the field.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist (DEL must not fail with it, spec "DEL").
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables (`CNI_COMMAND`, `CNI_CONTAINERID`, ...);
    /// `details` names the variable.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure, e.g. stdin could not be read or a delegated plugin could not be run.
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content: stdin (or a delegated plugin's output) is not JSON.
    pub const DECODING_FAILURE: u32 = 6;
    /// Invalid network configuration: JSON, but a key is missing or has the wrong type or value.
    pub const INVALID_NETWORK_CONFIG: u32 = 7;
    /// Try again later: a transient condition; the runtime should retry the operation.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS only: the plugin is not available, ADD would fail.
    pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
    /// STATUS only: the plugin is available but connectivity is limited.
    pub const LIMITED_CONNECTIVITY: u32 = 51;
    /// Not a spec code: libcni's "internal error" convention (Go `types.ErrInternal`), used here for
    /// a plugin that panicked and for a malformed error from a delegated plugin.
    pub const INTERNAL: u32 = 999;
}

/// A CNI error: what a plugin prints on stdout (with exit status 1) when a command fails.
///
/// Shape on the wire (spec 1.1.0 "Error"):
/// `{"cniVersion": "1.1.0", "code": 7, "msg": "short message", "details": "longer text"}`;
/// `details` is omitted when empty. `code` is one of [`code`] or a plugin-specific value >= 100.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CNI error {code}: {msg}{}", if details.is_empty() { String::new() } else { format!(" ({details})") })]
pub struct Error {
    /// Error code, see [`code`].
    pub code: u32,
    /// Short, human-readable message.
    pub msg: String,
    /// Longer explanation (may be empty).
    pub details: String,
}

impl Error {
    /// Builds an error from a code (see [`code`]), a short message and details (may be empty).
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Error {
        Error {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The spec's error JSON object as a [`Value`]:
    /// `{"cniVersion": cni_version, "code", "msg", "details"}`, `details` omitted when empty.
    pub fn to_value(&self, cni_version: &str) -> Value {
        let mut m = Map::new();
        m.insert("cniVersion".into(), Value::from(cni_version));
        m.insert("code".into(), Value::from(self.code));
        m.insert("msg".into(), Value::from(self.msg.as_str()));
        if !self.details.is_empty() {
            m.insert("details".into(), Value::from(self.details.as_str()));
        }
        Value::Object(m)
    }

    /// The spec's error JSON object as a compact string (see [`Error::to_value`]); `cni_version`
    /// is normally the `cniVersion` of the configuration on stdin.
    pub fn to_json(&self, cni_version: &str) -> String {
        self.to_value(cni_version).to_string()
    }

    /// Recognises an error JSON object (as printed by another plugin): an object with a numeric
    /// `code` (0..=u32::MAX) and a string `msg`; `details` and `cniVersion` are optional.
    /// Returns `None` for anything else (e.g. a result).
    pub fn from_value(v: &Value) -> Option<Error> {
        let o = v.as_object()?;
        let code = u32::try_from(o.get("code")?.as_u64()?).ok()?;
        let msg = o.get("msg")?.as_str()?.to_owned();
        let details = o
            .get("details")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Some(Error { code, msg, details })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn well_known_codes_match_the_spec_table() {
        let got = [
            code::INCOMPATIBLE_VERSION,
            code::UNSUPPORTED_FIELD,
            code::UNKNOWN_CONTAINER,
            code::INVALID_ENV,
            code::IO_FAILURE,
            code::DECODING_FAILURE,
            code::INVALID_NETWORK_CONFIG,
            code::TRY_AGAIN_LATER,
            code::PLUGIN_NOT_AVAILABLE,
            code::LIMITED_CONNECTIVITY,
        ];
        assert_eq!(got, [1, 2, 3, 4, 5, 6, 7, 11, 50, 51]);
    }

    #[test]
    fn error_json_has_the_spec_shape() {
        let e = Error::new(
            code::INVALID_NETWORK_CONFIG,
            "Invalid Configuration",
            "Network 192.168.0.0/31 too small",
        );
        let v: Value = serde_json::from_str(&e.to_json("1.1.0")).unwrap();
        assert_eq!(
            v,
            json!({"cniVersion": "1.1.0", "code": 7, "msg": "Invalid Configuration",
                   "details": "Network 192.168.0.0/31 too small"})
        );
    }

    #[test]
    fn empty_details_are_omitted() {
        let v: Value = serde_json::from_str(&Error::new(11, "busy", "").to_json("0.4.0")).unwrap();
        assert_eq!(v, json!({"cniVersion": "0.4.0", "code": 11, "msg": "busy"}));
    }

    #[test]
    fn from_value_reads_an_error_and_refuses_a_result() {
        // As printed by the reference host-local 1.1.1 for an unsupported version.
        let v = json!({"code": 1, "msg": "incompatible CNI versions",
                       "details": "config is \"9.9.9\", plugin supports [\"0.1.0\"]"});
        let e = Error::from_value(&v).unwrap();
        assert_eq!(e.code, 1);
        assert_eq!(e.msg, "incompatible CNI versions");
        assert!(e.details.contains("9.9.9"));
        let no_details = Error::from_value(&json!({"code": 6, "msg": "x"})).unwrap();
        assert_eq!(no_details.details, "");
        assert_eq!(
            Error::from_value(&json!({"cniVersion": "1.0.0", "ips": []})),
            None
        );
        assert_eq!(Error::from_value(&json!({"code": -1, "msg": "x"})), None);
        assert_eq!(Error::from_value(&json!({"code": "7", "msg": "x"})), None);
    }

    #[test]
    fn display_includes_code_msg_and_details() {
        let s = Error::new(5, "io", "disk on fire").to_string();
        assert_eq!(s, "CNI error 5: io (disk on fire)");
        assert_eq!(Error::new(5, "io", "").to_string(), "CNI error 5: io");
    }
}
