//! `dhcp daemon`: the long-running lease daemon.
//!
//! The `dhcp` plugin process lives for one CNI command; a lease lives for as long as its
//! container. This daemon holds the leases: for each attachment (container ID, network name,
//! ifname) it enters the container's network namespace, acquires a lease with the sans-IO client
//! of [`crate::dhcp::client`], renews and rebinds it (RFC 2131 §4.4.5) and releases it on DEL.
//!
//! Files, in the manner of tokio's mini-redis:
//! - `server.rs`: the Unix-socket listener and one task per connection (framing in [`crate::rpc`]);
//! - `command.rs`: what each request does to the shared state;
//! - `shared.rs`: the state every connection, driver and background task shares;
//! - `table.rs`: the lease table in it, one slot per attachment;
//! - `driver/`: one task per lease that feeds the client state machine packets and time, written
//!   against a protocol seam (`driver` lists its files);
//! - `identity.rs`: what a lease was granted on (namespace, interface, boot) and the checks
//!   before every action in a namespace;
//! - `clock.rs`: the lease clock (monotonic plus time suspended);
//! - `iface.rs`: the interface upkeep after ADD (address withdrawn on expiry/NAK, put back);
//! - `store.rs`: the state directory, locked, and durable writes of the lease files (their
//!   format: [`crate::lease_file`]), so a restarted daemon resumes its leases;
//! - `metrics.rs`: Prometheus counters and the optional `/metrics` HTTP endpoint;
//! - `pacer.rs`: send turns, so broadcasts do not overflow the kernel's queues at scale;
//! - `known_servers.rs`: each network's DHCPv4 server MAC, for first sends as Ethernet unicast;
//! - `packet.rs`: the filtered `AF_PACKET` socket the driver sends and receives through;
//! - `udp6.rs`: the DHCPv6 client's UDP socket (port 546, from the link-local address);
//! - `ra_listen.rs`: Router Advertisements (raw ICMPv6 socket, Router Solicitation) and the
//!   link-local address's readiness, for DHCPv6 leases.
//!
//! Threads do not grow with leases: everything runs on one multi-threaded runtime with a fixed
//! number of workers; sockets are opened inside a namespace by a fixed pool of threads
//! ([`crate::netns`]), driven from the runtime, and closed by a few closer threads
//! (`packet`), because a packet socket's close waits for an RCU grace period. The bound is
//! main + workers + 4 blocking + 4 closers + 4 namespace threads: 15 with the default 2 workers,
//! plus up to 4 short-lived ones while the interface's upkeep runs (`iface.rs`, on the blocking
//! pool, starts one in the namespace per job; docs/design.md, *Threads: why each pool exists*).
//! What profiling at a thousand leases found, and why each piece is there: docs/performance.md.
//! The data path of one ADD, why each thread pool exists and the outside facts the code relies
//! on: docs/design.md.

pub(crate) mod clock;
pub(crate) mod command;
pub(crate) mod driver;
pub(crate) mod identity;
pub(crate) mod iface;
pub(crate) mod known_servers;
pub(crate) mod metrics;
pub(crate) mod pacer;
pub(crate) mod packet;
pub(crate) mod peer;
pub(crate) mod ra_listen;
pub(crate) mod server;
pub(crate) mod shared;
pub(crate) mod store;
pub(crate) mod table;
pub(crate) mod udp6;

