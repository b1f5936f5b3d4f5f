//! The `CNI_*` environment variables a runtime passes to a plugin (spec 1.1.0, section
//! "Parameters") and the spec's rules for container IDs, interface names and network names.
//!
//! [`Env::from_env`] reads and checks the variables the command requires; the accessors
//! ([`Env::container_id`], [`Env::ifname`], [`Env::netns`]) turn a missing optional value into
//! the spec's error code 4 so plugin code can use `?`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::error::{Error, code};

/// The operation requested by the runtime (`CNI_COMMAND`, spec 1.1.0 "Parameters" and
/// "CNI operations").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// `ADD`: attach the container to the network.
    Add,
    /// `DEL`: detach; must succeed when the attachment is already gone.
    Del,
    /// `CHECK`: verify an existing attachment (cniVersion >= 0.4.0).
    Check,
    /// `STATUS`: is the plugin ready to service ADD (cniVersion >= 1.1.0).
    Status,
    /// `GC`: release resources not in `cni.dev/valid-attachments` (cniVersion >= 1.1.0).
    Gc,
    /// `VERSION`: report the supported versions.
    Version,
}

impl Command {
    /// The `CNI_COMMAND` spelling: `"ADD"`, `"DEL"`, `"CHECK"`, `"STATUS"`, `"GC"`, `"VERSION"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }

