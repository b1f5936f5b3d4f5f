//! ipvlan at scale, in the VM (issue 13 §3): N parallel ADDs on ipvlan L2 slaves of one master,
//! for our plugins and daemon, the reference's with `-broadcast`, and a floor without DHCP (our
//! `ipvlan` with the reference's `static` IPAM), all in one boot of the Debian cloud kernel
//! under qemu (this host's kernel has no ipvlan). The guest side is `tests/vm/guest-scale.sh`,
//! which prints one `SCALE` line per batch; this harness boots it, parses those lines, prints a
//! table and, under `cargo bench`, writes it into the `ipvlan-vm` section of
//! `docs/benchmarks.md`, beside the macvlan figures of `benches/scale` (which keeps the
//! section when it rewrites the file).
//!
//! ```text
//! cargo bench --bench vm_scale                       # 50 and 200 at once, into docs/benchmarks.md
//! cargo bench --bench vm_scale -- --sizes 10,50 --out /tmp/b.md
//! ```
//!
//! Run without `--bench` (as `cargo test --all-targets` does) it is a smoke run: 20 at once,
//! with the guest's checks on (every one of our ADDs leased, at most 2 DHCPDISCOVERs per
//! container: with the shared MAC as chaddr dnsmasq needs about N(N+1)/2), written nowhere.
//! Outside CI a missing qemu skips it; under `CI=true` that fails.
//!
//! The emulator (TCG) is tens of times slower than hardware and its speed depends on the host's
//! load: only ratios between batches of one run mean anything. Both daemons get the guest
//! script's `-timeout` (60 s), so that the budget does not measure the emulator.

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;
#[path = "common/sections.rs"]
mod sections;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "ipvlan at scale in the VM: ours, the reference and a static-IPAM floor")]
struct Args {
    /// Set by `cargo bench`: the full run, written to --out. Without it: the smoke run.
    #[arg(long)]
    bench: bool,
    /// Containers per batch, comma separated (default 50,200; smoke: 20).
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<u32>,
    /// Where the table goes (its `ipvlan-vm` section; the rest of the file is kept).
    #[arg(long, default_value = "docs/benchmarks.md")]
    out: PathBuf,
}

/// One `SCALE` line of the guest: `impl` and the `key=value` figures after it.
#[derive(Debug, Clone, PartialEq)]
struct Batch {
    implementation: String,
    fields: BTreeMap<String, String>,
}

impl Batch {
    /// `SCALE impl=ours n=20 ok=20 ...`; `None` for any other line.
    fn parse(line: &str) -> Option<Batch> {
        let rest = line.trim().strip_prefix("SCALE ")?;
        let fields: BTreeMap<String, String> = rest
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(Batch {
            implementation: fields.get("impl")?.clone(),
            fields,
        })
    }

    fn get(&self, key: &str) -> &str {
        self.fields.get(key).map(String::as_str).unwrap_or("?")
    }

    fn num(&self, key: &str) -> Option<f64> {
        self.fields.get(key)?.parse().ok()
    }
}

/// Boots the guest with `env` as its /scale.env; returns the console and whether the guest
/// reported no FAIL and exited 0.
fn run_vm(env: &str, timeout_secs: u64) -> (String, bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let env_file = dir.path().join("scale.env");
    std::fs::write(&env_file, env).expect("write scale.env");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_dhcp")).parent().unwrap();
    let out = common::vm::boot(
        "guest-scale.sh",
        bin_dir,
        [
            (
                "CNI_DHCP_VM_FILES",
                format!("{}:/scale.env", env_file.display()),
            ),
            ("CNI_DHCP_VM_TIMEOUT", timeout_secs.to_string()),
            ("CNI_DHCP_VM_MEM", "3072".to_string()),
        ],
    );
    let console = String::from_utf8_lossy(&out.stdout).into_owned();
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let clean = out.status.success()
        && console.contains("CNI-DHCP-VM-EXIT=0")
        && !console.lines().any(|l| l.starts_with("FAIL"));
    (console, clean)
}

/// The table: one row per batch, grouped by N, with the reference's and the floor's walls
/// against ours.
fn table(batches: &[Batch]) -> String {
    let mut t = String::new();
    t.push_str("| N | implementation | leased | wall | p50 | p99 | DISCOVERs | REQUESTs | NAKs | master rx_dropped | server RcvbufErrors |\n");
    t.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let secs = |b: &Batch, k: &str| {
        b.num(k)
            .map(|ms| format!("{:.1} s", ms / 1e3))
            .unwrap_or_else(|| "?".into())
    };
    for b in batches {
        let name = match b.implementation.as_str() {
            "ours" => "ours (auto: broadcast flag, derived chaddr)",
            "ref" => "reference (`-broadcast`)",
            "static" => "floor: our ipvlan + reference `static` IPAM",
            other => other,
        };
        let _ = writeln!(
            t,
            "| {} | {name} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} |",
            b.get("n"),
            b.get("ok"),
            b.get("n"),
            secs(b, "wall_ms"),
            secs(b, "p50_ms"),
            secs(b, "p99_ms"),
            b.get("discovers"),
            b.get("requests"),
            b.get("naks"),
            b.get("master_rx_dropped"),
            b.get("srv_rcvbuf_errors"),
        );
    }
    let mut sizes: Vec<&str> = batches.iter().map(|b| b.get("n")).collect();
    sizes.dedup();
    for n in sizes {
        let of = |i: &str| {
            batches
                .iter()
                .find(|b| b.get("n") == n && b.implementation == i)
        };
        if let (Some(ours), Some(reference)) = (of("ours"), of("ref")) {
            let _ = writeln!(
                t,
                "\nN = {n}: ours leased {} of {n}, the reference {} of {n}; wall, reference / ours: {:.1}×.",
                ours.get("ok"),
                reference.get("ok"),
                reference.num("wall_ms").unwrap_or(f64::NAN)
                    / ours.num("wall_ms").unwrap_or(f64::NAN).max(1.0)
            );
        }
    }
    t
}