pub use packet::parse_datagram;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The daemon's settings: the reference daemon's flags (docs/design.md, *The reference plugin*),
/// same names and defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Unix socket to listen on (`-socketpath`, default `/run/cni/dhcp.sock`). Ignored when the
    /// socket is passed by systemd socket activation (`LISTEN_FDS`).
    pub socket_path: PathBuf,
    /// File to write the daemon's PID to (`-pidfile`), if any.
    pub pid_file: Option<PathBuf>,
    /// Prefix for every `CNI_NETNS` path (`-hostprefix`), for a daemon running in a container
    /// with the host's filesystem mounted under it (e.g. `/host`). Empty by default.
    pub host_prefix: PathBuf,
    /// The daemon-wide broadcast policy (`-broadcast`): `Some(b)` forces the BOOTP broadcast flag
    /// on or off for every lease whose ipam config does not say; `None` (flag absent) lets the
    /// daemon decide per link: on for ipvlan slaves, off otherwise.
    pub broadcast: Option<bool>,
    /// The daemon-wide chaddr policy (`-chaddr link|derived`) for leases whose ipam config does
    /// not say; `None` (flag absent): `derived` on ipvlan slaves, `link` otherwise.
    pub chaddr: Option<crate::rpc::ChaddrPolicy>,
    /// Budget for one acquisition (`-timeout`, default 10 s): an ADD fails after it.
    pub timeout: Duration,
    /// How long a first DHCPv6 binding waits for the link's Router Advertisement after the
    /// Router Solicitation of its ADD (`-ra-wait`, default [`driver::RA_WAIT`], 2 s); 0: do
    /// not wait (a lease then has the prefix of an RA already queued, else /128).
    pub ra_wait: Duration,
    /// Cap on the retransmission interval (`-resendmax`, default 62 s; RFC 2131 §4.1 back-off).
    pub resend_max: Duration,
    /// Group (gid) allowed to use the socket besides root: the socket is then created mode 0660
    /// owned by that group instead of 0600, and peers of that group pass the SO_PEERCRED check.
    pub socket_group: Option<u32>,
    /// Where leases are persisted (`-state-dir`, default `/var/lib/cni/dhcp`): one file per
    /// lease ([`crate::lease_file`]), reloaded at start (`store`).
    pub state_dir: PathBuf,
    /// On SIGTERM/SIGINT, send DHCPRELEASE for every lease before exiting (`-release-on-exit`).
    /// Off by default: containers outlive a daemon restart or upgrade, and their leases must too.
    pub release_on_exit: bool,
    /// Number of runtime worker threads (the daemon's thread count does not depend on leases).
    pub worker_threads: usize,
    /// TCP address of the Prometheus endpoint (`-metrics-listen`, e.g. `127.0.0.1:9153`):
    /// `GET /metrics` there returns `metrics` in the OpenMetrics text format. `None` (the
    /// default): nothing is served, the counters are kept all the same.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Connections on the socket served at once (`-max-connections`, default
    /// [`DEFAULT_MAX_CONNECTIONS`]). One more gets an error at once and is closed, so a client
    /// that opens connections and sends nothing cannot exhaust the daemon's descriptors.
    pub max_connections: usize,
}

/// Default of [`Config::max_connections`]: room for a thousand ADDs at once with margin (each
/// waiting plugin holds one connection), far below the raised open-file limit.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 4096;

impl Default for Config {
    fn default() -> Self {
        Config {
            socket_path: PathBuf::from(crate::rpc::DEFAULT_SOCKET_PATH),
            pid_file: None,
            host_prefix: PathBuf::new(),
            broadcast: None,
            chaddr: None,
            timeout: Duration::from_secs(10),
            ra_wait: driver::RA_WAIT,
            resend_max: Duration::from_secs(62),
            socket_group: None,
            release_on_exit: false,
            state_dir: PathBuf::from(crate::lease_file::DEFAULT_STATE_DIR),
            worker_threads: 2,
            metrics_listen: None,
            max_connections: DEFAULT_MAX_CONNECTIONS as usize,
        }
    }
}

impl Config {
    /// The path of a container's namespace file as seen by the daemon: `-hostprefix` joined with
    /// `CNI_NETNS` (which is absolute).
    pub(crate) fn netns_path(&self, cni_netns: &str) -> PathBuf {
        under_prefix(&self.host_prefix, cni_netns)
    }
}

/// The host's absolute `path` as a daemon with `-hostprefix` `prefix` sees it (`/host` and
/// `/proc/1/stat` give `/host/proc/1/stat`); `path` itself when `prefix` is empty.
pub(crate) fn under_prefix(prefix: &Path, path: &str) -> PathBuf {
    if prefix.as_os_str().is_empty() {
        PathBuf::from(path)
    } else {
        prefix.join(Path::new(path).strip_prefix("/").unwrap_or(Path::new(path)))
    }
}

/// Runs the daemon until SIGTERM or SIGINT. Builds its own runtime.
///
/// Errors: the socket cannot be bound (path in use by a live daemon, no permission), the PID
/// file cannot be written.
pub fn run(config: Config) -> std::io::Result<()> {
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads.max(1))
        .max_blocking_threads(4)
        .thread_name("dhcp-daemon")
        .enable_all()
        .build()?;
    runtime.block_on(server::serve(config))
}

/// Lifts the soft limit on open files to the hard limit (as Go's runtime does for the
/// reference): each lease being acquired holds a packet socket and each plugin waiting on the
/// daemon a connection, so a thousand ADDs at once need more than the usual soft limit of 1024.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(error = %e, soft, hard, "cannot raise the open-file limit");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the open-file limit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_prefix_is_joined_to_absolute_netns() {
        let mut c = Config::default();
        assert_eq!(
            c.netns_path("/var/run/netns/a"),
            PathBuf::from("/var/run/netns/a")
        );
        c.host_prefix = PathBuf::from("/host");
        assert_eq!(
            c.netns_path("/var/run/netns/a"),
            PathBuf::from("/host/var/run/netns/a")
        );
    }
}
