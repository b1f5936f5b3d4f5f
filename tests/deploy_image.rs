//! The DaemonSet in `deploy/kubernetes/dhcp-daemonset.yaml`, run as a kubelet would run it, in
//! a real container runtime (podman; runc here), from the image that `deploy/build-image.sh`
//! builds out of `deploy/Containerfile` (no registry: the manifest's placeholder image is
//! replaced by the local build, as deploy/README.md tells users to do).
//! tests/deploy_manifests.rs checks the manifest offline; this runs it.
//!
//! Every runtime setting comes from the parsed YAML, none is copied here: the pod's
//! `hostNetwork` and `hostPID` (`--network host`, `--pid host`), each container's `command`
//! (`--entrypoint`), `args`, `env`, `securityContext.privileged`, `resources` (`--memory`,
//! `--cpu-shares`), its `volumeMounts` joined with the pod's hostPath `volumes` (`readOnly` ->
//! `ro`, `mountPropagation: HostToContainer` -> `rslave`, none -> `rprivate`; a
//! `DirectoryOrCreate` path is created first, a `Directory` one must exist, as the kubelet
//! does), `terminationGracePeriodSeconds` (`podman stop -t`), and the liveness probe's command
//! and timeout. A field this emulation does not know fails the test, so the manifest cannot
//! grow a setting that is not exercised here.
//!
//! What it checks, from the host's side: the init container installs into the host's
//! /opt/cni/bin exactly the image's `dhcp` and `ipvlan`, which answer CNI VERSION, and does it
//! again while the installed `dhcp` is running (as an upgrade finds it); the daemon container
//! serves the host's /run/cni/dhcp.sock, where that installed `dhcp` plugin finds it by
//! default, for real CNI ADDs against dnsmasq in two pod namespaces made after it started: one
//! under /var/run/netns (`ip netns add`; it reaches the container only by mount propagation)
//! and one named /proc/PID/ns/net (a process in its own network namespace, reached through the
//! host's /proc mounted in the container); the liveness probe's command lists both; after
//! `podman stop` (SIGTERM: a clean exit) and `podman start` the daemon resumes both from the
//! host's state directory (its log says so, the probe lists the same addresses, dnsmasq saw no
//! release and no new discover); DEL releases both.
//!
//! # The node
//!
//! The real host's /opt/cni/bin, /run/cni and /var/lib/cni/dhcp must stay untouched (a
//! developer's machine may run a daemon on /run/cni/dhcp.sock), and a killed run must leave
//! nothing running. So the pod runs on a throw-away node: one process, `unshare --mount
//! --propagation slave --pid --fork --kill-child --mount-proc`, started in the lab's host
//! network namespace (the macvlan master m0 is the node's uplink), which holds
//! - a mount namespace, a slave of the host's (nothing propagates back) made rshared, so that
//!   mounts made on the node (pod namespaces) reach the containers that ask for them; a tmpfs
//!   on /run (the node's own /run/netns and /run/cni, and podman's and runc's state), and the
//!   test's directories bind-mounted on /run/cni, /opt/cni/bin and /var/lib/cni/dhcp, where the
//!   test reads them from outside (a mount point missing on the host is made, empty, and
//!   removed afterwards);
//! - a PID namespace: the node's host PIDs, which hostPID shares and /proc/PID/ns/net names.
//!   Its init is killed when the test's thread dies (PR_SET_PDEATHSIG on `unshare`, which
//!   passes it on with `--kill-child`), and the kernel then kills every process in it:
//!   containers, conmon, pod processes.
//!
//! Everything the host does (podman, buildah, `ip netns add`, the plugin calls) runs on the node
//! through `nsenter -t INIT -m -p -n`. The lab (dnsmasq in its server namespace) stays outside;
//! `Lab::container` is not used for the pods, as it makes them in the host's /run/netns, which
//! the node's containers do not see. Podman's image store is private, in the test's temporary
//! directory (overlay, or vfs where overlay does not work); the containers' cgroups are under a
//! parent named after the test's PID; the temporary directories and cgroups of an earlier run
//! that was killed are removed at the start. Podman's default rlimits (RLIMIT_NOFILE 1048576)
//! need CAP_SYS_RESOURCE, which CI sandboxes may not have, so the containers get this process's
//! own limits, as a kubelet's containers inherit the runtime's.
//!
//! Not a kubelet: no pause container (the pod uses host namespaces only, there is nothing to
//! share), a restart is `podman start` of the same container where the kubelet makes a new one,
//! the probe runs when the test says, not periodically, the image is not pulled, and the
//! containers' cgroups are not in a kubepods hierarchy.
//!
//! Needs root, iproute2, dnsmasq, podman and buildah (with runc and conmon), util-linux's
//! unshare and nsenter, busybox-static, binutils' strip, python3 with PyYAML: all from
//! scripts/deps.sh. Outside CI a missing tool skips with a message; under CI=true it fails.
//! Run alone with `cargo test --test deploy_image -- --nocapture` (it prints its timings).

mod common;

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cni_dhcp::rpc::DEFAULT_SOCKET_PATH;
use common::Lab;
use common::plugin::{DHCP, Probe, client_id_hex, cni_in, eventually, wait_until_answering};
use serde_json::{Value, json};

