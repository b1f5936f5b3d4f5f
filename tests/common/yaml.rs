//! Reading YAML (the Kubernetes manifests in `deploy/kubernetes/`) as JSON values, through
//! Python's PyYAML: the crate has no YAML parser among its dependencies, and PyYAML is already
//! on a machine set up by scripts/deps.sh (kubernetes-validate depends on it).
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The YAML documents of `file` as JSON values (empty documents dropped), read with PyYAML's
/// `safe_load_all`; `None` when python3 or PyYAML is missing, so that the caller can skip (or
/// fail under CI). Panics with Python's error when the file does not parse.
pub fn docs(file: &Path) -> Option<Vec<Value>> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml\n\
             docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]\n\
             json.dump(docs, sys.stdout)",
        ])
        .arg(file)
        .output()
        .ok()?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && err.contains("No module named 'yaml'") {
        return None;
    }
    assert!(out.status.success(), "{}: {err}", file.display());
    Some(serde_json::from_slice(&out.stdout).expect("PyYAML's JSON"))
}
