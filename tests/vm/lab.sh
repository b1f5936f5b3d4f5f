# Shell functions for guest scripts run by tests/vm/run.sh: build the DHCP lab inside the VM.
# The guest has it at /lab.sh:   . /lab.sh; lab_setup; ...
#
# Topology (same as tests/common/mod.rs on the host):
#   netns lab-srv:  s0 198.18.0.1/24, dnsmasq (DHCP only, range .100-.250, 1h leases)
#                   with LAB_SERVER_IP6 set: also s0 $LAB_SERVER_IP6/64 (nodad, DAD off and IPv6
#                   forwarding on for s0, so its NAs say "router"),
#                   dnsmasq DHCPv6 on $LAB_RANGE6 + Router Advertisements (--enable-ra)
#        |  veth
#   root netns:     m0, up, no address: the master for ipvlan/macvlan slaves
#   lab_container NAME: a fresh netns /var/run/netns/NAME for a container
#
# Functions:
#   lab_setup [EXTRA_DNSMASQ_ARG...]  build the lab; extra args go to dnsmasq (e.g. --no-ping)
#   lab_container NAME                 make netns NAME, print its path
#   lab_in NETNS CMD...                run CMD inside NETNS
#   lab_ipvlan NETNS IFNAME [MODE]     ipvlan slave of m0 (mode l2 default) moved into NETNS, down
#   lab_macvlan NETNS IFNAME           macvlan (bridge) slave of m0 moved into NETNS, down
#   lab_udhcpc NETNS IFNAME CLIENTID_HEX  busybox udhcpc -B with option 61, configures the address
#   lab_router6                        s0's IPv6 link-local address: the router of the RAs
#   lab_leases                         print dnsmasq's lease file (DHCPv6 bindings after the
#                                      "duid SERVER-DUID" line: EXPIRY IAID ADDR HOST CLIENT-DUID)
#   lab_log                            print dnsmasq's log
#   lab_wait_log PATTERN [TIMEOUT_S]   wait until grep -E PATTERN matches the log (default 10 s)
#   lab_cleanup                        kill dnsmasq, delete every netns made (also run on EXIT)
#   pass MSG / fail MSG                print "PASS: MSG" / "FAIL: MSG" (fail also counts)
#   lab_summary                        print "N passed, M failed"; returns 1 if any failed
#
# Variables: LAB_DIR (/tmp/lab), LAB_SRV (lab-srv), LAB_MASTER (m0), LAB_SERVER_IP (198.18.0.1),
#   LAB_PREFIX (24: the prefix length of LAB_SERVER_IP on s0),
#   LAB_SERVER_IP6 (empty: IPv4 only; e.g. fd00:cd::1), LAB_RANGE6 (fd00:cd::100,fd00:cd::1ff,64,12h),
#   LAB_DNS6 (fd00:cd::53, DHCPv6 option 23)

# Debian's static busybox shell prefers its applets to PATH; its ip lacks netns and ipvlan.
ip() { /usr/sbin/ip "$@"; }

LAB_DIR=${LAB_DIR:-/tmp/lab}
LAB_SRV=${LAB_SRV:-lab-srv}
LAB_MASTER=${LAB_MASTER:-m0}
LAB_SERVER_IP=${LAB_SERVER_IP:-198.18.0.1}
LAB_RANGE=${LAB_RANGE:-198.18.0.100,198.18.0.250,255.255.255.0,1h}
LAB_DOMAIN=${LAB_DOMAIN:-lab.test}
LAB_SERVER_IP6=${LAB_SERVER_IP6:-}
LAB_RANGE6=${LAB_RANGE6:-fd00:cd::100,fd00:cd::1ff,64,12h}
LAB_DNS6=${LAB_DNS6:-fd00:cd::53}
LAB_NETNS=""
LAB_PASSED=0
LAB_FAILED=0

pass() { LAB_PASSED=$((LAB_PASSED + 1)); echo "PASS: $*"; }
fail() { LAB_FAILED=$((LAB_FAILED + 1)); echo "FAIL: $*"; }
lab_summary() {
    echo "$LAB_PASSED passed, $LAB_FAILED failed"
    [ "$LAB_FAILED" -eq 0 ]
}

lab_in() {
    _ns=$1; shift
    ip netns exec "$_ns" "$@"
}

lab_container() {
    ip netns add "$1"
    LAB_NETNS="$LAB_NETNS $1"
    ip netns exec "$1" ip link set lo up
    echo "/var/run/netns/$1"
}