fn main() {
    let args = Args::parse();
    if common::which("qemu-system-x86_64").is_none() || common::which("dnsmasq").is_none() {
        assert!(
            !common::in_ci(),
            "qemu-system-x86_64 or dnsmasq missing under CI: scripts/deps.sh"
        );
        eprintln!("SKIP vm_scale: qemu-system-x86_64 or dnsmasq not found (scripts/deps.sh)");
        return;
    }
    let sizes = match (&args.sizes[..], args.bench) {
        ([], true) => vec![50, 200],
        ([], false) => vec![20],
        (s, _) => s.to_vec(),
    };
    let sizes_str: Vec<String> = sizes.iter().map(u32::to_string).collect();
    let env = format!(
        "SIZES=\"{}\"\nCHECK={}\n",
        sizes_str.join(" "),
        if args.bench { "" } else { "1" }
    );
    // Boot and set-up take under a minute; a batch of N takes well under N s (ours) and under
    // a minute plus N s (the reference, which loses most of its ADDs to duplicate offers).
    let timeout = 300 + sizes.iter().map(|&n| 3 * u64::from(n) + 180).sum::<u64>();
    let started = Instant::now();
    let (console, clean) = run_vm(&env, timeout);
    let took = started.elapsed();
    let batches: Vec<Batch> = console.lines().filter_map(Batch::parse).collect();
    for l in console.lines().filter(|l| {
        l.starts_with("PASS") || l.starts_with("FAIL") || l.starts_with("first failure")
    }) {
        println!("{l}");
    }
    let t = table(&batches);
    println!("{t}");
    println!("VM run took {:.0} s", took.as_secs_f64());
    let expected = sizes.len() * 3;
    assert!(
        clean && batches.len() == expected,
        "the guest failed or printed {} of {expected} SCALE lines; console:\n{console}",
        batches.len()
    );
    let mut body = String::new();
    body.push_str("## ipvlan at scale (in the VM)\n\n");
    body.push_str("Written by `benches/vm_scale.rs` (`cargo bench --bench vm_scale`); rerun it rather than edit this section.\n\n");
    let _ = writeln!(
        body,
        "- Date: {}; took {:.0} s. Command: `cargo bench --bench vm_scale -- --sizes {}`.",
        String::from_utf8_lossy(
            &Command::new("date")
                .args(["-u", "+%Y-%m-%d %H:%M UTC"])
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default()
        )
        .trim(),
        took.as_secs_f64(),
        sizes_str.join(",")
    );
    body.push_str(
        "- Set-up: `tests/vm/guest-scale.sh` in qemu (TCG, 2 vCPUs, 3 GiB) on the Debian cloud kernel \
         (`tests/vm/kernel.sh`). Per batch a fresh lab: dnsmasq `--no-ping --log-dhcp` on a /22 \
         (750 addresses, 1 h leases) behind the veth m0; N netns made first, then N `ipvlan` ADDs \
         started at once, each making an L2 slave of m0 (all share m0's MAC). Both daemons run with \
         `-timeout 60s` (the emulator is tens of times slower than hardware). The floor runs our \
         `ipvlan` with the reference's `static` IPAM: the cost of the ADDs without DHCP. \
         Software emulation: compare rows of one run only. DISCOVERs, REQUESTs and NAKs are \
         dnsmasq's log lines; rx_dropped is m0's counter (ipvlan's full multicast backlog), \
         RcvbufErrors the server namespace's UDP counter.\n\n",
    );
    body.push_str(&t);
    // The smoke run writes into a copy of the report, and checks that the rest was kept.
    let scratch = tempfile::tempdir().expect("temp dir");
    let out = if args.bench {
        args.out.clone()
    } else {
        let copy = scratch.path().join("benchmarks.md");
        let _ = std::fs::copy(&args.out, &copy);
        copy
    };
    let old = std::fs::read_to_string(&out).unwrap_or_default();
    let new = sections::replace_section(&old, sections::IPVLAN_VM, &body);
    std::fs::write(&out, &new).expect("write the report");
    let written = sections::section(&new, sections::IPVLAN_VM).expect("the section");
    assert!(written.contains(&t), "the table is in the section");
    if let Some(kept) = old.split("<!-- begin ").next() {
        assert!(
            new.starts_with(kept.trim_end()),
            "the rest of {} kept",
            out.display()
        );
    }
    eprintln!("wrote the ipvlan-vm section of {}", out.display());
}
