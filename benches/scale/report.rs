//! Turning measurements into the table (printed and written to `docs/benchmarks.md`) and the
//! chart of ADD latency against N (SVG, drawn with plotters).
//!
//! Ratios are reference / ours for figures where lower is better, so "12×" means ours is twelve
//! times faster (or smaller). Targets are the ones issue 6 set for this 2-core machine.
//!
//! With `ours-dual` in the run (our binaries with DHCPv6 too), a second ratio column is
//! ours-dual / ours, the cost of dual stack ("1.3×": a dual-stack ADD takes 1.3 times as long as
//! a DHCPv4-only one), and a second target column holds issue 12's targets for it: single ADD
//! p50 at most 1.5× the DHCPv4-only one, 1000 parallel ADDs all succeed, daemon threads bounded
//! as for DHCPv4 only.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use plotters::prelude::*;

use crate::server::ServerOnly;
use crate::{Batch, Results};

/// Nearest-rank percentile (`p` in 0..=100) of `v`; `None` when empty.
pub fn percentile(v: &[Duration], p: f64) -> Option<Duration> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort();
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    Some(s[rank.clamp(1, s.len()) - 1])
}

fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64() * 1000.0)
}

/// Everything the report needs.
pub struct Report<'a> {
    pub results: &'a [Results],
    pub server: Option<&'a ServerOnly>,
    pub command: &'a str,
    pub lease_secs: u64,
    /// Every lab's dnsmasq ran with `--leasefile-ro` (the bench's `--leasefile-ro`).
    pub leasefile_ro: bool,
    pub took: Duration,
    pub chart_name: String,
}

/// One row: a label, a value per implementation, how to print it, whether a ratio makes sense,
/// and the targets for ours and for ours-dual with whether they were met.
struct Row {
    label: String,
    values: Vec<Option<f64>>,
    unit: &'static str,
    decimals: usize,
    ratio: bool,
    target: Option<(String, bool)>,
    dual_target: Option<(String, bool)>,
    /// Printed instead of the numbers (e.g. "998/1000").
    text: Option<Vec<String>>,
}

impl Row {
    fn num(
        label: impl Into<String>,
        values: Vec<Option<f64>>,
        unit: &'static str,
        decimals: usize,
    ) -> Row {
        Row {
            label: label.into(),
            values,
            unit,
            decimals,
            ratio: true,
            target: None,
            dual_target: None,
            text: None,
        }
    }

    fn text(label: impl Into<String>, text: Vec<String>) -> Row {
        Row {
            label: label.into(),
            values: Vec::new(),
            unit: "",
            decimals: 0,
            ratio: false,
            target: None,
            dual_target: None,
            text: Some(text),
        }
    }

    fn no_ratio(mut self) -> Row {
        self.ratio = false;
        self
    }

    fn value(&self, i: usize) -> Option<f64> {
        self.values.get(i).copied().flatten()
    }

    /// Target for ours (`values[ours]`): at most `max`. None when ours was not run (index
    /// `usize::MAX`).
    fn at_most(mut self, ours: usize, max: f64, shown: &str) -> Row {
        if ours < self.values.len() {
            let met = self.value(ours).is_some_and(|v| v <= max);
            self.target = Some((shown.to_string(), met));
        }
        self
    }

    /// Target for ours-dual (`values[dual]`): at most `max`.
    fn dual_at_most(mut self, dual: usize, max: f64, shown: &str) -> Row {
        if dual < self.values.len() {
            let met = self.value(dual).is_some_and(|v| v <= max);
            self.dual_target = Some((shown.to_string(), met));
        }
        self
    }

    /// Target for ours-dual: `values[dual] / values[ours]` at most `max`.
    fn dual_ratio_at_most(mut self, ours: usize, dual: usize, max: f64, shown: &str) -> Row {
        if dual < self.values.len() && ours < self.values.len() {
            let met = match (self.value(ours), self.value(dual)) {
                (Some(o), Some(d)) if o > 0.0 => d / o <= max,
                _ => false,
            };
            self.dual_target = Some((shown.to_string(), met));
        }
        self
    }

