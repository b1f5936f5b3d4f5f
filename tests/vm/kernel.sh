#!/bin/bash
# Fetch a Debian cloud kernel (which has CONFIG_IPVLAN as a module; the host kernel has none) into a
# cache dir, once. Prints the cache dir's kernel dir on stdout (KDIR with boot/vmlinuz-* and lib/modules/).
#
# Usage: tests/vm/kernel.sh            -> prints the path of the unpacked kernel tree
# Env:   CNI_DHCP_VM_CACHE (default /var/cache/cni-dhcp-vm)
#        CNI_DHCP_VM_KPKG  (default: whatever linux-image-cloud-amd64 depends on)
set -euo pipefail
trap 'echo "kernel.sh: line $LINENO failed: $BASH_COMMAND" >&2' ERR
export DEBIAN_FRONTEND=noninteractive

CACHE=${CNI_DHCP_VM_CACHE:-/var/cache/cni-dhcp-vm}
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9   # parallel test runs: one downloads, the others wait and reuse

log() { echo "kernel.sh: $*" >&2; }

# Fast path: already unpacked. The stamp is written last, so a half-done unpack is never reused.
if [ -f "$CACHE/kernel/.complete" ] && [ -z "${CNI_DHCP_VM_KPKG:-}" ]; then
    echo "$CACHE/kernel"
    exit 0
fi

start=$(date +%s.%N)
pkg=${CNI_DHCP_VM_KPKG:-}
if [ -z "$pkg" ]; then
    pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
    if [ -z "$pkg" ]; then
        log "apt lists lack linux-image-cloud-amd64; running apt-get update"
        apt-get update -qq >&2
        pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
    fi
fi
[ -n "$pkg" ] || { log "cannot resolve the cloud kernel package"; exit 1; }

tmp=$(mktemp -d "$CACHE/dl.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"   # apt-get download drops to user _apt
log "downloading $pkg"
( cd "$tmp" && apt-get download -q "$pkg" >&2 )
deb=$(ls "$tmp"/*.deb)
mkdir "$tmp/x"
dpkg -x "$deb" "$tmp/x"
ls "$tmp"/x/boot/vmlinuz-* >/dev/null
rm -rf "$CACHE/kernel"
mv "$tmp/x" "$CACHE/kernel"
echo "$pkg" >"$CACHE/kernel/.complete"
end=$(date +%s.%N)
log "$pkg ready in $(awk "BEGIN{printf \"%.1f\", $end-$start}")s"
echo "$CACHE/kernel"