    /// Parses a `CNI_COMMAND` value (exact, upper case). Unknown values: code 4
    /// ([`code::INVALID_ENV`]), `msg` `unknown CNI_COMMAND: X`.
    pub fn parse(s: &str) -> Result<Command, Error> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            other => {
                return Err(Error::new(
                    code::INVALID_ENV,
                    format!("unknown CNI_COMMAND: {other}"),
                    "CNI_COMMAND",
                ));
            }
        })
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The plugin's parameters from the environment (spec 1.1.0 "Parameters").
///
/// Empty variables are treated as absent (`None` / empty list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID`: checked with [`validate_container_id`] when present.
    pub container_id: Option<String>,
    /// `CNI_NETNS`: path of the container's network namespace, e.g. `/run/netns/x` or
    /// `/proc/1234/ns/net`; checked with [`validate_netns`] when present (so it is absolute,
    /// valid UTF-8 and free of control characters). May be absent for DEL.
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`: interface name inside the container; checked with [`validate_ifname`] when
    /// present.
    pub ifname: Option<String>,
    /// `CNI_ARGS`: `"K1=V1;K2=V2"` split into pairs, in order. The value is everything after the
    /// first `=` (so it may contain `=`); empty items (`"a=b;"`) are skipped.
    pub args: Vec<(String, String)>,
    /// `CNI_PATH`: directories to search for plugin executables, `:`-separated, empty items skipped.
    pub path: Vec<PathBuf>,
}

impl Env {
    /// Reads the `CNI_*` variables of this process. See [`Env::from_os_lookup`] for the rules.
    pub fn from_env() -> Result<Env, Error> {
        Env::from_os_lookup(|k| std::env::var_os(k))
    }

    /// Builds an [`Env`] from a lookup of raw variable values, which need not be UTF-8.
    ///
    /// Except for VERSION (which ignores everything but `CNI_COMMAND`), `CNI_CONTAINERID`,
    /// `CNI_NETNS` and `CNI_IFNAME` that are not valid UTF-8 are refused: code 4
    /// ([`code::INVALID_ENV`]), `msg` `CNI_X is not valid UTF-8`, `details` the value with the
    /// invalid bytes as `\xNN`. A lossy conversion would name another namespace or interface
    /// than the runtime meant, and print U+FFFD where the runtime's logs show bytes. Other
    /// variables are converted lossily (invalid sequences become U+FFFD): `CNI_ARGS` may carry
    /// keys for other plugins, and the values this plugin uses are checked where they are used
    /// ([`crate::ipam::IpamConf::dhcp_extras`]). Then the rules of [`Env::from_lookup`] apply.
    pub fn from_os_lookup(get: impl Fn(&str) -> Option<OsString>) -> Result<Env, Error> {
        let is_version = get("CNI_COMMAND").is_some_and(|c| c == "VERSION");
        if !is_version {
            for var in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
                if let Some(v) = get(var).filter(|v| v.to_str().is_none()) {
                    return Err(Error::new(
                        code::INVALID_ENV,
                        format!("{var} is not valid UTF-8"),
                        format!("{v:?}"),
                    ));
                }
            }
        }
        Env::from_lookup(|k| get(k).map(|v| v.to_string_lossy().into_owned()))
    }

    /// Builds an [`Env`] from a variable lookup (`get("CNI_COMMAND")` ...), e.g. for tests.
    ///
    /// Requirements per command (spec 1.1.0 "Parameters"; all errors are code 4,
    /// [`code::INVALID_ENV`], with the variable name in `details`):
    /// - `CNI_COMMAND` always; an unknown value is refused;
    /// - ADD and CHECK: `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`;
    /// - DEL: `CNI_CONTAINERID`, `CNI_IFNAME` (`CNI_NETNS` may be empty);
    /// - STATUS, GC, VERSION: none.
    ///
    /// For every command but VERSION, `CNI_CONTAINERID`, `CNI_IFNAME` and `CNI_NETNS` are
    /// validated ([`validate_container_id`], [`validate_ifname`], [`validate_netns`]) whenever
    /// present, and a malformed `CNI_ARGS` (an item without `=` or with an empty key) is
    /// refused.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Env, Error> {
        let var = |k: &str| get(k).filter(|v| !v.is_empty());
        let command = match var("CNI_COMMAND") {
            Some(c) => Command::parse(&c)?,
            None => {
                return Err(Error::new(
                    code::INVALID_ENV,
                    "required env variables [CNI_COMMAND] missing",
                    "CNI_COMMAND",
                ));
            }
        };
        let container_id = var("CNI_CONTAINERID");
        let netns = var("CNI_NETNS").map(PathBuf::from);
        let ifname = var("CNI_IFNAME");
        let (need_cid, need_netns, need_ifname) = match command {
            Command::Add | Command::Check => (true, true, true),
            Command::Del => (true, false, true),
            Command::Status | Command::Gc | Command::Version => (false, false, false),
        };
        let mut missing = Vec::new();
        if need_cid && container_id.is_none() {
            missing.push("CNI_CONTAINERID");
        }
        if need_netns && netns.is_none() {
            missing.push("CNI_NETNS");
        }
        if need_ifname && ifname.is_none() {
            missing.push("CNI_IFNAME");
        }
        if !missing.is_empty() {
            return Err(Error::new(
                code::INVALID_ENV,
                format!("required env variables [{}] missing", missing.join(",")),
                missing.join(","),
            ));
        }
        if command != Command::Version {
            if let Some(c) = &container_id {
                validate_container_id(c)?;
            }
            if let Some(i) = &ifname {
                validate_ifname(i)?;
            }
            if let Some(n) = &netns {
                validate_netns(n)?;
            }
        }
        let args = match var("CNI_ARGS") {
            Some(a) if command == Command::Version => parse_args(&a).unwrap_or_default(),
            Some(a) => parse_args(&a)?,
            None => Vec::new(),
        };
        let path = var("CNI_PATH")
            .map(|p| {
                p.split(':')
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Env {
            command,
            container_id,
            netns,
            ifname,
            args,
            path,
        })
    }

    /// `CNI_CONTAINERID`, or code 4 ([`code::INVALID_ENV`]) when absent.
    pub fn container_id(&self) -> Result<&str, Error> {
        self.container_id
            .as_deref()
            .ok_or_else(|| missing("CNI_CONTAINERID"))
    }

    /// `CNI_IFNAME`, or code 4 ([`code::INVALID_ENV`]) when absent.
    pub fn ifname(&self) -> Result<&str, Error> {
        self.ifname.as_deref().ok_or_else(|| missing("CNI_IFNAME"))
    }

    /// `CNI_NETNS`, or code 4 ([`code::INVALID_ENV`]) when absent (possible for DEL).
    pub fn netns(&self) -> Result<&Path, Error> {
        self.netns.as_deref().ok_or_else(|| missing("CNI_NETNS"))
    }

    /// The value of the first `CNI_ARGS` pair with this key (case-sensitive), e.g.
    /// `arg("K8S_POD_NAME")`.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The `CNI_*` variables this [`Env`] describes, as (name, value) pairs, with `CNI_COMMAND`
    /// set to `command`; absent values are `None` (to be removed from a child's environment).
    /// Used by [`crate::cni::exec_plugin`].
    pub fn to_vars(&self, command: Command) -> Vec<(&'static str, Option<String>)> {
        let args = self
            .args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";");
        let path = std::env::join_paths(&self.path)
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        vec![
            ("CNI_COMMAND", Some(command.as_str().to_owned())),
            ("CNI_CONTAINERID", self.container_id.clone()),
            (
                "CNI_NETNS",
                self.netns
                    .as_ref()
                    .map(|p| p.to_string_lossy().into_owned()),
            ),
            ("CNI_IFNAME", self.ifname.clone()),
            ("CNI_ARGS", Some(args).filter(|a| !a.is_empty())),
            ("CNI_PATH", path.filter(|p| !p.is_empty())),
        ]
    }
}

fn missing(var: &str) -> Error {
    Error::new(
        code::INVALID_ENV,
        format!("required env variables [{var}] missing"),
        var,
    )
}

/// Parses `CNI_ARGS` (spec 1.1.0 "Parameters": "alphanumeric key-value pairs separated by
/// semicolons", e.g. `FOO=BAR;ABC=123`) into (key, value) pairs in order.
///
/// The value is everything after the first `=`; empty items are skipped. An item without `=`
/// or with an empty key: code 4 ([`code::INVALID_ENV`]), details `CNI_ARGS`.
pub fn parse_args(s: &str) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    for item in s.split(';').filter(|i| !i.is_empty()) {
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => out.push((k.to_owned(), v.to_owned())),
            _ => {
                return Err(Error::new(
                    code::INVALID_ENV,
                    format!("ARGS: invalid pair {item:?}"),
                    "CNI_ARGS",
                ));
            }
        }
    }
    Ok(out)
}

fn id_chars_ok(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Checks a container ID (spec 1.1.0 "Parameters", `CNI_CONTAINERID`): non-empty, matching
/// `^[A-Za-z0-9][A-Za-z0-9_.\-]*$` (ASCII only).
///
/// Errors: empty: code 3 ([`code::UNKNOWN_CONTAINER`]) `missing containerID` (as libcni); bad
/// characters: code 4 ([`code::INVALID_ENV`]) `invalid characters in containerID`, details the ID
/// with control characters escaped (`str::escape_debug`, e.g. `\u{1b}`).
pub fn validate_container_id(s: &str) -> Result<(), Error> {
    if s.is_empty() {
        return Err(Error::new(
            code::UNKNOWN_CONTAINER,
            "missing containerID",
            "",
        ));
    }
    if !id_chars_ok(s) {
        return Err(Error::new(
            code::INVALID_ENV,
            "invalid characters in containerID",
            s.escape_debug().to_string(),
        ));
    }
    Ok(())
}

/// Checks an interface name (spec 1.1.0 "Parameters", `CNI_IFNAME`, Linux `IFNAMSIZ`): 1 to 15
/// bytes, no `/`, no `:`, no whitespace (Unicode `White_Space`), not `.` or `..`, and no control
/// characters ([`char::is_control`]: U+0000 to U+001F, DEL U+007F, U+0080 to U+009F). The kernel
/// (`dev_valid_name`) accepts control characters; we do not, since the name is printed in logs
/// and `dhcp-leases` output, where an ESC or CR would rewrite the operator's terminal.
///
/// Errors: code 4 ([`code::INVALID_ENV`]), details the name with control characters escaped
/// (`str::escape_debug`, e.g. `eth\u{1b}0`).
pub fn validate_ifname(s: &str) -> Result<(), Error> {
    let err = |msg: &str| {
        Err(Error::new(
            code::INVALID_ENV,
            msg,
            s.escape_debug().to_string(),
        ))
    };
    if s.is_empty() {
        return err("interface name is empty");
    }
    if s.len() > 15 {
        return err("interface name is too long");
    }
    if s == "." || s == ".." {
        return err("interface name is . or ..");
    }
    if s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        return err("interface name contains / or : or whitespace characters");
    }
    if s.chars().any(char::is_control) {
        return err("interface name contains control characters");
    }
    Ok(())
}

/// Checks `CNI_NETNS` (spec 1.1.0 "Parameters": "a reference to the container's isolation
/// domain"; on Linux the path of a network namespace file): an absolute path, valid UTF-8, with
/// no control characters ([`char::is_control`]). The path is handed to the daemon, kept in its
/// state files and printed by `dhcp-leases`; a relative path would be resolved against whatever
/// directory the daemon runs in. Whether it names a network namespace is checked where it is
/// opened ([`crate::netns`]).
///
/// Errors: code 4 ([`code::INVALID_ENV`]), msg naming `CNI_NETNS`, details the path with control
/// characters escaped (`str::escape_debug`).
pub fn validate_netns(p: &Path) -> Result<(), Error> {
    let Some(s) = p.to_str() else {
        return Err(Error::new(
            code::INVALID_ENV,
            "CNI_NETNS is not valid UTF-8",
            format!("{:?}", p.as_os_str()),
        ));
    };
    let err = |msg: &str| {
        Err(Error::new(
            code::INVALID_ENV,
            msg,
            s.escape_debug().to_string(),
        ))
    };
    if s.chars().any(char::is_control) {
        return err("CNI_NETNS contains control characters");
    }
    if !p.is_absolute() {
        return err("CNI_NETNS is not an absolute path");
    }
    Ok(())
}

/// Checks a network name (spec 1.1.0 "Network configuration", `name`): the same character
/// rules as a container ID, `^[A-Za-z0-9][A-Za-z0-9_.\-]*$`, non-empty.
///
/// Errors: code 7 ([`code::INVALID_NETWORK_CONFIG`]): `missing network name` or
/// `invalid characters found in network name` (details the name, control characters escaped
/// with `str::escape_debug`).
pub fn validate_network_name(s: &str) -> Result<(), Error> {
    if s.is_empty() {
        return Err(Error::new(
            code::INVALID_NETWORK_CONFIG,
            "missing network name",
            "",
        ));
    }
    if !id_chars_ok(s) {
        return Err(Error::new(
            code::INVALID_NETWORK_CONFIG,
            "invalid characters found in network name",
            s.escape_debug().to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(vars: &[(&str, &str)]) -> Result<Env, Error> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_lookup(|k| m.get(k).cloned())
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "cid-1"),
        ("CNI_NETNS", "/run/netns/c1"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web-0;X=a=b"),
        ("CNI_PATH", "/opt/cni/bin::/usr/lib/cni"),
    ];

    #[test]
    fn add_with_every_variable() {
        let e = env_of(ADD).unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.container_id().unwrap(), "cid-1");
        assert_eq!(e.netns().unwrap(), Path::new("/run/netns/c1"));
        assert_eq!(e.ifname().unwrap(), "eth0");
        assert_eq!(e.arg("K8S_POD_NAME"), Some("web-0"));
        assert_eq!(e.arg("X"), Some("a=b"));
        assert_eq!(e.arg("k8s_pod_name"), None);
        assert_eq!(
            e.path,
            vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
    }

    fn without(
        vars: &[(&'static str, &'static str)],
        key: &str,
    ) -> Vec<(&'static str, &'static str)> {
        vars.iter().filter(|(k, _)| *k != key).copied().collect()
    }

    fn with(
        vars: &[(&'static str, &'static str)],
        key: &'static str,
        val: &'static str,
    ) -> Vec<(&'static str, &'static str)> {
        let mut v = without(vars, key);
        v.push((key, val));
        v
    }

    #[test]
    fn add_and_check_require_containerid_netns_ifname() {
        for cmd in ["ADD", "CHECK"] {
            for key in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
                let vars = with(&without(ADD, key), "CNI_COMMAND", cmd);
                let err = env_of(&vars).unwrap_err();
                assert_eq!(err.code, code::INVALID_ENV, "{cmd} without {key}");
                assert_eq!(err.details, key);
                // Empty counts as missing.
                let err = env_of(&with(&vars, key, "")).unwrap_err();
                assert_eq!(err.details, key);
            }
        }
    }

    #[test]
    fn del_allows_an_empty_netns_but_needs_the_rest() {
        let vars = with(&with(ADD, "CNI_COMMAND", "DEL"), "CNI_NETNS", "");
        let e = env_of(&vars).unwrap();
        assert_eq!(e.command, Command::Del);
        assert_eq!(e.netns, None);
        assert_eq!(e.netns().unwrap_err().code, code::INVALID_ENV);
        assert_eq!(
            env_of(&without(&vars, "CNI_IFNAME")).unwrap_err().code,
            code::INVALID_ENV
        );
        assert_eq!(
            env_of(&without(&vars, "CNI_CONTAINERID")).unwrap_err().code,
            code::INVALID_ENV
        );
    }

    #[test]
    fn status_gc_version_need_nothing_else() {
        for (cmd, want) in [
            ("STATUS", Command::Status),
            ("GC", Command::Gc),
            ("VERSION", Command::Version),
        ] {
            let e = env_of(&[("CNI_COMMAND", cmd)]).unwrap();
            assert_eq!(e.command, want);
            assert!(e.container_id().is_err() && e.ifname().is_err() && e.netns().is_err());
            assert!(e.args.is_empty() && e.path.is_empty());
        }
    }

    #[test]
    fn command_is_required_and_checked() {
        let err = env_of(&without(ADD, "CNI_COMMAND")).unwrap_err();
        assert_eq!(
            (err.code, err.details.as_str()),
            (code::INVALID_ENV, "CNI_COMMAND")
        );
        let err = env_of(&with(ADD, "CNI_COMMAND", "add")).unwrap_err();
        assert_eq!(err.code, code::INVALID_ENV);
        assert!(err.msg.contains("add"), "{}", err.msg);
        for c in [
            Command::Add,
            Command::Del,
            Command::Check,
            Command::Status,
            Command::Gc,
            Command::Version,
        ] {
            assert_eq!(Command::parse(c.as_str()).unwrap(), c);
        }
    }

    #[test]
    fn invalid_ids_and_names_in_env_are_refused() {
        let err = env_of(&with(ADD, "CNI_CONTAINERID", "../etc")).unwrap_err();
        assert_eq!(err.code, code::INVALID_ENV);
        let err = env_of(&with(ADD, "CNI_IFNAME", "eth0:1")).unwrap_err();
        assert_eq!(err.code, code::INVALID_ENV);
        let err = env_of(&with(ADD, "CNI_ARGS", "FOO")).unwrap_err();
        assert_eq!(
            (err.code, err.details.as_str()),
            (code::INVALID_ENV, "CNI_ARGS")
        );
        // VERSION ignores everything but CNI_COMMAND.
        let v = with(&with(ADD, "CNI_ARGS", "FOO"), "CNI_COMMAND", "VERSION");
        assert!(env_of(&v).is_ok());
    }

    #[test]
    fn cni_args_parsing() {
        let pairs = |s| parse_args(s).unwrap();
        assert_eq!(pairs(""), vec![]);
        assert_eq!(
            pairs("FOO=BAR;ABC=123"),
            vec![("FOO".into(), "BAR".into()), ("ABC".into(), "123".into())]
        );
        assert_eq!(
            pairs("A=;;B=x=y;"),
            vec![("A".into(), "".into()), ("B".into(), "x=y".into())]
        );
        assert_eq!(
            parse_args("A=1;noequals").unwrap_err().code,
            code::INVALID_ENV
        );
        assert_eq!(parse_args("=v").unwrap_err().code, code::INVALID_ENV);
    }

    #[test]
    fn ifname_rules() {
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("a").is_ok());
        assert!(validate_ifname("abcdefghijklmno").is_ok()); // 15 bytes
        assert!(validate_ifname("abcdefghijklmnop").is_err()); // 16 bytes
        assert!(validate_ifname(&"é".repeat(7)).is_ok()); // 14 bytes
        assert!(validate_ifname(&"é".repeat(8)).is_err()); // 16 bytes, 8 chars
        for bad in [
            "", ".", "..", "a/b", "/", "eth0:1", "et h0", "eth\t0", "eth0\n", "a\u{a0}b",
        ] {
            let err = validate_ifname(bad).unwrap_err();
            assert_eq!(err.code, code::INVALID_ENV, "{bad:?}");
        }
        assert!(validate_ifname("...").is_ok());
    }

    #[test]
    fn ifname_with_control_characters_is_refused_and_reported_escaped() {
        // The kernel would take every one of these (dev_valid_name refuses only /, :,
        // whitespace, "." and ".."); none is whitespace, so only the control check stops them.
        for bad in [
            "eth\u{1b}[2J",
            "eth0\u{7f}",
            "\u{0}eth",
            "e\u{8}th",
            "eth\u{9b}0",
        ] {
            let err = validate_ifname(bad).unwrap_err();
            assert_eq!(err.code, code::INVALID_ENV, "{bad:?}");
            assert!(err.msg.contains("control"), "{bad:?}: {}", err.msg);
            assert!(
                !err.details.chars().any(char::is_control),
                "{bad:?}: {:?}",
                err.details
            );
        }
        let err = validate_ifname("eth\u{1b}0").unwrap_err();
        assert_eq!(err.details, "eth\\u{1b}0");
        let err = env_of(&with(ADD, "CNI_IFNAME", "eth\u{1b}0")).unwrap_err();
        assert_eq!(err.code, code::INVALID_ENV);
        // Printable non-ASCII stays allowed, as the kernel allows it.
        assert!(validate_ifname("ethé0").is_ok());
    }

    #[test]
    fn netns_must_be_absolute_and_free_of_control_characters() {
        for ok in ["/run/netns/c1", "/proc/1234/ns/net", "/var/run/netns/ä-1"] {
            assert!(validate_netns(Path::new(ok)).is_ok(), "{ok:?}");
        }
        for bad in [
            "run/netns/c1",
            "./c1",
            "c1",
            "/run/netns/c1\n",
            "/run/netns/\u{1b}]0;pwned\u{7}",
            "/run/netns/c\r1",
            "/run/netns/c1\u{7f}",
        ] {
            let err = validate_netns(Path::new(bad)).unwrap_err();
            assert_eq!(err.code, code::INVALID_ENV, "{bad:?}");
            assert!(err.msg.contains("CNI_NETNS"), "{bad:?}: {}", err.msg);
            assert!(!err.details.chars().any(char::is_control), "{bad:?}");
            // Through the environment, for every command that reads it (DEL too).
            for cmd in ["ADD", "CHECK", "DEL"] {
                let vars: Vec<(&str, &str)> = ADD
                    .iter()
                    .map(|&(k, v)| match k {
                        "CNI_NETNS" => (k, bad),
                        "CNI_COMMAND" => (k, cmd),
                        _ => (k, v),
                    })
                    .collect();
                let err = env_of(&vars).unwrap_err();
                assert_eq!(err.code, code::INVALID_ENV, "{cmd} {bad:?}");
            }
        }
        // VERSION ignores it.
        let v: Vec<(&str, &str)> = with(
            &with(ADD, "CNI_NETNS", "relative\u{1b}"),
            "CNI_COMMAND",
            "VERSION",
        );
        assert!(env_of(&v).is_ok());
    }

    fn os_env_of(vars: &[(&str, &[u8])]) -> Result<Env, Error> {
        use std::os::unix::ffi::OsStringExt;
        let m: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from_vec(v.to_vec())))
            .collect();
        Env::from_os_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn non_utf8_netns_ifname_and_container_id_are_refused() {
        let add: Vec<(&str, &[u8])> = ADD.iter().map(|&(k, v)| (k, v.as_bytes())).collect();
        let e = os_env_of(&add).unwrap();
        assert_eq!(e, env_of(ADD).unwrap(), "valid UTF-8 reads as from_lookup");
        for (var, bad) in [
            ("CNI_NETNS", &b"/run/netns/\xff\xfe"[..]),
            ("CNI_IFNAME", b"eth\xe9"),
            ("CNI_CONTAINERID", b"cid\x80"),
        ] {
            let vars: Vec<(&str, &[u8])> = add
                .iter()
                .map(|&(k, v)| if k == var { (k, bad) } else { (k, v) })
                .collect();
            let err = os_env_of(&vars).unwrap_err();
            assert_eq!(err.code, code::INVALID_ENV, "{var}");
            assert_eq!(err.msg, format!("{var} is not valid UTF-8"));
            assert!(err.details.contains("\\x"), "{var}: {}", err.details);
            // VERSION ignores it.
            let mut version = vars.clone();
            version.retain(|(k, _)| *k != "CNI_COMMAND");
            version.push(("CNI_COMMAND", b"VERSION"));
            assert!(os_env_of(&version).is_ok(), "{var}");
        }
        // Other variables are read lossily: an unused CNI_ARGS key for another plugin must not
        // fail the command.
        let vars: Vec<(&str, &[u8])> = add
            .iter()
            .map(|&(k, v)| {
                if k == "CNI_ARGS" {
                    (k, &b"K8S_POD_NAME=web-0;OTHER=\xff"[..])
                } else {
                    (k, v)
                }
            })
            .collect();
        let e = os_env_of(&vars).unwrap();
        assert_eq!(e.arg("K8S_POD_NAME"), Some("web-0"));
        assert_eq!(e.arg("OTHER"), Some("\u{fffd}"));
    }

    #[test]
    fn container_id_rules() {
        for ok in ["a", "0", "cid-1", "A.b_c-D", "abc123def456"] {
            assert!(validate_container_id(ok).is_ok(), "{ok:?}");
        }
        assert_eq!(
            validate_container_id("").unwrap_err().code,
            code::UNKNOWN_CONTAINER
        );
        for bad in ["-a", "_a", ".a", "a/b", "a b", "a:b", "ä", "a\0"] {
            assert_eq!(
                validate_container_id(bad).unwrap_err().code,
                code::INVALID_ENV,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn network_name_rules() {
        assert!(validate_network_name("labnet").is_ok());
        assert!(validate_network_name("lab-net.1_x").is_ok());
        for bad in ["", "-lab", "lab net", "lab/net", "ünet"] {
            assert_eq!(
                validate_network_name(bad).unwrap_err().code,
                code::INVALID_NETWORK_CONFIG,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn to_vars_round_trips_through_from_lookup() {
        let e = env_of(ADD).unwrap();
        let vars: HashMap<&str, Option<String>> = e.to_vars(Command::Del).into_iter().collect();
        assert_eq!(vars["CNI_COMMAND"].as_deref(), Some("DEL"));
        let back = Env::from_lookup(|k| vars.get(k).cloned().flatten()).unwrap();
        assert_eq!(
            back,
            Env {
                command: Command::Del,
                ..e.clone()
            }
        );
        let mut no_netns = e;
        no_netns.netns = None;
        let vars: HashMap<&str, Option<String>> =
            no_netns.to_vars(Command::Del).into_iter().collect();
        assert_eq!(vars["CNI_NETNS"], None);
    }
}