    /// Target for ours-dual, met or not as the caller found.
    fn dual_target(mut self, shown: &str, met: bool) -> Row {
        self.dual_target = Some((shown.to_string(), met));
        self
    }

    fn cell(&self, i: usize) -> String {
        if let Some(t) = &self.text {
            return t.get(i).cloned().unwrap_or_default();
        }
        match self.values.get(i).copied().flatten() {
            Some(v) => format!("{v:.*}{}", self.decimals, self.unit),
            None => "—".into(),
        }
    }

    /// `values[over] / values[under]` (reference / ours, or ours-dual / ours).
    fn ratio_cell(&self, under: Option<usize>, over: Option<usize>) -> String {
        let (Some(u), Some(o)) = (under, over) else {
            return "—".into();
        };
        if !self.ratio {
            return "—".into();
        }
        match (self.value(u), self.value(o)) {
            (Some(u), Some(o)) if u > 0.0 => format!("{:.1}×", o / u),
            _ => "—".into(),
        }
    }
}

fn target_cell(target: &Option<(String, bool)>) -> String {
    match target {
        Some((shown, true)) => format!("{shown}: met"),
        Some((shown, false)) => format!("{shown}: **missed**"),
        None => String::new(),
    }
}

impl Report<'_> {
    fn index(&self, name: &str) -> Option<usize> {
        self.results.iter().position(|r| r.name == name)
    }

    fn rows(&self) -> Vec<Row> {
        let ours = self.index("ours").unwrap_or(usize::MAX);
        let dual = self.index("ours-dual").unwrap_or(usize::MAX);
        let has_dual = self.index("ours-dual").is_some();
        let each = |f: &dyn Fn(&Results) -> Option<f64>| -> Vec<Option<f64>> {
            self.results.iter().map(f).collect()
        };
        let mut rows = Vec::new();
        let singles = |p: f64| each(&|r| ms(percentile(&r.singles, p)));
        rows.push(Row::text(
            "single ADD: succeeded",
            self.results
                .iter()
                .map(|r| format!("{}/{}", r.singles.len(), r.singles.len() + r.singles_failed))
                .collect(),
        ));
        rows.push(Row::num("single ADD min", singles(0.0), " ms", 1));
        rows.push(
            Row::num("single ADD p50", singles(50.0), " ms", 1)
                .at_most(ours, 20.0, "≤ 20 ms")
                .dual_ratio_at_most(ours, dual, 1.5, "≤ 1.5× ours"),
        );
        rows.push(Row::num("single ADD p99", singles(99.0), " ms", 1));
        rows.push(Row::num(
            "daemon at start: RSS",
            each(&|r| Some(r.idle.rss_bytes as f64 / 1e6)),
            " MB",
            1,
        ));
        rows.push(Row::num(
            "daemon at start: threads",
            each(&|r| Some(r.idle.threads as f64)),
            "",
            0,
        ));

        let mut ns: Vec<usize> = self
            .results
            .iter()
            .flat_map(|r| r.batches.iter().map(|b| b.n))
            .collect();
        ns.sort();
        ns.dedup();
        let largest = ns.last().copied();
        for &n in &ns {
            let batch =
                |r: &Results| -> Option<Batch> { r.batches.iter().find(|b| b.n == n).cloned() };
            let per = |f: &dyn Fn(&Batch) -> Option<f64>| each(&|r| batch(r).and_then(|b| f(&b)));
            let mut succeeded = Row::text(
                format!("{n} parallel ADDs: succeeded"),
                self.results
                    .iter()
                    .map(|r| {
                        batch(r)
                            .map(|b| format!("{}/{}", b.ok, b.n))
                            .unwrap_or("—".into())
                    })
                    .collect(),
            );
            if n == 1000 && has_dual {
                let all = self
                    .results
                    .get(dual)
                    .and_then(batch)
                    .is_some_and(|b| b.ok == b.n);
                succeeded = succeeded.dual_target("1000/1000", all);
            }
            rows.push(succeeded);
            let mut wall = Row::num(
                format!("{n} parallel ADDs: wall"),
                per(&|b| Some(b.wall.as_secs_f64())),
                " s",
                2,
            );
            if n == 1000 {
                let all = self
                    .results
                    .get(ours)
                    .and_then(batch)
                    .is_some_and(|b| b.ok == b.n);
                wall = wall.at_most(ours, 5.0, "≤ 5 s, 1000/1000");
                if let Some(t) = wall.target.as_mut() {
                    t.1 &= all;
                }
            }
            rows.push(wall);
            rows.push(Row::num(
                format!("{n} parallel ADDs: p50"),
                per(&|b| ms(percentile(&b.latencies, 50.0))),
                " ms",
                0,
            ));
            rows.push(Row::num(
                format!("{n} parallel ADDs: p99"),
                per(&|b| ms(percentile(&b.latencies, 99.0))),
                " ms",
                0,
            ));
            rows.push(
                Row::num(
                    format!("{n} parallel ADDs: daemon peak threads"),
                    per(&|b| Some(b.peak.threads as f64)),
                    "",
                    0,
                )
                .at_most(ours, 16.0, "≤ 16")
                .dual_at_most(dual, 16.0, "≤ 16"),
            );
            rows.push(Row::num(
                format!("{n} parallel ADDs: daemon CPU"),
                per(&|b| Some(b.daemon_cpu)),
                " s",
                2,
            ));
            rows.push(Row::num(
                format!("{n} parallel ADDs: dnsmasq CPU"),
                per(&|b| Some(b.server_cpu)),
                " s",
                2,
            ));
            rows.push(Row::num(
                format!("{n} parallel ADDs: plugin processes CPU"),
                per(&|b| Some(b.plugins_cpu)),
                " s",
                2,
            ));
            rows.push(Row::num(
                format!("{n} parallel ADDs: whole machine busy"),
                per(&|b| Some(b.machine_busy)),
                " CPU-s",
                2,
            ));
            rows.push(
                Row::num(
                    format!("{n} parallel ADDs: DHCPDISCOVERs dnsmasq saw"),
                    per(&|b| Some(b.discovers as f64)),
                    "",
                    0,
                )
                .no_ratio(),
            );
            rows.push(
                Row::num(
                    format!("{n} parallel ADDs: server UDP receive-buffer drops"),
                    per(&|b| Some(b.server_rcvbuf_drops as f64)),
                    "",
                    0,
                )
                .no_ratio(),
            );
            rows.push(
                Row::num(
                    format!("{n} parallel ADDs: master rx_dropped (broadcast queue)"),
                    per(&|b| Some(b.master_rx_dropped as f64)),
                    "",
                    0,
                )
                .no_ratio(),
            );
            if has_dual {
                let dual_count = |f: &dyn Fn(&Batch) -> usize| -> Vec<Option<f64>> {
                    self.results
                        .iter()
                        .map(|r| batch(r).filter(|_| r.dual).map(|b| f(&b) as f64))
                        .collect()
                };
                rows.push(
                    Row::num(
                        format!("{n} parallel ADDs: DHCPv6 SOLICITs dnsmasq saw"),
                        dual_count(&|b| b.solicits),
                        "",
                        0,
                    )
                    .no_ratio(),
                );
                rows.push(
                    Row::num(
                        format!("{n} parallel ADDs: Router Solicitations dnsmasq saw"),
                        dual_count(&|b| b.router_solicits),
                        "",
                        0,
                    )
                    .no_ratio(),
                );
                rows.push(
                    Row::num(
                        format!("{n} parallel ADDs: IPv6 /128 without a router (no RA in 2 s)"),
                        dual_count(&|b| b.no_ra),
                        "",
                        0,
                    )
                    .no_ratio(),
                );
            }
            if Some(n) == largest {
                let mut rss = Row::num(
                    format!("daemon holding {n} leases: RSS"),
                    per(&|b| Some(b.after.rss_bytes as f64 / 1e6)),
                    " MB",
                    1,
                );
                if n >= 1000 {
                    rss = rss.at_most(ours, 20.0, "≤ 20 MB");
                }
                rows.push(rss);
                rows.push(
                    Row::num(
                        format!("daemon holding {n} leases: threads"),
                        per(&|b| Some(b.after.threads as f64)),
                        "",
                        0,
                    )
                    .at_most(ours, 16.0, "≤ 16")
                    .dual_at_most(dual, 16.0, "≤ 16"),
                );
                rows.push(Row::num(
                    format!("daemon holding {n} leases: open fds"),
                    per(&|b| Some(b.after.fds as f64)),
                    "",
                    0,
                ));
                if self.results.iter().any(|r| r.renewal.is_some()) {
                    let ren = |r: &Results| r.renewal.clone();
                    rows.push(Row::text(
                        "renewal cycle: renewed",
                        self.results
                            .iter()
                            .map(|r| match ren(r) {
                                Some(c) => format!("{}/{}", c.renewed, c.leases),
                                None if r.dual => "skipped".into(),
                                None => "—".into(),
                            })
                            .collect(),
                    ));
                    rows.push(
                        Row::num(
                            "renewal cycle: length",
                            each(&|r| ren(r).map(|c| c.elapsed.as_secs_f64())),
                            " s",
                            1,
                        )
                        .no_ratio(),
                    );
                    let mut cpu = Row::num(
                        "renewal cycle: daemon CPU",
                        each(&|r| ren(r).map(|c| c.cpu_secs)),
                        " s",
                        2,
                    );
                    if n >= 1000 {
                        cpu = cpu.at_most(ours, 1.0, "< 1 CPU-s");
                    }
                    rows.push(cpu);
                    rows.push(
                        Row::num(
                            "renewal cycle: daemon peak threads",
                            each(&|r| ren(r).map(|c| c.peak.threads as f64)),
                            "",
                            0,
                        )
                        .at_most(ours, 16.0, "≤ 16"),
                    );
                }
            }
            rows.push(Row::text(
                format!("DEL of {n}: succeeded"),
                self.results
                    .iter()
                    .map(|r| {
                        batch(r)
                            .map(|b| format!("{}/{}", b.del_ok, b.n))
                            .unwrap_or("—".into())
                    })
                    .collect(),
            ));
            rows.push(Row::num(
                format!("DEL of {n}: wall"),
                per(&|b| Some(b.del_wall.as_secs_f64())),
                " s",
                2,
            ));
            rows.push(Row::text(
                format!("DEL of {n}: DHCPRELEASEs seen by dnsmasq"),
                self.results
                    .iter()
                    .map(|r| {
                        batch(r)
                            .map(|b| format!("{}/{}", b.releases, b.ok))
                            .unwrap_or("—".into())
                    })
                    .collect(),
            ));
            if has_dual {
                rows.push(Row::text(
                    format!("DEL of {n}: DHCPv6 RELEASEs seen by dnsmasq"),
                    self.results
                        .iter()
                        .map(|r| match batch(r) {
                            Some(b) if r.dual => format!("{}/{}", b.releases6, b.ok),
                            _ => "—".into(),
                        })
                        .collect(),
                ));
            }
        }
        rows
    }

    /// The table as Markdown (also what is printed).
    pub fn table(&self) -> String {
        let rows = self.rows();
        let ours = self.index("ours");
        let reference = self.index("reference");
        let dual = self.index("ours-dual");
        let mut t = String::from("| measure |");
        for r in self.results {
            let _ = write!(t, " {} |", r.name);
        }
        t.push_str(" ratio (reference / ours) |");
        if dual.is_some() {
            t.push_str(" ours-dual / ours |");
        }
        t.push_str(" target for ours |");
        if dual.is_some() {
            t.push_str(" target for ours-dual |");
        }
        t.push_str("\n|---|");
        for _ in self.results {
            t.push_str("---:|");
        }
        t.push_str(if dual.is_some() {
            "---:|---:|---|---|\n"
        } else {
            "---:|---|\n"
        });
        for row in &rows {
            let _ = write!(t, "| {} |", row.label);
            for i in 0..self.results.len() {
                let _ = write!(t, " {} |", row.cell(i));
            }
            let _ = write!(t, " {} |", row.ratio_cell(ours, reference));
            if dual.is_some() {
                let _ = write!(t, " {} |", row.ratio_cell(ours, dual));
            }
            let _ = write!(t, " {} |", target_cell(&row.target));
            if dual.is_some() {
                let _ = write!(t, " {} |", target_cell(&row.dual_target));
            }
            t.push('\n');
        }
        if let Some(s) = self.server {
            let _ = writeln!(
                t,
                "\nServer alone (dnsmasq, no client in the way): {} DISCOVER+REQUEST pairs answered \
                 ({} ACKs) in {:.2} s, {:.0} leases/s; dnsmasq CPU {:.2} s; ACK latency p50 {:.1} ms, p99 {:.1} ms.",
                s.leases,
                s.acked,
                s.wall.as_secs_f64(),
                s.acked as f64 / s.wall.as_secs_f64().max(1e-9),
                s.server_cpu,
                ms(percentile(&s.latencies, 50.0)).unwrap_or(f64::NAN),
                ms(percentile(&s.latencies, 99.0)).unwrap_or(f64::NAN),
            );
        }
        t
    }

    /// The whole `docs/benchmarks.md`.
    pub fn markdown(&self) -> String {
        let mut m = String::new();
        m.push_str("# Benchmarks: cni-dhcp against the reference\n\n");
        m.push_str("Written by the benchmark itself (`benches/scale/`); rerun it rather than edit this file.\n\n");
        let _ = writeln!(m, "- Date: {}", now_utc());
        let _ = writeln!(m, "- Machine: {}", machine());
        let _ = writeln!(
            m,
            "- Command: `{}` (as root; took {:.0} s)",
            self.command,
            self.took.as_secs_f64()
        );
        let _ = writeln!(
            m,
            "- Reference: Debian `containernetworking-plugins` {} (`/usr/lib/cni/dhcp`, plugin and daemon).",
            reference_version()
        );
        let _ = writeln!(
            m,
            "- Set-up: a netns lab per implementation: dnsmasq `--no-ping` (its ping check blocks DHCP \
             for up to 3 s per offer), {} s leases on a /20, `--dhcp-lease-max=10000`, no `--log-dhcp`; \
             the master is a veth into the server's netns; each container is a fresh netns with a \
             macvlan (bridge) slave made before the clock starts, so only the IPAM plugin is timed: \
             one `dhcp` process per ADD or DEL, config on stdin (CNI 1.0.0), spawn to exit. Both \
             daemons run with their defaults (ours: `-state-dir` in the lab, `RUST_LOG=info`).",
            self.lease_secs
        );
        if self.leasefile_ro {
            m.push_str(
                "- Every dnsmasq (every implementation's, and the server-only step's) ran with \
                 `--leasefile-ro`: no lease file, so the server does not rewrite it at each lease \
                 change (docs/performance.md, *Dual stack*).\n",
            );
        }
        m.push_str(
            "- After each batch the harness does the main plugin's part, untimed: the leased address on \
             the container's interface, link up (so containers answer the server's ARP at renewal). \
             For runs with more than 250 containers it raises `net.ipv4.neigh.default.gc_thresh1/2/3` \
             to 8192/16384/32768 and restores them after: the kernel's ARP table is shared by all \
             namespaces and overflows at 1024 entries (as on any node with this many containers).\n",
        );
        m.push_str(
            "- Parallel ADDs all start at once; wall is first spawn to last exit. The daemon's peak threads \
             are sampled every 20 ms. The renewal cycle starts when the largest batch has returned and \
             ends when dnsmasq has ACKed one renewal per lease (T1 = half the lease). Releases are \
             DHCPRELEASE lines in dnsmasq's log, counted after the log has been quiet for 2 s.\n",
        );
        if self.results.iter().any(|r| r.dual) {
            m.push_str(DUAL_SETUP);
        }
        m.push('\n');
        m.push_str(&self.table());
        let _ = writeln!(m, "\n![ADD latency against N]({})\n", self.chart_name);
        m
    }
}

