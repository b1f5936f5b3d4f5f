//! `dhcp-leases` against the real daemon holding two dnsmasq leases: the table, `--json`
//! (schema 1), filters, `show`, `--watch`, offline mode after the daemon stops, exit codes and
//! completions. Needs root (the netns lab).

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use common::Lab;
use common::plugin::*;
use serde_json::{Value, json};

const A: &str = "leasescli0aaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "leasescli1bbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn leases(args: &[&str]) -> Output {
    Command::new(LEASES).args(args).output().unwrap()
}

fn stdout_ok(args: &[&str]) -> String {
    let out = leases(args);
    assert!(
        out.status.success(),
        "dhcp-leases {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json_ok(args: &[&str]) -> Vec<Value> {
    let text = stdout_ok(args);
    serde_json::from_str::<Value>(&text)
        .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text}"))
        .as_array()
        .unwrap()
        .clone()
}

fn time(v: &Value) -> SystemTime {
    humantime::parse_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}"))).unwrap()
}

/// The data rows of a table (header dropped), split on runs of two spaces.
fn rows(table: &str) -> Vec<Vec<String>> {
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("CONTAINER"), "{table}");
    lines
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

#[test]
fn dhcp_leases_live_offline_show_and_exit_codes() {
    if common::skip_unless_available("dhcp_leases_live_offline_show_and_exit_codes") {
        return;
    }
    let lab = Lab::builder("lcli").no_ping(true).build();
    let daemon = Daemon::start(lab.dir(), &[]);
    let socket = daemon.socket.to_str().unwrap().to_string();
    let sock = ["--socket", socket.as_str()];
    let with = |extra: &[&str]| -> Vec<String> {
        sock.iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    let run = |extra: &[&str]| {
        let args = with(extra);
        stdout_ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let run_json = |extra: &[&str]| {
        let args = with(extra);
        json_ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // Two leases, on two networks.
    let mut addresses = Vec::new();
    for (id, network, name) in [(A, "labnet", "a"), (B, "othernet", "b")] {
        let ns = lab.container(name);
        lab.add_macvlan(&ns, "eth0");
        let mut config = conf(&daemon.socket, json!({}));
        config["name"] = json!(network);
        let (ok, out) = cni(DHCP, "ADD", id, &ns, "eth0", &config);
        assert!(ok, "ADD {id}: {out}");
        addresses.push(out["ips"][0]["address"].as_str().unwrap().to_string());
    }

    // The table: short IDs, address/prefix, gateway, server, state, human times, renewals.
    let table = run(&[]);
    let r = rows(&table);
    assert_eq!(r.len(), 2, "{table}");
    for (row, (id, network, address)) in r
        .iter()
        .zip([(A, "labnet", &addresses[0]), (B, "othernet", &addresses[1])])
    {
        assert_eq!(row[0], id[..12], "{table}");
        assert_eq!(row[1], network, "{table}");
        assert_eq!(row[2], "eth0", "{table}");
        assert_eq!(&row[3], address, "{table}");
        assert_eq!(row[4], common::SERVER_IP, "gateway\n{table}");
        assert_eq!(row[5], common::SERVER_IP, "server\n{table}");
        assert_eq!(row[6], "BOUND", "{table}");
        // dnsmasq: 1h leases, so T1 ~ 28m..30m, expiry ~ 59m.
        assert!(row[7].starts_with("2") && row[7].contains('m'), "{table}");
        assert!(row[9].starts_with("59m") || row[9] == "1h", "{table}");
        assert_eq!(row[10], "0", "{table}");
        assert_eq!(row[11], "-", "{table}");
    }
    // Aligned: every row starts its columns where the header does.
    let lines: Vec<&str> = table.lines().collect();
    for title in ["NETWORK", "ADDRESS", "STATE", "EXPIRY", "LAST ERROR"] {
        let col = lines[0].find(title).unwrap();
        for l in &lines[1..] {
            assert_eq!(&l[col - 2..col], "  ", "{title}\n{table}");
            assert_ne!(&l[col..=col], " ", "{title}\n{table}");
        }
    }

    // --json: schema 1, full IDs, RFC 3339 times, hex client ID.
    let list = run_json(&["--json"]);
    assert_eq!(list.len(), 2);
    let now = SystemTime::now();
    for (r, (id, address)) in list.iter().zip([(A, &addresses[0]), (B, &addresses[1])]) {
        assert_eq!(r["schema_version"], 1, "{r}");
        assert_eq!(r["source"], "daemon", "{r}");
        assert_eq!(r["attachment"]["container_id"], id, "{r}");
        assert_eq!(r["attachment"]["ifname"], "eth0", "{r}");
        assert_eq!(
            format!("{}/24", r["lease"]["address"].as_str().unwrap()),
            *address
        );
        assert_eq!(r["state"], "BOUND");
        assert_eq!(r["broadcast"], false);
        assert!(r["broadcast_reason"].as_str().unwrap().starts_with("auto"));
        assert_eq!(r["renewals"], 0);
        assert!(r["last_error"].is_null() && r["previous_address"].is_null());
        assert!(r["history"].is_null(), "listings carry no history: {r}");
        let network = r["attachment"]["network"].as_str().unwrap();
        assert_eq!(
            r["client_id"],
            client_id_hex(id, network, "eth0").replace(':', "")
        );
        let (granted, t1, t2, expiry) = (
            time(&r["granted"]),
            time(&r["t1"]),
            time(&r["t2"]),
            time(&r["expiry"]),
        );
        assert!(granted <= now && now.duration_since(granted).unwrap() < Duration::from_secs(60));
        assert!(granted < t1 && t1 <= t2 && t2 <= expiry, "{r}");
        let lease = expiry.duration_since(granted).unwrap().as_secs_f64();
        assert!((lease - 3600.0).abs() < 1.0, "{r}");
        let left = r["expires_in"].as_u64().unwrap();
        assert!((3500..=3600).contains(&left), "{r}");
    }

    // Filters.
    let ids = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["--json"];
        args.extend_from_slice(extra);
        run_json(&args)
            .iter()
            .map(|r| {
                r["attachment"]["container_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    assert_eq!(ids(&["--container", "leasescli1"]), [B]);
    assert_eq!(ids(&["--container", "leasescli"]), [A, B]);
    assert_eq!(ids(&["--network", "labnet"]), [A]);
    assert_eq!(ids(&["--state", "bound"]), [A, B]);
    assert!(ids(&["--state", "RENEWING"]).is_empty());
    assert_eq!(ids(&["--network", "othernet", "--state", "Bound"]), [B]);
    assert_eq!(rows(&run(&["--container", "nothing"])).len(), 0);

    // show: by unique prefix, in full; ambiguous and unknown IDs exit 3.
    let detail = run(&["show", "leasescli0"]);
    for needle in [
        format!("container:        {A}"),
        format!("address:          {}", addresses[0]),
        "state:            BOUND".to_string(),
        format!("gateway:          {}", common::SERVER_IP),
    ] {
        assert!(detail.contains(&needle), "{needle:?} not in\n{detail}");
    }
    let shown = run_json(&["show", A, "--json"]);
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0]["attachment"]["container_id"], A);
    for (id, what) in [("leasescli", "ambiguous"), ("zz", "no lease")] {
        let args = with(&["show", id]);
        let out = leases(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(out.status.code(), Some(3), "show {id}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(what));
    }

    // --watch: redraws in place (clear screen) until killed.
    let mut watch = Command::new(LEASES)
        .args(["--socket", &socket, "--watch", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    watch.kill().unwrap();
    let mut screen = String::new();
    watch
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut screen)
        .unwrap();
    watch.wait().unwrap();
    assert!(screen.matches("\x1b[H\x1b[2J").count() >= 2, "{screen:?}");
    assert!(screen.contains(&addresses[1]), "{screen:?}");

    // Offline, after the daemon stops: the same leases from its state directory.
    daemon.terminate();
    let state = lab.dir().join("state");
    let state = state.to_str().unwrap();
    let offline = json_ok(&["--state-dir", state, "--json"]);
    let got: Vec<String> = offline
        .iter()
        .map(|r| format!("{}/24", r["lease"]["address"].as_str().unwrap()))
        .collect();
    assert_eq!(got, addresses);
    for (r, live) in offline.iter().zip(&list) {
        assert_eq!(r["source"], "state-dir");
        assert_eq!(r["schema_version"], 1);
        assert_eq!(r["attachment"], live["attachment"]);
        assert_eq!(r["client_id"], live["client_id"]);
        assert_eq!(r["state"], "BOUND");
        assert!(r["history"].is_null());
        // Same grant; T1/T2 differ by the daemon's fuzz only.
        let skew = |k: &str| {
            let (a, b) = (time(&r[k]), time(&live[k]));
            a.duration_since(b)
                .or_else(|_| b.duration_since(a))
                .unwrap()
        };
        assert!(skew("granted") < Duration::from_secs(2), "{r}\n{live}");
        assert!(skew("expiry") < Duration::from_secs(2), "{r}\n{live}");
    }
    let offline_table = stdout_ok(&["--state-dir", state]);
    assert_eq!(rows(&offline_table).len(), 2, "{offline_table}");
    let offline_show = stdout_ok(&["--state-dir", state, "show", B]);
    assert!(
        offline_show.contains("history: not available offline"),
        "{offline_show}"
    );

    // Exit codes: 1 unreachable daemon / unreadable state dir, 2 usage.
    let absent = lab.dir().join("absent.sock");
    let out = leases(&["--socket", absent.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--state-dir"));
    let missing = lab.dir().join("no-such-dir");
    let out = leases(&["--state-dir", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !Path::new(&missing).exists(),
        "offline mode must not create it"
    );
    assert_eq!(leases(&["--bogus"]).status.code(), Some(2));
    assert_eq!(leases(&["--watch", "0"]).status.code(), Some(2));
    assert_eq!(leases(&["completions", "tcsh"]).status.code(), Some(2));

    // Completions.
    let script = stdout_ok(&["completions", "bash"]);
    assert!(script.contains("complete") && script.contains("dhcp-leases"));
    assert!(script.contains("--state-dir") && script.contains("show"));
    assert!(stdout_ok(&["completions", "zsh"]).contains("#compdef dhcp-leases"));
    assert!(stdout_ok(&["completions", "fish"]).contains("complete -c dhcp-leases"));

    // Last, since it needs the driver to call Slot::push_history (wired by the lead in
    // daemon/driver/): `show` against the live daemon carried the lease's transactions.
    let history = shown[0]["history"]
        .as_array()
        .unwrap_or_else(|| panic!("show --json has no history array: {}", shown[0]));
    assert!(
        !history.is_empty(),
        "history empty: daemon/driver/ does not call Slot::push_history yet"
    );
    for h in history {
        time(&h["at"]);
        assert!(["sent", "received", "event"].contains(&h["direction"].as_str().unwrap()));
        assert!(!h["message"].as_str().unwrap().is_empty());
    }
    assert!(
        history.iter().any(|h| h["direction"] == "sent"),
        "{history:?}"
    );
    assert!(
        history.iter().any(|h| h["direction"] == "received"),
        "{history:?}"
    );
    assert!(
        detail.contains("history (last "),
        "show (text) lists the history\n{detail}"
    );
}
