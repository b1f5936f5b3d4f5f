#!/bin/bash
# Install what the netns lab (tests/common) and the VM harness (tests/vm) need, when missing.
# Idempotent; for CI (.ci/run) and fresh machines. Run as root.
#   tests/vm/deps.sh            install missing packages
#   tests/vm/deps.sh --check    only report; exit 1 if something is missing
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# tool-or-path:package
need=(
    ip:iproute2
    dnsmasq:dnsmasq-base
    qemu-system-x86_64:qemu-system-x86
    /bin/busybox:busybox-static
    cpio:cpio
    /usr/lib/cni/dhcp:containernetworking-plugins
)
missing=()
for pair in "${need[@]}"; do
    t=${pair%%:*} p=${pair#*:}
    if [[ $t == /* ]]; then [ -e "$t" ] && continue; else command -v "$t" >/dev/null && continue; fi
    missing+=("$p")
done
# busybox from the dynamic "busybox" package also answers to `busybox`, but the guest wants the
# static one (either works with run.sh, which copies libraries; udhcpc is in both).
if [ ${#missing[@]} -eq 0 ]; then
    echo "deps.sh: all present"
    exit 0
fi
if [ "${1:-}" = --check ]; then
    echo "deps.sh: missing: ${missing[*]}"
    exit 1
fi
echo "deps.sh: installing ${missing[*]}"
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
