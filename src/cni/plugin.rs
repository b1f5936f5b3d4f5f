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

use super::conf::{conf_version, version_at_least};
use super::env::{Command, Env, validate_network_name};
use super::error::{Error, code};
use super::result::CniResult;
use super::{CURRENT_VERSION, SUPPORTED_VERSIONS};

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
