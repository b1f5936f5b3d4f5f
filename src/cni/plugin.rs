//! The plugin skeleton every binary uses (spec 1.1.0, sections "Execution protocol", "CNI
//! operations" and "Delegated plugins (IPAM)").
//!
//! A binary implements [`Plugin`] and calls [`run`] from `main`; [`run`] reads the environment and
//! stdin, checks the protocol version, dispatches to the plugin and prints the result or the error
//! JSON. [`exec_plugin`] runs another plugin (typically the IPAM plugin named in `ipam.type`) the
//! way a runtime would.

use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};

use serde_json::{Value, json};

use super::conf::conf_version;
use super::env::{Command, Env, validate_network_name};
use super::error::{Error, code};
use super::result::CniResult;
use super::version::{CURRENT_VERSION, SUPPORTED_VERSIONS, version_at_least};

/// A CNI plugin: one method per operation (spec 1.1.0 "CNI operations").
///
/// Each method gets the parsed environment and the raw stdin (the network configuration, parse it
/// with [`super::parse_conf`]). [`run`] has already checked that stdin is JSON with a supported
/// `cniVersion` that allows the command, and that `name` is a valid network name.
pub trait Plugin {
    /// ADD: attach and return the result (rendered by [`run`] in the configuration's
    /// `cniVersion`).
    fn add(&self, env: &Env, stdin: &[u8]) -> Result<CniResult, Error>;
    /// DEL: detach; should succeed when already detached (spec "DEL").
    fn del(&self, env: &Env, stdin: &[u8]) -> Result<(), Error>;
    /// CHECK: verify the attachment (only called for cniVersion >= 0.4.0).
    fn check(&self, env: &Env, stdin: &[u8]) -> Result<(), Error>;
    /// STATUS: readiness (only called for cniVersion >= 1.1.0); errors should use codes 50/51.
    /// Default: ready.
    fn status(&self, env: &Env, stdin: &[u8]) -> Result<(), Error> {
        let _ = (env, stdin);
        Ok(())
    }
    /// GC: release what is not listed in `cni.dev/valid-attachments` (only called for
    /// cniVersion >= 1.1.0). Default: nothing to do.
    fn gc(&self, env: &Env, stdin: &[u8]) -> Result<(), Error> {
        let _ = (env, stdin);
        Ok(())
    }
}

/// The `cniVersion` used to print an error for this stdin: its own when it is JSON with a
/// supported `cniVersion`, else [`CURRENT_VERSION`].
pub fn reply_version(stdin: &[u8]) -> String {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| conf_version(&v).ok().map(str::to_owned))
        .unwrap_or_else(|| CURRENT_VERSION.to_owned())
}

fn panic_error(p: Box<dyn std::any::Any + Send>) -> Error {
    let what = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    Error::new(code::INTERNAL, "plugin panicked", what)
}

