//! Trust under faults (docs/reliability.md): a root daemon that acts on interfaces long after
//! the ADD that named them must never act on the wrong namespace, never forget a live lease,
//! never answer before the lease is on disk, never run two drivers for one attachment, never
//! hand out or take away a binding behind a server that keys by MAC, and always give a lease
//! back. Each test is a regression test of one fault, against dnsmasq or the scriptable fake
//! server (tests/common/fake_server.rs) in the netns lab, and prints its figures. Needs root.

mod common;

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Lab;
use common::fake_server::{FakeServer, Keying, Kind};
use common::plugin::*;
use dhcproto::v4::MessageType;
use serde_json::{Value, json};

use common::fake_lab;

/// A lab with dnsmasq (`--no-ping`); `None` (skip) when it cannot be built here outside CI.
fn dnsmasq_lab(name: &str) -> Option<Lab> {
    if common::skip_unless_available(name) {
        return None;
    }
    Some(Lab::builder(name).no_ping(true).build())
}

/// ADD for `id` in `ns` (its `eth0` made already); on success the address is put on the
/// interface, as the main plugin would. Returns (ok, result or error).
fn add(lab: &Lab, daemon: &Daemon, id: &str, ns: &Path, ipam: Value) -> (bool, Value) {
    let (ok, out) = cni(DHCP, "ADD", id, ns, "eth0", &conf(&daemon.socket, ipam));
    if ok {
        let address = out["ips"][0]["address"].as_str().unwrap();
        lab.exec_ok(ns, &["ip", "addr", "add", address, "dev", "eth0"]);
    }
    (ok, out)
}

