//! Running our binaries in tests: `dhcp daemon` as a child process, CNI plugin invocations
//! with the CNI_* environment, and the daemon's lease list.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Lab;

pub const DHCP: &str = env!("CARGO_BIN_EXE_dhcp");
pub const LEASES: &str = env!("CARGO_BIN_EXE_dhcp-leases");

/// A `dhcp daemon` on a socket in the lab's temp dir; killed on drop.
pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
}

impl Daemon {
    pub fn start(dir: &Path, extra: &[&str]) -> Daemon {
        let socket = dir.join("dhcp.sock");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("daemon.log"))
            .unwrap();
        let child = Command::new(DHCP)
            .arg("daemon")
            .arg("-socketpath")
            .arg(&socket)
            .arg("-state-dir")
            .arg(dir.join("state"))
            .args(extra)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dhcp daemon");
        wait_until_answering(&socket, Probe::Ours, Duration::from_secs(10))
            .unwrap_or_else(|why| panic!("{why}"));
        Daemon { child, socket }
    }

    pub fn threads(&self) -> u32 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// What each of the daemon's descriptors points at (`/proc/PID/fd` links), for failure
    /// messages.
    pub fn fd_targets(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        let target = std::fs::read_link(e.path()).unwrap_or_default();
                        format!("{}->{}", e.file_name().to_string_lossy(), target.display())
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap()
            .count()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What proves that a daemon on a socket is serving, for [`wait_until_answering`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Ours: `dhcp-leases --json` gets the lease list (a LIST request and its response).
    Ours,
    /// The reference Go daemon: Go's net/rpc over HTTP answers `CONNECT /_goRPC_ HTTP/1.0`
    /// with `HTTP/1.0 200 Connected to Go RPC`, as its plugin's `rpc.DialHTTP` expects.
    Reference,
}

/// Waits until the daemon on `socket` answers a request, not merely accepts connections: the
/// socket is bound before the daemon has opened its state directory and resumed its leases, and
/// a test (or benchmark) that counts the daemon's descriptors or times its first ADD must start
/// once all of that is done. Polls every 10 ms.
///
/// Errors: no answer within `within`.
pub fn wait_until_answering(socket: &Path, probe: Probe, within: Duration) -> Result<(), String> {
    let deadline = Instant::now()
        .checked_add(within)
        .expect("deadline in range");
    loop {
        let answered = match probe {
            Probe::Ours => Command::new(LEASES)
                .arg("--socket")
                .arg(socket)
                .arg("--json")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            Probe::Reference => reference_answers(socket),
        };
        if answered {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the daemon on {} never answered within {within:?}",
                socket.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One `CONNECT /_goRPC_` exchange with a Go net/rpc HTTP server on `socket`.
fn reference_answers(socket: &Path) -> bool {
    use std::io::{BufRead, BufReader};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"CONNECT /_goRPC_ HTTP/1.0\n\n").is_err() {
        return false;
    }
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("HTTP/1.0 200")
}

/// `dhcp-leases --json` against the daemon: the records as JSON.
pub fn lease_records(socket: &Path) -> Value {
    leases_json(socket, &["--json"])
}

/// `dhcp-leases --socket SOCKET ARGS...` (a `--json` form), its output parsed.
pub fn leases_json(socket: &Path, args: &[&str]) -> Value {
    let out = Command::new(LEASES)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn conf(socket: &Path, ipam_extra: Value) -> Value {
    let mut ipam = json!({"type": "dhcp", "daemonSocketPath": socket});
    if let (Some(m), Some(extra)) = (ipam.as_object_mut(), ipam_extra.as_object()) {
        m.extend(extra.clone());
    }
    json!({"cniVersion": "1.1.0", "name": "labnet", "type": "macvlan", "ipam": ipam})
}

/// Runs a plugin binary with the CNI environment and `stdin`; returns (exit ok, stdout JSON).
pub fn cni(
    program: &str,
    command: &str,
    container_id: &str,
    netns: &Path,
    ifname: &str,
    stdin: &Value,
) -> (bool, Value) {
    cni_in(
        Command::new(program),
        command,
        container_id,
        netns,
        ifname,
        stdin,
    )
}

pub fn cni_in(
    mut cmd: Command,
    command: &str,
    container_id: &str,
    netns: &Path,
    ifname: &str,
    stdin: &Value,
) -> (bool, Value) {
    let bin_dir = Path::new(DHCP).parent().unwrap();
    let mut child = cmd
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container_id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", format!("{}:/usr/lib/cni", bin_dir.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = if stdout.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "{program:?} {command}: stdout is not JSON ({e}): {stdout}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr),
                program = cmd.get_program()
            )
        })
    };
    (out.status.success(), value)
}

/// dnsmasq writes client IDs as colon-separated hex.
pub fn client_id_hex(container_id: &str, network: &str, ifname: &str) -> String {
    std::iter::once(0u8)
        .chain(format!("{container_id}/{network}/{ifname}").bytes())
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Daemon {
    /// SIGTERM and wait for the exit (a clean stop).
    pub fn terminate(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "daemon did not exit on SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// `n` macvlan containers with a lease each, the address put on the interface as a main plugin
/// would (unicast replies to RENEWING need ARP for it). Returns (netns, address/prefix).
pub fn add_many(lab: &Lab, socket: &Path, n: usize, prefix: &str) -> Vec<(PathBuf, String)> {
    let config = conf(socket, json!({}));
    let containers: Vec<PathBuf> = (0..n)
        .map(|i| {
            let ns = lab.container(&format!("{prefix}{i}"));
            lab.add_macvlan(&ns, "eth0");
            ns
        })
        .collect();
    // At most 32 ADDs in flight, like a busy node.
    let results: Vec<String> = std::thread::scope(|s| {
        let chunks: Vec<_> = containers.chunks(n.div_ceil(32)).enumerate().collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|(c, chunk)| {
                let config = &config;
                s.spawn(move || {
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(j, ns)| {
                            let id = format!("{prefix}-{}", c * n.div_ceil(32) + j);
                            let (ok, out) = cni(DHCP, "ADD", &id, ns, "eth0", config);
                            assert!(ok, "{id}: {out}");
                            out["ips"][0]["address"].as_str().unwrap().to_string()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    for (ns, address) in containers.iter().zip(&results) {
        lab.exec_ok(ns, &["ip", "addr", "add", address, "dev", "eth0"]);
    }
    containers.into_iter().zip(results).collect()
}

pub fn addresses(records: &Value) -> Vec<String> {
    let mut v: Vec<String> = records
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["lease"]["address"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

/// The value of one series in a Prometheus/OpenMetrics scrape (`name{labels} value`).
pub fn metric(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{scrape}"))
}

/// `GET /metrics` from a daemon started with `-metrics-listen addr`.
pub fn scrape(addr: std::net::SocketAddr) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

/// A loopback address with a TCP port free right now, for `-metrics-listen`.
pub fn free_tcp_addr() -> std::net::SocketAddr {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

/// The daemon's log so far (`daemon.log` in the directory given to [`Daemon::start`]).
pub fn daemon_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
}

/// Polls `f` every 50 ms until it is true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
