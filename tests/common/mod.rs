//! Test lab: a real DHCP server (dnsmasq) and a "host" network namespace with a master link, all
//! in network namespaces this process makes, so integration tests run the CNI plugins against a
//! real server without touching the machine's own interfaces. Needs root, `ip` (iproute2) and
//! `dnsmasq` (dnsmasq-base).
//!
//! ```text
//!  netns <p>-srv : s0 198.18.0.1/24, dnsmasq (DHCP only, range .100-.250, 1h, router+dns+domain)
//!        | veth
//!  netns <p>-host: m0, up, no address   <- the master; run plugins here (command_in)
//!  netns <p>-<name>: containers (Lab::container), slaves of m0 added with add_macvlan
//! ```
//!
//! `<p>` is `cdl.<pid>.<seq>.<prefix>`, unique per Lab, so tests run in parallel. Drop kills
//! dnsmasq and deletes every namespace the Lab made; namespaces left by a killed test process are
//! swept by the next `Lab::new` (their pid is gone). dnsmasq gets `PR_SET_PDEATHSIG`, so it dies
//! with the thread that made the Lab: keep the Lab on that thread.
//!
//! Usage from `tests/foo.rs`:
//! ```ignore
//! mod common;
//! let lab = common::Lab::builder("foo").no_ping(true).build();
//! let ns = lab.container("c1");            // PathBuf /var/run/netns/<p>-c1
//! lab.add_macvlan(&ns, "eth0");            // down, no address
//! let out = lab.command_in(lab.host_ns(), "target/debug/ipvlan").env(...).output();
//! assert!(lab.wait_for_log("DHCPACK", Duration::from_secs(5)));
//! ```
//!
//! For fault tests (4-second leases, NAK on demand, silence, garbage, ...) build the lab with
//! `.without_dnsmasq()` and run [`fake_server::FakeServer::start`] on it instead; for DHCPv6
//! ones, [`fake_lab6`] and [`fake_server6::FakeServer6::start`].
#![allow(dead_code)]

pub mod fake_server;
pub mod fake_server6;
pub mod plugin;
pub mod sniffer;
pub mod vm;
pub mod yaml;

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const SERVER_IP: &str = "198.18.0.1";
pub const PREFIX_LEN: u8 = 24;
pub const RANGE_START: &str = "198.18.0.100";
pub const RANGE_END: &str = "198.18.0.250";
pub const DOMAIN: &str = "lab.test";
pub const MASTER: &str = "m0";
const NETNS_DIR: &str = "/var/run/netns";
const NAME_TAG: &str = "cdl.";

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Why a lab cannot be built here (not root, a tool missing), or `None` when it can.
/// Tests may skip on `Some` outside CI; [`Lab::new`] panics instead.
pub fn unavailable() -> Option<String> {
    unavailable_with(true)
}

/// Like [`unavailable`]; `dnsmasq: false` for a lab built with [`LabBuilder::without_dnsmasq`].
pub fn unavailable_with(dnsmasq: bool) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("the lab needs root (network namespaces)".into());
    }
    let tools: &[&str] = if dnsmasq { &["ip", "dnsmasq"] } else { &["ip"] };
    for &tool in tools {
        if which(tool).is_none() {
            return Some(format!(
                "`{tool}` not found (apt-get install iproute2 dnsmasq-base)"
            ));
        }
    }
    None
}

/// True when a test should be skipped: the lab is unavailable and CI is not set. Under CI=true a
/// missing prerequisite is a failure, not a silent skip.
pub fn skip_unless_available(test: &str) -> bool {
    match unavailable() {
        None => false,
        Some(why) if std::env::var("CI").map(|v| v == "true").unwrap_or(false) => {
            panic!("{test}: {why}")
        }
        Some(why) => {
            eprintln!("SKIP {test}: {why}");
            true
        }
    }
}

