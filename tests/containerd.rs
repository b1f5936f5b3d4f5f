//! A real container runtime that tears the container's network namespace down before it calls
//! CNI DEL: containerd 1.6's `ctr run --cni --rm` (go-cni/libcni, as containerd's CRI and
//! nerdctl use). Its ADD passes `CNI_NETNS=/proc/PID/ns/net`; once the container's process has
//! exited it calls DEL with `CNI_NETNS` empty and a `prevResult`. The lease must still be given
//! back: dnsmasq must log the DHCPRELEASE and drop the lease (issue 10 §6). Three containers run
//! at once.
//!
//! Offline: the image is built from Debian's static busybox (tests/containerd/build-image.sh),
//! containerd runs with a private root, state and socket, and ctr runs inside the lab's host
//! network namespace (where the macvlan master m0 is) in a private mount namespace whose
//! /etc/cni/net.d, /opt/cni/bin and /var/lib/cni (paths ctr 1.6 hard-codes) are bind mounts of
//! the test's own directories. Needs root, containerd, runc and the reference macvlan plugin
//! (scripts/deps.sh installs them).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Lab;
use common::plugin::*;
use serde_json::json;

/// The host directories ctr's CNI library reads, which the test bind-mounts over.
const CNI_PATHS: [&str; 3] = ["/etc/cni/net.d", "/opt/cni/bin", "/var/lib/cni"];

/// containerd with its own root, state and socket under `dir`; killed (and its leftovers
/// removed) on drop.
struct Containerd {
    child: Child,
    dir: PathBuf,
    /// Host directories this test had to create as mount points (removed on drop).
    created: Vec<PathBuf>,
}

impl Containerd {
    fn start(dir: &Path) -> Containerd {
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  address = "{d}/containerd-debug.sock"
"#,
            d = dir.display()
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("-c")
            .arg(dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let mut created = Vec::new();
        for p in CNI_PATHS {
            let p = PathBuf::from(p);
            if !p.exists() {
                std::fs::create_dir_all(&p).unwrap();
                created.push(p);
            }
        }
        let c = Containerd {
            child,
            dir: dir.to_path_buf(),
            created,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !c
            .ctr()
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            assert!(
                Instant::now() < deadline,
                "containerd not ready: {}",
                std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        c
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("-a").arg(self.socket());
        c
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Snapshots of a run killed half-way may still be mounted.
        let _ = Command::new("umount")
            .arg("-R")
            .arg("-l")
            .arg(self.dir.join("root"))
            .stderr(Stdio::null())
            .status();
        // runc leaves an empty cgroup named after containerd's namespace.
        if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
            for e in rd.flatten() {
                let _ = std::fs::remove_dir(e.path().join("default"));
            }
        }
        let _ = std::fs::remove_dir("/sys/fs/cgroup/default");
        for p in self.created.iter().rev() {
            let _ = std::fs::remove_dir(p);
            if let Some(parent) = p.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

fn available() -> Result<(), String> {
    if let Some(why) = common::unavailable() {
        return Err(why);
    }
    for tool in ["containerd", "ctr", "runc", "unshare"] {
        if common::which(tool).is_none() {
            return Err(format!("`{tool}` not found (scripts/deps.sh installs it)"));
        }
    }
    if !Path::new("/usr/lib/cni/macvlan").exists() || !Path::new("/bin/busybox").exists() {
        return Err("containernetworking-plugins and busybox-static are needed".into());
    }
    Ok(())
}

#[test]
fn ctr_run_rm_tears_the_namespace_down_before_del_and_the_lease_is_released() {
    if let Err(why) = available() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("SKIP: {why}");
        return;
    }
    let lab = Lab::builder("ctr").no_ping(true).build();
    let daemon = Daemon::start(lab.dir(), &[]);
    let work = lab.dir().join("containerd");
    std::fs::create_dir_all(&work).unwrap();
    let started = Instant::now();
    let containerd = Containerd::start(&work);
    let ready = started.elapsed();

    // The image.
    let image = "docker.io/library/cni-dhcp-test:latest";
    let tar = work.join("image.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/containerd/build-image.sh");
    assert!(
        Command::new(&script)
            .arg(&tar)
            .arg(image)
            .status()
            .unwrap()
            .success()
    );
    let out = containerd
        .ctr()
        .args(["image", "import"])
        .arg(&tar)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // CNI: the reference macvlan on m0 with our dhcp as its IPAM.
    let cni = work.join("cni");
    for d in ["bin", "net.d", "cache"] {
        std::fs::create_dir_all(cni.join(d)).unwrap();
    }
    std::os::unix::fs::symlink(DHCP, cni.join("bin/dhcp")).unwrap();
    std::os::unix::fs::symlink("/usr/lib/cni/macvlan", cni.join("bin/macvlan")).unwrap();
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": "labnet",
        "plugins": [{
            "type": "macvlan",
            "master": common::MASTER,
            "mode": "bridge",
            "ipam": {"type": "dhcp", "daemonSocketPath": daemon.socket}
        }]
    });
    std::fs::write(cni.join("net.d/10-labnet.conflist"), conflist.to_string()).unwrap();

    // ctr in the lab's host namespace, with the private CNI directories mounted over the
    // paths it reads.
    // Three containers at once, as a node starts them.
    const N: usize = 3;
    let run = |name: String| {
        let inner = format!(
            "mount --bind {c}/net.d /etc/cni/net.d && mount --bind {c}/bin /opt/cni/bin && mount --bind {c}/cache /var/lib/cni && exec ctr -a {sock} run --cni --rm {image} {name} sh -c 'ip -4 addr show eth0; sleep 1'",
            c = cni.display(),
            sock = containerd.socket().display(),
        );
        lab.command_in(lab.host_ns(), "unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &inner])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let ran = Instant::now();
    let children: Vec<Child> = (1..=N).map(|i| run(format!("ctr-rm-{i}"))).collect();
    let mut ips = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "ctr run failed: {stdout}\n{stderr}");
        // ctr exits 0 even when a plugin's DEL fails; it says so on stderr.
        assert!(!stderr.contains("failed (delete)"), "{stderr}");
        let inet = stdout
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .unwrap_or_else(|| panic!("no address in the container: {stdout}\n{stderr}"));
        let ip = inet.split('/').next().unwrap().to_string();
        assert!(ip.starts_with("198.18.0."), "{inet}");
        ips.push(ip);
    }
    let run_time = ran.elapsed();
    let mut distinct = ips.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), N, "{ips:?}");
    // Each ADD used /proc/PID/ns/net; each DEL came after its namespace was gone. dnsmasq saw
    // every lease given back and dropped it.
    for ip in &ips {
        assert!(
            lab.wait_for_log(&format!("DHCPRELEASE(s0) {ip}"), Duration::from_secs(5)),
            "no DHCPRELEASE for {ip}:\n{}\ndaemon:\n{}",
            lab.dnsmasq_log(),
            daemon_log(lab.dir())
        );
    }
    assert!(eventually(Duration::from_secs(5), || lab
        .leases()
        .is_empty()));
    assert_eq!(lease_records(&daemon.socket), json!([]));
    drop(containerd);
    println!(
        "containerd ready in {:.2} s; {N} ctr run --cni --rm at once (sleep 1) {:.2} s: leased {ips:?}, each DEL after its namespace was gone, {N} DHCPRELEASEs at dnsmasq, 0 leases left",
        ready.as_secs_f64(),
        run_time.as_secs_f64()
    );
}