const DAEMONSET: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/kubernetes/dhcp-daemonset.yaml"
);
const BUILD_IMAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/build-image.sh");
/// The local image that replaces the manifest's placeholder.
const IMAGE: &str = "localhost/cni-dhcp:deploy-image-test";
/// Names of this test's temporary directories and cgroups start with `<TAG>.<pid>`.
const TAG: &str = "cni-dhcp-deploy-image";
/// The CNI network of the ADDs.
const NETWORK: &str = "labnet";
/// The pods' interface.
const IFNAME: &str = "eth0";
/// The CNI version of the ADDs and DELs (and one both installed plugins must report).
const CNI_VERSION: &str = "1.0.0";
/// Limit for anything podman does, generous for two busy cores (a podman command takes 0.1 to
/// 0.5 s there, an image build a few seconds).
const SLOW: Duration = Duration::from_secs(60);
/// The host directories of the node that are the test's own directories (bind mounts), with
/// the subdirectory of the test's directory that each one is.
const NODE_BINDS: [(&str, &str); 3] = [
    ("/run/cni", "run-cni"),
    ("/opt/cni/bin", "opt-cni-bin"),
    ("/var/lib/cni/dhcp", "state"),
];
/// The file in the test's directory that lists the mount points it made on the host, parents
/// first, so that the next run removes them if this one is killed.
const MOUNT_POINTS: &str = "mount-points";
/// The node's init: the mounts described in the module doc, then a line on stdout once they
/// are in place. Arguments: the test's directory, then (node path, subdirectory) pairs.
const NODE_INIT: &str = r#"
mount --make-rshared /
mount -t tmpfs -o mode=0755 node-run /run
dir=$1; shift
while [ $# -gt 0 ]; do mkdir -p "$1"; mount --bind "$dir/$2" "$1"; shift 2; done
echo ready
exec sleep infinity
"#;

/// Why this test cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    if let Some(why) = common::unavailable() {
        return Some(why);
    }
    // runc (or crun) and conmon come with podman's package.
    for tool in [
        "podman", "buildah", "nsenter", "unshare", "strip", "python3",
    ] {
        if common::which(tool).is_none() {
            return Some(format!("`{tool}` not found"));
        }
    }
    if !Path::new("/bin/busybox").exists() {
        return Some("/bin/busybox not found (busybox-static)".into());
    }
    None
}

/// Skips with a message, or fails under CI=true.
fn skip(why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("deploy_image: {why} (scripts/deps.sh installs it)");
    }
    eprintln!("SKIP deploy_image: {why} (scripts/deps.sh installs it)");
}

