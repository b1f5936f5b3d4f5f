//! The scale benchmark: our `dhcp` plugin and daemon against the reference Go binaries (Debian's
//! `containernetworking-plugins`, `/usr/lib/cni/dhcp`) on the same workloads, in the same run.
//!
//! ```text
//! cargo bench --bench scale                 # the full run; writes docs/benchmarks.md and the chart
//! cargo bench --bench scale -- --impls ours --parallel 1000 --out /tmp/b.md
//! cargo bench --bench scale -- --impls ours,ours-dual --parallel 100,1000 --no-renewal --out /tmp/d.md
//! ```
//!
//! The implementations: `ours`, `reference`, and `ours-dual`: our binaries with `"dhcp6": true`
//! in the ipam config, so every ADD acquires a DHCPv4 and a DHCPv6 lease at once, in a lab whose
//! dnsmasq also serves DHCPv6 (a range of 61440 addresses, 12 h) and Router Advertisements on
//! `fd00:cd::/64`, with IPv6 forwarding on s0 as on the router it advertises (see
//! [`bench_lab`]). It runs the same steps as `ours` except the renewal cycle (its DHCPv6 leases
//! would not renew within the run), and the report compares it with `ours` (DHCPv4 only, same
//! run): the cost of dual stack.
//!
//! For each implementation it builds a fresh netns lab (dnsmasq `--no-ping` with 2-minute leases
//! on a /20, so thousands fit; the lab code is `tests/common`), starts that implementation's
//! daemon, and measures, with macvlan (bridge) containers made beforehand so that only the IPAM
//! plugin is timed:
//! 1. sequential ADDs, a fresh netns each: min / p50 / p99;
//! 2. N parallel ADDs (N = 100, 500, 1000 by default): wall time, successes, p50 / p99 per ADD,
//!    the daemon's peak threads, RSS and fds while they run, and dnsmasq's CPU time;
//! 3. the daemon holding the largest N: RSS, threads, fds, then CPU time over one full renewal
//!    cycle (T1 of a 2-minute lease is 60 s, so the cycle fits the run: the cycle ends when dnsmasq
//!    has ACKed as many renewals as there are leases);
//! 4. DEL of all N at once: wall time, and DHCPRELEASEs in dnsmasq's log;
//! 5. the server alone ([`server`]): how fast dnsmasq answers when no client stands in the way.
//!
//! Then it prints a table (ours, reference, ratio), writes it with the machine, date and command to
//! `docs/benchmarks.md`, and draws ADD latency against N to `docs/benchmarks-add-latency.svg`.
//!
//! Run without `--bench` (as `cargo test --all-targets` does) it is a quick smoke run of every step
//! with a few containers, written to a temp dir, so the harness cannot rot; it fails if our
//! implementation loses an ADD there.
//!
//! For digging into one run (what docs/performance.md was found with), environment variables:
//! `BENCH_DUMP=PREFIX` writes `PREFIX-<impl>-<N>.csv` (spawn offset, latency in seconds, ok per
//! ADD); `BENCH_KEEP_LOGS=DIR` copies the daemon's and dnsmasq's logs there before the lab goes;
//! `BENCH_RUST_LOG=debug` sets our daemon's `RUST_LOG`; `BENCH_PAUSE_SECS=N` pauses after each
//! batch with the daemon's pid printed (for gdb or /proc); `BENCH_NO_UNICAST=1` puts
//! `"unicastDiscover": false` in our ipam config (every DHCPDISCOVER and DHCPREQUEST an Ethernet
//! broadcast, as before issue 14), to measure what the unicast saves in the same build.

#[path = "../../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

mod cni;
mod procstat;
mod report;
#[path = "../common/sections.rs"]
mod sections;
mod server;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;

use common::Lab;
use common::plugin::{Probe, wait_until_answering};
use procstat::{Sampler, Usage};