/// The set-up of `ours-dual`, for the report.
const DUAL_SETUP: &str = "- `ours-dual`: our binaries with `\"dhcp6\": true` in the ipam config, so each ADD acquires \
     a DHCPv4 and a DHCPv6 lease at once and succeeds only with both addresses in its result. Its \
     lab's dnsmasq also serves DHCPv6 (`--dhcp-range=fd00:cd::1000,fd00:cd::ffff,64,12h`, Rapid \
     Commit) and Router Advertisements (`--enable-ra`) on s0 (`fd00:cd::1/64`), and s0 forwards \
     IPv6 as the router it advertises does (its kernel then learns each container's MAC from the \
     container's Router Solicitation, which dnsmasq's DHCPv6 server looks up before it answers). \
     The IPv6 neighbour table's thresholds are raised as IPv4's. The containers are \
     handed over down, as for `ours`: the daemon brings the link up with Optimistic DAD. After each \
     batch the harness puts both addresses on the interface. No renewal cycle (the DHCPv6 leases \
     last 12 h). DHCPv6 messages are counted from dnsmasq's log as for DHCPv4 (a RELEASE line \
     names the client's DUID instead of an address). The second ratio column is ours-dual / ours, \
     the cost of dual stack.\n";

fn now_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map(|kib| format!("{:.0} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores ({cpu}), {mem}, Linux {}", kernel.trim())
}