lab_setup() {
    mkdir -p "$LAB_DIR"
    : >"$LAB_DIR/dnsmasq.leases"
    : >"$LAB_DIR/dnsmasq.log"
    ip netns add "$LAB_SRV"
    LAB_NETNS="$LAB_NETNS $LAB_SRV"
    ip link add "$LAB_MASTER" type veth peer name s0 netns "$LAB_SRV"
    ip link set "$LAB_MASTER" up
    ip -n "$LAB_SRV" link set lo up
    ip -n "$LAB_SRV" addr add "$LAB_SERVER_IP/${LAB_PREFIX:-24}" dev s0
    if [ -n "$LAB_SERVER_IP6" ]; then
        # Before s0 goes up, so neither its link-local nor this address is ever tentative:
        # dnsmasq can send RAs and answer DHCPv6 at once.
        ip netns exec "$LAB_SRV" sh -c 'echo 0 >/proc/sys/net/ipv6/conf/s0/accept_dad'
        # A router's kernel sets the Router flag in its Neighbor Advertisements. With s0 a host
        # (forwarding 0), the first NUD probe of dnsmasq's link-local from a container gets an
        # NA with R=0 and the container drops the RA's default route (RFC 4861 §7.2.5, Linux
        # rt6_clean_tohost): seconds after ADD, at random, the slaves lost it.
        ip netns exec "$LAB_SRV" sh -c 'echo 1 >/proc/sys/net/ipv6/conf/s0/forwarding'
        ip -n "$LAB_SRV" addr add "$LAB_SERVER_IP6/64" dev s0 nodad
        set -- --dhcp-range="$LAB_RANGE6" --enable-ra \
            --dhcp-option=option6:dns-server,"[$LAB_DNS6]" "$@"
    fi
    ip -n "$LAB_SRV" link set s0 up
    ip netns exec "$LAB_SRV" dnsmasq \
        --conf-file=/dev/null --port=0 --user=root --group=root \
        --interface=s0 --bind-interfaces \
        --dhcp-range="$LAB_RANGE" \
        --dhcp-option=option:router,"$LAB_SERVER_IP" \
        --dhcp-option=option:dns-server,"$LAB_SERVER_IP" \
        --domain="$LAB_DOMAIN" --dhcp-option=option:domain-name,"$LAB_DOMAIN" \
        --dhcp-authoritative \
        --dhcp-leasefile="$LAB_DIR/dnsmasq.leases" \
        --log-dhcp --log-facility="$LAB_DIR/dnsmasq.log" \
        --pid-file="$LAB_DIR/dnsmasq.pid" \
        "$@"
    # dnsmasq daemonizes after its sockets are bound; the pid file is written by then.
    _i=0
    while [ ! -s "$LAB_DIR/dnsmasq.pid" ]; do
        _i=$((_i + 1)); [ $_i -gt 50 ] && { echo "lab: dnsmasq did not start" >&2; cat "$LAB_DIR/dnsmasq.log" >&2; return 1; }
        sleep 0.1
    done
    trap lab_cleanup EXIT
}

lab_ipvlan() {
    ip link add link "$LAB_MASTER" name "lab$$-$2" type ipvlan mode "${3:-l2}"
    ip link set "lab$$-$2" netns "$1"
    ip -n "$1" link set "lab$$-$2" name "$2"
}

lab_macvlan() {
    ip link add link "$LAB_MASTER" name "lab$$-$2" type macvlan mode bridge
    ip link set "lab$$-$2" netns "$1"
    ip -n "$1" link set "lab$$-$2" name "$2"
}

# udhcpc's event script: configure what the server gave (the lease variables come from udhcpc).
lab_udhcpc_script() {
    cat >"$LAB_DIR/udhcpc.script" <<'EOS'
#!/bin/sh
case "$1" in
    deconfig) /usr/sbin/ip addr flush dev "$interface" scope global; /usr/sbin/ip link set "$interface" up ;;
    bound|renew)
        /usr/sbin/ip addr flush dev "$interface" scope global
        /usr/sbin/ip addr add "$ip/${mask:-24}" dev "$interface"
        ;;
esac
exit 0
EOS
    chmod +x "$LAB_DIR/udhcpc.script"
}

lab_udhcpc() {
    [ -x "$LAB_DIR/udhcpc.script" ] || lab_udhcpc_script
    ip -n "$1" link set "$2" up
    ip netns exec "$1" busybox udhcpc -i "$2" -f -q -n -B -t 5 -T 2 -A 1 \
        -x "0x3d:$3" -s "$LAB_DIR/udhcpc.script"
}

lab_router6() {
    # s0's link-local appears when the kernel's link watch has seen its carrier come up, which
    # on a busy emulated CPU can be a second or more after lab_setup: wait up to 10 s for it.
    _i=0
    while [ $_i -lt 100 ]; do
        _ll=$(ip -n "$LAB_SRV" -6 -o addr show dev s0 scope link | awk '{ sub("/.*", "", $4); print $4; exit }')
        [ -n "$_ll" ] && { echo "$_ll"; return 0; }
        _i=$((_i + 1)); sleep 0.1
    done
    return 1
}

lab_leases() { cat "$LAB_DIR/dnsmasq.leases"; }
lab_log() { cat "$LAB_DIR/dnsmasq.log"; }

lab_wait_log() {
    _t=$(( ${2:-10} * 10 ))
    while ! grep -Eq "$1" "$LAB_DIR/dnsmasq.log"; do
        _t=$((_t - 1)); [ $_t -le 0 ] && return 1
        sleep 0.1
    done
}

lab_cleanup() {
    # Runs from an EXIT trap under sh -e: nothing here may fail, and the script's status is kept.
    _lab_rc=$?
    if [ -s "$LAB_DIR/dnsmasq.pid" ]; then kill "$(cat "$LAB_DIR/dnsmasq.pid")" 2>/dev/null || true; fi
    # dnsmasq removes its pid file as it exits: busybox rm -f fails when the file goes between
    # its lstat and its unlink.
    rm -f "$LAB_DIR/dnsmasq.pid" 2>/dev/null || true
    for _ns in $LAB_NETNS; do ip netns del "$_ns" 2>/dev/null || true; done
    LAB_NETNS=""
    ip link del "$LAB_MASTER" 2>/dev/null || true
    return $_lab_rc
}
