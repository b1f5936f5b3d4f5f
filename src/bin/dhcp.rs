//! `dhcp`: the CNI IPAM plugin, and with `dhcp daemon` the lease daemon it talks to.
//!
//! As a plugin (invoked by a runtime or a main plugin with `CNI_COMMAND` set) it forwards ADD,
//! DEL, CHECK and STATUS to the daemon over its Unix socket and prints the CNI result. As
//! `dhcp daemon` it runs [`cni_dhcp::daemon`], accepting the reference daemon's Go-style flags
//! (`-socketpath /run/cni/dhcp.sock`, `-broadcast=true`, `-timeout 10s`, ...) as well as the
//! `--double-dash` forms, so existing systemd units keep working.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use cni_dhcp::daemon;

/// The reference daemon's flags (containernetworking/plugins `plugins/ipam/dhcp`), same names
/// and defaults.
#[derive(Parser, Debug)]
#[command(
    name = "dhcp daemon",
    about = "Run the DHCP lease daemon for the dhcp CNI plugin"
)]
struct DaemonArgs {
    /// Unix socket the plugin connects to (ignored under systemd socket activation).
    #[arg(long = "socketpath", default_value = cni_dhcp::rpc::DEFAULT_SOCKET_PATH)]
    socket_path: PathBuf,
    /// Write the daemon's PID to this file.
    #[arg(long = "pidfile")]
    pid_file: Option<PathBuf>,
    /// Prefix for CNI_NETNS paths, for a daemon running in a container (e.g. /host).
    #[arg(long = "hostprefix")]
    host_prefix: Option<PathBuf>,
    /// Force the BOOTP broadcast flag on (`-broadcast`, `-broadcast=true`) or off
    /// (`-broadcast=false`) when the ipam config does not say; absent: on for ipvlan slaves only.
    #[arg(long = "broadcast", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    broadcast: Option<bool>,
    /// What DHCPv4 puts in chaddr when the ipam config does not say: `link` (the interface's
    /// MAC) or `derived` (one per lease, from its client identifier); absent: `derived` on
    /// ipvlan slaves only.
    #[arg(long = "chaddr", value_enum)]
    chaddr: Option<cni_dhcp::rpc::ChaddrPolicy>,
    /// Budget for one lease acquisition (Go duration: 10s, 1m30s, 500ms).
    #[arg(long = "timeout", default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// How long a first DHCPv6 lease waits for the link's Router Advertisement (its prefix
    /// length and router) before it is configured as a /128 without a router; 0s: no wait.
    #[arg(long = "ra-wait", default_value = "2s", value_parser = parse_duration)]
    ra_wait: Duration,
    /// Group (name or numeric gid) whose members may use the socket: mode 0660 instead of 0600.
    #[arg(long = "socket-group", value_parser = parse_group)]
    socket_group: Option<u32>,
    /// Log format on stderr: text (default) or json, one object per line.
    #[arg(long = "log-format", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Directory where leases are persisted (one file per lease, reloaded at start).
    #[arg(long = "state-dir", default_value = cni_dhcp::lease_file::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Send DHCPRELEASE for every lease on SIGTERM/SIGINT (default: keep them, containers
    /// outlive a daemon restart).
    #[arg(long = "release-on-exit")]
    release_on_exit: bool,
    /// Cap on the retransmission interval (RFC 2131 §4.1 back-off).
    #[arg(long = "resendmax", default_value = "62s", value_parser = parse_duration)]
    resend_max: Duration,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9153); off by default.
    #[arg(long = "metrics-listen", value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Connections served at once on the socket; beyond it a client gets an immediate error.
    #[arg(long = "max-connections", default_value_t = cni_dhcp::daemon::DEFAULT_MAX_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
}

/// Parses a Go-style duration (`10s`, `1m30s`, `500ms`, `2h`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// A group name or a numeric gid.
fn parse_group(s: &str) -> Result<u32, String> {
    if let Ok(gid) = s.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(s) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(format!("no group named {s:?}")),
        Err(e) => Err(format!("looking up group {s:?}: {e}")),
    }
}

/// Go's flag package accepts `-name` as well as `--name`; clap wants `--name` for long flags.
fn go_flags_to_clap(args: impl Iterator<Item = String>) -> Vec<String> {
    args.map(|a| {
        if a.starts_with('-') && !a.starts_with("--") && a.len() > 2 {
            format!("-{a}")
        } else {
            a
        }
    })
    .collect()
}

