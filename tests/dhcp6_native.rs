//! DHCPv6 through the daemon and the `dhcp` plugin, natively (veth, macvlan), against real
//! dnsmasq serving DHCPv6 with `--enable-ra` (it keys bindings by DUID and IAID), and against
//! the scriptable fake DHCPv6 server of tests/common for what dnsmasq will not do (a T1 of
//! seconds). Dual-stack ADD: both addresses in the result (and, through the reference macvlan
//! plugin, on the interface), the IPv6 one with the RA's /64 and the router's link-local
//! address as its gateway (the kernel's default route via it), DNS from options 6 and 23
//! merged; CHECK; DEL and GC send RELEASE and dnsmasq drops the binding; a restarted daemon
//! resumes the lease; `dhcp-leases`; an IPv6-only network.
//!
//! ```text
//!  netns <p>-srv : s0 198.18.0.1/24, fd00:cd::1/64; dnsmasq DHCPv4 + DHCPv6 ::100-::1ff + RA
//!        | veth
//!  netns <p>-host: m0 (bridge); containers: macvlan slaves of m0, or veth peers on it
//! ```

mod common;

use std::net::Ipv6Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::Lab;
use common::plugin::{DHCP, Daemon, cni, cni_in, conf, daemon_log, eventually, lease_records};
use serde_json::{Value, json};

use common::v6::{RANGE_FIRST, RANGE_LAST};
const DNS6: &str = "fd00:cd::53";
const STEP: Duration = Duration::from_secs(30);

/// A lab whose dnsmasq serves DHCPv4 as usual plus DHCPv6 and RAs on s0
/// ([`common::dhcpv6_lab`]); None: skip.
fn dual_lab(name: &str) -> Option<Lab> {
    common::dhcpv6_lab(name, false)
}

/// s0's link-local address: the router of dnsmasq's RAs.
fn router(lab: &Lab) -> Ipv6Addr {
    lab.wait_link_local(Path::new("/run/netns").join(lab.srv_ns()), "s0", STEP)
}

/// The `ips` entry of `result` of family `v6`.
fn ip_of(result: &Value, v6: bool) -> Option<String> {
    result["ips"].as_array()?.iter().find_map(|ip| {
        let a = ip["address"].as_str()?;
        (a.contains(':') == v6).then(|| a.to_string())
    })
}

/// Checks a dual-stack (or IPv6-only) result: the IPv6 address is in dnsmasq's range with the
/// RA's /64, its gateway and the default route's are the router's link-local, and the name
/// servers hold DHCPv6's (when `dns`: the reference macvlan replaces the IPAM result's DNS by
/// its network configuration's).
fn check_v6_result(lab: &Lab, result: &Value, dns: bool) -> Ipv6Addr {
    let v6 = ip_of(result, true).unwrap_or_else(|| panic!("no IPv6 address: {result}"));
    let (addr, len) = v6.split_once('/').unwrap();
    let addr: Ipv6Addr = addr.parse().unwrap();
    assert!((RANGE_FIRST..=RANGE_LAST).contains(&addr), "{addr}");
    assert_eq!(len, "64", "the on-link prefix of the RA: {result}");
    let gw = router(lab).to_string();
    let ip6 = result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ip| ip["address"] == v6.as_str())
        .unwrap();
    assert_eq!(ip6["gateway"], gw.as_str(), "{result}");
    // The default route is the kernel's, from the RA: none in the result to clash with it.
    assert!(
        !result["routes"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["dst"] == "::/0")),
        "{result}"
    );
    let ns = &result["dns"]["nameservers"];
    assert!(
        !dns || ns.as_array().is_some_and(|a| a.iter().any(|n| n == DNS6)),
        "{result}"
    );
    addr
}

/// Whether dnsmasq's lease file lists `addr` (its DHCPv6 lines follow the `duid` line).
fn server_has(lab: &Lab, addr: Ipv6Addr) -> bool {
    lab.lease_file().contains(&addr.to_string())
}

