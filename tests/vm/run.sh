#!/bin/bash
# Boot a Debian cloud kernel under qemu (TCG) with an initramfs that holds busybox, iproute2,
# dnsmasq, the ipvlan/macvlan/veth/8021q modules, our CNI binaries and a guest script; run the script
# and exit with its status. The host kernel has no ipvlan; this is how ipvlan gets tested.
#
# Usage: tests/vm/run.sh GUEST_SCRIPT [BIN_DIR]
#   GUEST_SCRIPT  run in the guest as /test.sh under `sh -e` (busybox ash; sourced after a prelude
#                 that makes `ip` mean /usr/sbin/ip); it may `. /lab.sh` (tests/vm/lab.sh)
#   BIN_DIR       where dhcp, ipvlan, dhcp-leases are (default target/release; missing ones are
#                 skipped with a warning; "none": none wanted). They land in /opt/cni/bin in the guest.
# Env:
#   CNI_DHCP_VM_CACHE    kernel cache (default /var/cache/cni-dhcp-vm), filled by kernel.sh
#   CNI_DHCP_VM_TIMEOUT  hard timeout for the VM in seconds (default 300)
#   CNI_DHCP_VM_LOG      serial console log file (default $CNI_DHCP_VM_CACHE/logs/<script>.log)
#   CNI_DHCP_VM_MEM      guest memory in MiB (default 1024)
#   CNI_DHCP_VM_REF_PLUGINS  reference plugins from /usr/lib/cni put in /opt/ref/cni
#                        (default "dhcp ipvlan macvlan host-local static loopback"; "all"; "" none)
#   CNI_DHCP_VM_FILES    extra files, space separated HOST_PATH:GUEST_PATH pairs
# Exit: the guest script's status; 124 on timeout; 2 if the VM never reported a status.
# Prints timing lines "vm-timing: ..." to stderr.
set -euo pipefail
trap 'echo "run.sh: line $LINENO failed: $BASH_COMMAND" >&2' ERR

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
guest=${1:?usage: run.sh GUEST_SCRIPT [BIN_DIR]}
bindir=${2:-target/release}
[ -f "$guest" ] || { echo "run.sh: no guest script $guest" >&2; exit 2; }

CACHE=${CNI_DHCP_VM_CACHE:-/var/cache/cni-dhcp-vm}
export CNI_DHCP_VM_CACHE=$CACHE
TIMEOUT=${CNI_DHCP_VM_TIMEOUT:-300}
MEM=${CNI_DHCP_VM_MEM:-1024}
REF=${CNI_DHCP_VM_REF_PLUGINS-dhcp ipvlan macvlan host-local static loopback}
mkdir -p "$CACHE/logs"
# keep the 30 newest console logs
find "$CACHE/logs" -maxdepth 1 -name '*.log' -printf '%T@ %p\n' | sort -rn | tail -n +30 | cut -d' ' -f2- | xargs -r rm -f
LOG=${CNI_DHCP_VM_LOG:-$CACHE/logs/$(basename "$guest" .sh).$$.log}