fn main() -> ExitCode {
    let mut args = std::env::args();
    let argv0 = args.next().unwrap_or_else(|| "dhcp".into());
    let rest: Vec<String> = args.collect();
    if rest.first().map(String::as_str) == Some("daemon") {
        let flags = go_flags_to_clap(rest.into_iter().skip(1));
        let parsed = match DaemonArgs::try_parse_from(
            std::iter::once("dhcp daemon".to_string()).chain(flags),
        ) {
            Ok(p) => p,
            Err(e) => e.exit(),
        };
        if parsed.broadcast == Some(false)
            && parsed.chaddr == Some(cni_dhcp::rpc::ChaddrPolicy::Derived)
        {
            eprintln!(
                "{argv0} daemon: -chaddr derived needs the broadcast flag, but -broadcast=false: a server unicasts its replies to chaddr when the flag is clear, and a derived chaddr is no interface's address"
            );
            return ExitCode::from(2);
        }
        init_logging(parsed.log_format);
        let config = daemon::Config {
            socket_path: parsed.socket_path,
            pid_file: parsed.pid_file,
            host_prefix: parsed.host_prefix.unwrap_or_default(),
            broadcast: parsed.broadcast,
            chaddr: parsed.chaddr,
            timeout: parsed.timeout,
            ra_wait: parsed.ra_wait,
            resend_max: parsed.resend_max,
            socket_group: parsed.socket_group,
            release_on_exit: parsed.release_on_exit,
            state_dir: parsed.state_dir,
            metrics_listen: parsed.metrics_listen,
            max_connections: parsed.max_connections as usize,
            ..daemon::Config::default()
        };
        return match daemon::run(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{argv0} daemon: {e}");
                ExitCode::FAILURE
            }
        };
    }
    cni_dhcp::ipam::main()
}

/// Log line format of `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines (the default).
    Text,
    /// One JSON object per line, for log collectors; span fields (container_id, network,
    /// ifname) are flattened into each line.
    Json,
}

/// Logs to stderr through tracing; `RUST_LOG` filters (default `info`).
fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: a log file or journald gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> DaemonArgs {
        let flags = go_flags_to_clap(args.iter().map(|s| s.to_string()));
        DaemonArgs::try_parse_from(std::iter::once("dhcp daemon".to_string()).chain(flags)).unwrap()
    }

    #[test]
    fn reference_flags_parse() {
        let a = parse(&[
            "-socketpath",
            "/tmp/x.sock",
            "-timeout",
            "1m30s",
            "-broadcast",
        ]);
        assert_eq!(a.socket_path, PathBuf::from("/tmp/x.sock"));
        assert_eq!(a.timeout, Duration::from_secs(90));
        assert_eq!(a.broadcast, Some(true));
        let a = parse(&["-broadcast=false", "--resendmax=5s", "-hostprefix", "/host"]);
        assert_eq!(a.broadcast, Some(false));
        assert_eq!(a.resend_max, Duration::from_secs(5));
        assert_eq!(a.host_prefix, Some(PathBuf::from("/host")));
        let a = parse(&[]);
        assert_eq!(a.broadcast, None);
        assert_eq!(a.timeout, Duration::from_secs(10));
        assert_eq!(a.socket_path, PathBuf::from("/run/cni/dhcp.sock"));
        assert_eq!(a.metrics_listen, None);
    }

    #[test]
    fn metrics_listen_flag_parses() {
        let want: SocketAddr = "127.0.0.1:9153".parse().unwrap();
        assert_eq!(
            parse(&["-metrics-listen", "127.0.0.1:9153"]).metrics_listen,
            Some(want)
        );
        assert_eq!(
            parse(&["--metrics-listen=127.0.0.1:9153"]).metrics_listen,
            Some(want)
        );
        assert_eq!(
            parse(&["-metrics-listen", "[::1]:9153"]).metrics_listen,
            Some("[::1]:9153".parse().unwrap())
        );
        let flags = go_flags_to_clap(
            ["-metrics-listen", "localhost"]
                .iter()
                .map(|s| s.to_string()),
        );
        assert!(
            DaemonArgs::try_parse_from(std::iter::once("dhcp daemon".to_string()).chain(flags))
                .is_err(),
            "an address with a port is required"
        );
    }
}
