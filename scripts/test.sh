#!/usr/bin/env bash
# Every test, from a fresh machine: installs the Debian packages, checks formatting and lints,
# then runs the whole suite: unit tests, the netns lab against dnsmasq (veth, macvlan, the
# reference plugins), and the ipvlan tests inside a qemu VM. Run as root (network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
tests/vm/kernel.sh >/dev/null
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --all-targets
scripts/fuzz.sh 45 # bounded fuzzing pass (installs cargo-fuzz if missing), fails on any crash
