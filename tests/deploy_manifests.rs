//! The Kubernetes manifests in `deploy/kubernetes/`, checked offline:
//! - the DaemonSet against the Kubernetes API schemas with `kubernetes-validate --strict` (PyPI;
//!   unknown fields are errors), for the oldest and newest Kubernetes it bundles;
//! - the DaemonSet's paths against `-hostprefix` semantics (every CNI_NETNS location mounted
//!   under the prefix, the socket in the host's /run/cni) and its flags against `dhcp daemon`;
//! - the NetworkAttachmentDefinition, a CRD kubernetes-validate has no schema for (it only
//!   warns and exits 0, and has no option to do otherwise), against the NPWG CRD's structure,
//!   and its embedded CNI config against our `ipvlan` plugin itself.
//!
//! Needs `kubernetes-validate` and Python's PyYAML (a dependency of it) to read the YAML; both
//! come from scripts/deps.sh. Outside CI a missing tool skips with a message; under CI=true it
//! fails.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes");
const DAEMONSET: &str = "dhcp-daemonset.yaml";
const NAD: &str = "ipvlan-dhcp-nad.yaml";
const DHCP: &str = env!("CARGO_BIN_EXE_dhcp");
const IPVLAN: &str = env!("CARGO_BIN_EXE_ipvlan");
/// The oldest and newest Kubernetes schemas kubernetes-validate 1.37.0 bundles.
const K8S_VERSIONS: [&str; 2] = ["1.25.0", "1.37.0"];

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn skip(test: &str, why: &str) -> bool {
    if in_ci() {
        panic!("{test}: {why}");
    }
    eprintln!("SKIP {test}: {why} (scripts/deps.sh installs it)");
    true
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn path(name: &str) -> PathBuf {
    Path::new(DIR).join(name)
}

/// The single document of `file`, or `None` after a skip message.
fn one_doc(test: &str, file: &str) -> Option<Value> {
    let Some(mut docs) = common::yaml::docs(&path(file)) else {
        skip(test, "python3 with PyYAML not found");
        return None;
    };
    assert_eq!(docs.len(), 1, "{file}: one document expected");
    docs.pop()
}

fn kubernetes_validate(tool: &Path, file: &Path, strict: bool) -> (Output, String) {
    let mut cmd = Command::new(tool);
    if strict {
        cmd.arg("--strict");
    }
    for v in K8S_VERSIONS {
        cmd.args(["-k", v]);
    }
    let out = cmd.arg(file).output().expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

#[test]
fn daemonset_validates_strictly_against_the_kubernetes_schemas() {
    const TEST: &str = "daemonset_validates_strictly";
    let Some(tool) = which("kubernetes-validate") else {
        skip(TEST, "`kubernetes-validate` not found");
        return;
    };
    let (out, text) = kubernetes_validate(&tool, &path(DAEMONSET), true);
    assert!(out.status.success(), "kubernetes-validate:\n{text}");
    assert!(!text.contains("ERROR") && !text.contains("WARN"), "{text}");
    for v in K8S_VERSIONS {
        let minor = v.rsplit_once('.').unwrap().0;
        let line = format!("passed for resource daemonset/cni-dhcp against version {minor}");
        assert!(text.contains(&line), "no {line:?} in:\n{text}");
    }

    // The check has teeth: a misspelt field fails under --strict.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let yaml = std::fs::read_to_string(path(DAEMONSET)).unwrap();
    let typo = yaml.replacen("hostNetwork: true", "hostNetwrok: true", 1);
    assert_ne!(typo, yaml);
    std::fs::write(&bad, typo).unwrap();
    let (out, text) = kubernetes_validate(&tool, &bad, true);
    assert!(
        !out.status.success() && text.contains("hostNetwrok"),
        "a misspelt field passed:\n{text}"
    );
}

#[test]
fn nad_is_an_unknown_kind_to_kubernetes_validate_and_matches_the_npwg_crd() {
    const TEST: &str = "nad_crd_shape";
    if let Some(tool) = which("kubernetes-validate") {
        // It has no schema for CRDs and no option to require one: it warns and passes. That is
        // why the structure is checked below instead.
        let (out, text) = kubernetes_validate(&tool, &path(NAD), true);
        assert!(out.status.success(), "{text}");
        assert!(
            text.contains("Couldn't find schema for kind NetworkAttachmentDefinition"),
            "kubernetes-validate now knows the NAD kind; validate it strictly: {text}"
        );
    } else if skip(TEST, "`kubernetes-validate` not found") {
        return;
    }
    let Some(nad) = one_doc(TEST, NAD) else {
        return;
    };
    // The NPWG CRD (network-attachment-definition-client): group k8s.cni.cncf.io, version v1,
    // kind NetworkAttachmentDefinition, spec.config a string holding the CNI config JSON.
    assert_eq!(nad["apiVersion"], "k8s.cni.cncf.io/v1");
    assert_eq!(nad["kind"], "NetworkAttachmentDefinition");
    let name = nad["metadata"]["name"].as_str().expect("metadata.name");
    assert!(
        !name.is_empty()
            && name.len() <= 253
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-'),
        "metadata.name {name:?} is not a DNS-1123 subdomain"
    );
    let top: BTreeSet<&str> = nad
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        top,
        BTreeSet::from(["apiVersion", "kind", "metadata", "spec"])
    );
    let spec = nad["spec"].as_object().expect("spec object");
    assert_eq!(spec.keys().collect::<Vec<_>>(), ["config"]);
    assert!(spec["config"].is_string(), "spec.config must be a string");
}

/// The CNI config embedded in the NAD, or `None` after a skip message.
fn nad_config(test: &str) -> Option<(Value, String)> {
    let nad = one_doc(test, NAD)?;
    let text = nad["spec"]["config"]
        .as_str()
        .expect("spec.config")
        .to_string();
    let conf = serde_json::from_str(&text).expect("spec.config is JSON");
    Some((conf, text))
}

/// `supportedVersions` reported by a plugin for CNI_COMMAND=VERSION.
fn supported_versions(plugin: &str) -> Vec<String> {
    let out = Command::new(plugin)
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{plugin} VERSION: {out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    serde_json::from_value(v["supportedVersions"].clone()).unwrap()
}

/// Runs our ipvlan plugin's ADD with `conf` and a CNI_NETNS that does not exist: it parses
/// and checks the whole configuration (keys, types, mode, L3-with-DHCP refusal) before it
/// opens the namespace, so the error tells whether the configuration was accepted. Nothing is
/// created on the host.
fn ipvlan_add_without_netns(conf: &str) -> Value {
    let mut child = Command::new(IPVLAN)
        .env_clear()
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", "deploy-manifests-test")
        .env("CNI_NETNS", "/nonexistent/cni-dhcp-test/netns")
        .env("CNI_IFNAME", "net1")
        .env("CNI_PATH", "/nonexistent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "ADD without a netns succeeded?");
    serde_json::from_slice(&out.stdout).expect("CNI error JSON on stdout")
}

#[test]
fn nad_config_is_one_our_ipvlan_and_dhcp_plugins_accept() {
    const TEST: &str = "nad_config";
    let Some((conf, text)) = nad_config(TEST) else {
        return;
    };
    // Only keys our ipvlan plugin knows (src/bin/ipvlan.rs); a typo would be silently ignored.
    let known = BTreeSet::from([
        "cniVersion",
        "name",
        "type",
        "master",
        "mode",
        "flag",
        "mtu",
        "linkInContainer",
        "ipam",
        "dns",
    ]);
    for key in conf.as_object().expect("config object").keys() {
        assert!(known.contains(key.as_str()), "ipvlan has no key {key:?}");
    }
    assert_eq!(conf["type"], "ipvlan");
    assert_eq!(conf["master"], "eth0");
    assert_eq!(conf["mode"], "l2");
    assert_eq!(conf["ipam"]["type"], "dhcp");
    assert_eq!(
        conf["name"],
        one_doc(TEST, NAD).unwrap()["metadata"]["name"]
    );
    let version = conf["cniVersion"].as_str().expect("cniVersion");
    for plugin in [IPVLAN, DHCP] {
        let supported = supported_versions(plugin);
        assert!(
            supported.iter().any(|v| v == version),
            "{plugin} supports {supported:?}, not {version}"
        );
    }

    // The plugin itself accepts the configuration: it gets as far as opening the netns.
    let err = ipvlan_add_without_netns(&text);
    assert_eq!(err["code"], 3, "config refused: {err}");
    assert!(
        err["msg"]
            .as_str()
            .unwrap()
            .starts_with("failed to open netns"),
        "{err}"
    );
    // Control: the same with mode l3 is refused as a configuration error before that.
    let mut l3 = conf.clone();
    l3["mode"] = "l3".into();
    let err = ipvlan_add_without_netns(&l3.to_string());
    assert_eq!(err["code"], 7, "l3 + dhcp not refused: {err}");
}

/// The `volumeMounts` of `container` joined with the pod's `volumes`: (mountPath, host path,
/// the mount object).
fn host_mounts(pod: &Value, container: &Value) -> Vec<(String, String, Value)> {
    let volumes = pod["volumes"].as_array().expect("volumes");
    container["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .map(|m| {
            let vol = volumes
                .iter()
                .find(|v| v["name"] == m["name"])
                .unwrap_or_else(|| panic!("no volume {}", m["name"]));
            let host = vol["hostPath"]["path"]
                .as_str()
                .unwrap_or_else(|| panic!("volume {} is not a hostPath", vol["name"]));
            (
                m["mountPath"].as_str().unwrap().to_string(),
                host.to_string(),
                m.clone(),
            )
        })
        .collect()
}

/// The container path a host path is visible at, through the mounts.
fn container_path_of(mounts: &[(String, String, Value)], host: &str) -> Option<String> {
    mounts.iter().find_map(|(at, from, _)| {
        let rest = Path::new(host).strip_prefix(from).ok()?;
        Some(Path::new(at).join(rest).to_string_lossy().into_owned())
    })
}

#[test]
fn daemonset_runs_dhcp_daemon_with_flags_it_accepts_and_paths_that_line_up() {
    const TEST: &str = "daemonset_args";
    let Some(ds) = one_doc(TEST, DAEMONSET) else {
        return;
    };
    assert_eq!(ds["kind"], "DaemonSet");
    assert_eq!(ds["metadata"]["namespace"], "kube-system");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["hostPID"], true);
    let daemon = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["command"][1] == "daemon")
        .expect("a container running `dhcp daemon`");
    assert_eq!(
        daemon["command"],
        serde_json::json!(["/opt/cni/bin/dhcp", "daemon"])
    );
    assert_eq!(daemon["securityContext"]["privileged"], true);

    // Every flag is one `dhcp daemon` has, each followed by its value.
    let help = Command::new(DHCP)
        .args(["daemon", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    let args: Vec<&str> = daemon["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args.len() % 2, 0, "flag/value pairs expected: {args:?}");
    let mut flags = std::collections::BTreeMap::new();
    for pair in args.chunks(2) {
        let (flag, value) = (pair[0], pair[1]);
        let name = flag.trim_start_matches('-');
        assert!(
            flag.starts_with('-') && help.contains(&format!("--{name} <")),
            "`dhcp daemon` has no flag {flag} taking a value:\n{help}"
        );
        assert!(!value.starts_with('-'), "{flag} has no value");
        flags.insert(name, value);
    }
    let prefix = flags["hostprefix"];
    assert_eq!(prefix, "/host");

    // -hostprefix: the daemon opens <prefix><CNI_NETNS>. Runtimes pass /var/run/netns/NAME
    // (containerd, CRI-O) or /proc/PID/ns/net; each must reach the host's file.
    let mounts = host_mounts(pod, daemon);
    for netns in ["/var/run/netns/cni-1234", "/proc/1234/ns/net"] {
        let seen = format!("{prefix}{netns}");
        assert_eq!(
            container_path_of(&mounts, netns).as_deref(),
            Some(seen.as_str()),
            "the daemon would open {seen}, which is not the host's {netns}"
        );
    }
    let netns_mount = &mounts
        .iter()
        .find(|(_, host, _)| host == "/var/run/netns")
        .unwrap()
        .2;
    assert_eq!(
        netns_mount["mountPropagation"], "HostToContainer",
        "namespaces made after the pod started would be invisible"
    );
    // The socket is the host's /run/cni/dhcp.sock, where the plugin looks by default.
    assert_eq!(
        container_path_of(&mounts, "/run/cni/dhcp.sock").as_deref(),
        Some(flags["socketpath"])
    );
    // Leases live in a host directory.
    let state = flags["state-dir"];
    assert!(
        mounts.iter().any(|(at, _, _)| at == state),
        "-state-dir {state} is not a host directory"
    );

    // The plugins reach the host's /opt/cni/bin.
    let init = &pod["initContainers"][0];
    let init_mounts = host_mounts(pod, init);
    let bin = container_path_of(&init_mounts, "/opt/cni/bin").expect("host /opt/cni/bin mounted");
    let script = init["command"].to_string();
    assert!(script.contains(&bin), "{script}");
    assert!(script.contains("for p in dhcp ipvlan"), "{script}");
}