/// Runs one command against `plugin` and returns what goes to stdout on success (`None`: print
/// nothing). The testable core of [`run`].
///
/// - VERSION: `{"cniVersion": V, "supportedVersions": [...]}` where V is stdin's `cniVersion`
///   when supported (spec "VERSION"), else [`CURRENT_VERSION`]; stdin may be empty.
/// - Other commands, in order: stdin not JSON: code 6; `cniVersion` absent/unsupported: code 1;
///   CHECK below 0.4.0 or STATUS/GC below 1.1.0: code 1 (`config version does not allow X`);
///   `name` missing or invalid: code 7; then the plugin. ADD's result is rendered with
///   [`CniResult::to_version`] for stdin's `cniVersion`. A panic in the plugin becomes code 999.
pub fn dispatch(plugin: &impl Plugin, env: &Env, stdin: &[u8]) -> Result<Option<Value>, Error> {
    if env.command == Command::Version {
        return Ok(Some(json!({
            "cniVersion": reply_version(stdin),
            "supportedVersions": SUPPORTED_VERSIONS,
        })));
    }
    let conf: Value = serde_json::from_slice(stdin)
        .map_err(|e| Error::new(code::DECODING_FAILURE, "decoding failure", e.to_string()))?;
    let version = conf_version(&conf)?.to_owned();
    let min = match env.command {
        Command::Check => "0.4.0",
        Command::Status | Command::Gc => "1.1.0",
        _ => "0.0.0",
    };
    if !version_at_least(&version, min) {
        return Err(Error::new(
            code::INCOMPATIBLE_VERSION,
            format!("config version does not allow {}", env.command),
            format!(
                "{} needs cniVersion {min} or later, config is {version:?}",
                env.command
            ),
        ));
    }
    validate_network_name(conf.get("name").and_then(Value::as_str).unwrap_or_default())?;
    let out = catch_unwind(AssertUnwindSafe(|| match env.command {
        Command::Add => plugin.add(env, stdin).map(Some),
        Command::Del => plugin.del(env, stdin).map(|()| None),
        Command::Check => plugin.check(env, stdin).map(|()| None),
        Command::Status => plugin.status(env, stdin).map(|()| None),
        Command::Gc => plugin.gc(env, stdin).map(|()| None),
        Command::Version => Ok(None),
    }))
    .map_err(panic_error)??;
    match out {
        Some(result) => result.to_version(&version).map(Some),
        None => Ok(None),
    }
}

fn print_stdout(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
    let _ = out.flush();
}

/// The plugin binary's `main`: `fn main() -> ExitCode { cni::run(&MyPlugin, "about text") }`.
///
/// Reads the `CNI_*` environment ([`Env::from_env`]) and all of stdin, then [`dispatch`]es.
/// Success: the output (if any) on stdout, exit 0. Failure: the error JSON
/// ([`Error::to_json`], `cniVersion` from [`reply_version`]) on stdout, exit 1. An unset or empty
/// `CNI_COMMAND` prints `about` and the supported versions to stderr and exits 0 (as libcni's
/// skeleton). Never panics on any input.
pub fn run(plugin: &impl Plugin, about: &str) -> ExitCode {
    if std::env::var_os("CNI_COMMAND").is_none_or(|c| c.is_empty()) {
        let _ = writeln!(
            std::io::stderr(),
            "{about}\nCNI protocol versions supported: {}",
            SUPPORTED_VERSIONS.join(", ")
        );
        return ExitCode::SUCCESS;
    }
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut stdin) {
        let err = Error::new(code::IO_FAILURE, "error reading from stdin", e.to_string());
        print_stdout(&err.to_json(CURRENT_VERSION));
        return ExitCode::FAILURE;
    }
    let outcome = Env::from_env().and_then(|env| dispatch(plugin, &env, &stdin));
    match outcome {
        Ok(Some(v)) => {
            print_stdout(&serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string()));
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            print_stdout(&e.to_json(&reply_version(&stdin)));
            ExitCode::FAILURE
        }
    }
}

/// Finds the executable for plugin `plugin_type` in `path` (the `CNI_PATH` directories, in
/// order): the first `dir/plugin_type` that is a regular file (symlinks followed).
///
/// Errors: code 7 ([`code::INVALID_NETWORK_CONFIG`]): an empty name or one containing `/`
/// (`invalid plugin name`), or not found: `failed to find plugin "X" in path [/a /b]`
/// (libcni's wording).
pub fn find_in_path(plugin_type: &str, path: &[PathBuf]) -> Result<PathBuf, Error> {
    if plugin_type.is_empty()
        || plugin_type.contains('/')
        || plugin_type == "."
        || plugin_type == ".."
    {
        return Err(Error::new(
            code::INVALID_NETWORK_CONFIG,
            format!("invalid plugin name: {plugin_type:?}"),
            "",
        ));
    }
    for dir in path {
        let p = dir.join(plugin_type);
        if std::fs::metadata(&p).is_ok_and(|m| m.is_file()) {
            return Ok(p);
        }
    }
    let dirs: Vec<String> = path.iter().map(|p| p.display().to_string()).collect();
    Err(Error::new(
        code::INVALID_NETWORK_CONFIG,
        format!(
            "failed to find plugin {plugin_type:?} in path [{}]",
            dirs.join(" ")
        ),
        "",
    ))
}

