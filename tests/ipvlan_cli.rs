//! Runs the built `ipvlan` binary as a runtime would (environment + stdin) and checks the CNI
//! error codes and the delegation to IPAM. This host kernel has no ipvlan, so ADD's success
//! path is not covered here (see tests/vm); what is covered: input validation before anything
//! is touched, failure without leaks when the kernel refuses ipvlan, DEL's tolerance, and
//! STATUS/DEL delegation (to a scripted fake IPAM and to Debian's reference host-local).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

struct Out {
    ok: bool,
    json: Option<Value>,
    stdout: String,
}

fn run(vars: &[(&str, &str)], stdin: &str) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipvlan"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CNI_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Out {
        ok: out.status.success(),
        json: serde_json::from_str(&stdout).ok(),
        stdout,
    }
}

fn code(o: &Out) -> u64 {
    assert!(!o.ok, "expected failure, got {}", o.stdout);
    o.json
        .as_ref()
        .and_then(|j| j["code"].as_u64())
        .unwrap_or_else(|| panic!("no error JSON: {}", o.stdout))
}

/// A network namespace made with `ip netns add`, deleted on drop.
struct TempNs {
    name: String,
}

impl TempNs {
    fn new() -> TempNs {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "cnidhcp-it-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        sh("ip", &["netns", "add", &name]);
        TempNs { name }
    }
    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
    fn links(&self) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-o", "link", "show"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for TempNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn sh(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd).args(args).status().unwrap();
    assert!(st.success(), "{cmd} {args:?}");
}

fn conf(extra: &str) -> String {
    format!(r#"{{"cniVersion":"1.0.0","name":"labnet","type":"ipvlan"{extra}}}"#)
}

fn add_env<'a>(netns: &'a str, path: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "cid-1"),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", path),
    ]
}

/// A fake IPAM plugin: a shell script in a temp dir that logs its command and either prints
/// `reply` and exits 0, or prints an error and exits 1 when `fail` is set.
fn fake_ipam(dir: &Path, fail_code: Option<u32>) -> PathBuf {
    let log = dir.join("ipam.log");
    let body = match fail_code {
        None => "exit 0".to_owned(),
        Some(c) => format!(
            r#"echo '{{"cniVersion":"1.1.0","code":{c},"msg":"fake ipam says no"}}'; exit 1"#
        ),
    };
    let script = format!(
        "#!/bin/sh\ncat >/dev/null\necho \"$CNI_COMMAND $CNI_CONTAINERID $CNI_IFNAME\" >> {}\n{body}\n",
        log.display()
    );
    let exe = dir.join("fakeipam");
    std::fs::write(&exe, script).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    log
}

#[test]
fn malformed_stdin_is_code_6() {
    let o = run(&add_env("/run/netns/x", "/nonexistent"), "{not json");
    assert_eq!(code(&o), 6);
}