/// Benchmark options (after `cargo bench --bench scale --`).
#[derive(Parser, Debug, Clone)]
#[command(name = "scale", about = "cni-dhcp against the reference, side by side")]
struct Args {
    /// Passed by `cargo bench`: run the full benchmark (without it: a quick smoke run).
    #[arg(long, hide = true)]
    bench: bool,
    /// Which implementations, comma-separated: ours, ours-dual (ours with DHCPv6 too), reference.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ours,ours-dual,reference"
    )]
    impls: Vec<String>,
    /// Sequential single ADDs per implementation.
    #[arg(long, default_value_t = 20)]
    singles: usize,
    /// Parallel batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000")]
    parallel: Vec<usize>,
    /// Skip the renewal cycle (it waits about a minute per implementation).
    #[arg(long)]
    no_renewal: bool,
    /// Leases in the server-only measurement (0 skips it).
    #[arg(long, default_value_t = 1000)]
    server_leases: usize,
    /// The reference's binaries.
    #[arg(long, default_value = "/usr/lib/cni")]
    reference_dir: PathBuf,
    /// Where the Markdown report goes (relative to the repository root).
    #[arg(long, default_value = "docs/benchmarks.md")]
    out: PathBuf,
    /// Where the chart goes (SVG); by default next to the report, named after it
    /// (`docs/benchmarks.md`: `docs/benchmarks-add-latency.svg`), so a run with `--out /tmp/b.md`
    /// leaves the committed chart alone.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// A command put before our daemon's, for profiling (e.g. "heaptrack -o /tmp/ht" or
    /// "perf record -g -o /tmp/perf.data"); its resource figures are then the wrapper's.
    #[arg(long)]
    daemon_wrapper: Option<String>,
    /// Run every lab's dnsmasq with `--leasefile-ro` (no lease file): dnsmasq rewrites its
    /// whole lease file at every lease change, which at a thousand dual-stack leases on a
    /// two-core machine is most of its CPU (docs/performance.md, *Dual stack*). The server of
    /// a real network runs elsewhere; this takes its bookkeeping off the clients' cores.
    #[arg(long)]
    leasefile_ro: bool,
    /// Give up on a batch of ADDs or DELs after this many seconds (stragglers count as failures).
    #[arg(long, default_value_t = 240)]
    batch_limit_secs: u64,
    /// Ignored (cargo and test runners pass these).
    #[arg(hide = true, trailing_var_arg = true, allow_hyphen_values = true)]
    rest: Vec<String>,
}

/// How long after a batch the daemon's resting figures are read.
const SETTLE: Duration = Duration::from_secs(6);

/// Lease time handed out by the lab's dnsmasq, seconds (dnsmasq's minimum).
const LEASE_SECS: u64 = 120;

/// The lab's DHCPv6 range for `ours-dual` (61440 addresses: every batch of a run fits), its
/// lease time, and s0's static address on the RA's on-link prefix.
const DUAL_SERVER6: &str = "fd00:cd::1/64";
const DUAL_RANGE6: &str = "fd00:cd::1000,fd00:cd::ffff,64,12h";

/// One implementation under test.
struct Impl {
    /// `ours`, `ours-dual` or `reference`.
    name: String,
    /// Our binaries (`ours`, `ours-dual`): our daemon's flags and probe.
    ours: bool,
    /// DHCPv6 on too (`ours-dual`).
    dual: bool,
    /// Its `dhcp` binary (plugin and daemon).
    dhcp: PathBuf,
    /// Directories for CNI_PATH.
    cni_path: String,
}

/// Figures for one batch of N parallel ADDs (and the DEL of all of them).
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub n: usize,
    pub ok: usize,
    pub wall: Duration,
    /// Latencies of the ADDs that succeeded.
    pub latencies: Vec<Duration>,
    /// The daemon's peaks while the ADDs ran.
    pub peak: Usage,
    /// The daemon once every ADD returned.
    pub after: Usage,
    /// dnsmasq's CPU time over the batch, seconds.
    pub server_cpu: f64,
    /// The daemon's CPU time over the batch, seconds.
    pub daemon_cpu: f64,
    pub first_failure: Option<String>,
    pub del_wall: Duration,
    pub del_ok: usize,
    /// DHCPv4 DHCPRELEASEs dnsmasq logged for this batch's DELs.
    pub releases: usize,
    /// DHCPv6 RELEASEs dnsmasq logged for this batch's DELs (dual stack only).
    pub releases6: usize,
    /// DHCPv6 SOLICITs dnsmasq logged during the ADDs (dual stack only; more than `n`:
    /// retransmissions reached it).
    pub solicits: usize,
    /// Router Solicitations dnsmasq logged during the ADDs (dual stack only: the daemon's one per
    /// ADD and the kernel's when a link comes up).
    pub router_solicits: usize,
    /// Successful dual-stack ADDs whose IPv6 address came back as a /128 without a gateway: no
    /// Router Advertisement reached the daemon within its 2 s (README, *Dual stack*).
    pub no_ra: usize,
    /// DHCPDISCOVERs dnsmasq logged during the ADDs (more than `n`: retransmissions reached it).
    pub discovers: usize,
    /// DHCPREQUESTs dnsmasq logged during the ADDs.
    pub requests: usize,
    /// UDP datagrams the server's netns dropped for want of socket receive-buffer room during
    /// the ADDs (`RcvbufErrors` of IPv4 and IPv6): requests that reached dnsmasq's host but
    /// not dnsmasq.
    pub server_rcvbuf_drops: u64,
    /// The master's `rx_dropped` during the ADDs: on macvlan, mostly broadcast and multicast
    /// frames from the wire its broadcast queue (`bcqueuelen`, 1000) had no room for.
    pub master_rx_dropped: u64,
    /// CPU seconds the whole machine was busy during the ADDs (all cores).
    pub machine_busy: f64,
    /// CPU seconds of the plugin processes of the ADDs.
    pub plugins_cpu: f64,
}