/// A lab without dnsmasq, for the fake server ([`fake_server::FakeServer::start`]); `None`
/// (the test skips) when a lab cannot be built here and CI is not set; under CI=true a missing
/// prerequisite is a failure.
pub fn fake_lab(name: &str) -> Option<Lab> {
    if let Some(why) = unavailable_with(false) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{name}: {why}"
        );
        eprintln!("SKIP {name}: {why}");
        return None;
    }
    Some(Lab::builder(name).without_dnsmasq().build())
}

/// Whether test `name` can run its IPv6 part: true when IPv6 is on in this kernel; otherwise
/// says SKIP and gives false, except under CI (CI=true), where a kernel without IPv6 fails.
pub fn ipv6_or_skip(name: &str) -> bool {
    if ipv6_available() {
        return true;
    }
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "{name}: no IPv6"
    );
    eprintln!("SKIP {name}: IPv6 is disabled in this kernel");
    false
}

/// Whether this kernel has IPv6 at all (not booted with `ipv6.disable=1`).
pub fn ipv6_available() -> bool {
    Path::new("/proc/net/if_inet6").exists()
}

/// The DHCPv6 side of [`dhcpv6_lab`]: s0's address, dnsmasq's range, its DNS server option.
pub mod v6 {
    use std::net::Ipv6Addr;
    /// s0's address (a /64 with `nodad`).
    pub const SERVER_ADDR: &str = "fd00:cd::1";
    /// First address of dnsmasq's DHCPv6 range.
    pub const RANGE_FIRST: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xcd, 0, 0, 0, 0, 0, 0x100);
    /// Last address of the range.
    pub const RANGE_LAST: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xcd, 0, 0, 0, 0, 0, 0x1ff);
    /// The DNS server dnsmasq hands out (option 23).
    pub const DNS: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xcd, 0, 0, 0, 0, 0, 0x53);
}

/// A lab whose dnsmasq also serves DHCPv6 on [`v6::SERVER_ADDR`]'s /64 (stateful range
/// [`v6::RANGE_FIRST`]..=[`v6::RANGE_LAST`], 12 h, DNS [`v6::DNS`]) and sends RAs (`--enable-ra`:
/// M and O set, no A), `--dhcp-authoritative` (ADVERTISE with Preference 255) or not. `None`
/// when the test must skip (as [`skip_unless_available`], and when the kernel has no IPv6: a
/// failure under CI).
pub fn dhcpv6_lab(name: &str, authoritative: bool) -> Option<Lab> {
    if skip_unless_available(name) {
        return None;
    }
    if !ipv6_or_skip(name) {
        return None;
    }
    Some(
        Lab::builder(name)
            .no_ping(true)
            .authoritative(authoritative)
            .server_ipv6(&format!("{}/64", v6::SERVER_ADDR))
            .dnsmasq_arg(&format!(
                "--dhcp-range={},{},64,12h",
                v6::RANGE_FIRST,
                v6::RANGE_LAST
            ))
            .dnsmasq_arg("--enable-ra")
            .dnsmasq_arg(&format!("--dhcp-option=option6:dns-server,[{}]", v6::DNS))
            .build(),
    )
}

/// A lab for the fake DHCPv6 server ([`fake_server6::FakeServer6::start`]): no dnsmasq, s0 also
/// holds [`fake_server6::SERVER_ADDR`]/64 ([`LabBuilder::server_ipv6`]: no duplicate address
/// detection on s0, so its link-local is usable at once). `None` (the test skips) as for
/// [`fake_lab`], and also when the kernel has no IPv6; under CI=true both are failures.
pub fn fake_lab6(name: &str) -> Option<Lab> {
    let why = unavailable_with(false)
        .or_else(|| (!ipv6_available()).then(|| "IPv6 is disabled in this kernel".to_string()));
    if let Some(why) = why {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{name}: {why}"
        );
        eprintln!("SKIP {name}: {why}");
        return None;
    }
    Some(
        Lab::builder(name)
            .without_dnsmasq()
            .server_ipv6(&format!("{}/64", fake_server6::SERVER_ADDR))
            .build(),
    )
}