/// Status, stdout and stderr of `out`, for failure messages.
fn text(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` to completion; panics with its output unless it succeeds. Returns stdout.
fn ok(mut cmd: Command, what: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `true` when `name` is `<TAG>.<pid>...` and that process is gone: left by a killed run.
fn stale(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(TAG).and_then(|r| r.strip_prefix('.')) else {
        return false;
    };
    rest.split('.')
        .next()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|pid| {
            pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
        })
}

/// The roots under which a cgroup named `<TAG>...` can be: /sys/fs/cgroup (v2) and each v1
/// hierarchy mounted under it.
fn cgroup_roots() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut roots = vec![root.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(root) {
        roots.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    roots
}

/// Removes cgroup directory `dir` and those below it, deepest first (a cgroup holds no files
/// to delete, only subdirectories).
fn remove_cgroup(dir: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)?.flatten() {
        if e.file_type()?.is_dir() {
            remove_cgroup(&e.path())?;
        }
    }
    std::fs::remove_dir(dir)
}

/// Removes what earlier runs that were killed left: the mount points they made on the host (if
/// still empty), their temporary directories (podman's image store included) and their
/// cgroups. Their processes died with their node.
fn sweep_stale() {
    if let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) {
        for e in rd.flatten() {
            if stale(&e.file_name().to_string_lossy()) {
                let made = std::fs::read_to_string(e.path().join(MOUNT_POINTS));
                for dir in made.unwrap_or_default().lines().rev() {
                    let _ = std::fs::remove_dir(dir);
                }
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    for root in cgroup_roots() {
        if let Ok(rd) = std::fs::read_dir(&root) {
            for e in rd.flatten() {
                if stale(&e.file_name().to_string_lossy()) {
                    let _ = remove_cgroup(&e.path());
                }
            }
        }
    }
}

/// Creates directory `path` on the host; returns the directories that did not exist, parents
/// first, to remove afterwards.
fn make_mount_point(path: &Path) -> Vec<PathBuf> {
    let mut missing: Vec<PathBuf> = path
        .ancestors()
        .take_while(|a| !a.exists())
        .map(Path::to_path_buf)
        .collect();
    missing.reverse();
    std::fs::create_dir_all(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    missing
}

/// The throw-away node of the module doc: a process holding private mount and PID namespaces
/// in the lab's host network namespace, and podman's options for a private store there. Drop
/// removes every container, kills everything on the node, removes its cgroups and the mount
/// points it made on the host.
struct Node {
    /// `unshare`, the parent of the node's init.
    helper: Child,
    /// The node's init (PID 1 inside) as this process sees it: what `nsenter -t` takes; 0
    /// until known.
    init: u32,
    /// The test's directory of this node (the bind-mounted directories, podman's store).
    dir: PathBuf,
    /// Podman's storage driver: `overlay`, or `vfs` where overlay does not work; `None`
    /// until chosen.
    driver: Option<&'static str>,
    /// The containers' `--cgroup-parent`, `/<TAG>.<pid>`.
    cgroup_parent: String,
    /// Host directories made as mount points, parents first.
    created: Vec<PathBuf>,
}

impl Node {
    /// Starts the node in network namespace `netns` (a path), with its state in `dir`.
    fn start(dir: &Path, netns: &Path) -> Node {
        let mut created = Vec::new();
        for (at, sub) in NODE_BINDS {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
            // Under /run the node has its own tmpfs: no host mount point needed.
            if !at.starts_with("/run/") {
                created.extend(make_mount_point(Path::new(at)));
            }
        }
        let list: String = created
            .iter()
            .map(|d| format!("{}\n", d.display()))
            .collect();
        std::fs::write(dir.join(MOUNT_POINTS), list).unwrap();
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", netns.display()))
            .args([
                "--",
                "unshare",
                "--mount",
                "--propagation",
                "slave",
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
                "sh",
                "-ec",
                NODE_INIT,
                "node-init",
            ])
            .arg(dir);
        for (at, sub) in NODE_BINDS {
            cmd.args([at, sub]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("node.stderr")).unwrap());
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        // nsenter execs unshare (no fork for a network namespace alone), which keeps it.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let helper = cmd.spawn().expect("start the node: nsenter, unshare");
        let mut node = Node {
            helper,
            init: 0,
            dir: dir.to_path_buf(),
            driver: None,
            cgroup_parent: format!("/{TAG}.{}", std::process::id()),
            created,
        };
        // From here on a panic drops `node`, which cleans up.
        let mut line = String::new();
        BufReader::new(node.helper.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let stderr = || std::fs::read_to_string(dir.join("node.stderr")).unwrap_or_default();
        assert_eq!(line.trim(), "ready", "the node did not start: {}", stderr());
        let pid = node.helper.id();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .expect("/proc/PID/task/TID/children (CONFIG_PROC_CHILDREN)");
        node.init = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the node's init not found: {children:?} {}", stderr()));

        // overlay where it works (not, e.g., on some overlay file systems), vfs otherwise.
        let mut tried = Vec::new();
        for driver in ["overlay", "vfs"] {
            node.driver = Some(driver);
            let out = node
                .podman()
                .arg("info")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            if out.status.success() {
                return node;
            }
            tried.push(format!("{driver}: {}", text(&out)));
        }
        node.driver = None;
        panic!(
            "podman works with no storage driver here:\n{}",
            tried.join("\n")
        );
    }

    /// The storage options of podman and buildah: a private image store in the test's
    /// directory. (Their run root stays the default, in the node's own /run.)
    fn storage_opts(&self) -> Vec<OsString> {
        let driver = self.driver.expect("storage driver chosen");
        vec![
            "--root".into(),
            self.dir.join("storage").join(driver).into(),
            "--storage-driver".into(),
            driver.into(),
        ]
    }

    /// Podman's global options: [`Node::storage_opts`], cgroups managed by podman itself
    /// (systemd's bus is not on the node), events in a file (not the host's journal), network
    /// configurations in the test's directory.
    fn podman_opts(&self) -> Vec<OsString> {
        let mut opts = self.storage_opts();
        opts.extend(
            [
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
                "--network-config-dir",
            ]
            .map(OsString::from),
        );
        opts.push(self.dir.join("networks").into());
        opts
    }

    /// `program` on the node: in its mount, PID and network namespaces.
    fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.init.to_string())
            .args(["-m", "-p", "-n", "--"])
            .arg(program);
        c
    }

    /// `cmd` on the node, to completion; panics with its output unless it succeeds.
    fn run_ok<S: AsRef<OsStr>>(&self, cmd: &[S]) -> String {
        let mut c = self.command(&cmd[0]);
        c.args(&cmd[1..]);
        let what: Vec<_> = cmd.iter().map(|s| s.as_ref().to_string_lossy()).collect();
        ok(c, &format!("on the node: {what:?}"))
    }

    /// `podman` with the node's global options (private store).
    fn podman(&self) -> Command {
        let mut c = self.command("podman");
        c.args(self.podman_opts());
        c
    }

    /// `podman ARGS`; panics with its output unless it succeeds. Returns stdout.
    fn podman_ok(&self, args: &[&str]) -> String {
        let mut c = self.podman();
        c.args(args);
        ok(c, &format!("podman {args:?}"))
    }

    /// The container's log (its stdout and stderr), for failure messages.
    fn logs(&self, name: &str) -> String {
        let out = self.podman().args(["logs", name]).output().unwrap();
        format!(
            "podman logs {name}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// The host path the node's `at` (one of [`NODE_BINDS`]) is, as this process sees it.
    fn host_path(&self, at: &Path) -> PathBuf {
        NODE_BINDS
            .iter()
            .find_map(|(bind, sub)| {
                let rest = at.strip_prefix(bind).ok()?;
                Some(self.dir.join(sub).join(rest))
            })
            .unwrap_or_else(|| panic!("{} is not a directory of the test", at.display()))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.init != 0 {
            if self.driver.is_some() {
                let mut rm = self.command("timeout");
                rm.arg("60")
                    .arg("podman")
                    .args(self.podman_opts())
                    .args(["rm", "--all", "--force", "--time", "0"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                let _ = rm.status();
            }
            // The kernel kills every other process of the node's PID namespace, and init exits
            // once they are gone; `unshare` then returns. The mount namespace (the tmpfs on /run
            // with the pod namespaces, the bind mounts, podman's overlay mounts) goes with them.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.init as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.helper.kill();
        let _ = self.helper.wait();
        let name = self.cgroup_parent.trim_start_matches('/');
        for root in cgroup_roots() {
            let dir = root.join(name);
            let started = Instant::now();
            while dir.is_dir()
                && remove_cgroup(&dir).is_err()
                && started.elapsed() < Duration::from_secs(5)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        for dir in self.created.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A process on the node, killed on drop. `argv` must print the process's PID (as the node sees
/// it) as its first line, then exec what is to run.
struct NodeProcess<'a> {
    node: &'a Node,
    /// nsenter, whose child is the process.
    child: Child,
    /// Kept open: the process may write to its stdout.
    _stdout: BufReader<ChildStdout>,
    /// The PID on the node.
    pid: u32,
}

impl<'a> NodeProcess<'a> {
    /// Starts `argv` on the node, its stderr to the file `stderr`, and reads its PID.
    fn spawn(node: &'a Node, argv: &[&str], stderr: &Path) -> NodeProcess<'a> {
        let mut cmd = node.command(argv[0]);
        let mut child = cmd
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(stderr).unwrap())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let pid = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!(
                "{argv:?} printed {line:?}, not its PID: {}",
                std::fs::read_to_string(stderr).unwrap_or_default()
            )
        });
        NodeProcess {
            node,
            child,
            _stdout: stdout,
            pid,
        }
    }
}

impl Drop for NodeProcess<'_> {
    fn drop(&mut self) {
        let _ = self
            .node
            .command("kill")
            .args(["-KILL", &self.pid.to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// Fails unless every key of object `v` (`what`) is one of `known`: a field this emulation
/// does not know would otherwise be silently left out of the run.
fn known_keys(v: &Value, what: &str, known: &[&str]) {
    for key in v
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object"))
        .keys()
    {
        assert!(
            known.contains(&key.as_str()),
            "{what}: `{key}` is not emulated here; teach tests/deploy_image.rs how the kubelet applies it"
        );
    }
}

/// The strings of a JSON array (a command, args).
fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// A Kubernetes quantity of bytes (`256Mi`, `1Gi`, `512Ki`, `1000`) in bytes.
fn bytes(q: &str) -> u64 {
    for (suffix, unit) in [("Ki", 1u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)] {
        if let Some(n) = q.strip_suffix(suffix) {
            return n
                .parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(unit))
                .unwrap_or_else(|| panic!("quantity {q:?}"));
        }
    }
    q.parse()
        .unwrap_or_else(|_| panic!("quantity {q:?}: teach bytes() its suffix"))
}

/// A Kubernetes CPU quantity (`10m`, `2`) in millicores.
fn millicores(q: &str) -> u64 {
    match q.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => q.parse::<u64>().ok().and_then(|c| c.checked_mul(1000)),
    }
    .unwrap_or_else(|| panic!("CPU quantity {q:?}: teach millicores() its form"))
}

/// The hostPath of the pod's volume `name`.
fn host_path_of<'a>(pod: &'a Value, name: &Value) -> &'a Value {
    let vol = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == *name)
        .unwrap_or_else(|| panic!("no volume {name}"));
    known_keys(vol, "volume", &["name", "hostPath"]);
    let host = &vol["hostPath"];
    known_keys(host, "hostPath", &["path", "type"]);
    assert!(host["path"].is_string(), "volume {name} is not a hostPath");
    host
}

/// How the kubelet runs container `c` of pod spec `pod`: `podman run` options (before the
/// image) and the container's arguments (after it). The name, cgroup parent and rlimits are
/// the node's business ([`Kubelet::run`]).
fn run_options(pod: &Value, c: &Value) -> (Vec<String>, Vec<String>) {
    let name = c["name"].as_str().expect("container name");
    known_keys(
        c,
        name,
        &[
            "name",
            "image",
            "command",
            "args",
            "env",
            "securityContext",
            "volumeMounts",
            "livenessProbe",
            "resources",
        ],
    );
    let mut opts = Vec::new();
    // Pod-level namespaces apply to every container of the pod, init containers included.
    assert_eq!(
        pod["hostNetwork"], true,
        "a pod network is not emulated: the daemon must run in the host's network namespace"
    );
    opts.push("--network=host".to_string());
    if pod["hostPID"] == true {
        opts.push("--pid=host".into());
    }
    if let Some(sc) = c.get("securityContext") {
        known_keys(sc, &format!("{name}.securityContext"), &["privileged"]);
        if sc["privileged"] == true {
            opts.push("--privileged".into());
        }
    }
    for e in c["env"].as_array().into_iter().flatten() {
        known_keys(e, &format!("{name}.env"), &["name", "value"]);
        opts.push(format!(
            "--env={}={}",
            e["name"].as_str().unwrap(),
            e["value"].as_str().unwrap()
        ));
    }
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        known_keys(
            m,
            &format!("{name}.volumeMounts"),
            &["name", "mountPath", "readOnly", "mountPropagation"],
        );
        let host = host_path_of(pod, &m["name"])["path"].as_str().unwrap();
        let mut mount_opts = Vec::new();
        if m["readOnly"] == true {
            mount_opts.push("ro");
        }
        // The kubelet's CRI propagation: None is private, HostToContainer rslave,
        // Bidirectional rshared (containerd and CRI-O make them recursive).
        mount_opts.push(match m["mountPropagation"].as_str().unwrap_or("None") {
            "None" => "rprivate",
            "HostToContainer" => "rslave",
            "Bidirectional" => "rshared",
            other => panic!("mountPropagation {other:?}"),
        });
        opts.push(format!(
            "--volume={host}:{}:{}",
            m["mountPath"].as_str().unwrap(),
            mount_opts.join(",")
        ));
    }
    if let Some(r) = c.get("resources") {
        known_keys(r, &format!("{name}.resources"), &["requests", "limits"]);
        if let Some(limits) = r.get("limits") {
            known_keys(limits, &format!("{name}.resources.limits"), &["memory"]);
            if let Some(mem) = limits["memory"].as_str() {
                opts.push(format!("--memory={}b", bytes(mem)));
            }
        }
        if let Some(requests) = r.get("requests") {
            // A memory request is for the scheduler; a CPU request becomes cpu.shares (the
            // kubelet's milliCPUToShares: 1024 per core, at least 2).
            known_keys(
                requests,
                &format!("{name}.resources.requests"),
                &["cpu", "memory"],
            );
            if let Some(cpu) = requests["cpu"].as_str() {
                let shares = (millicores(cpu).saturating_mul(1024) / 1000).max(2);
                opts.push(format!("--cpu-shares={shares}"));
            }
        }
    }
    // `command` replaces the image's entrypoint, `args` its command.
    let command = strings(&c["command"]);
    if !command.is_empty() {
        opts.push(format!("--entrypoint={}", json!(command)));
    }
    (opts, strings(&c["args"]))
}

/// `--ulimit` options that give a container this process's own limits on open files and
/// processes (see the module doc). Podman lowers its own RLIMIT_NPROC to kernel.pid_max when it
/// starts and cannot give a container more than it has.
fn ulimits() -> Vec<String> {
    use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit};
    let limit = |v: u64| {
        if v == RLIM_INFINITY {
            "-1".to_string()
        } else {
            v.to_string()
        }
    };
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let nofile = format!("--ulimit=nofile={}:{}", limit(soft), limit(hard));
    let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let (soft, hard) = getrlimit(Resource::RLIMIT_NPROC).unwrap();
    let nproc = format!("--ulimit=nproc={}:{}", soft.min(pid_max), hard.min(pid_max));
    vec![nofile, nproc]
}

/// The kubelet's part for the DaemonSet's pod on the node: it runs the pod's containers from
/// [`IMAGE`] as the pod spec says (see the module doc), probes and stops them.
struct Kubelet<'a> {
    node: &'a Node,
    /// The pod spec, `spec.template.spec` of the DaemonSet.
    pod: &'a Value,
    /// `<name>_<namespace>` of the DaemonSet, in container names.
    pod_name: String,
}

impl<'a> Kubelet<'a> {
    /// The kubelet of `ds`'s pod; fails on a pod field it does not emulate.
    fn new(node: &'a Node, ds: &'a Value) -> Kubelet<'a> {
        let pod = &ds["spec"]["template"]["spec"];
        // Scheduling fields mean nothing on one node; the others are emulated.
        known_keys(
            pod,
            "pod spec",
            &[
                "hostNetwork",
                "hostPID",
                "priorityClassName",
                "tolerations",
                "terminationGracePeriodSeconds",
                "initContainers",
                "containers",
                "volumes",
            ],
        );
        let pod_name = format!(
            "{}_{}",
            ds["metadata"]["name"].as_str().expect("metadata.name"),
            ds["metadata"]["namespace"]
                .as_str()
                .expect("metadata.namespace")
        );
        Kubelet {
            node,
            pod,
            pod_name,
        }
    }

    /// The pod's only container in `list` (`initContainers`, `containers`).
    fn only(&self, list: &str) -> &'a Value {
        match self.pod[list].as_array().map(Vec::as_slice) {
            Some([c]) => c,
            _ => panic!("one of {list} expected: {}", self.pod[list]),
        }
    }

    /// A unique container name for `c`, as the kubelet's dockershim named them.
    fn name(&self, c: &Value, attempt: u32) -> String {
        format!(
            "k8s_{}_{}_{}_{attempt}",
            c["name"].as_str().unwrap(),
            self.pod_name,
            std::process::id()
        )
    }

    /// What the kubelet does for the pod's hostPath volumes before it starts a container:
    /// makes each `DirectoryOrCreate` directory (0755), checks that each `Directory` exists.
    fn prepare_host_paths(&self) {
        for vol in self.pod["volumes"].as_array().expect("volumes") {
            let host = host_path_of(self.pod, &vol["name"]);
            let path = host["path"].as_str().unwrap();
            match host["type"].as_str().unwrap_or("") {
                "DirectoryOrCreate" => self.node.run_ok(&["mkdir", "-p", "-m", "0755", path]),
                "Directory" => self.node.run_ok(&["test", "-d", path]),
                other => panic!("hostPath type {other:?} of {path}: teach the test"),
            };
        }
    }

    /// `podman run` of container `c` under the name `name`: detached, or attached to its end
    /// (an init container). Panics with podman's output unless it succeeds. Prints the command.
    fn run(&self, c: &Value, name: &str, detach: bool) {
        let (opts, args) = run_options(self.pod, c);
        let mut cmd = self.node.podman();
        cmd.args([
            "run",
            "--name",
            name,
            "--cgroup-parent",
            &self.node.cgroup_parent,
        ]);
        if detach {
            cmd.arg("--detach");
        }
        cmd.args(ulimits()).args(&opts).arg(IMAGE).args(&args);
        println!("podman run {} {IMAGE} {}", opts.join(" "), args.join(" "));
        ok(cmd, &format!("podman run {name} {opts:?} {IMAGE} {args:?}"));
    }

    /// The liveness probe of container `c` (running as `name`), as the kubelet runs it: its
    /// exec command in the container, within its `timeoutSeconds` (the kubelet's default 1 s
    /// when absent). The probe lists the daemon's leases as JSON; returns them.
    fn liveness(&self, c: &Value, name: &str) -> Value {
        let probe = &c["livenessProbe"];
        known_keys(
            probe,
            "livenessProbe",
            &[
                "exec",
                "initialDelaySeconds",
                "periodSeconds",
                "timeoutSeconds",
                "failureThreshold",
            ],
        );
        let command = strings(&probe["exec"]["command"]);
        assert!(!command.is_empty(), "no exec command in {probe}");
        let timeout = probe["timeoutSeconds"].as_u64().unwrap_or(1);
        let mut cmd = self.node.command("timeout");
        cmd.arg(timeout.to_string())
            .arg("podman")
            .args(self.node.podman_opts())
            .args(["exec", name])
            .args(&command);
        let out = cmd.stdin(Stdio::null()).output().unwrap();
        assert!(
            out.status.code() != Some(124),
            "liveness probe {command:?} timed out ({timeout} s): {}\n{}",
            text(&out),
            self.node.logs(name)
        );
        assert!(
            out.status.success(),
            "liveness probe {command:?} failed: {}\n{}",
            text(&out),
            self.node.logs(name)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("probe output is not JSON ({e}): {}", text(&out)))
    }

    /// Stops container `name` as the kubelet does (SIGTERM, SIGKILL after the pod's
    /// `terminationGracePeriodSeconds`) and checks that it exited by itself, with status 0.
    /// Returns how long that took.
    fn stop(&self, name: &str) -> Duration {
        let grace = self.pod["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30);
        let t = Instant::now();
        self.node
            .podman_ok(&["stop", "--time", &grace.to_string(), name]);
        let took = t.elapsed();
        let status = self
            .node
            .podman_ok(&["inspect", "--format", "{{.State.ExitCode}}", name]);
        assert_eq!(
            status.trim(),
            "0",
            "{name} did not exit cleanly on SIGTERM\n{}",
            self.node.logs(name)
        );
        took
    }
}

/// A pod's network namespace on the node, made the way a runtime makes it, after the daemon
/// started: a named one (`ip netns add`, CNI_NETNS `/var/run/netns/NAME`) or a process's
/// (`unshare --net`, CNI_NETNS `/proc/PID/ns/net`). It holds `lo`, up, and `eth0`, a macvlan
/// (bridge) slave of the node's uplink, down and unaddressed as the runtime hands it to the
/// plugins. Deleted (or its process killed) on drop.
struct PodNetns<'a> {
    node: &'a Node,
    /// The container ID of the CNI calls.
    id: &'static str,
    /// CNI_NETNS.
    netns: String,
    /// The named namespace's name.
    name: Option<String>,
    /// The process holding an unnamed one.
    _holder: Option<NodeProcess<'a>>,
}

impl<'a> PodNetns<'a> {
    /// A named namespace `name`.
    fn named(node: &'a Node, master: &str, id: &'static str, name: &str) -> PodNetns<'a> {
        node.run_ok(&["ip", "netns", "add", name]);
        let pod = PodNetns {
            node,
            id,
            netns: format!("/var/run/netns/{name}"),
            name: Some(name.to_string()),
            _holder: None,
        };
        pod.populate(master, name);
        pod
    }

    /// The namespace of a new process on the node (its stderr to `stderr`).
    fn of_process(node: &'a Node, master: &str, id: &'static str, stderr: &Path) -> PodNetns<'a> {
        let holder = NodeProcess::spawn(
            node,
            &[
                "unshare",
                "--net",
                "sh",
                "-c",
                "echo $$; exec sleep infinity",
            ],
            stderr,
        );
        let pid = holder.pid.to_string();
        let pod = PodNetns {
            node,
            id,
            netns: format!("/proc/{pid}/ns/net"),
            name: None,
            _holder: Some(holder),
        };
        pod.populate(master, &pid);
        pod
    }

    /// `lo` up and `eth0` made; `target` is what `ip link ... netns` takes for it.
    fn populate(&self, master: &str, target: &str) {
        self.ip(&["link", "set", "lo", "up"]);
        self.node.run_ok(&[
            "ip", "link", "add", "link", master, "name", IFNAME, "netns", target, "type",
            "macvlan", "mode", "bridge",
        ]);
    }

    /// `ip ARGS` in this namespace, on the node; panics unless it succeeds.
    fn ip(&self, args: &[&str]) {
        let mut cmd = vec![
            "nsenter".to_string(),
            format!("--net={}", self.netns),
            "ip".into(),
        ];
        cmd.extend(args.iter().map(|s| s.to_string()));
        self.node.run_ok(&cmd);
    }

    /// A CNI command of the `dhcp` plugin that the init container installed in the host's
    /// /opt/cni/bin, run on the node as a runtime runs it, for this pod's `eth0`. `conf` names
    /// no daemon socket: the plugin uses its default, the host's /run/cni/dhcp.sock.
    fn dhcp(&self, command: &str, conf: &Value) -> (bool, Value) {
        cni_in(
            self.node.command("/opt/cni/bin/dhcp"),
            command,
            self.id,
            Path::new(&self.netns),
            IFNAME,
            conf,
        )
    }
}

impl Drop for PodNetns<'_> {
    fn drop(&mut self) {
        if let Some(name) = &self.name {
            let _ = self
                .node
                .command("ip")
                .args(["netns", "del", name])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// (container ID, CNI_NETNS, address) of each lease record of `dhcp-leases --json`.
fn attachments(records: &Value) -> BTreeSet<(String, String, String)> {
    records
        .as_array()
        .expect("an array of leases")
        .iter()
        .map(|r| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (
                s(&r["attachment"]["container_id"]),
                s(&r["netns"]),
                s(&r["lease"]["address"]),
            )
        })
        .collect()
}

/// Lines of `log` that contain `needle` and the token `token` (a whole word, so that
/// `address=198.18.0.14` does not match `address=198.18.0.141`).
fn log_lines<'a>(log: &'a str, needle: &str, token: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|l| l.contains(needle) && l.split_whitespace().any(|w| w == token))
        .collect()
}

/// (client identifier as dnsmasq writes it, address) of each lease in dnsmasq's lease file.
fn dnsmasq_leases(lab: &Lab) -> BTreeSet<(String, String)> {
    lab.leases()
        .into_iter()
        .map(|l| (l.client_id, l.ip))
        .collect()
}

/// Builds [`IMAGE`] on the node with deploy/build-image.sh from the binaries cargo built for
/// this test (debug builds, so `--strip`), into the node's private store. Returns the time it
/// took and the image's size in bytes.
fn build_image(node: &Node, tmp: &Path) -> (Duration, u64) {
    let t = Instant::now();
    let mut build = node.command(BUILD_IMAGE);
    build
        .arg("--bin-dir")
        .arg(Path::new(DHCP).parent().unwrap())
        .arg("--strip")
        .args(node.storage_opts())
        .arg(IMAGE)
        .env("TMPDIR", tmp);
    ok(build, "deploy/build-image.sh");
    let took = t.elapsed();
    let size = node
        .podman_ok(&["image", "inspect", "--format", "{{.Size}}", IMAGE])
        .trim()
        .parse()
        .unwrap();
    (took, size)
}

/// The init container, twice: the host's /opt/cni/bin then holds exactly the image's plugins
/// (byte for byte, nothing else), which answer CNI VERSION; run again while the installed `dhcp`
/// is running, as an upgrade finds it (a plugin call, or a daemon of the systemd units), it
/// replaces it rather than failing with "text file busy". Returns how long the first run took.
fn check_install_step(kubelet: &Kubelet, tmp: &Path) -> Duration {
    let node = kubelet.node;
    let init = kubelet.only("initContainers");
    let t = Instant::now();
    kubelet.run(init, &kubelet.name(init, 0), false);
    let took = t.elapsed();

    let image_root = node.podman_ok(&["image", "mount", IMAGE]);
    let image_bin = format!("{}/opt/cni/bin", image_root.trim());
    let listing = |dir: &str| -> BTreeSet<String> {
        node.run_ok(&["ls", "-A", dir])
            .lines()
            .map(str::to_string)
            .collect()
    };
    let plugins = listing(&image_bin);
    assert_eq!(
        plugins,
        BTreeSet::from(["dhcp".to_string(), "ipvlan".to_string()]),
        "the image's /opt/cni/bin"
    );
    let installed = || {
        assert_eq!(
            listing("/opt/cni/bin"),
            plugins,
            "the host's /opt/cni/bin after the install step ({})",
            node.host_path(Path::new("/opt/cni/bin")).display()
        );
        for p in &plugins {
            node.run_ok(&[
                "cmp".to_string(),
                format!("{image_bin}/{p}"),
                format!("/opt/cni/bin/{p}"),
            ]);
        }
    };
    installed();
    for p in &plugins {
        let out = node.run_ok(&["env", "CNI_COMMAND=VERSION", &format!("/opt/cni/bin/{p}")]);
        let v: Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{p} VERSION: {e}: {out}"));
        assert!(
            strings(&v["supportedVersions"])
                .iter()
                .any(|s| s == CNI_VERSION),
            "{p} VERSION: {v}"
        );
    }

    let busy = tmp.join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    let socket = busy.join("dhcp.sock");
    let script = format!(
        "echo $$; exec /opt/cni/bin/dhcp daemon -socketpath {} -state-dir {}",
        socket.display(),
        busy.join("state").display()
    );
    let _running = NodeProcess::spawn(node, &["sh", "-c", &script], &busy.join("stderr"));
    let busy_log = || std::fs::read_to_string(busy.join("stderr")).unwrap_or_default();
    wait_until_answering(&socket, Probe::Ours, SLOW)
        .unwrap_or_else(|why| panic!("{why}: {}", busy_log()));
    kubelet.run(init, &kubelet.name(init, 1), false);
    installed();
    wait_until_answering(&socket, Probe::Ours, SLOW)
        .unwrap_or_else(|why| panic!("the replaced binary stopped: {why}: {}", busy_log()));
    node.podman_ok(&["image", "unmount", IMAGE]);
    took
}

#[test]
fn the_daemonset_runs_in_podman_as_a_kubelet_would_run_it() {
    if let Some(why) = unavailable() {
        skip(&why);
        return;
    }
    let Some(docs) = common::yaml::docs(Path::new(DAEMONSET)) else {
        skip("python3 with PyYAML not found");
        return;
    };
    let started = Instant::now();
    let [ds] = docs.as_slice() else {
        panic!("{DAEMONSET}: one document expected");
    };
    assert_eq!(ds["kind"], "DaemonSet");
    let lab = Lab::builder("dimg").no_ping(true).build();
    sweep_stale();
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{TAG}.{}.", std::process::id()))
        .tempdir()
        .unwrap();
    let node = Node::start(tmp.path(), &lab.host_ns_path());
    let kubelet = Kubelet::new(&node, ds);
    let (init, daemon) = (kubelet.only("initContainers"), kubelet.only("containers"));
    // One placeholder for the user's image (twice), here the local build.
    assert_eq!(
        init["image"], daemon["image"],
        "both containers run one image"
    );

    let (build_time, image_size) = build_image(&node, tmp.path());
    kubelet.prepare_host_paths();
    let init_time = check_install_step(&kubelet, tmp.path());

    let daemon_name = kubelet.name(daemon, 0);
    let logs = || node.logs(&daemon_name);
    let socket = node.host_path(Path::new(DEFAULT_SOCKET_PATH));
    let t = Instant::now();
    kubelet.run(daemon, &daemon_name, true);
    wait_until_answering(&socket, Probe::Ours, SLOW)
        .unwrap_or_else(|why| panic!("{why}\n{}", logs()));
    let daemon_time = t.elapsed();
    assert_eq!(kubelet.liveness(daemon, &daemon_name), json!([]));

    // Two pods, made after the daemon started: the named one reaches the container by mount
    // propagation alone, the other through hostPID and the /proc mount.
    let pods = [
        PodNetns::named(
            &node,
            lab.master(),
            "deploy-image-named",
            "cni-deploy-image-1",
        ),
        PodNetns::of_process(
            &node,
            lab.master(),
            "deploy-image-proc",
            &tmp.path().join("holder.stderr"),
        ),
    ];
    let conf = json!({
        "cniVersion": CNI_VERSION,
        "name": NETWORK,
        "type": "macvlan",
        "master": lab.master(),
        "ipam": {"type": "dhcp"},
    });
    let t = Instant::now();
    let mut expected = BTreeSet::new();
    for pod in &pods {
        let (added, result) = pod.dhcp("ADD", &conf);
        assert!(added, "ADD {} {}: {result}\n{}", pod.id, pod.netns, logs());
        let address = result["ips"][0]["address"]
            .as_str()
            .unwrap_or_else(|| panic!("no address in {result}"));
        // As the main plugin would: the address on the interface, the interface up.
        pod.ip(&["addr", "add", address, "dev", IFNAME]);
        pod.ip(&["link", "set", IFNAME, "up"]);
        let address = address.split('/').next().unwrap().to_string();
        expected.insert((pod.id.to_string(), pod.netns.clone(), address));
    }
    let add_time = t.elapsed();
    let addresses: BTreeSet<String> = expected.iter().map(|(_, _, a)| a.clone()).collect();
    assert_eq!(addresses.len(), 2, "two distinct addresses: {expected:?}");
    // dnsmasq granted them to these attachments' client identifiers.
    let granted: BTreeSet<(String, String)> = expected
        .iter()
        .map(|(id, _, a)| (client_id_hex(id, NETWORK, IFNAME), a.clone()))
        .collect();
    assert_eq!(dnsmasq_leases(&lab), granted, "{}", lab.dnsmasq_log());
    assert_eq!(
        attachments(&kubelet.liveness(daemon, &daemon_name)),
        expected,
        "the probe's listing"
    );

    // A restart: SIGTERM keeps the leases in the host's state directory, the next start
    // resumes them without asking the server again.
    let discovers = || lab.dnsmasq_log().matches("DHCPDISCOVER").count();
    let discovered = discovers();
    let stop_time = kubelet.stop(&daemon_name);
    let state = node.host_path(Path::new("/var/lib/cni/dhcp"));
    let kept = std::fs::read_dir(&state).map(|rd| rd.count()).unwrap_or(0);
    assert!(
        kept > 0,
        "nothing in the state directory {}",
        state.display()
    );
    let t = Instant::now();
    node.podman_ok(&["start", &daemon_name]);
    wait_until_answering(&socket, Probe::Ours, SLOW)
        .unwrap_or_else(|why| panic!("{why}\n{}", logs()));
    let restart_time = t.elapsed();
    assert_eq!(
        attachments(&kubelet.liveness(daemon, &daemon_name)),
        expected,
        "the probe's listing after the restart\n{}",
        logs()
    );
    let log = logs();
    let since_restart = log
        .rfind("dhcp daemon stopping")
        .map(|at| &log[at..])
        .unwrap_or_default();
    for a in &addresses {
        let resumed = log_lines(
            since_restart,
            "resumed persisted lease",
            &format!("address={a}"),
        );
        assert_eq!(resumed.len(), 1, "{a} not resumed once:\n{log}");
    }
    assert_eq!(discovers(), discovered, "a lease was asked for again");
    assert!(
        !lab.dnsmasq_log().contains("DHCPRELEASE"),
        "released on stop: {}",
        lab.dnsmasq_log()
    );
    assert_eq!(
        dnsmasq_leases(&lab),
        granted,
        "dnsmasq's leases after the restart"
    );

    // DEL gives both back.
    for pod in &pods {
        let (deleted, result) = pod.dhcp("DEL", &conf);
        assert!(deleted, "DEL {}: {result}\n{}", pod.id, logs());
    }
    for a in &addresses {
        assert!(
            lab.wait_for_log(&format!("DHCPRELEASE(s0) {a}"), SLOW),
            "no DHCPRELEASE for {a}:\n{}\n{}",
            lab.dnsmasq_log(),
            logs()
        );
    }
    assert!(
        eventually(SLOW, || dnsmasq_leases(&lab).is_empty()),
        "{}",
        lab.lease_file()
    );
    assert_eq!(kubelet.liveness(daemon, &daemon_name), json!([]));
    kubelet.stop(&daemon_name);
    let driver = node.driver.unwrap_or_default();
    drop(pods);
    drop(node);
    println!(
        "deploy_image: image {:.1} MB built in {:.1} s ({driver} storage); init container {:.1} s; daemon answering {:.1} s after podman run; 2 ADDs in {:.2} s ({}); podman stop {:.1} s, start to answering {:.1} s, both leases resumed; DEL released both; {:.0} s in all",
        image_size as f64 / 1e6,
        build_time.as_secs_f64(),
        init_time.as_secs_f64(),
        daemon_time.as_secs_f64(),
        add_time.as_secs_f64(),
        addresses.into_iter().collect::<Vec<_>>().join(", "),
        stop_time.as_secs_f64(),
        restart_time.as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
}