/// A renewal cycle at the largest N.
#[derive(Debug, Clone, Default)]
pub struct Renewal {
    pub leases: usize,
    /// DHCPACKs dnsmasq logged for renewals within the cycle.
    pub renewed: usize,
    /// From the end of the batch to the last renewal ACK (or the give-up time).
    pub elapsed: Duration,
    /// The daemon's CPU time over `elapsed`, seconds.
    pub cpu_secs: f64,
    /// The daemon's peaks over the cycle.
    pub peak: Usage,
}

/// Everything measured for one implementation.
#[derive(Debug, Clone, Default)]
pub struct Results {
    pub name: String,
    /// Dual stack (`ours-dual`): its batches count DHCPv6 messages too.
    pub dual: bool,
    /// Latencies of the sequential ADDs that succeeded.
    pub singles: Vec<Duration>,
    pub singles_failed: usize,
    /// The daemon just after start.
    pub idle: Usage,
    pub batches: Vec<Batch>,
    pub renewal: Option<Renewal>,
}

fn main() {
    let mut args = Args::parse();
    let quick = !args.bench;
    if quick {
        // `cargo test`: every step, small, into a temp dir.
        args.singles = 3;
        args.parallel = vec![5, 20];
        args.no_renewal = true;
        args.server_leases = 50;
        args.batch_limit_secs = 120;
    }
    if let Some(why) = common::unavailable() {
        if std::env::var_os("CI").is_some() {
            panic!("scale benchmark cannot run in CI: {why}");
        }
        eprintln!("scale: skipped: {why}");
        return;
    }
    raise_fd_limit();
    // A node with a thousand containers needs a bigger neighbour table than the kernel's
    // default (see NeighbourTable); the smoke run's few containers do not.
    let _neigh =
        (args.parallel.iter().copied().max().unwrap_or(0) > 250).then(NeighbourTable::enlarge);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().expect("temp dir");
    let (out, chart) = if quick {
        (
            tmp.path().join("benchmarks.md"),
            tmp.path().join("chart.svg"),
        )
    } else {
        let out = root.join(&args.out);
        let chart = match &args.chart {
            Some(c) => root.join(c),
            None => {
                let stem = out.file_stem().unwrap_or_default().to_string_lossy();
                out.with_file_name(format!("{stem}-add-latency.svg"))
            }
        };
        (out, chart)
    };
    let ours_bin = PathBuf::from(env!("CARGO_BIN_EXE_dhcp"));
    let mut impls = Vec::new();
    for name in &args.impls {
        match name.as_str() {
            "ours" | "ours-dual" => {
                let dual = name == "ours-dual";
                if dual && !common::ipv6_available() {
                    eprintln!("scale: ours-dual skipped: IPv6 is disabled in this kernel");
                    continue;
                }
                impls.push(Impl {
                    name: name.clone(),
                    ours: true,
                    dual,
                    cni_path: ours_bin.parent().unwrap().display().to_string(),
                    dhcp: ours_bin.clone(),
                })
            }
            "reference" => {
                let dhcp = args.reference_dir.join("dhcp");
                if !dhcp.exists() {
                    panic!(
                        "no reference plugin at {} (apt-get install containernetworking-plugins)",
                        dhcp.display()
                    );
                }
                impls.push(Impl {
                    name: "reference".into(),
                    ours: false,
                    dual: false,
                    cni_path: args.reference_dir.display().to_string(),
                    dhcp,
                });
            }
            other => panic!("unknown implementation {other:?} (ours, ours-dual, reference)"),
        }
    }

    let started = Instant::now();
    let mut all = Vec::new();
    for imp in &impls {
        eprintln!("== {} ({})", imp.name, imp.dhcp.display());
        all.push(run_impl(imp, &args));
    }
    let server = (args.server_leases > 0).then(|| {
        eprintln!("== server only: {} leases", args.server_leases);
        server::measure(args.server_leases, args.leasefile_ro)
    });
    let command = if quick {
        "cargo test --bench scale (quick smoke run)".to_string()
    } else {
        let extra: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| a != "--bench")
            .collect();
        if extra.is_empty() {
            "cargo bench --bench scale".to_string()
        } else {
            format!("cargo bench --bench scale -- {}", extra.join(" "))
        }
    };
    let report = report::Report {
        results: &all,
        server: server.as_ref(),
        command: &command,
        lease_secs: LEASE_SECS,
        leasefile_ro: args.leasefile_ro,
        took: started.elapsed(),
        chart_name: chart
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let table = report.table();
    println!("{table}");
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).expect("report dir");
    }
    // Keep the ipvlan rows benches/vm_scale.rs wrote into the same file.
    let mut markdown = report.markdown();
    if let Some(ipvlan) = std::fs::read_to_string(&out)
        .ok()
        .and_then(|old| sections::section(&old, sections::IPVLAN_VM).map(str::to_string))
    {
        markdown = format!(
            "{}

{ipvlan}
",
            markdown.trim_end()
        );
    }
    std::fs::write(&out, markdown).expect("write report");
    report::chart(&all, &chart).expect("draw chart");
    eprintln!("wrote {} and {}", out.display(), chart.display());

    if quick {
        // The smoke run is a test: our implementation, DHCPv4 only and dual stack, must not lose
        // an ADD at this size, and the report must hold what was measured.
        for ours in all.iter().filter(|r| r.name.starts_with("ours")) {
            let name = &ours.name;
            assert_eq!(ours.singles_failed, 0, "{name}: sequential ADDs failed");
            for b in &ours.batches {
                assert_eq!(
                    b.ok, b.n,
                    "{name}: {} parallel ADDs: {:?}",
                    b.n, b.first_failure
                );
                assert_eq!(b.del_ok, b.n, "{name}: {} parallel DELs", b.n);
            }
        }
        let md = std::fs::read_to_string(&out).unwrap();
        assert!(md.contains("| single ADD p50"), "{md}");
        if all.iter().any(|r| r.dual) {
            assert!(md.contains("ours-dual / ours"), "{md}");
        }
        let svg = std::fs::read_to_string(&chart).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{svg}");
    }
}