/// A container `c1` with a macvlan `eth0` and a lease for `id` on it (address configured).
/// Returns the namespace path and the leased address without its prefix.
fn leased_container(lab: &Lab, daemon: &Daemon, id: &str) -> (PathBuf, String) {
    let ns = lab.container("c1");
    lab.add_macvlan(&ns, "eth0");
    let (ok, out) = add(lab, daemon, id, &ns, json!({}));
    assert!(ok, "{out}");
    let ip = out["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    (ns, ip)
}

fn record_of(daemon: &Daemon, id: &str) -> Value {
    lease_records(&daemon.socket)
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["attachment"]["container_id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

/// The option 61 our daemon sends for `id` on the lab network (`0x00 id/labnet/eth0`).
fn cid(id: &str) -> Vec<u8> {
    cni_dhcp::dhcp::client_id(id, "labnet", "eth0")
}

fn state_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("state"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn link_line(lab: &Lab, ns: &Path) -> String {
    String::from_utf8_lossy(
        &lab.exec_in(ns, &["ip", "-o", "link", "show", "eth0"])
            .stdout,
    )
    .into_owned()
}

fn netns_name(ns: &Path) -> String {
    ns.file_name().unwrap().to_string_lossy().into_owned()
}

/// Deletes the netns at `ns` and makes a different one at the same path, with an `eth0` that
/// is a macvlan of m0 (so it reaches the server: the worst case). Returns the new eth0's MAC.
fn replace_namespace(lab: &Lab, ns: &Path) -> String {
    let name = netns_name(ns);
    common::ip(&["netns", "del", &name]);
    common::ip(&["netns", "add", &name]);
    lab.add_macvlan(ns, "eth0")
}

fn mac_bytes(mac: &str) -> Vec<u8> {
    mac.split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// What the daemon must not have done to the new namespace's eth0 since `since` (an index
/// into the server's received list): bring it up, address it, or send from it.
fn assert_untouched(lab: &Lab, ns: &Path, server: &FakeServer, new_mac: &str, since: usize) {
    let line = link_line(lab, ns);
    assert!(
        !line.contains(",UP") && !line.contains("<UP"),
        "the new namespace's eth0 was brought up: {line}"
    );
    assert!(
        lab.ipv4_of(ns, "eth0").is_empty(),
        "the new namespace's eth0 got addresses: {:?}",
        lab.ipv4_of(ns, "eth0")
    );
    let mac = mac_bytes(new_mac);
    let from_new: Vec<_> = server.received()[since..]
        .iter()
        .filter(|s| s.chaddr.get(..6) == Some(&mac[..]))
        .map(|s| s.kind)
        .collect();
    assert!(
        from_new.is_empty(),
        "DHCP sent from the new namespace's eth0: {from_new:?}"
    );
}

#[test]
fn a_restarted_daemon_never_acts_in_another_namespace_at_the_lease_path() {
    let Some(lab) = fake_lab("reuse-restart") else {
        return;
    };
    let server = FakeServer::start(&lab);
    server.set_lease_time(20);
    let daemon = Daemon::start(lab.dir(), &[]);
    let ns = lab.container("a");
    lab.add_macvlan(&ns, "eth0");
    let (ok, out) = add(&lab, &daemon, "reused", &ns, json!({}));
    assert!(ok, "{out}");
    // A second container whose namespace stays: it must be resumed and renewed as usual.
    let kept_ns = lab.container("b");
    lab.add_macvlan(&kept_ns, "eth0");
    let (ok, out) = add(&lab, &daemon, "kept", &kept_ns, json!({}));
    assert!(ok, "{out}");
    let kept_address = out["ips"][0]["address"].as_str().unwrap().to_string();
    // kill -9; the container goes; another namespace is made at the same path.
    drop(daemon);
    let new_mac = replace_namespace(&lab, &ns);
    // Past T1: a daemon that trusted the path would renew from the new eth0 at once.
    std::thread::sleep(Duration::from_secs(11));
    let since = server.received().len();
    let restarted = Instant::now();
    let daemon = Daemon::start(lab.dir(), &[]);
    assert!(
        eventually(Duration::from_secs(5), || daemon_log(lab.dir())
            .contains("persisted lease dropped: container gone")),
        "{}",
        daemon_log(lab.dir())
    );
    let noticed = restarted.elapsed();
    // Give a wrong daemon time to do harm.
    std::thread::sleep(Duration::from_secs(2));
    assert_untouched(&lab, &ns, &server, &new_mac, since);
    let log = daemon_log(lab.dir());
    let reason = log
        .lines()
        .find(|l| l.contains("persisted lease dropped"))
        .unwrap()
        .to_string();
    assert!(
        reason.contains("another network namespace") || reason.contains("cookie"),
        "{reason}"
    );
    // Only the other container's lease is left, renewed at once (past T1) from its own eth0.
    let records = lease_records(&daemon.socket);
    let ids: Vec<&str> = records
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["attachment"]["container_id"].as_str())
        .collect();
    assert_eq!(ids, ["kept"], "{records}");
    assert!(
        eventually(
            Duration::from_secs(5),
            || record_of(&daemon, "kept")["renewals"].as_u64() >= Some(1)
        ),
        "{}",
        record_of(&daemon, "kept")
    );
    assert_eq!(lab.ipv4_of(&kept_ns, "eth0"), vec![kept_address]);
    assert_eq!(
        state_files(lab.dir()).len(),
        1,
        "{:?}",
        state_files(lab.dir())
    );
    println!(
        "restart with another namespace at the lease's path: dropped {:.0} ms after start, new eth0 untouched, the other container's lease resumed and renewed ({})",
        noticed.as_secs_f64() * 1e3,
        reason.split("reason=").nth(1).unwrap_or(&reason).trim()
    );
}

#[test]
fn at_t1_a_lease_never_acts_in_another_namespace_at_its_path() {
    let Some(lab) = fake_lab("reuse-t1") else {
        return;
    };
    let server = FakeServer::start(&lab);
    server.set_lease_time(20);
    // T1 2 s: before the sweeper's first look (10 s after start), so T1 meets the new namespace.
    server.set_renewal_times(2, 15);
    let daemon = Daemon::start(lab.dir(), &[]);
    let ns = lab.container("a");
    lab.add_macvlan(&ns, "eth0");
    let (ok, out) = add(&lab, &daemon, "moved", &ns, json!({}));
    assert!(ok, "{out}");
    let bound = Instant::now();
    let since = server.received().len();
    let new_mac = replace_namespace(&lab, &ns);
    assert!(
        eventually(Duration::from_secs(15), || lease_records(&daemon.socket)
            == json!([])),
        "lease still held: {}",
        lease_records(&daemon.socket)
    );
    let dropped = bound.elapsed();
    assert_untouched(&lab, &ns, &server, &new_mac, since);
    // Given back from the namespace the lease holds, not from the new one.
    assert!(server.wait_for(
        |s| s.kind == Kind::Release && s.client_id.as_deref() == Some(&cid("moved")[..]),
        Duration::from_secs(2)
    ));
    let log = daemon_log(lab.dir());
    assert!(
        log.lines()
            .any(|l| l.contains("lease dropped: container gone")
                && l.contains("another network namespace")),
        "{log}"
    );
    assert!(state_files(lab.dir()).is_empty());
    println!(
        "another namespace at the path before T1: lease released from its own namespace and dropped {:.1} s after bound; new eth0 untouched",
        dropped.as_secs_f64()
    );
}

/// Starts `dhcp daemon` under `prlimit --nofile=limit:limit` on the lab's socket and state
/// directory, logging to daemon.log.
fn daemon_with_fd_limit(dir: &Path, limit: u64) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("daemon.log"))
        .unwrap();
    Command::new("prlimit")
        .arg(format!("--nofile={limit}:{limit}"))
        .arg(DHCP)
        .arg("daemon")
        .arg("-socketpath")
        .arg(dir.join("dhcp.sock"))
        .arg("-state-dir")
        .arg(dir.join("state"))
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prlimit dhcp daemon")
}

#[test]
fn transient_resume_failures_keep_every_lease() {
    let Some(lab) = dnsmasq_lab("emfile") else {
        return;
    };
    if common::which("prlimit").is_none() {
        panic!("prlimit (util-linux) is needed");
    }
    const N: usize = 8;
    // The daemon's descriptors with no lease at all.
    let base = {
        let idle_dir = lab.dir().join("idle");
        std::fs::create_dir_all(&idle_dir).unwrap();
        let idle = Daemon::start(&idle_dir, &[]);
        idle.fds() as u64
    };
    let daemon = Daemon::start(lab.dir(), &[]);
    let leased = add_many(&lab, &daemon.socket, N, "em");
    let with_leases = daemon.fds();
    drop(daemon); // kill -9
    assert_eq!(state_files(lab.dir()).len(), N);
    // Two descriptors more than an idle daemon needs: too few to enter any lease's namespace
    // (the hard limit too, so the daemon cannot lift it; raising it back needs
    // CAP_SYS_RESOURCE, which test machines may not have, so the cause goes with a restart).
    let limit = base + 2;
    let mut child = daemon_with_fd_limit(lab.dir(), limit);
    assert!(
        eventually(Duration::from_secs(10), || daemon_log(lab.dir())
            .contains("persisted leases reloaded")),
        "{}",
        daemon_log(lab.dir())
    );
    // Let the retries run (1 s, 2 s... with jitter), still starved.
    std::thread::sleep(Duration::from_secs(4));
    let log = daemon_log(lab.dir());
    let _ = child.kill();
    let _ = child.wait();
    let failed = log
        .matches("cannot resume persisted lease; keeping it")
        .count();
    assert!(
        failed >= N,
        "{failed} failed resume attempts under {limit} fds:\n{log}"
    );
    assert!(
        log.contains("Too many open files"),
        "not the injected failure:\n{log}"
    );
    assert!(
        !log.contains("persisted lease dropped"),
        "a lease was dropped for a transient error:\n{log}"
    );
    assert_eq!(state_files(lab.dir()).len(), N, "lease files lost");
    // The cause is gone: every lease resumes, the same leases.
    let restarted = Instant::now();
    let daemon = Daemon::start(lab.dir(), &[]);
    let records = lease_records(&daemon.socket);
    assert!(
        records
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["state"] == "BOUND" && r["last_error"].is_null()),
        "{records}"
    );
    let mut got = addresses(&records);
    let mut want: Vec<String> = leased
        .iter()
        .map(|(_, a)| a.split('/').next().unwrap().to_string())
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "the same leases came back");
    println!(
        "{N} leases, restart with {limit} fds (idle daemon {base}, {with_leases} with the leases): {failed} resume attempts failed with EMFILE in 4 s, 0 leases or files lost; all {N} resumed {:.0} ms after a restart without the limit",
        restarted.elapsed().as_secs_f64() * 1e3
    );
}