/// Whether this runs under CI (`CI=true`), where a missing tool fails instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// `tool`'s path in PATH, or in /usr/sbin and /sbin; `None` when it is in none of them.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// One line of dnsmasq's lease file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub expiry: u64,
    pub mac: String,
    pub ip: String,
    pub hostname: String,
    /// Colon-separated hex as dnsmasq writes it (`00:63:69:64`), `*` when none.
    pub client_id: String,
}

pub struct LabBuilder {
    prefix: String,
    no_ping: bool,
    lease_time: String,
    extra: Vec<String>,
    dnsmasq: bool,
    /// s0's prefix length and dnsmasq's range (first, last address).
    subnet: (u8, String, String),
    log_dhcp: bool,
    /// A static IPv6 address (with prefix length) for s0, see [`LabBuilder::server_ipv6`].
    server_ipv6: Option<String>,
    /// `--dhcp-authoritative`, see [`LabBuilder::authoritative`].
    authoritative: bool,
}

impl LabBuilder {
    /// `--no-ping`: dnsmasq skips its ping check before an offer (it blocks DHCP up to 3 s).
    pub fn no_ping(mut self, yes: bool) -> Self {
        self.no_ping = yes;
        self
    }
    /// Lease time as dnsmasq takes it (`1h` default; dnsmasq raises anything under 2m to 2m).
    pub fn lease_time(mut self, t: &str) -> Self {
        self.lease_time = t.to_string();
        self
    }
    /// Any extra dnsmasq argument, e.g. `--dhcp-host=...` or `--dhcp-option=121,...`.
    pub fn dnsmasq_arg(mut self, arg: &str) -> Self {
        self.extra.push(arg.to_string());
        self
    }
    /// No dnsmasq in the server netns: `s0` is up with 198.18.0.1/24 and nothing listens on it,
    /// for a test that runs its own server there ([`fake_server::FakeServer::start`]). The
    /// dnsmasq helpers (lease file, log) then see empty files and [`Lab::dnsmasq_pid`] is `None`.
    pub fn without_dnsmasq(mut self) -> Self {
        self.dnsmasq = false;
        self
    }
    /// A wider subnet than the default /24 with its .100-.250 range: s0 gets
    /// `198.18.0.1/prefix_len` and dnsmasq hands out `first..=last` (all inside the subnet).
    /// For benchmarks with more containers than a /24 holds.
    pub fn subnet(mut self, prefix_len: u8, first: &str, last: &str) -> Self {
        assert!((8..=30).contains(&prefix_len), "prefix length {prefix_len}");
        self.subnet = (prefix_len, first.to_string(), last.to_string());
        self
    }
    /// `--log-dhcp` (default on): dnsmasq logs every option of every packet. Benchmarks turn it
    /// off so that dnsmasq's own logging is not what they measure; the one line per message
    /// (DHCPDISCOVER, DHCPACK, DHCPRELEASE...) stays.
    pub fn log_dhcp(mut self, yes: bool) -> Self {
        self.log_dhcp = yes;
        self
    }
    /// Also give s0 the static IPv6 address `addr` (`fd00:cd::1/64`), with duplicate address
    /// detection off on s0 (its link-local too), so dnsmasq can serve DHCPv6 and send Router
    /// Advertisements on it from the start. Pass the DHCPv6 range and `--enable-ra` with
    /// [`LabBuilder::dnsmasq_arg`]; readiness then also waits for dnsmasq's DHCPv6 range line.
    pub fn server_ipv6(mut self, addr: &str) -> Self {
        self.server_ipv6 = Some(addr.to_string());
        self
    }
    /// `--dhcp-authoritative` (default on). With it dnsmasq's DHCPv6 ADVERTISEs carry
    /// Preference 255, which a client takes at once; without it a client waits out its first
    /// retransmission time collecting ADVERTISEs (RFC 8415 §18.2.1).
    pub fn authoritative(mut self, yes: bool) -> Self {
        self.authoritative = yes;
        self
    }
    pub fn build(self) -> Lab {
        Lab::start(self)
    }
}