/// A thousand plugin processes hold three pipes each: lift the soft descriptor limit to the
/// hard one (what Go's runtime does for the reference on start).
fn raise_fd_limit() {
    if let Ok((_, hard)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        let _ =
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// The kernel's ARP table is one table for all namespaces, with a hard limit of
/// `net.ipv4.neigh.default.gc_thresh3` entries (1024 by default). With 1000 containers whose
/// addresses are configured, the server's namespace holds an entry per client and every
/// container one for the server: past 1024 the kernel logs "neighbor table overflow" and the
/// server's unicast OFFERs and ACKs are dropped (measured: 665 of 1000 ADDs in 11 s after a
/// 500-container batch). Large Kubernetes nodes raise these limits for the same reason. For the
/// run, the three thresholds are raised to 8192/16384/32768 (never lowered) for both
/// implementations alike, and put back on drop (a run killed by a signal leaves them raised:
/// `sysctl -w net.ipv4.neigh.default.gc_thresh1=128 ...2=512 ...3=1024` puts the defaults back).
///
/// IPv6's neighbour table (`ndisc_cache`, `net.ipv6.neigh.default.gc_thresh*`, the same
/// defaults) is one for all namespaces too, and a dual-stack container fills it faster: even
/// multicast destinations get an entry, so each container holds one for `ff02::2` (its Router
/// Solicitations), `ff02::1:2` (SOLICIT), `ff02::16` (MLD reports) and its solicited-node group
/// (DAD), and the server's namespace one per client's link-local address. Past 1024 every send
/// that needs a new entry fails with `EINVAL` (`ip6_finish_output2`; "ndisc_cache: neighbor
/// table overflow!" in dmesg): measured, 2555 failed sends and 96 of 1000 dual-stack ADDs. Its
/// thresholds are raised alike (`net.ipv6.neigh.default.gc_thresh1=128 ...` puts them back).
struct NeighbourTable {
    saved: Vec<(&'static str, String)>,
}

impl NeighbourTable {
    const SETTINGS: [(&'static str, u64); 6] = [
        ("/proc/sys/net/ipv4/neigh/default/gc_thresh1", 8192),
        ("/proc/sys/net/ipv4/neigh/default/gc_thresh2", 16384),
        ("/proc/sys/net/ipv4/neigh/default/gc_thresh3", 32768),
        ("/proc/sys/net/ipv6/neigh/default/gc_thresh1", 8192),
        ("/proc/sys/net/ipv6/neigh/default/gc_thresh2", 16384),
        ("/proc/sys/net/ipv6/neigh/default/gc_thresh3", 32768),
    ];

    fn enlarge() -> NeighbourTable {
        let mut saved = Vec::new();
        // Largest first going up, so gc_thresh1 <= gc_thresh2 <= gc_thresh3 holds throughout
        // (for each family: the list is IPv4's three, then IPv6's).
        for (path, want) in Self::SETTINGS.iter().rev() {
            let Ok(old) = std::fs::read_to_string(path) else {
                continue;
            };
            if old.trim().parse::<u64>().is_ok_and(|v| v < *want)
                && std::fs::write(path, want.to_string()).is_ok()
            {
                eprintln!("scale: {path} {} -> {want} for the run", old.trim());
                saved.push((*path, old));
            }
        }
        NeighbourTable { saved }
    }
}

impl Drop for NeighbourTable {
    fn drop(&mut self) {
        // Smallest first going down (the reverse of the order they were raised in).
        for (path, old) in self.saved.iter().rev() {
            let _ = std::fs::write(path, old.trim());
        }
    }
}

/// A daemon of either implementation on a socket in `dir`; killed on drop (a wrapped one gets
/// SIGTERM in its process group and time to write its profile).
struct Daemon {
    child: Child,
    socket: PathBuf,
    wrapped: bool,
}

impl Daemon {
    fn start(imp: &Impl, dir: &Path, wrapper: Option<&str>) -> Daemon {
        let socket = dir.join(format!("{}.sock", imp.name));
        let log = std::fs::File::create(dir.join(format!("{}-daemon.log", imp.name))).unwrap();
        let mut cmd = match wrapper.map(|w| w.split_whitespace().collect::<Vec<_>>()) {
            Some(w) if !w.is_empty() && imp.ours => {
                let mut c = Command::new(w[0]);
                c.args(&w[1..]).arg(&imp.dhcp);
                c
            }
            _ => Command::new(&imp.dhcp),
        };
        cmd.arg("daemon").arg("-socketpath").arg(&socket);
        let wrapped = wrapper.is_some() && imp.ours;
        if wrapped {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        if imp.ours {
            // Our daemon keeps leases on disk; the reference keeps none. Info logging, as an
            // operator would run it.
            cmd.arg("-state-dir").arg(dir.join("state")).env(
                "RUST_LOG",
                std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "info".into()),
            );
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn daemon");
        let probe = if imp.ours {
            Probe::Ours
        } else {
            Probe::Reference
        };
        wait_until_answering(&socket, probe, Duration::from_secs(10))
            .unwrap_or_else(|why| panic!("{} daemon: {why}", imp.name));
        Daemon {
            child,
            socket,
            wrapped,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.wrapped {
            // SIGTERM to the daemon itself (a descendant of the wrapper), so the wrapper can
            // finish writing its profile after it.
            for pid in descendants(self.child.id()) {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "dhcp" {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
            }
            let deadline = Instant::now() + Duration::from_secs(60);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every process below `pid` (children, their children...), from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat[i + 2..].split_whitespace().nth(1))
                .and_then(|v| v.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parents.push((p, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(p, pp) in &parents {
            if pp == parent {
                out.push(p);
                frontier.push(p);
            }
        }
    }
    out
}

/// The lab for one implementation: dnsmasq without its ping check, 2-minute leases, on a /20
/// with 3839 addresses so every batch of a run fits even when DELs leak leases. With `dual`,
/// dnsmasq also serves DHCPv6 ([`DUAL_RANGE6`]) and sends Router Advertisements on s0
/// (`--enable-ra`: the on-link /64 and s0's link-local as the default router).
fn bench_lab(name: &str, dual: bool, leasefile_ro: bool) -> Lab {
    let mut b = Lab::builder(name)
        .no_ping(true)
        .lease_time("2m")
        .subnet(20, "198.18.1.0", "198.18.15.254")
        .log_dhcp(false)
        .dnsmasq_arg("--dhcp-lease-max=10000");
    if leasefile_ro {
        b = b.dnsmasq_arg("--leasefile-ro");
    }
    if dual {
        b = b
            .server_ipv6(DUAL_SERVER6)
            .dnsmasq_arg(&format!("--dhcp-range={DUAL_RANGE6}"))
            .dnsmasq_arg("--enable-ra");
    }
    let lab = b.build();
    if dual {
        // s0 is the link's IPv6 router (dnsmasq advertises it as the default router), so it
        // forwards, as a router does. With forwarding on, its kernel learns each container's
        // MAC from the container's Router Solicitation (RFC 4861 §6.2.6); dnsmasq looks every
        // DHCPv6 client up in that neighbour table and, on a miss, sends a Neighbor
        // Solicitation and sleeps 100 ms before answering anyone, DHCPv4 included
        // (`get_client_mac`, dnsmasq 2.90). Measured without it: 0 of 100 parallel dual-stack
        // ADDs within the daemon's 10 s.
        let srv = lab.srv_ns().to_string();
        lab.exec_ok(
            &srv,
            &["sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/s0/forwarding"],
        );
    }
    lab
}

/// UDP datagrams `netns` dropped so far for want of socket receive-buffer room: IPv4's
/// `RcvbufErrors` (`/proc/net/snmp`, a header line then a value line) plus IPv6's
/// `Udp6RcvbufErrors` (`/proc/net/snmp6`, absent without IPv6). 0 when unreadable.
fn rcvbuf_errors(lab: &Lab, netns: &str) -> u64 {
    let snmp = lab.exec_in(netns, &["cat", "/proc/net/snmp"]);
    let snmp = String::from_utf8_lossy(&snmp.stdout);
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let v4: u64 = match (udp.next(), udp.next()) {
        (Some(names), Some(values)) => names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(name, _)| *name == "RcvbufErrors")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0),
        _ => 0,
    };
    let snmp6 = lab.exec_in(netns, &["cat", "/proc/net/snmp6"]);
    let v6: u64 = String::from_utf8_lossy(&snmp6.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Udp6RcvbufErrors"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    v4.saturating_add(v6)
}

/// The lab master's `rx_dropped` so far (sysfs of the host netns). 0 when unreadable.
fn master_rx_dropped(lab: &Lab) -> u64 {
    let path = format!("/sys/class/net/{}/statistics/rx_dropped", lab.master());
    let out = lab.exec_in(lab.host_ns(), &["cat", &path]);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn count_log(lab: &Lab, pattern: &str) -> usize {
    lab.dnsmasq_log().matches(pattern).count()
}

/// Which protocol a dnsmasq log line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    V4,
    V6,
}

/// dnsmasq's lines for DHCP message `name` (`DHCPRELEASE`) of protocol `proto`: both protocols
/// log `NAME(iface) ...`, under the same names for REQUEST and RELEASE ([`proto_of_line`]).
fn count_msgs(lab: &Lab, name: &str, proto: Proto) -> usize {
    let pattern = format!("{name}(");
    lab.dnsmasq_log()
        .lines()
        .filter(|l| proto_of_line(l, &pattern) == Some(proto))
        .count()
}

/// The protocol of a dnsmasq log line holding `pattern` (`DHCPRELEASE(`), from the first word
/// after `NAME(iface) `: DHCPv4 lines name an IPv4 address or the client's MAC
/// (`DHCPRELEASE(s0) 198.18.5.207 1e:2f:4c:96:78:18`, `DHCPDISCOVER(s0) 1e:2f:...`), DHCPv6
/// lines an IPv6 address or the client's DUID, colon-separated hex longer than a MAC
/// (`DHCPREPLY(s0) fd00:cd::6fb0 00:04:30:62:...`, `DHCPRELEASE(s0) 00:04:30:62:...`).
/// Without `--log-dhcp` (as in the benchmark) no transaction ID comes first.
fn proto_of_line(line: &str, pattern: &str) -> Option<Proto> {
    let rest = &line[line.find(pattern)? + pattern.len()..];
    let first = rest.split_once(") ")?.1.split_whitespace().next()?;
    let hex_octets = first
        .split(':')
        .all(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| first.split(':').count());
    if first.parse::<std::net::Ipv4Addr>().is_ok() || hex_octets == Some(6) {
        Some(Proto::V4)
    } else if first.parse::<std::net::Ipv6Addr>().is_ok() || hex_octets.is_some_and(|n| n > 6) {
        Some(Proto::V6)
    } else {
        None
    }
}

/// Waits until `count_log(pattern)` stops changing for `quiet`, at most `limit`; returns it.
fn settle_count(lab: &Lab, pattern: &str, quiet: Duration, limit: Duration) -> usize {
    let end = Instant::now() + limit;
    let mut last = count_log(lab, pattern);
    let mut since = Instant::now();
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
        let now = count_log(lab, pattern);
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            break;
        }
    }
    last
}

fn attachments(lab: &Lab, tag: &str, n: usize) -> (Vec<String>, Vec<cni::Attachment>) {
    let names: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
    let paths = lab.containers_with_macvlan(&names, "eth0");
    let atts = names
        .iter()
        .zip(paths)
        .map(|(name, netns)| cni::Attachment {
            container_id: format!("bench-{name}"),
            netns,
            ifname: "eth0".into(),
        })
        .collect();
    (names, atts)
}

fn run_impl(imp: &Impl, args: &Args) -> Results {
    let lab = bench_lab(&format!("bench-{}", imp.name), imp.dual, args.leasefile_ro);
    let daemon = Daemon::start(imp, lab.dir(), args.daemon_wrapper.as_deref());
    let plugin = cni::Plugin {
        program: imp.dhcp.clone(),
        socket: daemon.socket.clone(),
        cni_path: imp.cni_path.clone(),
        dual: imp.dual,
    };
    let limit = Duration::from_secs(args.batch_limit_secs);
    let dnsmasq = lab.dnsmasq_pid().expect("dnsmasq pid");
    let mut res = Results {
        name: imp.name.clone(),
        dual: imp.dual,
        idle: procstat::read(daemon.pid()).unwrap_or_default(),
        ..Results::default()
    };

    // 1. Sequential ADDs, a fresh netns each.
    for i in 0..args.singles {
        let (names, atts) = attachments(&lab, &format!("s{i}"), 1);
        let out = cni::one(&plugin, "ADD", &atts[0], limit);
        if out.ok {
            res.singles.push(out.latency);
        } else {
            res.singles_failed += 1;
            eprintln!("  single ADD {i} failed: {}", out.detail);
        }
        let _ = cni::one(&plugin, "DEL", &atts[0], limit);
        lab.remove_containers(&names);
    }
    eprintln!(
        "  {} sequential ADDs: p50 {:?}",
        res.singles.len(),
        report::percentile(&res.singles, 50.0)
    );

    // 2-4. Parallel batches.
    let largest = args.parallel.iter().copied().max().unwrap_or(0);
    for &n in &args.parallel {
        let (names, atts) = attachments(&lab, &format!("p{n}"), n);
        let discovers_before = count_log(&lab, "DHCPDISCOVER(");
        let requests_before = count_msgs(&lab, "DHCPREQUEST", Proto::V4);
        let solicits_before = count_log(&lab, "DHCPSOLICIT(");
        let rs_before = count_log(&lab, "RTR-SOLICIT(");
        let rcvbuf_before = rcvbuf_errors(&lab, lab.srv_ns());
        let rx_dropped_before = master_rx_dropped(&lab);
        let server_cpu0 = procstat::cpu_secs(dnsmasq).unwrap_or(0.0);
        let daemon_cpu0 = procstat::cpu_secs(daemon.pid()).unwrap_or(0.0);
        let busy0 = procstat::machine_busy_secs();
        let children0 = procstat::children_cpu_secs();
        let sampler = Sampler::start(daemon.pid());
        let (outs, wall) = cni::batch(&plugin, "ADD", &atts, limit);
        let machine_busy = procstat::machine_busy_secs() - busy0;
        let plugins_cpu = procstat::children_cpu_secs() - children0;
        let server_cpu = procstat::cpu_secs(dnsmasq).unwrap_or(0.0) - server_cpu0;
        let daemon_cpu = procstat::cpu_secs(daemon.pid()).unwrap_or(0.0) - daemon_cpu0;
        let server_rcvbuf_drops = rcvbuf_errors(&lab, lab.srv_ns()).saturating_sub(rcvbuf_before);
        let master_rx_dropped = master_rx_dropped(&lab).saturating_sub(rx_dropped_before);
        if let Some(dump) = std::env::var_os("BENCH_DUMP") {
            let csv: String = outs
                .iter()
                .map(|o| {
                    format!(
                        "{:.4},{:.4},{}\n",
                        o.spawned.as_secs_f64(),
                        o.latency.as_secs_f64(),
                        o.ok
                    )
                })
                .collect();
            let _ = std::fs::write(
                format!("{}-{}-{n}.csv", dump.to_string_lossy(), imp.name),
                csv,
            );
        }
        let peak = sampler.stop();
        configure_addresses(&atts, &outs);
        // The daemon at rest with its leases: after its idle-time housekeeping (ours trims the
        // allocator 5 s after a burst) and the reference's equally long wait.
        std::thread::sleep(SETTLE);
        let mut b = Batch {
            n,
            wall,
            machine_busy,
            plugins_cpu,
            server_rcvbuf_drops,
            master_rx_dropped,
            discovers: count_log(&lab, "DHCPDISCOVER(") - discovers_before,
            requests: count_msgs(&lab, "DHCPREQUEST", Proto::V4) - requests_before,
            solicits: count_log(&lab, "DHCPSOLICIT(") - solicits_before,
            router_solicits: count_log(&lab, "RTR-SOLICIT(") - rs_before,
            peak,
            after: procstat::read(daemon.pid()).unwrap_or_default(),
            server_cpu,
            daemon_cpu,
            ..Batch::default()
        };
        for o in &outs {
            if o.ok {
                b.ok += 1;
                b.latencies.push(o.latency);
                if o.addresses
                    .iter()
                    .any(|a| a.contains(':') && a.ends_with("/128"))
                {
                    b.no_ra += 1;
                }
            } else if b.first_failure.is_none() {
                b.first_failure = Some(o.detail.clone());
            }
        }
        eprintln!(
            "  {n} parallel ADDs: {} ok in {:?}, p50 {:?}, p99 {:?}, machine busy {:.2} CPU-s, plugins {:.2} CPU-s, daemon {:.2} CPU-s, dnsmasq {:.2} CPU-s, peak threads {}, rss {} KiB, dnsmasq saw {} DISCOVERs {} REQUESTs, drops: server rcvbuf {} master rx {}{}{}",
            b.ok,
            wall,
            report::percentile(&b.latencies, 50.0),
            report::percentile(&b.latencies, 99.0),
            b.machine_busy,
            b.plugins_cpu,
            b.daemon_cpu,
            b.server_cpu,
            b.peak.threads,
            b.after.rss_bytes / 1024,
            b.discovers,
            b.requests,
            b.server_rcvbuf_drops,
            b.master_rx_dropped,
            if imp.dual {
                format!(
                    " {} SOLICITs {} Router Solicitations, {} IPv6 addresses without an RA (/128)",
                    b.solicits, b.router_solicits, b.no_ra
                )
            } else {
                String::new()
            },
            b.first_failure
                .as_ref()
                .map(|f| format!(", first failure: {f}"))
                .unwrap_or_default()
        );

        if let Some(secs) = std::env::var("BENCH_PAUSE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            eprintln!("  pausing {secs} s (daemon pid {})", daemon.pid());
            std::thread::sleep(Duration::from_secs(secs));
        }
        // Not for dual stack: its DHCPv6 leases (12 h) would not renew within the run.
        if n == largest && !args.no_renewal && !imp.dual && b.ok > 0 {
            res.renewal = Some(renewal_cycle(&lab, &daemon, b.ok));
        }

        // Counted from here: a dual-stack ADD that failed released the half it had got.
        let releases_before = count_msgs(&lab, "DHCPRELEASE", Proto::V4);
        let releases6_before = count_msgs(&lab, "DHCPRELEASE", Proto::V6);
        let (dels, del_wall) = cni::batch(&plugin, "DEL", &atts, limit);
        b.del_wall = del_wall;
        b.del_ok = dels.iter().filter(|o| o.ok).count();
        settle_count(
            &lab,
            "DHCPRELEASE(",
            Duration::from_secs(2),
            Duration::from_secs(30),
        );
        b.releases = count_msgs(&lab, "DHCPRELEASE", Proto::V4).saturating_sub(releases_before);
        b.releases6 = count_msgs(&lab, "DHCPRELEASE", Proto::V6).saturating_sub(releases6_before);
        eprintln!(
            "  {n} parallel DELs: {} ok in {:?}, {} DHCPRELEASEs seen by dnsmasq{}",
            b.del_ok,
            del_wall,
            b.releases,
            if imp.dual {
                format!(", {} DHCPv6 RELEASEs", b.releases6)
            } else {
                String::new()
            }
        );
        lab.remove_containers(&names);
        res.batches.push(b);
    }
    drop(daemon);
    if let Some(keep) = std::env::var_os("BENCH_KEEP_LOGS") {
        let keep = PathBuf::from(keep);
        let _ = std::fs::create_dir_all(&keep);
        for f in [format!("{}-daemon.log", imp.name), "dnsmasq.log".into()] {
            let _ = std::fs::copy(lab.dir().join(&f), keep.join(format!("{}-{f}", imp.name)));
        }
    }
    res
}

/// Does the main plugin's part after each successful ADD, untimed: puts the leased addresses (both
/// families for dual stack) on the container's interface and sets it up, as macvlan or ipvlan
/// would. Without it nobody in the containers answers ARP for their addresses, so the server's
/// unicast DHCPACKs to RENEWING clients (RFC 2131 §4.4.5) could never be delivered. Eight `ip`
/// processes at a time.
fn configure_addresses(atts: &[cni::Attachment], outs: &[cni::Outcome]) {
    let jobs: Vec<(String, String, String)> = atts
        .iter()
        .zip(outs)
        .filter(|(_, o)| o.ok)
        .flat_map(|(a, o)| {
            let ns = a.netns.file_name().unwrap().to_string_lossy().into_owned();
            o.addresses
                .iter()
                .map(move |addr| (ns.clone(), a.ifname.clone(), addr.clone()))
        })
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((ns, ifname, address)) = jobs.get(i) else {
                        return;
                    };
                    common::ip(&["-n", ns, "addr", "add", address, "dev", ifname]);
                    common::ip(&["-n", ns, "link", "set", ifname, "up"]);
                }
            });
        }
    });
}

/// Waits for one full renewal cycle of the `leases` the daemon holds: from now until dnsmasq has
/// ACKed `leases` more requests (each lease renews once at T1 = 60 s), or 1.5 lease times.
fn renewal_cycle(lab: &Lab, daemon: &Daemon, leases: usize) -> Renewal {
    let acks0 = count_log(lab, "DHCPACK(");
    let cpu0 = procstat::cpu_secs(daemon.pid()).unwrap_or(0.0);
    let sampler = Sampler::start(daemon.pid());
    let start = Instant::now();
    let give_up = start + Duration::from_secs(LEASE_SECS * 3 / 2);
    let mut renewed = 0;
    eprintln!(
        "  waiting for {leases} renewals (T1 = {} s)",
        LEASE_SECS / 2
    );
    while Instant::now() < give_up {
        renewed = count_log(lab, "DHCPACK(").saturating_sub(acks0);
        if renewed >= leases {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let elapsed = start.elapsed();
    let cpu = procstat::cpu_secs(daemon.pid()).unwrap_or(0.0) - cpu0;
    let peak = sampler.stop();
    eprintln!("  renewal cycle: {renewed}/{leases} renewed in {elapsed:?}, daemon CPU {cpu:.2} s");
    Renewal {
        leases,
        renewed,
        elapsed,
        cpu_secs: cpu,
        peak,
    }
}