/// The bind mount of a namespace file made for a test, unmounted and removed on drop.
struct HeldNs(PathBuf);

impl Drop for HeldNs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_namespace_that_cannot_be_entered_for_a_while_is_resumed_when_it_can() {
    let Some(lab) = dnsmasq_lab("eloop") else {
        return;
    };
    let daemon = Daemon::start(lab.dir(), &[]);
    let ns = lab.container("c1");
    lab.add_macvlan(&ns, "eth0");
    let (ok, out) = add(&lab, &daemon, "looped", &ns, json!({}));
    assert!(ok, "{out}");
    let address = out["ips"][0]["address"].as_str().unwrap().to_string();
    drop(daemon); // kill -9
    // The namespace stays alive (a second bind mount holds it) but its path becomes a
    // symbolic link to it, which the daemon refuses to follow (ELOOP): a failure that is not
    // "gone".
    let real = ns.canonicalize().unwrap();
    let held = PathBuf::from(format!("{}.held", real.display()));
    std::fs::write(&held, "").unwrap();
    let _held = HeldNs(held.clone());
    let mount = |args: &[&str]| {
        assert!(
            Command::new(args[0])
                .args(&args[1..])
                .status()
                .unwrap()
                .success(),
            "{args:?}"
        )
    };
    mount(&[
        "mount",
        "--bind",
        real.to_str().unwrap(),
        held.to_str().unwrap(),
    ]);
    mount(&["umount", real.to_str().unwrap()]);
    std::fs::remove_file(&real).unwrap();
    std::os::unix::fs::symlink(held.file_name().unwrap(), &real).unwrap();
    let daemon = Daemon::start(lab.dir(), &[]);
    let r = record_of(&daemon, "looped");
    assert!(
        r["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot resume") && e.contains("symbolic links")),
        "{r}"
    );
    assert_eq!(
        state_files(lab.dir()).len(),
        1,
        "the lease file was dropped"
    );
    // The path is a namespace again: the next attempt resumes the lease.
    std::fs::remove_file(&real).unwrap();
    std::fs::write(&real, "").unwrap();
    mount(&[
        "mount",
        "--bind",
        held.to_str().unwrap(),
        real.to_str().unwrap(),
    ]);
    drop(_held);
    let fixed = Instant::now();
    assert!(
        eventually(Duration::from_secs(10), || {
            record_of(&daemon, "looped")["last_error"].is_null()
        }),
        "{}",
        record_of(&daemon, "looped")
    );
    let back = fixed.elapsed();
    let r = record_of(&daemon, "looped");
    assert_eq!(r["state"], "BOUND", "{r}");
    assert_eq!(r["lease"]["address"], address.split('/').next().unwrap());
    assert!(daemon_log(lab.dir()).contains("resumed persisted lease after earlier failures"));
    // It is driven again: DEL releases it.
    let (ok, out) = cni(
        DHCP,
        "DEL",
        "looped",
        &ns,
        "eth0",
        &conf(&daemon.socket, json!({})),
    );
    assert!(ok, "{out}");
    let ip = address.split('/').next().unwrap();
    assert!(lab.wait_for_log(&format!("DHCPRELEASE(s0) {ip}"), Duration::from_secs(5)));
    println!(
        "namespace path unusable (ELOOP) at restart: lease and file kept, error shown; resumed {:.1} s after the path was fixed, then released by DEL",
        back.as_secs_f64()
    );
}