now() { echo "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
t0=$(now)

for tool in qemu-system-x86_64 busybox cpio gzip ip dnsmasq ldd; do
    command -v "$tool" >/dev/null || {
        echo "run.sh: $tool missing (apt-get install qemu-system-x86 busybox-static cpio iproute2 dnsmasq-base)" >&2
        exit 2
    }
done

kdir=$("$here/kernel.sh")
t_kernel=$(now)
vmlinuz=$(ls "$kdir"/boot/vmlinuz-* | head -1)
moddir=$(ls -d "$kdir"/lib/modules/* | head -1)

work=$(mktemp -d /tmp/cni-dhcp-vm.XXXXXX)
qpid=""
cleanup() {
    [ -n "$qpid" ] && kill "$qpid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib/modules,lib64,proc,sys,dev,run,tmp,etc,var/lib,opt/cni/bin,opt/ref/cni}
ln -s ../run "$root/var/run"
chmod 1777 "$root/tmp"

# Copy an ELF (and the shared libraries ldd lists) to the same path in the root.
copy_elf() {
    local src=$1 dst=${2:-$1}
    mkdir -p "$root$(dirname "$dst")"
    cp -L "$src" "$root$dst"
    ldd "$src" 2>/dev/null | grep -oE '/[^ ]+' | while read -r lib; do
        [ -e "$root$lib" ] && continue
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done || true
}

copy_elf "$(command -v busybox)" /bin/busybox
ln -s busybox "$root/bin/sh"
copy_elf "$(command -v ip)" /usr/sbin/ip
copy_elf "$(command -v dnsmasq)" /usr/sbin/dnsmasq
printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
echo 'hosts: files' >"$root/etc/nsswitch.conf"
echo '127.0.0.1 localhost' >"$root/etc/hosts"

# Kernel modules with their dependencies (from .modinfo "depends="), dependencies first.
declare -A seen=()
order=()
add_mod() {
    local name=$1 f dep
    [ -n "${seen[$name]:-}" ] && return 0
    seen[$name]=1
    f=$(find "$moddir/kernel" -name "$name.ko" -o -name "$name.ko.xz" | head -1)
    [ -n "$f" ] || { echo "run.sh: module $name not in $moddir" >&2; exit 2; }
    if [[ $f == *.xz ]]; then xz -dc "$f" >"$root/lib/modules/$name.ko"; else cp "$f" "$root/lib/modules/$name.ko"; fi
    for dep in $(tr '\0' '\n' <"$root/lib/modules/$name.ko" | sed -n 's/^depends=//p' | tr ',' ' '); do
        add_mod "$dep"
    done
    order+=("$name.ko")
}
for m in veth macvlan ipvlan 8021q; do add_mod "$m"; done
printf '%s\n' "${order[@]}" >"$root/lib/modules/load.order"

# Our binaries.
for b in dhcp ipvlan dhcp-leases; do
    [ "$bindir" = none ] && break
    if [ -x "$bindir/$b" ]; then
        copy_elf "$(cd "$bindir" && pwd)/$b" "/opt/cni/bin/$b"
        # Debug builds carry ~90 MB of DWARF each: keep the initramfs small and quick to gzip.
        if command -v strip >/dev/null; then strip --strip-debug "$root/opt/cni/bin/$b"; fi
    else echo "run.sh: warning: $bindir/$b not found, not in the guest" >&2; fi
done
# Reference plugins (Go, static), for interop tests.
if [ -d /usr/lib/cni ] && [ -n "$REF" ]; then
    if [ "$REF" = all ]; then cp /usr/lib/cni/* "$root/opt/ref/cni/"
    else for p in $REF; do [ -x "/usr/lib/cni/$p" ] && cp "/usr/lib/cni/$p" "$root/opt/ref/cni/"; done; fi
fi
for pair in ${CNI_DHCP_VM_FILES:-}; do
    mkdir -p "$root$(dirname "${pair#*:}")"
    cp -a "${pair%%:*}" "$root${pair#*:}"
done

# Debian's busybox shell runs its own applets before searching PATH, and busybox's ip cannot make
# ipvlan links or netns: guest scripts get functions that call iproute2 instead.
echo 'ip() { /usr/sbin/ip "$@"; }' >"$root/etc/guest-prelude.sh"
cp "$here/lab.sh" "$root/lab.sh"
cp "$guest" "$root/test.sh"
cat >"$root/init" <<'EOF'
#!/bin/sh
/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
ln -sf /usr/sbin/ip /sbin/ip
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=755 run /run
mkdir -p /run/netns /run/cni
mount -t tmpfs netns /run/netns
mount -t tmpfs varlib /var/lib
ip link set lo up
for m in $(cat /lib/modules/load.order); do insmod "/lib/modules/$m" || echo "init: insmod $m failed"; done
echo "CNI-DHCP-VM-TEST-START uptime=$(cut -d' ' -f1 /proc/uptime)"
cd /
sh -e -c '. /etc/guest-prelude.sh; . /test.sh'
rc=$?
echo "CNI-DHCP-VM-EXIT=$rc uptime=$(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
EOF
chmod +x "$root/init" "$root/test.sh"

( cd "$root" && find . -print0 | cpio --null -o -H newc --quiet ) | gzip -1 >"$work/initrd.gz"
t_initrd=$(now)
echo "vm-timing: kernel.sh $(elapsed "$t0" "$t_kernel")s, initramfs $(elapsed "$t_kernel" "$t_initrd")s ($(du -k "$work/initrd.gz" | cut -f1) KiB)" >&2

# Boot. The serial console goes to stdout and the log; the status comes from the marker line.
: >"$LOG"
t_boot=$(now)
t_start=""
rc_line=""
mkfifo "$work/console"
timeout -k 5 "$TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -m "$MEM" -smp 2 \
    -nographic -no-reboot -net none \
    -kernel "$vmlinuz" -initrd "$work/initrd.gz" \
    -append "console=ttyS0 quiet panic=-1" </dev/null >"$work/console" 2>&1 &
qpid=$!
while IFS= read -r line; do
    line=${line%$'\r'}
    printf '%s\n' "$line"
    printf '%s\n' "$line" >>"$LOG"
    case $line in
        *CNI-DHCP-VM-TEST-START*) t_start=$(now) ;;
        *CNI-DHCP-VM-EXIT=*) rc_line=${line#*CNI-DHCP-VM-EXIT=} ;;
    esac
done <"$work/console"
qrc=0
wait "$qpid" || qrc=$?
qpid=""
t_end=$(now)

boot="?"; [ -n "$t_start" ] && boot=$(elapsed "$t_boot" "$t_start")
echo "vm-timing: boot-to-test ${boot}s, vm total $(elapsed "$t_boot" "$t_end")s, run.sh total $(elapsed "$t0" "$t_end")s, log $LOG" >&2
if [ -n "$rc_line" ]; then
    rc=${rc_line%% *}
    exit "$rc"
fi
if [ "${qrc:-}" = 124 ] || [ "${qrc:-}" = 137 ]; then
    echo "run.sh: VM timed out after ${TIMEOUT}s" >&2
    exit 124
fi
echo "run.sh: the VM exited (qemu status ${qrc:-?}) without reporting a status" >&2
exit 2