#[test]
fn wrong_typed_keys_are_code_7_naming_the_key() {
    for (extra, key) in [
        (r#","mode":5,"ipam":{"type":"dhcp"}"#, "mode"),
        (r#","mode":"l9","ipam":{"type":"dhcp"}"#, "mode"),
        (r#","flag":true,"ipam":{"type":"dhcp"}"#, "flag"),
        (r#","mtu":"big","ipam":{"type":"dhcp"}"#, "mtu"),
        (r#","master":["eth0"],"ipam":{"type":"dhcp"}"#, "master"),
        (
            r#","linkInContainer":1,"ipam":{"type":"dhcp"}"#,
            "linkInContainer",
        ),
        ("", "ipam"),
    ] {
        let o = run(&add_env("/run/netns/x", "/nonexistent"), &conf(extra));
        assert_eq!(code(&o), 7, "{extra}: {}", o.stdout);
        let j = o.json.unwrap();
        assert!(
            j["details"].as_str().unwrap_or("").starts_with(key),
            "{extra}: {j}"
        );
    }
}

#[test]
fn dhcp_in_l3_is_code_7_before_touching_anything() {
    let t = TempNs::new();
    let before = t.links();
    let ipams = [
        r#"{"type":"dhcp"}"#,
        r#"{"type":"dhcp","dhcp6":true}"#,
        r#"{"type":"dhcp","dhcp4":false,"dhcp6":true}"#,
    ];
    for (mode, ipam) in ["l3", "l3s"]
        .into_iter()
        .flat_map(|m| ipams.iter().map(move |i| (m, i)))
    {
        let extra = format!(r#","master":"lo","mode":"{mode}","ipam":{ipam}"#);
        // A real netns and an empty CNI_PATH: any attempt to go further would fail otherwise.
        let o = run(&add_env(&t.path(), "/nonexistent"), &conf(&extra));
        assert_eq!(code(&o), 7, "{}", o.stdout);
        let msg = o.json.unwrap()["msg"].as_str().unwrap().to_owned();
        assert!(msg.contains("broadcast") && msg.contains("l2"), "{msg}");
        // A netns path that does not exist would be code 3 if it were opened.
        let o = run(
            &add_env("/nonexistent/netns", "/nonexistent"),
            &conf(&extra),
        );
        assert_eq!(code(&o), 7);
    }
    assert_eq!(t.links(), before);
}

#[test]
fn missing_env_is_code_4() {
    let mut vars = add_env("/run/netns/x", "/nonexistent");
    vars.retain(|(k, _)| *k != "CNI_IFNAME");
    let o = run(&vars, &conf(r#","ipam":{"type":"dhcp"}"#));
    assert_eq!(code(&o), 4);
    assert!(o.stdout.contains("CNI_IFNAME"), "{}", o.stdout);
}

#[test]
fn missing_netns_is_code_3_and_missing_master_code_7() {
    let o = run(
        &add_env("/nonexistent/netns", "/nonexistent"),
        &conf(r#","ipam":{"type":"dhcp"}"#),
    );
    assert_eq!(code(&o), 3, "{}", o.stdout);
    let t = TempNs::new();
    let o = run(
        &add_env(&t.path(), "/nonexistent"),
        &conf(r#","master":"nosuchmaster0","ipam":{"type":"dhcp"}"#),
    );
    assert_eq!(code(&o), 7, "{}", o.stdout);
    assert!(o.stdout.contains("nosuchmaster0"));
}

#[test]
fn add_without_kernel_ipvlan_fails_cleanly_and_never_calls_ipam() {
    // The master lives inside the container netns (linkInContainer), so nothing on the host is
    // touched. This kernel has no ipvlan: creation fails and there is nothing to clean up.
    let t = TempNs::new();
    sh(
        "ip",
        &[
            "-n", &t.name, "link", "add", "m0", "type", "veth", "peer", "name", "m1",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let log = fake_ipam(dir.path(), None);
    let before = t.links();
    let o = run(
        &add_env(&t.path(), dir.path().to_str().unwrap()),
        &conf(r#","master":"m0","linkInContainer":true,"ipam":{"type":"fakeipam"}"#),
    );
    let c = code(&o);
    if std::path::Path::new("/sys/module/ipvlan").exists() {
        // On a kernel with ipvlan this path goes further; the VM tests cover it.
        return;
    }
    assert_eq!(c, 999, "{}", o.stdout);
    assert!(o.stdout.contains("ipvlan"), "{}", o.stdout);
    assert_eq!(t.links(), before, "a link leaked");
    assert!(!log.exists(), "IPAM was called although no link was made");
}

#[test]
fn del_runs_ipam_del_and_tolerates_missing_netns_and_link() {
    let dir = tempfile::tempdir().unwrap();
    let log = fake_ipam(dir.path(), None);
    let path = dir.path().to_str().unwrap();
    let stdin = conf(r#","mode":"l3","ipam":{"type":"fakeipam"}"#);
    // The netns is gone.
    let mut vars = add_env("/nonexistent/netns", path);
    vars[0] = ("CNI_COMMAND", "DEL");
    let o = run(&vars, &stdin);
    assert!(o.ok, "{}", o.stdout);
    // No netns at all.
    vars.retain(|(k, _)| *k != "CNI_NETNS");
    let o = run(&vars, &stdin);
    assert!(o.ok, "{}", o.stdout);
    // The netns exists, the link does not; a non-ipvlan link of that name is left alone.
    let t = TempNs::new();
    let ns_path = t.path();
    let mut vars = add_env(&ns_path, path);
    vars[0] = ("CNI_COMMAND", "DEL");
    let o = run(&vars, &stdin);
    assert!(o.ok, "{}", o.stdout);
    sh(
        "ip",
        &[
            "-n", &t.name, "link", "add", "eth0", "type", "veth", "peer", "name", "x1",
        ],
    );
    let o = run(&vars, &stdin);
    assert!(o.ok, "{}", o.stdout);
    assert!(t.links().contains("eth0"));
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls.lines().filter(|l| *l == "DEL cid-1 eth0").count(),
        4,
        "{calls}"
    );
}

#[test]
fn del_reports_ipam_failure() {
    let dir = tempfile::tempdir().unwrap();
    fake_ipam(dir.path(), Some(11));
    let mut vars = add_env("/nonexistent/netns", dir.path().to_str().unwrap());
    vars[0] = ("CNI_COMMAND", "DEL");
    let o = run(&vars, &conf(r#","ipam":{"type":"fakeipam"}"#));
    assert_eq!(code(&o), 11, "{}", o.stdout);
}

#[test]
fn status_is_delegated_to_ipam() {
    let stdin =
        r#"{"cniVersion":"1.1.0","name":"labnet","type":"ipvlan","ipam":{"type":"fakeipam"}}"#;
    let dir = tempfile::tempdir().unwrap();
    let log = fake_ipam(dir.path(), None);
    let path = dir.path().to_str().unwrap();
    let o = run(&[("CNI_COMMAND", "STATUS"), ("CNI_PATH", path)], stdin);
    assert!(o.ok, "{}", o.stdout);
    assert!(std::fs::read_to_string(&log).unwrap().starts_with("STATUS"));

    let dir = tempfile::tempdir().unwrap();
    fake_ipam(dir.path(), Some(50));
    let path = dir.path().to_str().unwrap();
    let o = run(&[("CNI_COMMAND", "STATUS"), ("CNI_PATH", path)], stdin);
    assert_eq!(code(&o), 50, "{}", o.stdout);

    // No such IPAM plugin in CNI_PATH.
    let o = run(
        &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/nonexistent")],
        stdin,
    );
    assert_eq!(code(&o), 7, "{}", o.stdout);
}

#[test]
fn del_delegates_to_reference_host_local() {
    if !Path::new("/usr/lib/cni/host-local").exists() {
        eprintln!("skipped: /usr/lib/cni/host-local not installed");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let stdin = conf(&format!(
        r#","ipam":{{"type":"host-local","subnet":"198.18.5.0/24","dataDir":"{}"}}"#,
        data.path().display()
    ));
    // Reserve an address through host-local directly, then release it through our DEL.
    let mut hl = Command::new("/usr/lib/cni/host-local")
        .envs([
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "cid-1"),
            ("CNI_NETNS", "/nonexistent"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/usr/lib/cni"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    hl.stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    assert!(hl.wait_with_output().unwrap().status.success());
    let reserved = data.path().join("labnet").join("198.18.5.2");
    assert!(reserved.exists());

    let mut vars = add_env("/nonexistent/netns", "/usr/lib/cni");
    vars[0] = ("CNI_COMMAND", "DEL");
    let o = run(&vars, &stdin);
    assert!(o.ok, "{}", o.stdout);
    assert!(!reserved.exists(), "host-local did not release the address");
}

/// A veth pair in the host namespace (the side `ipvlan` makes VLAN links on), deleted on drop.
struct HostVeth {
    name: String,
}

impl HostVeth {
    fn new(tag: char) -> HostVeth {
        // At most 15 bytes with ".4094" appended: "cdt" + pid (<= 7 digits) + tag.
        let name = format!("cdt{}{tag}", std::process::id() % 10_000_000);
        let _ = Command::new("ip")
            .args(["link", "del", &name])
            .stderr(Stdio::null())
            .status();
        let peer = format!("{name}p");
        sh(
            "ip",
            &["link", "add", &name, "type", "veth", "peer", "name", &peer],
        );
        HostVeth { name }
    }
}

impl Drop for HostVeth {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.name])
            .status();
    }
}

fn host_links() -> String {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// 802.1q trunk parents, the failures that need no 8021q (the VM test covers creation): each
/// error names its cause, nothing is created and IPAM is never called.
#[test]
fn trunk_parent_errors_name_the_cause_and_leave_nothing() {
    let t = TempNs::new();
    let parent = HostVeth::new('a');
    let dir = tempfile::tempdir().unwrap();
    let log = fake_ipam(dir.path(), None);
    let path = dir.path().to_str().unwrap().to_owned();
    let p = &parent.name;
    let cases: Vec<(String, u64, String)> = vec![
        (
            format!(r#","master":"{p}.4095""#),
            7,
            "out of range 1-4094".into(),
        ),
        (
            format!(r#","master":"{p}.0""#),
            7,
            "out of range 1-4094".into(),
        ),
        (
            format!(r#","master":"{p}","vlanId":5000"#),
            7,
            "out of range 1-4094".into(),
        ),
        (
            r#","vlanId":50"#.to_owned(),
            7,
            "vlanId needs master".into(),
        ),
        (
            format!(r#","master":"{p}","vlanId":50,"linkInContainer":true"#),
            7,
            "linkInContainer".into(),
        ),
        (
            r#","master":"nosuchpar0.50""#.to_owned(),
            7,
            r#"parent \"nosuchpar0\""#.into(),
        ),
    ];
    for (extra, want, needle) in cases {
        let before = host_links();
        let o = run(
            &add_env(&t.path(), &path),
            &conf(&format!(r#"{extra},"ipam":{{"type":"fakeipam"}}"#)),
        );
        assert_eq!(code(&o), want, "{extra}: {}", o.stdout);
        assert!(o.stdout.contains(&needle), "{extra}: {}", o.stdout);
        assert_eq!(
            host_links(),
            before,
            "{extra}: a host link appeared or went"
        );
    }
    assert!(!log.exists(), "IPAM was called");

    // A name taken by a link of another kind, with an explicit vlanId.
    let taken = format!("{p}.7");
    sh(
        "ip",
        &[
            "link",
            "add",
            &taken,
            "type",
            "veth",
            "peer",
            "name",
            &format!("{p}q"),
        ],
    );
    let o = run(
        &add_env(&t.path(), &path),
        &conf(&format!(
            r#","master":"{p}","vlanId":7,"ipam":{{"type":"fakeipam"}}"#
        )),
    );
    let _ = Command::new("ip").args(["link", "del", &taken]).status();
    assert_eq!(code(&o), 7, "{}", o.stdout);
    assert!(o.stdout.contains("kind veth"), "{}", o.stdout);
    assert!(!log.exists(), "IPAM was called");

    // The kernel here has no 802.1q: creation fails naming module 8021q, nothing is left.
    if Path::new("/sys/module/8021q").exists() {
        return; // this kernel can make VLAN links; the VM test covers that path
    }
    let before = host_links();
    let o = run(
        &add_env(&t.path(), &path),
        &conf(&format!(
            r#","master":"{p}.50","ipam":{{"type":"fakeipam"}}"#
        )),
    );
    assert_eq!(code(&o), 999, "{}", o.stdout);
    assert!(o.stdout.contains("8021q"), "{}", o.stdout);
    assert_eq!(host_links(), before, "a host link appeared or went");
    assert!(!log.exists(), "IPAM was called although no link was made");
    let users = Path::new(cni_dhcp::trunk::STATE_DIR).join(format!("{p}.50"));
    assert!(
        std::fs::read_dir(&users).map_or(true, |mut d| d.next().is_none()),
        "a user was recorded for a link that was never made"
    );
}
