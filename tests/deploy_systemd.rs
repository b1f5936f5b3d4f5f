//! The systemd units in `deploy/systemd/`: they parse cleanly for systemd itself
//! (`systemd-analyze verify`), say what the deployment needs, and the daemon really serves on a
//! socket handed over by socket activation (`systemd-socket-activate`, which sets `LISTEN_FDS`
//! and `LISTEN_PID` exactly as systemd does and execs the daemon with the socket as fd 3).
//!
//! Needs the `systemd` Debian package for its tools (not a running systemd: `verify` loads the
//! units in a private test manager, `systemd-socket-activate` is a plain program). No root
//! needed. Outside CI a missing tool skips with a message; under CI=true it fails.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const UNITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/systemd");
const DHCP: &str = env!("CARGO_BIN_EXE_dhcp");
const DHCP_LEASES: &str = env!("CARGO_BIN_EXE_dhcp-leases");
/// ExecStart as shipped: the installed plugin binary, the default state directory made explicit.
const EXEC_START: &str = "/opt/cni/bin/dhcp daemon -state-dir /var/lib/cni/dhcp";

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/bin", "/usr/sbin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// The tool's path, or `None` after printing why the test is skipped. Under CI=true a missing
/// tool is a failure.
fn tool(test: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = which(name) {
        return Some(p);
    }
    let why = format!("`{name}` not found (apt-get install systemd; scripts/deps.sh does)");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why}");
    }
    eprintln!("SKIP {test}: {why}");
    None
}

/// `[Section] Key=Value` lines of a unit file, comments and blank lines dropped, keyed by
/// "Section.Key"; a key given twice keeps every value.
fn unit_keys(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a Key=Value line: {line:?}"));
        keys.entry(format!("{section}.{}", k.trim()))
            .or_default()
            .push(v.trim().to_string());
    }
    keys
}

fn read_unit(name: &str) -> String {
    std::fs::read_to_string(Path::new(UNITS).join(name))
        .unwrap_or_else(|e| panic!("{UNITS}/{name}: {e}"))
}

fn one<'a>(keys: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    match keys.get(key).map(Vec::as_slice) {
        Some([v]) => v,
        other => panic!("{key}: expected exactly one value, got {other:?}"),
    }
}

/// Copies both units into `dir`, with ExecStart pointing at the cargo-built `dhcp` (verify
/// refuses a unit whose binary does not exist) and `extra` appended to the service.
fn stage_units(dir: &Path, extra_service_line: &str) -> (PathBuf, PathBuf) {
    let socket = dir.join("cni-dhcp.socket");
    let service = dir.join("cni-dhcp.service");
    std::fs::write(&socket, read_unit("cni-dhcp.socket")).unwrap();
    let text = read_unit("cni-dhcp.service");
    assert!(
        text.contains(&format!("ExecStart={EXEC_START}\n")),
        "the shipped ExecStart changed; update EXEC_START"
    );
    let mut text = text.replace(
        "ExecStart=/opt/cni/bin/dhcp ",
        &format!("ExecStart={DHCP} "),
    );
    text = text.replace("[Install]", &format!("{extra_service_line}\n[Install]"));
    std::fs::write(&service, text).unwrap();
    (socket, service)
}

/// `systemd-analyze verify` on the two units; returns its combined output lines that concern
/// them (verify exits 0 on unknown keys and bad values, and only warns: the warnings are what
/// matters).
fn verify(analyze: &Path, socket: &Path, service: &Path) -> (Output, Vec<String>) {
    let out = Command::new(analyze)
        .args(["verify", "--man=no", "--generators=no"])
        .arg(socket)
        .arg(service)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("run systemd-analyze");
    let dir = socket.parent().unwrap().to_string_lossy().into_owned();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = text
        .lines()
        .filter(|l| l.contains(&dir) || l.contains("cni-dhcp"))
        .map(str::to_string)
        .collect();
    (out, ours)
}

#[test]
fn systemd_analyze_verify_accepts_both_units_without_warnings() {
    let Some(analyze) = tool("systemd_analyze_verify", "systemd-analyze") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (socket, service) = stage_units(dir.path(), "");
    let (out, ours) = verify(&analyze, &socket, &service);
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The check has teeth: a bad value in the service is reported (as a warning, exit 0).
    let bad = tempfile::tempdir().unwrap();
    let (socket, service) = stage_units(bad.path(), "[Service]\nRestart=sometimes");
    let (_, ours) = verify(&analyze, &socket, &service);
    assert!(
        ours.iter().any(|l| l.contains("sometimes")),
        "verify did not report an invalid Restart= value: {ours:?}"
    );
}

