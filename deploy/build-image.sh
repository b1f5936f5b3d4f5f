#!/usr/bin/env bash
# Builds the image of deploy/kubernetes/dhcp-daemonset.yaml from deploy/Containerfile with
# buildah, offline: no base image, no registry. A FROM scratch build cannot run ldd, so this
# stages the build context in a temporary directory first: the binaries `dhcp`, `ipvlan` and
# `dhcp-leases` from BIN_DIR, every shared library `ldd` lists for them (and the dynamic loader)
# at its absolute path, and /bin/busybox (Debian's busybox-static) with sh, cp and mv linked to
# it for the init container's install step. Run as root (or wherever buildah can build).
#
#   deploy/build-image.sh [--bin-dir DIR] [--strip] [--root DIR --runroot DIR]
#                         [--storage-driver NAME] [IMAGE]
#
#   IMAGE             name to tag the image with (default localhost/cni-dhcp:latest)
#   --bin-dir DIR     where the binaries are (default target/release: `cargo build --release`)
#   --strip           copy them without debug information (`strip --strip-debug`, binutils;
#                     symbols stay): the release image shrinks from about 54 MB to about 16 MB,
#                     and a panic's backtrace names functions but no longer file and line
#   --root, --runroot, --storage-driver
#                     passed to buildah as its global storage options, for a private image store
#                     (default: buildah's, i.e. the one podman uses too)
#
# Then push it (`buildah push IMAGE docker://REGISTRY/...`) and put its name in the DaemonSet.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin_dir=$repo/target/release
image=localhost/cni-dhcp:latest
storage=()
strip=false
usage() { sed -n '2,/^set /{/^set /d;s/^# \{0,1\}//;p}' "$0"; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case $1 in
    --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
    --strip) strip=true; shift ;;
    --root | --runroot | --storage-driver) storage+=("$1" "${2:?$1 needs a value}"); shift 2 ;;
    -h | --help) usage ;;
    -*) echo "build-image.sh: unknown option $1" >&2; usage 2 >&2 ;;
    *) image=$1; shift ;;
    esac
done
die() { echo "build-image.sh: $*" >&2; exit 1; }
command -v buildah >/dev/null || die "buildah not found (apt-get install buildah)"
busybox=/bin/busybox
[ -x "$busybox" ] || die "$busybox not found (apt-get install busybox-static)"
for b in dhcp ipvlan dhcp-leases; do
    [ -x "$bin_dir/$b" ] || die "$bin_dir/$b not found (cargo build --release, or --bin-dir)"
done
! $strip || command -v strip >/dev/null || die "strip not found (apt-get install binutils)"

ctx=$(mktemp -d "${TMPDIR:-/tmp}/cni-dhcp-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
cp "$repo/deploy/Containerfile" "$ctx/"
for b in dhcp ipvlan dhcp-leases; do
    if $strip; then
        strip --strip-debug -o "$ctx/$b" "$bin_dir/$b"
    else
        cp "$bin_dir/$b" "$ctx/"
    fi
done
mkdir -p "$ctx/bin" "$ctx/libs"
cp "$busybox" "$ctx/bin/busybox"
for applet in sh cp mv; do ln -s busybox "$ctx/bin/$applet"; done

# Every absolute path in ldd's output is a library or the loader (linux-vdso has none). A static
# binary (busybox-static) has none either; a library that is not found is an error.
for b in "$ctx/dhcp" "$ctx/ipvlan" "$ctx/dhcp-leases" "$ctx/bin/busybox"; do
    if ! out=$(ldd "$b" 2>&1); then
        case $out in
        *"not a dynamic executable"*) continue ;;
        *) die "ldd $b: $out" ;;
        esac
    fi
    case $out in *"not found"*) die "ldd $b: a library is missing: $out" ;; esac
    for lib in $(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' <<<"$out"); do
        mkdir -p "$ctx/libs$(dirname "$lib")"
        cp -L "$lib" "$ctx/libs$lib"
    done
done
[ -n "$(ls -A "$ctx/libs")" ] || echo "build-image.sh: no shared libraries: static binaries" >&2

buildah "${storage[@]}" build --pull=never -f "$ctx/Containerfile" -t "$image" "$ctx"
