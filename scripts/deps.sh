#!/bin/bash
# Installs every Debian package the demo and the tests need: the netns lab (iproute2, dnsmasq),
# the ipvlan VM (qemu, busybox, cpio, binutils for strip; the kernel itself is fetched by
# tests/vm/kernel.sh), the reference Go plugins for interop tests, systemd's tools for the unit
# tests of deploy/systemd (systemd-analyze, systemd-socket-activate; no running systemd needed),
# containerd and runc for the test with a real runtime (tests/containerd.rs; started by the test),
# buildah and podman to build the DaemonSet's image and run its pod as a kubelet would
# (deploy/build-image.sh, tests/deploy_image.rs; with runc and containernetworking-plugins their
# Depends are all they need, no recommends), and from PyPI kubernetes-validate for the manifests
# in deploy/kubernetes (it brings PyYAML, with which the tests read them). Always runs apt-get
# update, apt-get install and pip install (no-ops for what is already there), so a fresh machine
# and CI get exactly the same set. Run as root.
#   scripts/deps.sh            install
#   scripts/deps.sh --check    only report; exit 1 if something is missing
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# tool-or-path:package
need=(
    ip:iproute2
    unshare:util-linux
    dnsmasq:dnsmasq-base
    qemu-system-x86_64:qemu-system-x86
    /bin/busybox:busybox-static
    cpio:cpio
    strip:binutils
    /usr/lib/cni/dhcp:containernetworking-plugins
    systemd-socket-activate:systemd
    containerd:containerd
    runc:runc
    podman:podman
    buildah:buildah
)
# PyPI, pinned: its bundled Kubernetes schemas change with its version.
pip_need=(kubernetes-validate:kubernetes-validate==1.37.0)
if [ "${1:-}" = --check ]; then
    missing=()
    for pair in "${need[@]}"; do
        t=${pair%%:*} p=${pair#*:}
        if [[ $t == /* ]]; then [ -e "$t" ] && continue; else command -v "$t" >/dev/null && continue; fi
        missing+=("$p")
    done
    for pair in "${pip_need[@]}"; do
        command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:} (pip)")
    done
    [ ${#missing[@]} -eq 0 ] && { echo "deps.sh: all present"; exit 0; }
    echo "deps.sh: missing: ${missing[*]}"
    exit 1
fi
packages=()
for pair in "${need[@]}"; do packages+=("${pair#*:}"); done
echo "deps.sh: apt-get install ${packages[*]}"
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" </dev/null >/dev/null
pip_packages=()
for pair in "${pip_need[@]}"; do pip_packages+=("${pair#*:}"); done
echo "deps.sh: pip install ${pip_packages[*]}"
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "${pip_packages[@]}" </dev/null