#[test]
fn dual_stack_add_through_the_reference_macvlan_check_and_gc() {
    let name = "dual_stack_add_through_the_reference_macvlan_check_and_gc";
    let reference = Path::new("/usr/lib/cni/macvlan");
    let Some(lab) = dual_lab(name) else { return };
    if !reference.exists() {
        assert!(
            std::env::var("CI").is_err(),
            "CI must install containernetworking-plugins"
        );
        eprintln!("SKIP: {} not installed", reference.display());
        return;
    }
    let daemon = Daemon::start(lab.dir(), &[]);
    let ns = lab.container("c1");
    let mut config = conf(&daemon.socket, json!({"dhcp6": true}));
    config["cniVersion"] = json!("1.0.0");
    config["master"] = json!(common::MASTER);
    config["mode"] = json!("bridge");
    let started = Instant::now();
    let cmd = lab.command_in(lab.host_ns(), reference);
    let (ok, result) = cni_in(cmd, "ADD", "dual-c1", &ns, "eth0", &config);
    println!(
        "dual-stack ADD through the reference macvlan: {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    assert!(ok, "reference macvlan + our dhcp, dual-stack: {result}");
    let v4 = ip_of(&result, false).unwrap_or_else(|| panic!("no IPv4 address: {result}"));
    assert!(v4.ends_with("/24"), "{result}");
    let v6 = check_v6_result(&lab, &result, false);
    // Both addresses are on the interface, put there by the main plugin from our result.
    assert_eq!(lab.ipv4_of(&ns, "eth0"), vec![v4.clone()]);
    let addrs = lab.exec_ok(&ns, &["ip", "-6", "-o", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains(&format!("{v6}/64")), "{addrs}");
    let routes = lab.exec_ok(&ns, &["ip", "-6", "route", "show", "default"]);
    assert!(routes.contains(&router(&lab).to_string()), "{routes}");
    // The server holds a binding for our DUID.
    assert!(server_has(&lab, v6), "{}", lab.lease_file());
    // The daemon lists two leases for the attachment, one per family.
    let list = lease_records(&daemon.socket);
    let families: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["family"].as_str().unwrap_or("ipv4"))
        .collect();
    assert_eq!(families, ["ipv4", "ipv6"], "{list}");
    let rec6 = &list[1];
    assert_eq!(rec6["state"], "BOUND");
    assert_eq!(rec6["lease6"]["address"], v6.to_string());
    assert_eq!(
        rec6["client_id"],
        hex(&cni_dhcp::dhcp6::identity::duid("dual-c1", "labnet"))
    );

    // CHECK with the result as prevResult passes; a wrong IPv6 address fails it.
    let mut with_prev = config.clone();
    with_prev["prevResult"] = result.clone();
    let cmd = lab.command_in(lab.host_ns(), reference);
    let (ok, out) = cni_in(cmd, "CHECK", "dual-c1", &ns, "eth0", &with_prev);
    assert!(ok, "CHECK: {out}");

    // A prevResult that lists another IPv6 address fails CHECK.
    let mut wrong = result.clone();
    for ip in wrong["ips"].as_array_mut().unwrap() {
        if ip["address"].as_str().is_some_and(|a| a.contains(':')) {
            ip["address"] = json!("fd00:cd::99/64");
        }
    }
    with_prev["prevResult"] = wrong;
    let cmd = lab.command_in(lab.host_ns(), reference);
    let (ok, out) = cni_in(cmd, "CHECK", "dual-c1", &ns, "eth0", &with_prev);
    assert!(!ok && out["code"] == 7, "{out}");

    // GC with the attachment no longer valid releases both leases: dnsmasq drops the binding.
    let mut gc = conf(&daemon.socket, json!({"dhcp6": true}));
    gc["cni.dev/valid-attachments"] = json!([]);
    let (ok, out) = cni(DHCP, "GC", "", &ns, "eth0", &gc);
    assert!(ok, "{out}");
    assert!(
        eventually(STEP, || !server_has(&lab, v6)),
        "binding kept after GC's RELEASE:\n{}",
        lab.lease_file()
    );
    assert_eq!(lease_records(&daemon.socket), json!([]));
    // The log names what was given back, for each family (a DHCPv6 RELEASE's source is the
    // link-local address: the log once said "released address=::").
    let log = daemon_log(lab.dir());
    for addr in [v4.split('/').next().unwrap().to_string(), v6.to_string()] {
        assert!(
            log.lines()
                .any(|l| l.contains("released") && l.contains(&format!("address={addr}"))),
            "no release of {addr} in the log:\n{log}"
        );
    }
    assert!(!log.contains("address=::\n"), "{log}");
    // DEL after GC: nothing left to release, still a success.
    let cmd = lab.command_in(lab.host_ns(), reference);
    let (ok, out) = cni_in(cmd, "DEL", "dual-c1", &ns, "eth0", &config);
    assert!(ok, "{out}");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn dual_stack_on_veth_survives_a_restart_and_v6_only_networks_work() {
    let name = "dual_stack_on_veth_survives_a_restart_and_v6_only_networks_work";
    let Some(lab) = dual_lab(name) else { return };
    let daemon = Daemon::start(lab.dir(), &[]);
    let ns = lab.container("v1");
    // A veth whose host end is a port of a bridge with the server link (its MAC its own).
    // Left down, as the reference main plugins hand it over: the daemon brings it up, with
    // Optimistic DAD (RFC 4429) so the SOLICIT does not wait for DAD of the link-local.
    lab.add_shared_mac_container(&ns, "eth0", "02:00:00:00:6a:01");
    let config = conf(&daemon.socket, json!({"dhcp6": true}));
    let started = Instant::now();
    let (ok, result) = cni(DHCP, "ADD", "veth-1", &ns, "eth0", &config);
    println!(
        "dual-stack ADD on a veth handed over down: {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    let sysctl = |ns: &Path, knob: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/all/{knob}"))
            .ok()
            .map(|_| {
                lab.exec_ok(
                    ns,
                    &["cat", &format!("/proc/sys/net/ipv6/conf/eth0/{knob}")],
                )
                .trim()
                .to_string()
            })
    };
    // Where the kernel has Optimistic DAD, the daemon turned it on for this link only.
    if let Some(v) = sysctl(&ns, "optimistic_dad") {
        assert_eq!(v, "1");
        assert_eq!(sysctl(&ns, "use_optimistic").as_deref(), Some("1"));
    }
    assert!(ok, "{result}");
    println!("dual-stack ADD result: {result:#}");
    if std::env::var("DHCP6_DEBUG_LOG").is_ok() {
        println!("{}", common::plugin::daemon_log(lab.dir()));
    }
    assert!(ip_of(&result, false).is_some(), "{result}");
    let v6 = check_v6_result(&lab, &result, true);
    // DNS of both families, DHCPv4's first.
    assert_eq!(
        result["dns"]["nameservers"],
        json!([common::SERVER_IP, DNS6]),
        "{result}"
    );

    // ADD again: the same two leases.
    let (ok, again) = cni(DHCP, "ADD", "veth-1", &ns, "eth0", &config);
    assert!(ok, "{again}");
    assert_eq!(ip_of(&again, true), ip_of(&result, true));

    // dhcp-leases: both records, and `show` gives each its own history.
    let socket = daemon.socket.display().to_string();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(common::plugin::LEASES)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let json: Value = serde_json::from_str(&run(&["--socket", &socket, "--json"])).unwrap();
    let fams: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["family"].as_str().unwrap())
        .collect();
    assert_eq!(fams, ["ipv4", "ipv6"], "{json}");
    let shown = run(&["--socket", &socket, "show", "veth-1"]);
    let v6_part = shown
        .split("family:")
        .find(|p| p.trim_start().starts_with("DHCPv6"))
        .unwrap_or_else(|| panic!("no DHCPv6 record in\n{shown}"));
    assert!(v6_part.contains(&v6.to_string()), "{shown}");
    assert!(v6_part.contains("SOLICIT to ff02::1:2"), "{shown}");
    assert!(v6_part.contains("REPLY"), "{shown}");
    assert!(
        !v6_part.contains("DHCPDISCOVER"),
        "histories kept apart: {shown}"
    );

    // The lease is on disk as a version-2 record; a restarted daemon resumes it.
    let dir = lab.dir().join("state");
    let v6_files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".v6.json"))
        .collect();
    assert_eq!(v6_files.len(), 1, "one DHCPv6 record in {}", dir.display());
    let text = std::fs::read_to_string(v6_files[0].path()).unwrap();
    let record: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(record["version"], 2);
    assert_eq!(record["family"], "ipv6");
    assert_eq!(record["lease"]["address"], v6.to_string());
    assert_eq!(record["lease"]["prefix_len"], 64);
    daemon.terminate();
    let daemon = Daemon::start(lab.dir(), &[]);
    let list = lease_records(&daemon.socket);
    let rec6 = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["family"] == "ipv6")
        .unwrap_or_else(|| panic!("no resumed DHCPv6 lease: {list}"))
        .clone();
    assert_eq!(rec6["lease6"]["address"], v6.to_string());
    assert_eq!(rec6["state"], "BOUND");
    let (ok, again) = cni(DHCP, "ADD", "veth-1", &ns, "eth0", &config);
    assert!(ok, "{again}");
    assert_eq!(
        ip_of(&again, true).as_deref(),
        Some(format!("{v6}/64").as_str()),
        "the resumed lease, no new acquisition"
    );
    let (ok, out) = cni(DHCP, "DEL", "veth-1", &ns, "eth0", &config);
    assert!(ok, "{out}");
    assert!(
        eventually(STEP, || !server_has(&lab, v6)),
        "{}",
        lab.lease_file()
    );

    // IPv6 only: one address, no DHCPv4 lease asked for.
    let ns2 = lab.container("v2");
    lab.add_shared_mac_container(&ns2, "eth0", "02:00:00:00:6a:02");
    // This one up already: its link-local goes through DAD, which the daemon waits out.
    lab.exec_ok(&ns2, &["ip", "link", "set", "eth0", "up"]);
    let v6_only = conf(&daemon.socket, json!({"dhcp4": false, "dhcp6": true}));
    let (ok, result) = cni(DHCP, "ADD", "v6-only", &ns2, "eth0", &v6_only);
    assert!(ok, "{result}");
    assert_eq!(result["ips"].as_array().unwrap().len(), 1, "{result}");
    check_v6_result(&lab, &result, true);
    let list = lease_records(&daemon.socket);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    // Neither family: a configuration error.
    let none = conf(&daemon.socket, json!({"dhcp4": false}));
    let (ok, out) = cni(DHCP, "ADD", "none", &ns2, "eth0", &none);
    assert!(!ok && out["code"] == 7, "{out}");
    assert!(cni(DHCP, "DEL", "v6-only", &ns2, "eth0", &v6_only).0);
}

