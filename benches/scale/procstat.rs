//! What a process costs, read from `/proc`: resident memory, threads, open descriptors and CPU
//! time, plus a sampler that keeps the peaks while a workload runs.
//!
//! Sources (proc(5)): `/proc/PID/status` (`VmRSS` in KiB, `Threads`), `/proc/PID/fd` (one entry
//! per open descriptor), `/proc/PID/stat` fields 14 and 15 (`utime`, `stime`, in clock ticks of
//! `sysconf(_SC_CLK_TCK)`, all threads of the process, live and exited).

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// Threads in the process.
    pub threads: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// User plus system CPU time since the process started, seconds (10 ms resolution).
    pub cpu_secs: f64,
}

/// Reads `pid` now; `None` if the process is gone.
pub fn read(pid: u32) -> Option<Usage> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Usage {
        rss_bytes: field("VmRSS:") * 1024,
        threads: field("Threads:"),
        fds,
        cpu_secs: cpu_secs(pid)?,
    })
}

/// User plus system CPU seconds of `pid` (all its threads), `None` if it is gone.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((utime + stime) as f64 / hz)
}

/// Samples a process every 20 ms on its own thread and keeps the highest RSS, thread and
/// descriptor counts seen, until [`Sampler::stop`].
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Usage>,
}

impl Sampler {
    pub fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = Usage::default();
            loop {
                if let Some(u) = read(pid) {
                    peak.rss_bytes = peak.rss_bytes.max(u.rss_bytes);
                    peak.threads = peak.threads.max(u.threads);
                    peak.fds = peak.fds.max(u.fds);
                    peak.cpu_secs = u.cpu_secs;
                }
                if flag.load(Ordering::Relaxed) {
                    return peak;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Sampler { stop, thread }
    }

    /// The peaks (and the last CPU reading).
    pub fn stop(self) -> Usage {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// CPU seconds the whole machine spent busy (everything but idle and iowait) since boot, from
/// the first line of `/proc/stat` (clock ticks).
pub fn machine_busy_secs() -> f64 {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return 0.0;
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: u64 = v
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, x)| *x)
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    busy as f64 / hz
}

/// CPU seconds used by this process's reaped children (the plugin processes), from
/// getrusage(RUSAGE_CHILDREN).
pub fn children_cpu_secs() -> f64 {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN);
    u.map(|u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    })
    .unwrap_or(0.0)
}
