//! Running IPAM plugin invocations the way a container runtime does: one process per ADD or DEL,
//! the network configuration on stdin and the `CNI_*` variables in the environment (CNI spec,
//! "Parameters"), many at once.
//!
//! Each invocation is timed from just before its `spawn` to its exit, so a latency includes the
//! process start, the round trip to the daemon and the daemon's DHCP exchange. A batch starts every
//! process at once on one thread (tokio's process support) and waits for all of them; processes
//! still running after `deadline` are killed and counted as failures.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// Which plugin, on which daemon socket.
#[derive(Debug, Clone)]
pub struct Plugin {
    /// The IPAM plugin binary (`dhcp`).
    pub program: PathBuf,
    /// The daemon's socket (`daemonSocketPath`).
    pub socket: PathBuf,
    /// Directories for `CNI_PATH`.
    pub cni_path: String,
    /// Dual stack: `"dhcp6": true` in the ipam config, and an ADD counts only with an IPv4
    /// and an IPv6 address in its result.
    pub dual: bool,
}

/// One container attachment to act on.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub container_id: String,
    pub netns: PathBuf,
    pub ifname: String,
}

/// How one invocation ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// When the process was spawned, from the start of the batch.
    pub spawned: Duration,
    /// Exit 0 and, for ADD, a result with an IPv4 address (and an IPv6 one when dual).
    pub ok: bool,
    /// Spawn to exit.
    pub latency: Duration,
    /// The first IP's address for a good ADD; the error message otherwise.
    pub detail: String,
    /// Every address of a good ADD's result (`198.18.1.7/20`, `fd00:cd::1234/64`), in order.
    pub addresses: Vec<String>,
}

/// The network configuration both implementations accept: CNI 1.0.0 (the newest the reference
/// 1.1.1 speaks), network `benchnet`, `ipam.type` `dhcp` with the daemon's socket; with `dual`
/// also `"dhcp6": true` (ours only).
pub fn config(socket: &Path, dual: bool) -> Value {
    let mut ipam = json!({"type": "dhcp", "daemonSocketPath": socket});
    if dual {
        ipam["dhcp6"] = json!(true);
    }
    if std::env::var_os("BENCH_NO_UNICAST").is_some() {
        ipam["unicastDiscover"] = json!(false);
    }
    json!({
        "cniVersion": "1.0.0",
        "name": "benchnet",
        "type": "macvlan",
        "ipam": ipam,
    })
}

async fn invoke(
    plugin: &Plugin,
    command: &str,
    a: &Attachment,
    batch_start: Instant,
    deadline: Instant,
) -> Outcome {
    let stdin = serde_json::to_vec(&config(&plugin.socket, plugin.dual)).expect("config JSON");
    let start = Instant::now();
    let spawned = start - batch_start;
    let child = tokio::process::Command::new(&plugin.program)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &a.container_id)
        .env("CNI_NETNS", &a.netns)
        .env("CNI_IFNAME", &a.ifname)
        .env("CNI_PATH", &plugin.cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                spawned,
                ok: false,
                latency: start.elapsed(),
                detail: format!("spawn: {e}"),
                addresses: Vec::new(),
            };
        }
    };
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(&stdin).await;
    }
    let out = match tokio::time::timeout_at(deadline.into(), child.wait_with_output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => {
            return Outcome {
                spawned,
                ok: false,
                latency: start.elapsed(),
                detail: format!("wait: {e}"),
                addresses: Vec::new(),
            };
        }
        Err(_) => {
            return Outcome {
                spawned,
                ok: false,
                latency: start.elapsed(),
                detail: "killed at the batch deadline".into(),
                addresses: Vec::new(),
            };
        }
    };
    let latency = start.elapsed();
    let result: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let addresses: Vec<String> = result["ips"]
        .as_array()
        .map(|ips| {
            ips.iter()
                .filter_map(|ip| ip["address"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let has = |v6: bool| addresses.iter().any(|a| a.contains(':') == v6);
    let ok =
        out.status.success() && (command != "ADD" || (has(false) && (!plugin.dual || has(true))));
    let detail = if ok {
        addresses.first().cloned().unwrap_or_default()
    } else if out.status.success() {
        format!(
            "ADD succeeded without the addresses asked for: {}",
            String::from_utf8_lossy(&out.stdout)
        )
        .chars()
        .take(300)
        .collect()
    } else {
        let msg = result["msg"].as_str().unwrap_or_default();
        let stderr = String::from_utf8_lossy(&out.stderr);
        format!("{} {msg} {}", out.status, stderr.trim())
            .trim()
            .chars()
            .take(300)
            .collect()
    };
    Outcome {
        spawned,
        ok,
        latency,
        detail,
        addresses: if ok { addresses } else { Vec::new() },
    }
}

/// Runs `command` for every attachment at once; outcomes in `attachments` order, and the wall
/// time from the first spawn to the last exit.
pub fn batch(
    plugin: &Plugin,
    command: &str,
    attachments: &[Attachment],
    limit: Duration,
) -> (Vec<Outcome>, Duration) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let start = Instant::now();
        let deadline = start + limit;
        let outcomes = futures::future::join_all(
            attachments
                .iter()
                .map(|a| invoke(plugin, command, a, start, deadline)),
        )
        .await;
        (outcomes, start.elapsed())
    })
}

/// Runs `command` for one attachment.
pub fn one(plugin: &Plugin, command: &str, a: &Attachment, limit: Duration) -> Outcome {
    batch(plugin, command, std::slice::from_ref(a), limit)
        .0
        .remove(0)
}