/// Output of one child run: exit success, stdout, stderr.
fn run_child(
    exe: &Path,
    command: Command,
    stdin: &[u8],
    env: &Env,
) -> Result<std::process::Output, Error> {
    let io_err = |what: &str, e: std::io::Error| {
        Error::new(
            code::IO_FAILURE,
            format!("{what} {}", exe.display()),
            e.to_string(),
        )
    };
    let mut tries = 0;
    let mut child = loop {
        let mut cmd = std::process::Command::new(exe);
        for (k, v) in env.to_vars(command) {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match cmd.spawn() {
            Ok(c) => break c,
            // ETXTBSY: the executable was just written and another thread's fork still holds
            // it open for writing; libcni retries too.
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 5 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50 * tries));
            }
            Err(e) => return Err(io_err("failed to run plugin", e)),
        }
    };
    let writer = child.stdin.take().map(|mut pipe| {
        let data = stdin.to_vec();
        // A separate thread, so a child that writes a lot before reading cannot deadlock us.
        // Write errors (EPIPE when the child does not read stdin) are ignored.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let out = child
        .wait_with_output()
        .map_err(|e| io_err("failed to wait for plugin", e))?;
    if let Some(w) = writer {
        let _ = w.join();
    }
    Ok(out)
}

fn lossy_trimmed(b: &[u8]) -> String {
    const MAX: usize = 4096;
    let s = String::from_utf8_lossy(&b[..b.len().min(MAX)]);
    s.trim().to_owned()
}

/// Runs another plugin, as in spec 1.1.0 "Delegated plugins (IPAM)".
///
/// Finds `plugin_type` in `env.path` ([`find_in_path`]), runs it with `stdin` and this process's
/// environment, with the `CNI_*` variables set from `env` (absent ones removed) and `CNI_COMMAND`
/// set to `command`, and reads its stdout:
/// - exit 0, ADD: the result, any supported version ([`CniResult::from_value`]) => `Some`;
///   stdout not JSON: code 6; an error JSON on stdout despite exit 0: that error;
/// - exit 0, any other command: `None` (stdout ignored);
/// - non-zero exit: the error JSON it printed (its code, msg, details); without one, code 5
///   ([`code::IO_FAILURE`]) with `msg` `plugin X failed (exit status ...)` and its stderr (or
///   unparsable stdout) in `details`.
///
/// Errors before the run: not found: code 7; cannot be started: code 5. Blocks until the plugin
/// exits.
pub fn exec_plugin(
    plugin_type: &str,
    command: Command,
    stdin: &[u8],
    env: &Env,
) -> Result<Option<CniResult>, Error> {
    let exe = find_in_path(plugin_type, &env.path)?;
    let out = run_child(&exe, command, stdin, env)?;
    let parsed: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    let printed_error = parsed.as_ref().and_then(Error::from_value);
    if !out.status.success() {
        if let Some(e) = printed_error {
            return Err(e);
        }
        let details = if out.stdout.iter().all(u8::is_ascii_whitespace) {
            lossy_trimmed(&out.stderr)
        } else {
            format!(
                "stdout: {}; stderr: {}",
                lossy_trimmed(&out.stdout),
                lossy_trimmed(&out.stderr)
            )
        };
        return Err(Error::new(
            code::IO_FAILURE,
            format!("plugin {plugin_type} failed ({})", out.status),
            details,
        ));
    }
    if command != Command::Add {
        return Ok(None);
    }
    if let Some(e) = printed_error {
        return Err(e);
    }
    let Some(v) = parsed else {
        return Err(Error::new(
            code::DECODING_FAILURE,
            format!("failed to decode the result of plugin {plugin_type}"),
            lossy_trimmed(&out.stdout),
        ));
    };
    CniResult::from_value(&v).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::result::IpConfig;
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    /// Records the commands it got; ADD fails with `{"fail": code}` or panics with
    /// `{"panic": true}` in the configuration.
    #[derive(Default)]
    struct Fake {
        calls: RefCell<Vec<Command>>,
    }

    impl Fake {
        fn common(&self, cmd: Command, stdin: &[u8]) -> Result<(), Error> {
            self.calls.borrow_mut().push(cmd);
            let v: Value = serde_json::from_slice(stdin).unwrap_or_default();
            if v.get("panic").is_some() {
                panic!("fake plugin panics");
            }
            match v.get("fail").and_then(Value::as_u64) {
                Some(c) => Err(Error::new(c as u32, "fake failure", "as asked")),
                None => Ok(()),
            }
        }
    }

    impl Plugin for Fake {
        fn add(&self, _env: &Env, stdin: &[u8]) -> Result<CniResult, Error> {
            self.common(Command::Add, stdin)?;
            Ok(CniResult {
                ips: vec![IpConfig {
                    address: "198.18.0.7/24".parse().unwrap(),
                    gateway: Some("198.18.0.1".parse().unwrap()),
                    interface: None,
                }],
                ..CniResult::default()
            })
        }
        fn del(&self, _env: &Env, stdin: &[u8]) -> Result<(), Error> {
            self.common(Command::Del, stdin)
        }
        fn check(&self, _env: &Env, stdin: &[u8]) -> Result<(), Error> {
            self.common(Command::Check, stdin)
        }
        fn status(&self, _env: &Env, stdin: &[u8]) -> Result<(), Error> {
            self.common(Command::Status, stdin)
        }
    }

    fn env(command: Command) -> Env {
        Env {
            command,
            container_id: Some("cid-1".into()),
            netns: Some("/run/netns/c1".into()),
            ifname: Some("eth0".into()),
            args: vec![("K8S_POD_NAME".into(), "web-0".into())],
            path: vec![],
        }
    }

    fn conf(version: &str) -> Vec<u8> {
        format!(r#"{{"cniVersion": "{version}", "name": "labnet", "type": "fake"}}"#).into_bytes()
    }

    #[test]
    fn version_reports_supported_versions() {
        let p = Fake::default();
        let out = dispatch(&p, &env(Command::Version), &conf("0.4.0"))
            .unwrap()
            .unwrap();
        assert_eq!(
            out,
            json!({"cniVersion": "0.4.0",
                   "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
        );
        // Empty or odd stdin still answers, with the current version.
        for stdin in [&b""[..], b"garbage", br#"{"cniVersion": "0.2.0"}"#] {
            let out = dispatch(&p, &env(Command::Version), stdin)
                .unwrap()
                .unwrap();
            assert_eq!(out["cniVersion"], CURRENT_VERSION);
        }
        assert!(p.calls.borrow().is_empty());
    }

    #[test]
    fn add_result_is_rendered_in_the_conf_version() {
        let p = Fake::default();
        let out = dispatch(&p, &env(Command::Add), &conf("0.3.1"))
            .unwrap()
            .unwrap();
        assert_eq!(
            out,
            json!({"cniVersion": "0.3.1",
                   "ips": [{"version": "4", "address": "198.18.0.7/24", "gateway": "198.18.0.1"}]})
        );
        let out = dispatch(&p, &env(Command::Add), &conf("1.0.0"))
            .unwrap()
            .unwrap();
        assert_eq!(
            out,
            json!({"cniVersion": "1.0.0",
                   "ips": [{"address": "198.18.0.7/24", "gateway": "198.18.0.1"}]})
        );
        assert_eq!(*p.calls.borrow(), [Command::Add, Command::Add]);
    }

    #[test]
    fn del_and_check_print_nothing() {
        let p = Fake::default();
        assert_eq!(
            dispatch(&p, &env(Command::Del), &conf("0.3.0")).unwrap(),
            None
        );
        assert_eq!(
            dispatch(&p, &env(Command::Check), &conf("0.4.0")).unwrap(),
            None
        );
        assert_eq!(
            dispatch(&p, &env(Command::Gc), &conf("1.1.0")).unwrap(),
            None
        );
        assert_eq!(*p.calls.borrow(), [Command::Del, Command::Check]); // gc: default
    }

    #[test]
    fn stdin_is_checked_before_the_plugin_runs() {
        let p = Fake::default();
        let cases: &[(Command, &[u8], u32)] = &[
            (Command::Add, b"garbage", code::DECODING_FAILURE),
            (Command::Add, b"", code::DECODING_FAILURE),
            (
                Command::Add,
                br#"{"cniVersion": "0.2.0", "name": "n", "type": "t"}"#,
                code::INCOMPATIBLE_VERSION,
            ),
            (
                Command::Del,
                br#"{"name": "n", "type": "t"}"#,
                code::INCOMPATIBLE_VERSION,
            ),
            (
                Command::Add,
                br#"{"cniVersion": ["1.0.0"], "name": "n"}"#,
                code::INVALID_NETWORK_CONFIG,
            ),
            (Command::Check, &conf("0.3.1"), code::INCOMPATIBLE_VERSION),
            (Command::Status, &conf("1.0.0"), code::INCOMPATIBLE_VERSION),
            (Command::Gc, &conf("0.4.0"), code::INCOMPATIBLE_VERSION),
            (
                Command::Add,
                br#"{"cniVersion": "1.0.0", "type": "t"}"#,
                code::INVALID_NETWORK_CONFIG,
            ),
            (
                Command::Add,
                br#"{"cniVersion": "1.0.0", "name": "bad name", "type": "t"}"#,
                code::INVALID_NETWORK_CONFIG,
            ),
        ];
        for (cmd, stdin, want) in cases {
            let e = dispatch(&p, &env(*cmd), stdin).unwrap_err();
            assert_eq!(e.code, *want, "{cmd} {}", String::from_utf8_lossy(stdin));
        }
        assert!(p.calls.borrow().is_empty());
        // STATUS is allowed from 1.1.0 on and reaches the plugin.
        assert_eq!(
            dispatch(&p, &env(Command::Status), &conf("1.1.0")).unwrap(),
            None
        );
        assert_eq!(*p.calls.borrow(), [Command::Status]);
    }

    #[test]
    fn plugin_errors_and_panics_become_cni_errors() {
        let p = Fake::default();
        let stdin = br#"{"cniVersion": "1.1.0", "name": "n", "type": "t", "fail": 11}"#;
        let e = dispatch(&p, &env(Command::Add), stdin).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (code::TRY_AGAIN_LATER, "fake failure")
        );
        let stdin = br#"{"cniVersion": "1.1.0", "name": "n", "type": "t", "panic": true}"#;
        let e = dispatch(&p, &env(Command::Del), stdin).unwrap_err();
        assert_eq!(e.code, code::INTERNAL);
        assert_eq!(e.details, "fake plugin panics");
    }

    #[test]
    fn reply_version_falls_back_to_current() {
        assert_eq!(reply_version(&conf("0.4.0")), "0.4.0");
        assert_eq!(reply_version(b"nope"), CURRENT_VERSION);
        assert_eq!(reply_version(&conf("0.2.0")), CURRENT_VERSION);
    }

    // ---- run(): the test binary re-executes itself with CNI_* set, into `run_child`. ----

    const CHILD_MARK: &str = "CNI_DHCP_TEST_RUN_CHILD";

    #[test]
    fn run_child() {
        if std::env::var_os(CHILD_MARK).is_none() {
            return; // Only meaningful as the child of `run_*` tests below.
        }
        let code = run(&Fake::default(), "fake CNI plugin for tests");
        std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 });
    }

    /// Runs `run_child` with `vars` and `stdin`; returns (exit code, our stdout, stderr).
    fn run_as_child(vars: &[(&str, &str)], stdin: &[u8]) -> (i32, String, String) {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = std::process::Command::new(exe);
        cmd.args([
            "--exact",
            "cni::plugin::tests::run_child",
            "--nocapture",
            "--test-threads=1",
        ]);
        for k in [
            "CNI_COMMAND",
            "CNI_CONTAINERID",
            "CNI_NETNS",
            "CNI_IFNAME",
            "CNI_ARGS",
            "CNI_PATH",
        ] {
            cmd.env_remove(k);
        }
        cmd.env(CHILD_MARK, "1").envs(vars.iter().copied());
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        // The test harness prints "running 1 test" before the child's own output.
        let ours = stdout
            .find('{')
            .map(|i| stdout[i..].to_owned())
            .unwrap_or_default();
        (
            out.status.code().unwrap_or(-1),
            ours,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    const ADD_VARS: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "cid-1"),
        ("CNI_NETNS", "/run/netns/c1"),
        ("CNI_IFNAME", "eth0"),
    ];

    #[test]
    fn run_prints_result_or_error_json_with_exit_codes() {
        let (rc, out, _) = run_as_child(ADD_VARS, &conf("0.4.0"));
        assert_eq!(rc, 0);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(v["ips"][0]["version"], "4");

        let (rc, out, _) = run_as_child(ADD_VARS, b"{not json");
        assert_eq!(rc, 1);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (v["code"].as_u64(), v["cniVersion"].as_str()),
            (Some(6), Some(CURRENT_VERSION))
        );

        // Missing CNI_IFNAME: code 4, reported in the stdin's version.
        let (rc, out, _) = run_as_child(&ADD_VARS[..3], &conf("1.0.0"));
        assert_eq!(rc, 1);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (v["code"].as_u64(), v["cniVersion"].as_str()),
            (Some(4), Some("1.0.0"))
        );

        let (rc, out, _) = run_as_child(&[("CNI_COMMAND", "VERSION")], b"");
        assert_eq!(rc, 0);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["supportedVersions"].as_array().unwrap().len(),
            SUPPORTED_VERSIONS.len()
        );
    }

    #[test]
    fn run_without_command_prints_about_to_stderr() {
        let (rc, out, err) = run_as_child(&[], b"");
        assert_eq!(rc, 0);
        assert_eq!(out, "");
        assert!(err.contains("fake CNI plugin for tests"), "{err}");
        assert!(
            err.contains("CNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"),
            "{err}"
        );
    }

    // ---- exec_plugin against small shell scripts. ----

    fn script(dir: &Path, name: &str, body: &str) {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn env_in(dir: &Path) -> Env {
        Env {
            path: vec!["/nonexistent-cni-dir".into(), dir.to_path_buf()],
            ..env(Command::Add)
        }
    }

    /// Records stdin and the CNI_* environment next to itself, per command; prints a 0.4.0
    /// result for ADD (as the reference host-local would).
    const RECORDER: &str = r#"d=$(dirname "$0")
cat > "$d/stdin.$CNI_COMMAND"
env | grep '^CNI_' | sort > "$d/env.$CNI_COMMAND"
if [ "$CNI_COMMAND" = ADD ]; then
  printf '%s' '{"cniVersion":"0.4.0","ips":[{"version":"4","address":"198.18.0.7/24","gateway":"198.18.0.1"}],"dns":{}}'
fi"#;

    #[test]
    fn exec_plugin_add_returns_the_delegate_result() {
        let dir = tempfile::tempdir().unwrap();
        script(dir.path(), "rec", RECORDER);
        let stdin = conf("0.4.0");
        let r = exec_plugin("rec", Command::Add, &stdin, &env_in(dir.path()))
            .unwrap()
            .unwrap();
        assert_eq!(r.cni_version, "0.4.0");
        assert_eq!(r.ips.len(), 1);
        assert_eq!(r.ips[0].address.to_string(), "198.18.0.7/24");
        assert_eq!(r.ips[0].gateway, Some("198.18.0.1".parse().unwrap()));
        assert_eq!(std::fs::read(dir.path().join("stdin.ADD")).unwrap(), stdin);
        let env_seen = std::fs::read_to_string(dir.path().join("env.ADD")).unwrap();
        let seen: HashMap<&str, &str> =
            env_seen.lines().filter_map(|l| l.split_once('=')).collect();
        assert_eq!(seen["CNI_COMMAND"], "ADD");
        assert_eq!(seen["CNI_CONTAINERID"], "cid-1");
        assert_eq!(seen["CNI_NETNS"], "/run/netns/c1");
        assert_eq!(seen["CNI_IFNAME"], "eth0");
        assert_eq!(seen["CNI_ARGS"], "K8S_POD_NAME=web-0");
        assert_eq!(
            seen["CNI_PATH"],
            format!("/nonexistent-cni-dir:{}", dir.path().display())
        );
    }

    #[test]
    fn exec_plugin_del_sets_the_command_and_returns_none() {
        let dir = tempfile::tempdir().unwrap();
        script(dir.path(), "rec", RECORDER);
        let mut e = env_in(dir.path());
        e.netns = None; // DEL without a netns: the variable is removed, not passed empty.
        let out = exec_plugin("rec", Command::Del, &conf("1.0.0"), &e).unwrap();
        assert_eq!(out, None);
        let seen = std::fs::read_to_string(dir.path().join("env.DEL")).unwrap();
        assert!(seen.contains("CNI_COMMAND=DEL\n"), "{seen}");
        assert!(!seen.contains("CNI_NETNS"), "{seen}");
    }

    #[test]
    fn exec_plugin_propagates_the_delegate_error() {
        let dir = tempfile::tempdir().unwrap();
        script(
            dir.path(),
            "failer",
            r#"cat >/dev/null
printf '%s' '{"cniVersion":"1.0.0","code":11,"msg":"no lease yet","details":"server silent"}'
exit 1"#,
        );
        let e =
            exec_plugin("failer", Command::Add, &conf("1.0.0"), &env_in(dir.path())).unwrap_err();
        assert_eq!(
            e,
            Error::new(code::TRY_AGAIN_LATER, "no lease yet", "server silent")
        );
        // The same error with exit 0 is still an error for ADD.
        script(
            dir.path(),
            "liar",
            r#"printf '%s' '{"code":7,"msg":"bad"}'"#,
        );
        let e = exec_plugin("liar", Command::Add, &conf("1.0.0"), &env_in(dir.path())).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (7, "bad"));
    }

    #[test]
    fn exec_plugin_failure_without_json_carries_stderr() {
        let dir = tempfile::tempdir().unwrap();
        script(dir.path(), "crash", "echo 'segfault or so' >&2\nexit 3");
        let e =
            exec_plugin("crash", Command::Del, &conf("1.0.0"), &env_in(dir.path())).unwrap_err();
        assert_eq!(e.code, code::IO_FAILURE);
        assert!(e.msg.contains("crash") && e.msg.contains('3'), "{}", e.msg);
        assert_eq!(e.details, "segfault or so");
        script(dir.path(), "garbage", "echo hello");
        let e =
            exec_plugin("garbage", Command::Add, &conf("1.0.0"), &env_in(dir.path())).unwrap_err();
        assert_eq!(e.code, code::DECODING_FAILURE);
        assert_eq!(e.details, "hello");
        script(
            dir.path(),
            "old",
            r#"echo '{"cniVersion":"0.2.0","ip4":{"ip":"198.18.0.7/24"}}'"#,
        );
        let e = exec_plugin("old", Command::Add, &conf("1.0.0"), &env_in(dir.path())).unwrap_err();
        assert_eq!(e.code, code::INCOMPATIBLE_VERSION);
    }

    #[test]
    fn exec_plugin_neither_deadlocks_nor_dies_on_big_pipes() {
        let dir = tempfile::tempdir().unwrap();
        // Writes 256 KiB before reading stdin (more than a pipe holds), then a result.
        script(
            dir.path(),
            "chatty",
            r#"head -c 262144 /dev/zero | tr '\0' ' '
cat >/dev/null
echo '{"cniVersion":"1.1.0","ips":[{"address":"198.18.0.8/24"}]}'"#,
        );
        let mut big = conf("1.1.0");
        big.extend(std::iter::repeat_n(b' ', 1 << 20));
        let r = exec_plugin("chatty", Command::Add, &big, &env_in(dir.path()))
            .unwrap()
            .unwrap();
        assert_eq!(r.ips[0].address.to_string(), "198.18.0.8/24");
        // A plugin that never reads its stdin (EPIPE on our side) still works.
        script(dir.path(), "deaf", r#"echo '{"cniVersion":"1.1.0"}'"#);
        let r = exec_plugin("deaf", Command::Add, &big, &env_in(dir.path()))
            .unwrap()
            .unwrap();
        assert!(r.ips.is_empty());
    }

    /// Interop with the reference Go host-local (Debian containernetworking-plugins,
    /// docs/design.md, *The reference plugin*) when it is installed; its allocations go to a
    /// temporary dataDir.
    #[test]
    fn exec_plugin_with_reference_host_local() {
        let dir = Path::new("/usr/lib/cni");
        if !dir.join("host-local").is_file() {
            eprintln!("skipped: /usr/lib/cni/host-local not installed");
            return;
        }
        let data = tempfile::tempdir().unwrap();
        for version in ["0.3.1", "1.0.0"] {
            let stdin = json!({
                "cniVersion": version, "name": "labnet", "type": "ipvlan",
                "ipam": {
                    "type": "host-local", "dataDir": data.path(),
                    "ranges": [[{"subnet": "198.18.0.0/24", "gateway": "198.18.0.1"}]],
                    "routes": [{"dst": "0.0.0.0/0"}]
                }
            })
            .to_string();
            let e = Env {
                path: vec![dir.to_path_buf()],
                container_id: Some(format!("cid-{version}")),
                // As runtimes pass it, so host-local tolerates K8S_POD_NAME.
                args: vec![
                    ("IgnoreUnknown".into(), "1".into()),
                    ("K8S_POD_NAME".into(), "web-0".into()),
                ],
                ..env(Command::Add)
            };
            let r = exec_plugin("host-local", Command::Add, stdin.as_bytes(), &e)
                .unwrap()
                .unwrap();
            assert_eq!(r.cni_version, version);
            assert_eq!(r.ips.len(), 1);
            assert!(
                r.ips[0].address.to_string().starts_with("198.18.0."),
                "{r:?}"
            );
            assert_eq!(r.ips[0].address.prefix_len(), 24);
            assert_eq!(r.ips[0].gateway, Some("198.18.0.1".parse().unwrap()));
            assert_eq!(r.routes[0].dst.to_string(), "0.0.0.0/0");
            let del = exec_plugin("host-local", Command::Del, stdin.as_bytes(), &e).unwrap();
            assert_eq!(del, None);
        }
        // Its errors come back with their code: 1.1.0 is newer than host-local 1.1.1 knows.
        let stdin = br#"{"cniVersion": "1.1.0", "name": "labnet", "type": "host-local"}"#;
        let e = Env {
            path: vec![dir.to_path_buf()],
            ..env(Command::Add)
        };
        let err = exec_plugin("host-local", Command::Add, stdin, &e).unwrap_err();
        assert_eq!(err.code, code::INCOMPATIBLE_VERSION, "{err:?}");
    }

    #[test]
    fn find_in_path_rules() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        script(b.path(), "p", "true");
        std::fs::create_dir(a.path().join("p")).unwrap(); // a directory does not count
        let path = vec![a.path().to_path_buf(), b.path().to_path_buf()];
        assert_eq!(find_in_path("p", &path).unwrap(), b.path().join("p"));
        script(a.path(), "q", "true");
        script(b.path(), "q", "true");
        assert_eq!(find_in_path("q", &path).unwrap(), a.path().join("q"));
        let e = find_in_path("host-local", &path).unwrap_err();
        assert_eq!(e.code, code::INVALID_NETWORK_CONFIG);
        assert_eq!(
            e.msg,
            format!(
                "failed to find plugin \"host-local\" in path [{} {}]",
                a.path().display(),
                b.path().display()
            )
        );
        for bad in ["", "../p", "/bin/sh", ".", ".."] {
            let e = find_in_path(bad, &path).unwrap_err();
            assert!(
                e.msg.starts_with("invalid plugin name"),
                "{bad:?}: {}",
                e.msg
            );
        }
    }
}