/// A tmpfs mounted on `path` for the guard's life.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs on {}", path.display());
        Tmpfs(path.to_path_buf())
    }

    /// Writes `name` until the filesystem is full.
    fn fill(&self, name: &str) {
        let mut f = std::fs::File::create(self.0.join(name)).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_state_directory_fails_add_cleanly_and_status_says_why() {
    let Some(lab) = dnsmasq_lab("fullstate") else {
        return;
    };
    let state = lab.dir().join("state");
    let tmpfs = Tmpfs::mount(&state, "256k");
    tmpfs.fill("filler");
    let daemon = Daemon::start(lab.dir(), &[]);
    let config = conf(&daemon.socket, json!({}));
    let ns = lab.container("c1");
    lab.add_macvlan(&ns, "eth0");
    let state_dir = state.display().to_string();

    let (ok, out) = cni(DHCP, "STATUS", "", Path::new(""), "", &config);
    assert!(!ok, "STATUS ready with a full state directory: {out}");
    assert_eq!(out["code"], 50, "{out}");
    let text = format!("{} {}", out["msg"], out["details"]);
    assert!(
        text.contains(&state_dir) && text.contains("No space left"),
        "{text}"
    );

    let started = Instant::now();
    let (ok, out) = cni(DHCP, "ADD", "full-1", &ns, "eth0", &config);
    let took = started.elapsed();
    assert!(!ok, "ADD answered with a lease that is not on disk: {out}");
    assert_eq!(out["code"], 5, "{out}");
    assert!(
        out["msg"].as_str().unwrap().contains(&state_dir),
        "the error names the state directory: {out}"
    );
    // Nothing leaks: the lease was given back, the daemon holds nothing, no temp file.
    assert!(
        lab.wait_for_log("DHCPRELEASE(s0)", Duration::from_secs(5)),
        "{}",
        lab.dnsmasq_log()
    );
    assert!(eventually(Duration::from_secs(5), || lab
        .leases()
        .is_empty()));
    assert_eq!(lease_records(&daemon.socket), json!([]));
    assert_eq!(state_files(lab.dir()), vec!["filler".to_string()]);
    assert!(lab.ipv4_of(&ns, "eth0").is_empty());

    // Room again: STATUS is ready and ADD keeps its lease on disk before it answers.
    std::fs::remove_file(state.join("filler")).unwrap();
    let (ok, out) = cni(DHCP, "STATUS", "", Path::new(""), "", &config);
    assert!(ok, "{out}");
    let (ok, out) = cni(DHCP, "ADD", "full-1", &ns, "eth0", &config);
    assert!(ok, "{out}");
    assert_eq!(state_files(lab.dir()).len(), 1);
    drop(daemon);
    drop(tmpfs);
    println!(
        "full state directory: STATUS code 50, ADD failed with code 5 in {:.0} ms, DHCPRELEASE sent, 0 leases left at dnsmasq or in the daemon",
        took.as_secs_f64() * 1e3
    );
}

#[test]
fn concurrent_add_del_gc_on_one_attachment_leave_one_truth() {
    let Some(lab) = fake_lab("race") else { return };
    let server = FakeServer::start(&lab);
    let metrics = free_tcp_addr();
    let daemon = Daemon::start(lab.dir(), &["-metrics-listen", &metrics.to_string()]);
    let ns = lab.container("c1");
    lab.add_macvlan(&ns, "eth0");
    let config = conf(&daemon.socket, json!({}));
    let mut gc_config = config.clone();
    gc_config["cni.dev/valid-attachments"] = json!([]);
    const ROUNDS: usize = 15;
    let mut seen_held = 0;
    for round in 0..ROUNDS {
        std::thread::scope(|s| {
            let run = |cmd: &'static str, stagger_ms: u64| {
                let (config, gc_config, ns) = (&config, &gc_config, &ns);
                s.spawn(move || {
                    std::thread::sleep(Duration::from_millis(stagger_ms));
                    let c = if cmd == "GC" { gc_config } else { config };
                    cni(DHCP, cmd, "racer", ns, "eth0", c)
                })
            };
            // ADD in flight while DEL and a second ADD queue behind it, GC among them.
            let order: [(&'static str, u64); 4] = match round % 3 {
                0 => [("ADD", 0), ("DEL", 1), ("ADD", 2), ("GC", 3)],
                1 => [("ADD", 0), ("GC", 1), ("DEL", 1), ("ADD", 2)],
                _ => [("ADD", 0), ("ADD", 0), ("DEL", 1), ("ADD", 1)],
            };
            let handles: Vec<_> = order.iter().map(|(c, ms)| run(c, *ms)).collect();
            for h in handles {
                let (ok, out) = h.join().unwrap();
                assert!(ok, "round {round}: {out}");
            }
        });
        // At rest, the table, the state directory, the running drivers and the server's
        // bindings agree: zero or one lease.
        let agree = || {
            let records = lease_records(&daemon.socket).as_array().unwrap().len();
            let files = state_files(lab.dir()).len();
            let drivers = metric(&scrape(metrics), "cni_dhcp_lease_drivers") as usize;
            let bindings = server.bindings().len();
            (records <= 1 && files == records && drivers == records && bindings == records)
                .then_some(records)
        };
        assert!(
            eventually(Duration::from_secs(5), || agree().is_some()),
            "round {round}: records {}, files {:?}, drivers {}, server bindings {:?}",
            lease_records(&daemon.socket),
            state_files(lab.dir()),
            metric(&scrape(metrics), "cni_dhcp_lease_drivers"),
            server.bindings()
        );
        seen_held += agree().unwrap_or(0);
    }
    println!(
        "{ROUNDS} rounds of concurrent ADD/DEL/ADD/GC on one attachment: table, state directory, drivers and server bindings agreed after every round ({seen_held} ended holding the lease)"
    );
}

/// ADDs `c1`, `c2`, `c3` on containers sharing one MAC behind a server of `keying`, then two
/// renewal cycles of `c1`, then the DELs. Returns a line of figures.
fn three_adds_behind_a_mac_keyed_server(name: &str, keying: Keying) -> Option<String> {
    let lab = fake_lab(name)?;
    let server = FakeServer::start(&lab);
    server.set_keying(keying);
    server.set_lease_time(20);
    let daemon = Daemon::start(lab.dir(), &[]);
    const MAC: &str = "02:5a:00:00:00:01";
    let nss: Vec<PathBuf> = ["c1", "c2", "c3"]
        .iter()
        .map(|c| {
            let ns = lab.container(c);
            lab.add_shared_mac_container(&ns, "eth0", MAC);
            ns
        })
        .collect();
    let (ok, out) = add(&lab, &daemon, "c1", &nss[0], json!({}));
    assert!(ok, "{out}");
    let first = out["ips"][0]["address"].as_str().unwrap().to_string();
    let first_ip = first.split('/').next().unwrap().to_string();
    let mut messages = Vec::new();
    for (i, id) in ["c2", "c3"].iter().enumerate() {
        let (ok, out) = add(&lab, &daemon, id, &nss[i + 1], json!({}));
        assert!(!ok, "{id} got a lease behind a MAC-keyed server: {out}");
        assert_eq!(out["code"], 7, "{out}");
        let msg = out["msg"].as_str().unwrap().to_string();
        assert!(
            msg.contains("keys leases by MAC") && msg.contains("option 61") && msg.contains("c1/"),
            "{msg}"
        );
        messages.push(msg.replace(id, "X"));
        assert!(lab.ipv4_of(&nss[i + 1], "eth0").is_empty());
    }
    assert_eq!(messages[0], messages[1], "the same explanation each time");
    // Nothing declined, nothing requested for the refused ones: the server's only binding for
    // the MAC is still c1's.
    assert_eq!(
        server.count_kind(Kind::Decline),
        0,
        "a DHCPDECLINE was sent"
    );
    let requested_by_others = server
        .received()
        .iter()
        .filter(|s| {
            s.kind == Kind::Selecting
                && (s.client_id.as_deref() == Some(&cid("c2")[..])
                    || s.client_id.as_deref() == Some(&cid("c3")[..]))
        })
        .count();
    assert_eq!(
        requested_by_others, 0,
        "a refused container sent a DHCPREQUEST"
    );
    let bindings: Vec<Ipv4Addr> = server.bindings().values().copied().collect();
    assert_eq!(bindings, vec![first_ip.parse::<Ipv4Addr>().unwrap()]);
    // Two renewal cycles of the first: each ACKed, same address, no NAK.
    assert!(
        eventually(
            Duration::from_secs(30),
            || record_of(&daemon, "c1")["renewals"].as_u64() >= Some(2)
        ),
        "c1 not renewed twice: {}",
        record_of(&daemon, "c1")
    );
    let r = record_of(&daemon, "c1");
    assert_eq!(r["lease"]["address"], first_ip.as_str(), "{r}");
    assert_eq!(r["state"], "BOUND", "{r}");
    assert_eq!(server.count_sent(MessageType::Nak), 0);
    assert_eq!(lab.ipv4_of(&nss[0], "eth0"), vec![first.clone()]);
    // A restart in the middle (kill -9): c1 is resumed, and a server offering c1's address
    // again is still recognised (the resumed lease counts as bound since its grant), so a
    // third ADD of c3 is refused the same way. (A server offering another address after a
    // restart is not: the marks are kept in memory, docs/reliability.md.)
    let daemon = if keying == Keying::Mac {
        drop(daemon);
        let daemon = Daemon::start(lab.dir(), &[]);
        let before = server.received().len();
        let (ok, out) = add(&lab, &daemon, "c3", &nss[2], json!({}));
        assert!(!ok, "c3 got a lease after a restart: {out}");
        assert_eq!(out["code"], 7, "{out}");
        let requested = server.received()[before..]
            .iter()
            .filter(|s| s.kind == Kind::Selecting)
            .count();
        assert_eq!(requested, 0, "c3 requested an address after the restart");
        assert_eq!(record_of(&daemon, "c1")["state"], "BOUND");
        daemon
    } else {
        daemon
    };
    // The DELs leave the server with no binding.
    for (i, id) in ["c3", "c2", "c1"].iter().enumerate() {
        let (ok, out) = cni(
            DHCP,
            "DEL",
            id,
            &nss[2 - i],
            "eth0",
            &conf(&daemon.socket, json!({})),
        );
        assert!(ok, "{out}");
    }
    assert!(
        eventually(Duration::from_secs(3), || server.bindings().is_empty()),
        "bindings left: {:?}",
        server.bindings()
    );
    Some(format!(
        "{keying:?}: c1 got {first}; c2 and c3 refused with code 7 ({requested_by_others} REQUESTs from them, 0 DHCPDECLINE); c1 renewed {} times with the same address; 0 bindings left after the DELs",
        r["renewals"]
    ))
}

#[test]
fn behind_a_mac_keyed_server_the_first_lease_keeps_its_binding() {
    if let Some(figures) = three_adds_behind_a_mac_keyed_server("mackey", Keying::Mac) {
        println!("{figures}");
    }
}

#[test]
fn behind_a_mac_keyed_server_offering_the_next_address_nothing_is_taken_over() {
    if let Some(figures) = three_adds_behind_a_mac_keyed_server("macnext", Keying::MacNextAddress) {
        println!("{figures}");
    }
}

/// With `"chaddr": "derived"`, containers sharing one MAC each send a chaddr of their own
/// (derived from option 61): a server keying by chaddr then gives each its own binding, all
/// of them are renewed, a daemon restart (kill -9) resumes them with the same chaddr (a
/// resumed lease sending the shared MAC would be NAKed by this server), and the DELs leave
/// nothing. The automatic policy picks `derived` on ipvlan only, which this host lacks; the
/// VM tests cover it (tests/vm/guest-udhcpd.sh).
#[test]
fn with_derived_chaddrs_a_mac_keyed_server_gives_each_container_its_own_lease() {
    let Some(lab) = fake_lab("derived") else {
        return;
    };
    let server = FakeServer::start(&lab);
    server.set_keying(Keying::Mac);
    server.set_lease_time(20);
    let mut daemon = Daemon::start(lab.dir(), &[]);
    const MAC: &str = "02:5a:00:00:00:02";
    let ids = ["c1", "c2", "c3"];
    let mut nss = Vec::new();
    let mut addresses = Vec::new();
    for id in ids {
        let ns = lab.container(id);
        lab.add_shared_mac_container(&ns, "eth0", MAC);
        let (ok, out) = add(&lab, &daemon, id, &ns, json!({"chaddr": "derived"}));
        assert!(ok, "{id}: {out}");
        addresses.push(out["ips"][0]["address"].as_str().unwrap().to_string());
        nss.push(ns);
    }
    let mut distinct = addresses.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "addresses: {addresses:?}");
    // What the server saw and bound: each container's derived chaddr, never the shared MAC.
    let bindings = server.bindings();
    assert_eq!(bindings.len(), 3, "{bindings:?}");
    for (id, address) in ids.iter().zip(&addresses) {
        let chaddr = cni_dhcp::dhcp::message::derived_chaddr(&cid(id));
        let ip: Ipv4Addr = address.split('/').next().unwrap().parse().unwrap();
        let key = [b"mac:".as_slice(), &chaddr].concat();
        assert_eq!(bindings.get(&key), Some(&ip), "{id}: {bindings:?}");
        let record = record_of(&daemon, id);
        assert_eq!(
            record["chaddr"],
            cni_dhcp::lease_file::mac::to_string(&chaddr).as_str(),
            "{record}"
        );
    }
    let shared = mac_bytes(MAC);
    assert!(
        server.received().iter().all(|s| s.chaddr != shared),
        "a message carried the shared MAC as chaddr"
    );
    // A restart: every lease is resumed and renewed with its derived chaddr.
    drop(daemon);
    daemon = Daemon::start(lab.dir(), &[]);
    let before = server.received().len();
    assert!(
        eventually(Duration::from_secs(40), || ids.iter().all(|id| record_of(
            &daemon, id
        )["renewals"]
            .as_u64()
            >= Some(1))),
        "not every lease renewed after the restart: {}",
        lease_records(&daemon.socket)
    );
    for (id, address) in ids.iter().zip(&addresses) {
        let r = record_of(&daemon, id);
        assert_eq!(r["state"], "BOUND", "{r}");
        assert_eq!(
            r["lease"]["address"],
            address.split('/').next().unwrap(),
            "{r}"
        );
    }
    assert_eq!(
        server.count_sent(MessageType::Nak),
        0,
        "a renewal was NAKed"
    );
    let renewed: Vec<Vec<u8>> = server.received()[before..]
        .iter()
        .map(|s| s.chaddr.clone())
        .collect();
    assert!(
        !renewed.is_empty() && renewed.iter().all(|c| *c != shared),
        "after the restart: {renewed:?}"
    );
    for (id, ns) in ids.iter().zip(&nss) {
        let (ok, out) = cni(
            DHCP,
            "DEL",
            id,
            ns,
            "eth0",
            &conf(&daemon.socket, json!({"chaddr": "derived"})),
        );
        assert!(ok, "{out}");
    }
    assert!(
        eventually(Duration::from_secs(3), || server.bindings().is_empty()),
        "bindings left: {:?}",
        server.bindings()
    );
    println!(
        "3 containers sharing {MAC} behind a MAC-keyed server with derived chaddrs: {addresses:?}, renewed after a restart without a NAK, 0 bindings left after the DELs"
    );
}