pub struct Lab {
    prefix: String,
    srv: String,
    host: String,
    dir: tempfile::TempDir,
    dnsmasq: Mutex<Option<Child>>,
    /// Every netns this lab made, in creation order (deleted in reverse).
    netns: Mutex<Vec<String>>,
    ifseq: AtomicUsize,
    /// Whether br0 ([`Lab::add_shared_mac_container`]) exists.
    bridged: std::sync::atomic::AtomicBool,
}

impl Lab {
    /// A lab with the defaults (dnsmasq pings before offering). Panics with the reason on failure.
    pub fn new(prefix: &str) -> Lab {
        Lab::builder(prefix).build()
    }

    pub fn builder(prefix: &str) -> LabBuilder {
        LabBuilder {
            prefix: prefix.to_string(),
            no_ping: false,
            lease_time: "1h".into(),
            extra: Vec::new(),
            dnsmasq: true,
            subnet: (PREFIX_LEN, RANGE_START.into(), RANGE_END.into()),
            log_dhcp: true,
            server_ipv6: None,
            authoritative: true,
        }
    }

    fn start(b: LabBuilder) -> Lab {
        if let Some(why) = unavailable_with(b.dnsmasq) {
            panic!("Lab::new({}): {why}", b.prefix);
        }
        sweep_stale();
        assert!(!b.prefix.contains('/'), "lab prefix must not contain '/'");
        let prefix = format!(
            "{NAME_TAG}{}.{}.{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst),
            b.prefix,
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}."))
            .tempdir()
            .expect("lab temp dir");
        let lab = Lab {
            srv: format!("{prefix}-srv"),
            host: format!("{prefix}-host"),
            prefix,
            dir,
            dnsmasq: Mutex::new(None),
            netns: Mutex::new(Vec::new()),
            ifseq: AtomicUsize::new(0),
            bridged: std::sync::atomic::AtomicBool::new(false),
        };
        // From here on a panic drops `lab`, which cleans up what was made so far.
        lab.add_netns(&lab.srv.clone());
        lab.add_netns(&lab.host.clone());
        ip(&[
            "-n", &lab.host, "link", "add", MASTER, "type", "veth", "peer", "name", "s0", "netns",
            &lab.srv,
        ]);
        ip(&[
            "-n",
            &lab.srv,
            "addr",
            "add",
            &format!("{SERVER_IP}/{}", b.subnet.0),
            "dev",
            "s0",
        ]);
        if let Some(addr6) = &b.server_ipv6 {
            // Before s0 goes up, so its link-local is never tentative either.
            lab.exec_ok(
                &lab.srv,
                &["sh", "-c", "echo 0 > /proc/sys/net/ipv6/conf/s0/accept_dad"],
            );
            ip(&["-n", &lab.srv, "addr", "add", addr6, "dev", "s0", "nodad"]);
        }
        ip(&["-n", &lab.srv, "link", "set", "s0", "up"]);
        ip(&["-n", &lab.host, "link", "set", MASTER, "up"]);
        fs::write(lab.lease_path(), "").unwrap();
        fs::write(lab.log_path(), "").unwrap();
        if !b.dnsmasq {
            return lab;
        }

        let mut args: Vec<String> = vec![
            "netns".into(),
            "exec".into(),
            lab.srv.clone(),
            which("dnsmasq").unwrap().to_string_lossy().into_owned(),
            "--keep-in-foreground".into(),
            "--conf-file=/dev/null".into(),
            "--port=0".into(),
            "--user=root".into(),
            "--group=root".into(),
            "--interface=s0".into(),
            "--bind-interfaces".into(),
            format!(
                "--dhcp-range={},{},{},{}",
                b.subnet.1,
                b.subnet.2,
                netmask(b.subnet.0),
                b.lease_time
            ),
            format!("--dhcp-option=option:router,{SERVER_IP}"),
            format!("--dhcp-option=option:dns-server,{SERVER_IP}"),
            format!("--domain={DOMAIN}"),
            format!("--dhcp-option=option:domain-name,{DOMAIN}"),
            format!("--dhcp-leasefile={}", lab.lease_path().display()),
            format!("--log-facility={}", lab.log_path().display()),
            format!(
                "--pid-file={}",
                lab.dir.path().join("dnsmasq.pid").display()
            ),
        ];
        if b.authoritative {
            args.push("--dhcp-authoritative".into());
        }
        if b.no_ping {
            args.push("--no-ping".into());
        }
        if b.log_dhcp {
            args.push("--log-dhcp".into());
        }
        args.extend(b.extra);
        let mut cmd = Command::new(which("ip").unwrap());
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(lab.dir.path().join("dnsmasq.stderr")).unwrap());
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn dnsmasq");
        *lab.dnsmasq.lock().unwrap() = Some(child);

