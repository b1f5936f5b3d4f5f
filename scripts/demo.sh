#!/usr/bin/env bash
# The main job on a built-in default, from a fresh machine: installs the Debian packages, builds
# the release binaries, makes a throw-away lab (dnsmasq in a network namespace, a master link),
# starts `dhcp daemon`, attaches three containers with our ipvlan plugin, prints each container's
# address and the daemon's lease list, and cleans up. The host kernel here has no ipvlan, so the
# lab runs inside a qemu VM booting Debian's cloud kernel (fetched once by tests/vm/kernel.sh);
# on a kernel with ipvlan it runs natively in a private network and mount namespace, touching
# none of the host's interfaces. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --release --quiet

native_ipvlan() {
    unshare --net sh -c 'ip link add v0 type veth peer name v1 && ip link add link v0 name i0 type ipvlan mode l2' 2>/dev/null
}
if native_ipvlan; then
    echo "demo: this kernel has ipvlan: running natively in a private namespace"
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
    unshare --net --mount --propagation private env LAB_SH="$PWD/tests/vm/lab.sh" \
        BIN="$PWD/target/release" SOCK="$dir/dhcp.sock" LAB_DIR="$dir/lab" \
        sh -c 'mount -t tmpfs tmpfs /var/run/netns 2>/dev/null || mkdir -p /var/run/netns; ip link set lo up; . scripts/demo-guest.sh'
else
    echo "demo: this kernel has no ipvlan: running in a qemu VM with Debian's cloud kernel"
    tests/vm/kernel.sh >/dev/null
    CNI_DHCP_VM_REF_PLUGINS="" tests/vm/run.sh scripts/demo-guest.sh target/release
fi