fn reference_version() -> String {
    std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "containernetworking-plugins"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|| "(version unknown)".into())
}

/// One implementation's line: its name, p50 points and p99 points (N, ms).
type Series = (String, Vec<(f64, f64)>, Vec<(f64, f64)>);

/// Draws p50 and p99 ADD latency (log scale, ms) against N for each implementation; the
/// sequential ADDs are plotted at N = 1.
pub fn chart(results: &[Results], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let series: Vec<Series> = results
        .iter()
        .map(|r| {
            let mut p50 = Vec::new();
            let mut p99 = Vec::new();
            if let (Some(a), Some(b)) = (
                ms(percentile(&r.singles, 50.0)),
                ms(percentile(&r.singles, 99.0)),
            ) {
                p50.push((1.0, a));
                p99.push((1.0, b));
            }
            for bt in &r.batches {
                if let (Some(a), Some(b)) = (
                    ms(percentile(&bt.latencies, 50.0)),
                    ms(percentile(&bt.latencies, 99.0)),
                ) {
                    p50.push((bt.n as f64, a));
                    p99.push((bt.n as f64, b));
                }
            }
            (r.name.clone(), p50, p99)
        })
        .collect();
    let max_n = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .fold(10.0, f64::max);
    let max_ms = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.1))
        .fold(100.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "DHCP IPAM ADD latency against parallel ADDs (N = 1: sequential)",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..max_n * 1.05, (1f64..max_ms * 2.0).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("N parallel ADDs")
        .y_desc("latency per ADD, ms (log)")
        .draw()?;
    let colours = [
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0xd6, 0x27, 0x28),
        GREEN,
        MAGENTA,
    ];
    for (i, (name, p50, p99)) in series.iter().enumerate() {
        let c = colours[i % colours.len()];
        chart
            .draw_series(LineSeries::new(p50.clone(), c.stroke_width(2)))?
            .label(format!("{name} p50"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_series(p50.iter().map(|p| Circle::new(*p, 4, c.filled())))?;
        chart
            .draw_series(LineSeries::new(p99.clone(), c.mix(0.5).stroke_width(1)))?
            .label(format!("{name} p99"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], c.mix(0.5).stroke_width(1))
            });
        chart.draw_series(
            p99.iter()
                .map(|p| TriangleMarker::new(*p, 4, c.mix(0.5).filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