#[test]
fn units_say_what_the_deployment_needs() {
    let socket = unit_keys(&read_unit("cni-dhcp.socket"));
    assert_eq!(one(&socket, "Socket.ListenStream"), "/run/cni/dhcp.sock");
    assert_eq!(one(&socket, "Socket.SocketMode"), "0600");
    assert_eq!(one(&socket, "Socket.RemoveOnStop"), "true");
    assert_eq!(one(&socket, "Install.WantedBy"), "sockets.target");

    let service = unit_keys(&read_unit("cni-dhcp.service"));
    assert_eq!(one(&service, "Service.ExecStart"), EXEC_START);
    assert_eq!(one(&service, "Service.StateDirectory"), "cni/dhcp");
    assert_eq!(one(&service, "Service.Restart"), "on-failure");
    assert_eq!(one(&service, "Service.KillSignal"), "SIGTERM");
    assert_eq!(one(&service, "Unit.Requires"), "cni-dhcp.socket");
    // Leases are kept across restarts: the daemon must not be told to release them on exit.
    assert!(!EXEC_START.contains("release-on-exit"));
    // The capabilities the daemon cannot work without stay in the bounding set.
    let caps: Vec<&str> = one(&service, "Service.CapabilityBoundingSet")
        .split_whitespace()
        .collect();
    for cap in ["CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_NET_RAW"] {
        assert!(caps.contains(&cap), "{cap} missing from {caps:?}");
    }
    let families: Vec<&str> = one(&service, "Service.RestrictAddressFamilies")
        .split_whitespace()
        .collect();
    for family in ["AF_UNIX", "AF_NETLINK", "AF_PACKET", "AF_INET"] {
        assert!(families.contains(&family), "{family} missing");
    }
    let namespaces = one(&service, "Service.RestrictNamespaces");
    assert!(namespaces.split_whitespace().any(|n| n == "net"));
    // Options that would break setns or /proc/PID/ns access must stay out.
    for key in [
        "PrivateNetwork",
        "PrivateUsers",
        "ProtectProc",
        "ProcSubset",
    ] {
        assert!(
            !service.contains_key(&format!("Service.{key}")),
            "{key} breaks the daemon"
        );
    }
}

#[test]
fn service_exec_start_flags_are_accepted_by_dhcp_daemon() {
    let help = Command::new(DHCP)
        .args(["daemon", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in EXEC_START.split_whitespace().filter(|a| a.starts_with('-')) {
        let long = format!("-{flag} ");
        assert!(help.contains(&long), "`dhcp daemon` has no {flag}: {help}");
    }
}

/// Kills the child on drop (a failing assertion must not leave a daemon behind).
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `dhcp-leases --socket <path> --json`, with a deadline.
fn leases_json(socket: &Path) -> String {
    let mut child = Command::new(DHCP_LEASES)
        .arg("--socket")
        .arg(socket)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("dhcp-leases got no answer in 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "dhcp-leases: {status}: {err}");
    out
}

#[test]
fn daemon_serves_on_a_socket_activated_listener() {
    let Some(activate) = tool("socket_activation", "systemd-socket-activate") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("dhcp.sock");
    // The daemon's own -socketpath: it must never be created when a socket is passed.
    let unused = dir.path().join("not-used.sock");
    let state = dir.path().join("state");
    let log = std::fs::File::create(dir.path().join("activate.log")).unwrap();
    // Without --accept, systemd-socket-activate listens, waits for the first connection, then
    // execs the daemon in its own process with the listener as fd 3, LISTEN_FDS=1 and
    // LISTEN_PID=its pid: what systemd does for cni-dhcp.socket.
    let child = Command::new(activate)
        .arg("--listen")
        .arg(&socket)
        .arg(DHCP)
        .args(["daemon", "-socketpath"])
        .arg(&unused)
        .arg("-state-dir")
        .arg(&state)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut child = Reap(child);
    wait_for("the activation socket", Duration::from_secs(10), || {
        socket.exists()
    });
    let comm = || std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_eq!(
        comm().trim(),
        "systemd-socket-",
        "daemon started before any connection"
    );

    // The first connection activates the daemon; it waits in the backlog meanwhile.
    assert_eq!(leases_json(&socket).trim(), "[]");
    assert_eq!(
        comm().trim(),
        "dhcp",
        "the daemon did not replace the activator"
    );
    // Still the same listener for later connections.
    assert_eq!(leases_json(&socket).trim(), "[]");
    assert!(
        !unused.exists(),
        "the daemon bound its own -socketpath instead of using fd 3"
    );
    assert!(state.is_dir(), "the daemon did not create -state-dir");

    // SIGTERM (the unit's KillSignal) ends it cleanly.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "daemon ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = std::fs::read_to_string(dir.path().join("activate.log")).unwrap();
    assert!(status.success(), "daemon exit {status}; log:\n{log}");
}