#[test]
fn a_lease_reacquired_in_the_background_is_checked_for_duplicates() {
    let Some(lab) = fake_lab("bgdup") else { return };
    let server = FakeServer::start(&lab);
    server.set_lease_time(20);
    server.set_renewal_times(2, 15);
    let daemon = Daemon::start(lab.dir(), &[]);
    let ns1 = lab.container("c1");
    lab.add_macvlan(&ns1, "eth0");
    let ns2 = lab.container("c2");
    lab.add_macvlan(&ns2, "eth0");
    let (ok, out) = add(&lab, &daemon, "c1", &ns1, json!({}));
    assert!(ok, "{out}");
    let first = out["ips"][0]["address"].as_str().unwrap().to_string();
    let (ok, out) = add(&lab, &daemon, "c2", &ns2, json!({}));
    assert!(ok, "{out}");
    let second = out["ips"][0]["address"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    // The server now hands every client c1's address: c2's renewal is NAKed and its
    // background acquisition is offered and acknowledged c1's address.
    server.set_keying(Keying::OneAddress);
    let watching = Instant::now();
    let mut duplicate_seen = false;
    let declined = |s: &common::fake_server::Seen| {
        s.kind == Kind::Decline && s.client_id.as_deref() == Some(&cid("c2")[..])
    };
    while watching.elapsed() < Duration::from_secs(14) {
        if lab.ipv4_of(&ns2, "eth0").contains(&first) {
            duplicate_seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !duplicate_seen,
        "c2 configured c1's address {first} after a background re-acquisition"
    );
    assert!(
        server.wait_for(declined, Duration::from_secs(1)),
        "no DHCPDECLINE from c2"
    );
    let r2 = record_of(&daemon, "c2");
    assert!(
        r2["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("already holds it")),
        "{r2}"
    );
    assert_ne!(r2["state"], "BOUND", "{r2}");
    let r1 = record_of(&daemon, "c1");
    assert_eq!(r1["state"], "BOUND", "{r1}");
    assert_eq!(lab.ipv4_of(&ns1, "eth0"), vec![first.clone()]);
    println!(
        "background re-acquisition offered {first} (held by c1): declined ({} DHCPDECLINE), never configured on c2, c1 kept it",
        server.received().iter().filter(|s| declined(s)).count()
    );
}

#[test]
fn del_after_the_namespace_is_gone_still_releases() {
    let Some(lab) = dnsmasq_lab("delgone") else {
        return;
    };
    let daemon = Daemon::start(lab.dir(), &[]);
    let (ns, ip) = leased_container(&lab, &daemon, "short-lived");
    assert_eq!(lab.leases().len(), 1);
    // The runtime tears the namespace down, then calls DEL with CNI_NETNS empty (containerd).
    common::ip(&["netns", "del", &netns_name(&ns)]);
    let started = Instant::now();
    let (ok, out) = cni(
        DHCP,
        "DEL",
        "short-lived",
        Path::new(""),
        "eth0",
        &conf(&daemon.socket, json!({})),
    );
    assert!(ok, "{out}");
    assert!(
        lab.wait_for_log(&format!("DHCPRELEASE(s0) {ip}"), Duration::from_secs(5)),
        "{}",
        lab.dnsmasq_log()
    );
    assert!(eventually(Duration::from_secs(5), || lab
        .leases()
        .is_empty()));
    assert_eq!(lease_records(&daemon.socket), json!([]));
    println!(
        "DEL after the namespace was deleted: DHCPRELEASE for {ip} at dnsmasq {:.0} ms after DEL, lease dropped",
        started.elapsed().as_secs_f64() * 1e3
    );
}

#[test]
fn a_container_gone_without_del_is_released_by_the_sweeper() {
    let Some(lab) = dnsmasq_lab("sweepgone") else {
        return;
    };
    let daemon = Daemon::start(lab.dir(), &[]);
    let (ns, ip) = leased_container(&lab, &daemon, "vanished");
    common::ip(&["netns", "del", &netns_name(&ns)]);
    let started = Instant::now();
    assert!(
        lab.wait_for_log(&format!("DHCPRELEASE(s0) {ip}"), Duration::from_secs(15)),
        "{}",
        lab.dnsmasq_log()
    );
    assert!(eventually(Duration::from_secs(5), || lab
        .leases()
        .is_empty()));
    assert!(eventually(Duration::from_secs(2), || lease_records(
        &daemon.socket
    ) == json!([])));
    println!(
        "container gone without DEL: released {:.1} s after its namespace went",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn leases_of_zero_and_one_second_do_not_loop() {
    let Some(lab) = fake_lab("tiny") else { return };
    let server = FakeServer::start(&lab);
    let daemon = Daemon::start(lab.dir(), &[]);
    let mut figures = Vec::new();
    for secs in [0u32, 1] {
        server.set_lease_time(secs);
        let id = format!("tiny{secs}");
        let ns = lab.container(&id);
        lab.add_macvlan(&ns, "eth0");
        let (ok, out) = add(&lab, &daemon, &id, &ns, json!({}));
        assert!(ok, "{out}");
        let from = Instant::now();
        std::thread::sleep(Duration::from_secs(12));
        let mine = cid(&id);
        let sent = server
            .received()
            .iter()
            .filter(|s| s.client_id.as_deref() == Some(&mine[..]))
            .count();
        let r = record_of(&daemon, &id);
        // DISCOVER, REQUEST, then one renewal at T1 = 10 s of the 20 s floor.
        assert!(
            sent <= 6,
            "{sent} messages in {:.0} s for a {secs} s lease",
            from.elapsed().as_secs_f64()
        );
        assert_eq!(r["lease"]["lease_time"], 20, "{r}");
        assert_eq!(r["state"], "BOUND", "{r}");
        figures.push(format!("{secs} s lease: {sent} messages in 12 s"));
    }
    println!("lease floor 20 s: {}", figures.join("; "));
}

#[test]
fn routes_put_back_after_a_nak_are_those_of_the_add_result() {
    let Some(lab) = fake_lab("routes") else {
        return;
    };
    let server = FakeServer::start(&lab);
    server.set_lease_time(20);
    server.set_renewal_times(2, 15);
    // Option 121: a route the kernel refuses (its gateway is not on any link) first, then the
    // default route.
    server.set_classless_routes(Some(vec![
        (
            "10.99.0.0/16".parse().unwrap(),
            Ipv4Addr::new(203, 0, 113, 1),
        ),
        ("0.0.0.0/0".parse().unwrap(), Ipv4Addr::new(198, 18, 0, 1)),
    ]));
    let daemon = Daemon::start(lab.dir(), &[]);
    let ns = lab.container("c1");
    lab.add_macvlan(&ns, "eth0");
    let (ok, out) = add(&lab, &daemon, "metric", &ns, json!({"priority": 250}));
    assert!(ok, "{out}");
    let routes = out["routes"].as_array().unwrap().clone();
    assert!(routes.iter().all(|r| r["priority"] == 250), "{out}");
    // The server moves the client: NAK at T1, a new address, address and routes put back by
    // the daemon (the test installed no route itself, so every route seen is the daemon's).
    server.set_next_address(Ipv4Addr::new(198, 18, 0, 200));
    let expected_default = "default via 198.18.0.1 dev eth0";
    let route_table =
        || String::from_utf8_lossy(&lab.exec_in(&ns, &["ip", "route"]).stdout).into_owned();
    let default_with_metric = || {
        route_table()
            .lines()
            .any(|l| l.starts_with(expected_default) && l.contains("metric 250"))
    };
    assert!(
        eventually(Duration::from_secs(15), || lab.ipv4_of(&ns, "eth0")
            == vec!["198.18.0.200/24".to_string()]
            && default_with_metric()),
        "address {:?}, routes:\n{}",
        lab.ipv4_of(&ns, "eth0"),
        route_table()
    );
    let r = record_of(&daemon, "metric");
    assert!(
        r["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("10.99.0.0/16")),
        "the refused route is reported: {r}"
    );
    println!(
        "after NAK: 198.18.0.200/24 and `{expected_default} ... metric 250` put back; the refused route reported ({})",
        r["last_error"]
    );
}

#[test]
fn a_client_identifier_given_in_provide_reaches_the_server() {
    let Some(lab) = dnsmasq_lab("cidprov") else {
        return;
    };
    let daemon = Daemon::start(lab.dir(), &[]);
    let ns = lab.container("c1");
    lab.add_macvlan(&ns, "eth0");
    let ipam = json!({"provide": [{"option": "dhcp-client-identifier", "value": "reserved-1"}]});
    let (ok, out) = add(&lab, &daemon, "cid-1", &ns, ipam.clone());
    assert!(ok, "{out}");
    let want: String = b"reserved-1"
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let leases = lab.leases();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].client_id, want, "{leases:?}");
    assert_eq!(
        record_of(&daemon, "cid-1")["client_id"],
        "72657365727665642d31"
    );
    // A restarted daemon renews with the same identifier: the file keeps what was sent.
    drop(daemon);
    let daemon = Daemon::start(lab.dir(), &[]);
    assert_eq!(
        record_of(&daemon, "cid-1")["client_id"],
        "72657365727665642d31"
    );
    let (ok, out) = cni(
        DHCP,
        "DEL",
        "cid-1",
        &ns,
        "eth0",
        &conf(&daemon.socket, ipam),
    );
    assert!(ok, "{out}");
    assert!(eventually(Duration::from_secs(5), || lab
        .leases()
        .is_empty()));
    println!("option 61 from provide: dnsmasq keyed the lease by {want}");
}

/// One CNI call on a thread, given up (an error value) after `limit`.
fn cni_within(limit: Duration, id: &str, netns: PathBuf, socket: PathBuf) -> Option<(bool, Value)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let id = id.to_string();
    std::thread::spawn(move || {
        let _ = tx.send(cni(
            DHCP,
            "ADD",
            &id,
            &netns,
            "eth0",
            &conf(&socket, json!({})),
        ));
    });
    rx.recv_timeout(limit).ok()
}

#[test]
fn cni_netns_outside_the_accepted_forms_is_refused_and_a_fifo_never_blocks() {
    if common::skip_unless_available("cni_netns_outside_the_accepted_forms") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let regular = dir.path().join("not-a-netns");
    std::fs::write(&regular, "").unwrap();
    let me = std::process::id();
    for (path, expect) in [
        (regular.clone(), "not of a form the daemon accepts"),
        (PathBuf::from("/proc/self/ns/net"), "not of a form"),
        (PathBuf::from(format!("/proc/{me}/ns/mnt")), "not of a form"),
        (
            PathBuf::from("/run/netns/../../etc/passwd"),
            "not of a form",
        ),
    ] {
        let (ok, out) = cni(
            DHCP,
            "ADD",
            "c1",
            &path,
            "eth0",
            &conf(&daemon.socket, json!({})),
        );
        assert!(!ok, "{path:?} accepted");
        assert_eq!(out["code"], 4, "{out}");
        let text = format!("{} {}", out["msg"], out["details"]);
        assert!(text.contains(expect), "{path:?}: {text}");
    }
    // In an accepted directory, files that are no namespace: a regular file and two FIFOs,
    // whose open(2) for reading would wait for a writer for ever.
    let tag = format!("cdl.trust.{me}");
    let plain = PathBuf::from(format!("/run/netns/{tag}-plain"));
    let fifos = [
        PathBuf::from(format!("/run/netns/{tag}-fifo1")),
        PathBuf::from(format!("/run/netns/{tag}-fifo2")),
    ];
    std::fs::create_dir_all("/run/netns").unwrap();
    struct Remove(Vec<PathBuf>);
    impl Drop for Remove {
        fn drop(&mut self) {
            for p in &self.0 {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    let _cleanup = Remove(vec![plain.clone(), fifos[0].clone(), fifos[1].clone()]);
    std::fs::write(&plain, "").unwrap();
    for f in &fifos {
        nix::unistd::mkfifo(f, nix::sys::stat::Mode::S_IRWXU).unwrap();
    }
    let started = Instant::now();
    let answers: Vec<_> = [plain.clone(), fifos[0].clone(), fifos[1].clone()]
        .into_iter()
        .map(|p| {
            let socket = daemon.socket.clone();
            std::thread::spawn(move || cni_within(Duration::from_secs(5), "c1", p, socket))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let took = started.elapsed();
    for (answer, what) in answers.iter().zip(["regular file", "FIFO", "FIFO"]) {
        let (ok, out) = answer
            .as_ref()
            .unwrap_or_else(|| panic!("ADD with a {what} as CNI_NETNS got no answer in 5 s"));
        assert!(!ok, "{what} accepted");
        assert_eq!(out["code"], 4, "{out}");
        assert!(
            format!("{} {}", out["msg"], out["details"]).contains("not a network namespace"),
            "{what}: {out}"
        );
    }
    // The daemon still serves.
    let listed = Instant::now();
    assert_eq!(lease_records(&daemon.socket), json!([]));
    assert!(listed.elapsed() < Duration::from_secs(2));
    println!(
        "CNI_NETNS of other forms refused; a regular file and two FIFOs under /run/netns refused in {:.0} ms, daemon still serving",
        took.as_secs_f64() * 1e3
    );
}

#[test]
fn connections_beyond_the_cap_get_an_error_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &["-max-connections", "3"]);
    // Three clients that connect and send nothing hold every slot.
    let idle: Vec<UnixStream> = (0..3)
        .map(|_| UnixStream::connect(&daemon.socket).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = UnixStream::connect(&daemon.socket).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    extra.read_to_string(&mut answer).unwrap();
    let took = started.elapsed();
    let answer: Value = serde_json::from_str(answer.trim()).unwrap();
    assert_eq!(answer["result"], "error", "{answer}");
    assert_eq!(answer["code"], 11, "{answer}");
    assert!(
        answer["msg"]
            .as_str()
            .unwrap()
            .contains("too many connections"),
        "{answer}"
    );
    // Once the idle clients go, the daemon serves again.
    drop(idle);
    assert!(eventually(Duration::from_secs(3), || {
        Command::new(LEASES)
            .arg("--socket")
            .arg(&daemon.socket)
            .arg("--json")
            .output()
            .is_ok_and(|o| o.status.success())
    }));
    println!(
        "-max-connections 3 held by idle clients: the 4th got code 11 in {:.0} ms",
        took.as_secs_f64() * 1e3
    );
}