        // Ready when dnsmasq has logged its DHCP range (its sockets are bound by then).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = lab.dnsmasq_log();
            if log.contains("DHCP, IP range")
                && (b.server_ipv6.is_none() || log.contains("DHCPv6, IP range"))
            {
                break;
            }
            if let Some(st) = lab
                .dnsmasq
                .lock()
                .unwrap()
                .as_mut()
                .unwrap()
                .try_wait()
                .unwrap()
            {
                panic!(
                    "dnsmasq exited ({st}) at start: {}\n{}",
                    fs::read_to_string(lab.dir.path().join("dnsmasq.stderr")).unwrap_or_default(),
                    lab.dnsmasq_log()
                );
            }
            if Instant::now() > deadline {
                panic!("dnsmasq not ready after 10 s:\n{}", lab.dnsmasq_log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        lab
    }

    /// The unique prefix (`cdl.<pid>.<seq>.<prefix>`) of every name this lab makes.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    /// Name of the server netns.
    pub fn srv_ns(&self) -> &str {
        &self.srv
    }
    /// Name of the host netns holding `m0`; run the plugins here.
    pub fn host_ns(&self) -> &str {
        &self.host
    }
    pub fn host_ns_path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.host)
    }
    /// The master link's name in [`Lab::host_ns`].
    pub fn master(&self) -> &str {
        MASTER
    }
    /// A temp dir that lives as long as the lab (for daemon sockets, configs, ...).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn lease_path(&self) -> PathBuf {
        self.dir.path().join("dnsmasq.leases")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("dnsmasq.log")
    }
    /// dnsmasq's pid (for tests that restart or stop the server).
    pub fn dnsmasq_pid(&self) -> Option<u32> {
        self.dnsmasq.lock().unwrap().as_ref().map(|c| c.id())
    }

    /// A new netns `<prefix>-<name>` for a container, with lo up. Returns its path
    /// (`/var/run/netns/<prefix>-<name>`), what CNI_NETNS takes.
    pub fn container(&self, name: &str) -> PathBuf {
        let ns = format!("{}-{name}", self.prefix);
        self.add_netns(&ns);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        Path::new(NETNS_DIR).join(ns)
    }

    /// A macvlan (bridge mode) slave of m0 named `ifname` inside `container` (a name or path),
    /// left down and unaddressed, as a plugin would find it before IPAM. Returns its MAC.
    pub fn add_macvlan(&self, container: impl AsRef<Path>, ifname: &str) -> String {
        let ns = ns_name(container.as_ref());
        let tmp = format!("mv{}", self.ifseq.fetch_add(1, Ordering::SeqCst));
        ip(&[
            "-n", &self.host, "link", "add", "link", MASTER, "name", &tmp, "type", "macvlan",
            "mode", "bridge",
        ]);
        ip(&["-n", &self.host, "link", "set", &tmp, "netns", &ns]);
        ip(&["-n", &ns, "link", "set", &tmp, "name", ifname]);
        self.mac_of(&ns, ifname)
    }

    /// A veth pair between `container` (`ifname`, down) and the host netns (`host_ifname`, up, not
    /// attached to anything): for tests that need a link that is not a slave of m0.
    pub fn add_veth_container(&self, container: impl AsRef<Path>, ifname: &str, host_ifname: &str) {
        let ns = ns_name(container.as_ref());
        ip(&[
            "-n",
            &self.host,
            "link",
            "add",
            host_ifname,
            "type",
            "veth",
            "peer",
            "name",
            ifname,
            "netns",
            &ns,
        ]);
        ip(&["-n", &self.host, "link", "set", host_ifname, "up"]);
    }

    /// A container interface `ifname` whose MAC is `mac`, shared with other containers made
    /// the same way, as ipvlan slaves share their master's MAC (this machine's kernel has no
    /// ipvlan, and macvlan refuses two slaves with one MAC). It is one end of a veth pair whose
    /// other end is a port of a bridge `br0` in the host netns, which also holds m0 (made on
    /// first use): broadcasts reach every container and the server, as on ipvlan L2. Left down
    /// and unaddressed. Unicasts to a shared MAC go to the port that last sent from it, which
    /// is the container that just sent its request.
    pub fn add_shared_mac_container(&self, container: impl AsRef<Path>, ifname: &str, mac: &str) {
        if !self.bridged.swap(true, Ordering::SeqCst) {
            ip(&["-n", &self.host, "link", "add", "br0", "type", "bridge"]);
            ip(&["-n", &self.host, "link", "set", MASTER, "master", "br0"]);
            ip(&["-n", &self.host, "link", "set", "br0", "up"]);
        }
        let ns = ns_name(container.as_ref());
        let port = format!("sm{}", self.ifseq.fetch_add(1, Ordering::SeqCst));
        ip(&[
            "-n", &self.host, "link", "add", &port, "type", "veth", "peer", "name", ifname,
            "netns", &ns,
        ]);
        ip(&["-n", &ns, "link", "set", "dev", ifname, "address", mac]);
        ip(&["-n", &self.host, "link", "set", &port, "master", "br0"]);
        ip(&["-n", &self.host, "link", "set", &port, "up"]);
    }

    /// The MAC of `ifname` in `netns` (a name or path).
    pub fn mac_of(&self, netns: impl AsRef<Path>, ifname: &str) -> String {
        // `ip netns exec` mounts a /sys of the target netns.
        let out = self.exec_ok(netns, &["cat", &format!("/sys/class/net/{ifname}/address")]);
        out.trim().to_string()
    }

    /// IPv4 addresses (with prefix length) on `ifname` in `netns`.
    pub fn ipv4_of(&self, netns: impl AsRef<Path>, ifname: &str) -> Vec<String> {
        let ns = ns_name(netns.as_ref());
        let out = ip_out(&["-n", &ns, "-4", "-o", "addr", "show", "dev", ifname]);
        out.lines()
            .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1))
            .map(str::to_string)
            .collect()
    }

    /// The link-local address of `ifname` in `netns` (a name or path) once it has passed
    /// duplicate address detection (no longer `tentative`), polling `ip -6 addr`; an address
    /// that is not tentative returns at once. Panics when DAD failed, or when there is still no
    /// usable link-local after `timeout` (the link is down, or IPv6 is off on it).
    pub fn wait_link_local(
        &self,
        netns: impl AsRef<Path>,
        ifname: &str,
        timeout: Duration,
    ) -> std::net::Ipv6Addr {
        let ns = ns_name(netns.as_ref());
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let out = ip_out(&[
                "-n", &ns, "-6", "-o", "addr", "show", "dev", ifname, "scope", "link",
            ]);
            if let Some(l) = out.lines().find(|l| l.contains("inet6 fe80:")) {
                assert!(!l.contains("dadfailed"), "{ns}/{ifname}: DAD failed: {l}");
                if !l.contains("tentative") {
                    return l
                        .split_whitespace()
                        .skip_while(|w| *w != "inet6")
                        .nth(1)
                        .and_then(|a| a.split('/').next())
                        .and_then(|a| a.parse().ok())
                        .unwrap_or_else(|| panic!("{ns}/{ifname}: link-local in {l:?}"));
                }
            }
            assert!(
                deadline.is_some_and(|d| Instant::now() < d),
                "{ns}/{ifname}: no usable link-local after {timeout:?}: {out:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `ip netns exec <netns> cmd...` (netns: a name or path), waiting for it; never panics.
    pub fn exec_in<S: AsRef<OsStr>>(&self, netns: impl AsRef<Path>, cmd: &[S]) -> Output {
        let mut c = self.command_in(netns, cmd[0].as_ref());
        c.args(&cmd[1..]).stdin(Stdio::null());
        c.output().expect("run ip netns exec")
    }

    /// Like [`Lab::exec_in`] but panics unless the command succeeds; returns its stdout.
    pub fn exec_ok<S: AsRef<OsStr>>(&self, netns: impl AsRef<Path>, cmd: &[S]) -> String {
        let out = self.exec_in(netns.as_ref(), cmd);
        if !out.status.success() {
            panic!(
                "in {}: {:?} failed ({}): {}{}",
                netns.as_ref().display(),
                cmd.iter()
                    .map(|s| s.as_ref().to_string_lossy())
                    .collect::<Vec<_>>(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A `Command` that runs `program` inside `netns`; add args, env and stdin yourself
    /// (e.g. a CNI plugin with CNI_COMMAND=ADD and its config on stdin).
    pub fn command_in(&self, netns: impl AsRef<Path>, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new(which("ip").expect("ip"));
        c.args(["netns", "exec"])
            .arg(ns_name(netns.as_ref()))
            .arg(program);
        c
    }

    /// dnsmasq's lease file as it is now.
    pub fn lease_file(&self) -> String {
        fs::read_to_string(self.lease_path()).unwrap_or_default()
    }

    /// The lease file parsed.
    pub fn leases(&self) -> Vec<Lease> {
        self.lease_file()
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 5).then(|| Lease {
                    expiry: f[0].parse().unwrap_or(0),
                    mac: f[1].into(),
                    ip: f[2].into(),
                    hostname: f[3].into(),
                    client_id: f[4].into(),
                })
            })
            .collect()
    }

    /// dnsmasq's log (`--log-dhcp`) as it is now.
    pub fn dnsmasq_log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits until the log contains `pattern` (a plain substring); false on timeout.
    pub fn wait_for_log(&self, pattern: &str, timeout: Duration) -> bool {
        self.wait_for_log_count(pattern, 1, timeout)
    }

    /// Waits until `pattern` occurs on at least `n` lines of the log; false on timeout.
    pub fn wait_for_log_count(&self, pattern: &str, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self
                .dnsmasq_log()
                .lines()
                .filter(|l| l.contains(pattern))
                .count()
                >= n
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Names of the namespaces this lab made and still holds.
    pub fn netns_names(&self) -> Vec<String> {
        self.netns.lock().unwrap().clone()
    }

    /// Many containers at once, for benchmarks: for each name a netns `<prefix>-<name>` holding a
    /// macvlan (bridge) slave of m0 called `ifname`, down and unaddressed, as `container` plus
    /// `add_macvlan` would make them, but in two `ip -batch` runs (300 take about 0.1 s, not the
    /// seconds that one `ip` per step takes). Returns the netns paths in `names` order.
    pub fn containers_with_macvlan(&self, names: &[String], ifname: &str) -> Vec<PathBuf> {
        let full: Vec<String> = names
            .iter()
            .map(|n| format!("{}-{n}", self.prefix))
            .collect();
        let adds: String = full.iter().map(|ns| format!("netns add {ns}\n")).collect();
        self.netns.lock().unwrap().extend(full.iter().cloned());
        ip_batch(None, &adds);
        let links: String = full
            .iter()
            .map(|ns| {
                format!(
                    "link add link {MASTER} name {ifname} netns {ns} type macvlan mode bridge\n"
                )
            })
            .collect();
        ip_batch(Some(&self.host), &links);
        full.iter()
            .map(|ns| Path::new(NETNS_DIR).join(ns))
            .collect()
    }

    /// Deletes containers made by [`Lab::containers_with_macvlan`] (or [`Lab::container`]) in one
    /// `ip -batch` run; their slaves go with them.
    pub fn remove_containers(&self, names: &[String]) {
        let full: Vec<String> = names
            .iter()
            .map(|n| format!("{}-{n}", self.prefix))
            .collect();
        let dels: String = full.iter().map(|ns| format!("netns del {ns}\n")).collect();
        ip_batch(None, &dels);
        self.netns.lock().unwrap().retain(|ns| !full.contains(ns));
    }

    fn add_netns(&self, name: &str) {
        ip(&["netns", "add", name]);
        self.netns.lock().unwrap().push(name.to_string());
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self
            .dnsmasq
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            // `ip netns exec` execs dnsmasq, so the child's pid is dnsmasq's.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(3);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let names = std::mem::take(&mut *self.netns.lock().unwrap_or_else(|e| e.into_inner()));
        // One `ip -force -batch` for all of them (a benchmark lab holds a thousand); -force goes
        // on past a namespace that is already gone.
        let dels: String = names
            .iter()
            .rev()
            .map(|ns| format!("netns del {ns}\n"))
            .collect();
        if let Ok(mut child) = Command::new("ip")
            .args(["-force", "-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            if let Some(mut stdin) = child.stdin.take() {
                use std::io::Write;
                let _ = stdin.write_all(dels.as_bytes());
            }
            let _ = child.wait();
        }
    }
}

/// Deletes netns left by earlier test processes that were killed before their Drop ran:
/// names `cdl.<pid>.<seq>.<prefix>-...` whose pid no longer exists.
fn sweep_stale() {
    let Ok(rd) = fs::read_dir(NETNS_DIR) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NAME_TAG) else {
            continue;
        };
        let mut parts = rest.splitn(3, '.');
        let (Some(Ok(pid)), Some(Ok(_seq)), Some(_)) = (
            parts.next().map(str::parse::<u32>),
            parts.next().map(str::parse::<u32>),
            parts.next(),
        ) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip")
                .args(["netns", "del", &name])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A netns name from a name or a `/var/run/netns/NAME` path.
fn ns_name(p: &Path) -> String {
    if p.components().count() > 1 {
        p.file_name()
            .expect("netns path")
            .to_string_lossy()
            .into_owned()
    } else {
        p.to_string_lossy().into_owned()
    }
}

/// The dotted netmask of a prefix length (`20` -> `255.255.240.0`).
pub fn netmask(prefix_len: u8) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(
        u32::MAX
            .checked_shl(32 - u32::from(prefix_len))
            .unwrap_or(0),
    )
}

/// Runs `ip [-n NETNS] -batch -` with `commands` (one per line) on stdin, panicking with its
/// stderr on failure.
pub fn ip_batch(netns: Option<&str>, commands: &str) {
    use std::io::Write;
    let mut cmd = Command::new(which("ip").expect("ip"));
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    let mut child = cmd
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ip -batch");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(commands.as_bytes())
        .expect("write ip -batch input");
    let out = child.wait_with_output().expect("wait for ip -batch");
    if !out.status.success() {
        panic!("ip -batch: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
}

/// Runs `ip ARGS`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    ip_out(args);
}

/// Runs `ip ARGS`, panicking with its stderr on failure; returns stdout.
pub fn ip_out(args: &[&str]) -> String {
    let out = Command::new(which("ip").expect("ip"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip");
    if !out.status.success() {
        panic!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}
