//! The structure issue 11 set up, kept: no import cycles between the library's modules, and
//! DHCP payloads parsed by the clients alone (one parse per packet; docs/design.md, *The
//! sans-IO client and its driver*).

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// `scripts/module-cycles.py` finds no strongly connected component in the module graph of
/// `src/` and `daemon/` (it found four at e88b950, before issue 11).
#[test]
fn the_library_has_no_import_cycles() {
    let out = Command::new("python3")
        .arg(Path::new(ROOT).join("scripts/module-cycles.py"))
        .arg(ROOT)
        .output()
        .expect("run python3 scripts/module-cycles.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "import cycles:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("0 cycles"), "{stdout}");
}

/// No file of the daemon parses a DHCP payload: the clients' `handle` returns what the driver
/// needs (message type, address, server), so a reply is parsed once.
#[test]
fn the_daemon_never_parses_a_dhcp_payload() {
    let mut offenders = Vec::new();
    let mut dirs = vec![Path::new(ROOT).join("daemon")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for needle in ["parse_reply(", "dhcproto::v4::Message::decode", "Decodable"] {
                    if text.contains(needle) {
                        offenders.push(format!("{}: {needle}", path.display()));
                    }
                }
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:?}");
}