#[test]
fn renew_at_t1_reaches_the_fake_server_and_nobinding_is_survived() {
    use common::fake_server6::{FakeServer6, MessageType};
    let name = "renew_at_t1_reaches_the_fake_server_and_nobinding_is_survived";
    let Some(lab) = common::fake_lab6(name) else {
        return;
    };
    let srv = FakeServer6::start(&lab);
    srv.set_lifetimes(20, 30);
    srv.set_t1_t2(3, 25);
    let daemon = Daemon::start(lab.dir(), &[]);
    let ns = lab.container("r1");
    lab.add_macvlan(&ns, "eth0");
    lab.exec_ok(&ns, &["ip", "link", "set", "eth0", "up"]);
    let config = conf(&daemon.socket, json!({"dhcp4": false, "dhcp6": true}));
    let (ok, result) = cni(DHCP, "ADD", "renew-1", &ns, "eth0", &config);
    assert!(ok, "{result}");
    // No RA on this link: a /128 without a default route.
    let v6 = ip_of(&result, true).unwrap();
    assert!(v6.ends_with("/128"), "{result}");
    assert!(
        result["routes"].as_array().is_none_or(|r| r.is_empty()),
        "{result}"
    );
    // RENEW at T1 (3 s), answered; then a NoBinding RENEW makes the client REQUEST again.
    assert!(
        srv.wait_for(|s| s.msg_type == Some(MessageType::Renew), STEP),
        "no RENEW: {:?}",
        srv.seen()
    );
    srv.no_binding_on_renew(1);
    assert!(
        eventually(STEP, || srv.count(MessageType::Request) >= 1
            && srv.count(MessageType::Renew) >= 2),
        "{:?}",
        srv.seen()
    );
    assert!(
        eventually(STEP, || {
            let list = lease_records(&daemon.socket);
            list[0]["state"] == "BOUND" && list[0]["renewals"].as_u64().unwrap_or(0) >= 2
        }),
        "{}",
        lease_records(&daemon.socket)
    );
    assert_eq!(
        lease_records(&daemon.socket)[0]["lease6"]["address"],
        v6.trim_end_matches("/128")
    );
    assert!(cni(DHCP, "DEL", "renew-1", &ns, "eth0", &config).0);
    assert!(
        srv.wait_for(|s| s.msg_type == Some(MessageType::Release), STEP),
        "{:?}",
        srv.seen()
    );
}
