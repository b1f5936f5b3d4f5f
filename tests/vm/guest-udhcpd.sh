# Guest script: a DHCP server that keys leases by MAC (busybox udhcpd, which ignores option 61)
# behind real ipvlan L2 slaves, which all carry the master's MAC. Our `ipvlan` + `dhcp`
# plugins and `dhcp daemon`.
# 1. Default policy: on ipvlan each lease sends a chaddr of its own derived from its client
#    identifier (docs/design.md, *A chaddr per container*), so udhcpd binds d1, d2, d3 apart:
#    three leases, three bindings under three derived chaddrs (none the master's MAC), the
#    containers reach each other, d1's lease is renewed (its RENEWING requests carry the
#    broadcast flag: udhcpd sends a flag-clear reply to chaddr's Ethernet address), the DELs
#    leave no binding.
# 2. `"chaddr": "link"` (the reference's chaddr, the master's MAC): the first ADD gets a lease;
#    the second and third fail with code 7 and the same explanation, without a DHCPDECLINE
#    (which would make udhcpd blank the first container's binding) and without a DHCPREQUEST
#    (which would move the MAC's only binding); the first lease is renewed twice; after the
#    DELs udhcpd holds no live lease.
# Run by tests/vm_ipvlan.rs through tests/vm/run.sh. Prints PASS/FAIL lines and "N passed, M
# failed".
. /lab.sh

BIN=/opt/cni/bin
SOCK=/run/cni/dhcp.sock
export CNI_PATH=$BIN:/opt/ref/cni
DIR=/tmp/udhcpd
mkdir -p $DIR

# The server: udhcpd on s0 in its own netns (the lab's topology, without dnsmasq).
ip netns add lab-srv
LAB_NETNS="lab-srv"
trap lab_cleanup EXIT
ip link add m0 type veth peer name s0 netns lab-srv
ip link set m0 up
ip -n lab-srv link set lo up
ip -n lab-srv addr add 198.18.0.1/24 dev s0
ip -n lab-srv link set s0 up
: >$DIR/leases
cat >$DIR/udhcpd.conf <<EOF
interface s0
start 198.18.0.100
end 198.18.0.150
lease_file $DIR/leases
auto_time 1
decline_time 3600
option subnet 255.255.255.0
option router 198.18.0.1
option lease 20
EOF
ip netns exec lab-srv busybox udhcpd -f $DIR/udhcpd.conf >$DIR/udhcpd.log 2>&1 &
UDHCPD=$!
sleep 0.5

ip link set lo up
$BIN/dhcp daemon -socketpath $SOCK -metrics-listen 127.0.0.1:9153 >/tmp/daemon.log 2>&1 &
i=0; while [ ! -S $SOCK ]; do i=$((i + 1)); [ $i -gt 100 ] && break; sleep 0.1; done

AUTO='{"cniVersion":"1.1.0","name":"labnet","type":"ipvlan","master":"m0","mode":"l2","ipam":{"type":"dhcp"}}'
LINK='{"cniVersion":"1.1.0","name":"labnet","type":"ipvlan","master":"m0","mode":"l2","ipam":{"type":"dhcp","chaddr":"link"}}'
CONF=$AUTO
cni() { # cni COMMAND CONTAINER -> stdout of our ipvlan plugin with $CONF
    echo "$CONF" | CNI_COMMAND=$1 CNI_CONTAINERID=cid-$2 CNI_NETNS=/var/run/netns/$2 CNI_IFNAME=eth0 $BIN/ipvlan
}
field() { # field JSON KEY -> first string value of "KEY"
    echo "$1" | tr -d '\n' | sed -n "s/.*\"$2\": *\"\([^\"]*\)\".*/\1/p"
}
# Live (not expired) leases in udhcpd's file: "MAC IP".
live_leases() {
    kill -USR1 $UDHCPD 2>/dev/null || true
    sleep 1.2
    busybox dumpleases -f $DIR/leases 2>/dev/null | awk 'NR > 1 && $0 !~ /expired/ {print $1, $2}'
}
MASTER_MAC=$(cat /sys/class/net/m0/address)
# What the daemon sent, from its own counters.
sent() {
    v=$(busybox wget -q -O - http://127.0.0.1:9153/metrics | sed -n "s/^cni_dhcp_messages_sent_total{type=\"$1\"} \([0-9]*\).*/\1/p")
    echo "${v:-0}"
}

del_all() { # del_all LABEL CONTAINER...: DEL each, then udhcpd must hold no live binding
    _label=$1; shift
    for _c in "$@"; do
        if out=$(cni DEL $_c); then :; else fail "DEL $_c: $out"; fi
    done
    sleep 1
    leases=$(live_leases)
    if [ -z "$leases" ]; then pass "no live binding left at udhcpd after the DELs $_label"; else fail "bindings left $_label: $leases"; fi
}

# 1. The default policy: a derived chaddr per container.
for c in d1 d2 d3; do lab_container $c >/dev/null; done
ADDRS=""
for c in d1 d2 d3; do
    if out=$(cni ADD $c); then
        a=$(field "$out" address); ADDRS="$ADDRS ${a%/*}"; pass "ADD $c (derived chaddr): $a"
    else
        fail "ADD $c behind udhcpd with derived chaddrs: $out"
    fi
done
n=$(echo $ADDRS | tr ' ' '\n' | sort -u | grep -c .)
if [ "$n" = 3 ]; then pass "three distinct addresses:$ADDRS"; else fail "addresses:$ADDRS"; fi
leases=$(live_leases)
echo "--- udhcpd live leases: $(echo $leases)"
macs=$(echo "$leases" | awk 'NF { print $1 }' | sort -u)
if [ "$(echo "$macs" | grep -c .)" = 3 ] && ! echo "$macs" | grep -qi "^$MASTER_MAC$"; then
    pass "udhcpd bound three chaddrs, none of them the master's MAC"
else
    fail "udhcpd bindings: $(echo $leases)"
fi
chaddr=$($BIN/dhcp-leases --socket $SOCK --json | tr -d ' \n' | grep -o '"container_id":"cid-d1".*' | grep -o '"chaddr":"[^"]*"' | head -n 1 | cut -d'"' -f4)
if [ -n "$chaddr" ] && echo "$leases" | grep -qi "^$chaddr "; then pass "d1's binding is under the chaddr dhcp-leases shows ($chaddr)"; else fail "d1's chaddr ${chaddr:-none} not in udhcpd's bindings"; fi
set -- $ADDRS
if ip netns exec d1 ping -c 1 -W 2 "$3" >/dev/null 2>&1; then pass "d1 reaches d3 at $3"; else fail "d1 cannot reach d3 at $3"; fi
i=0
while [ $i -lt 40 ]; do
    r=$($BIN/dhcp-leases --socket $SOCK --json | tr -d ' \n' | grep -o '"container_id":"cid-d1".*' | grep -o '"renewals":[0-9]*' | head -n 1 | cut -d: -f2)
    [ "${r:-0}" -ge 1 ] && break
    i=$((i + 1)); sleep 1
done
if [ "${r:-0}" -ge 1 ]; then pass "d1 renewed behind udhcpd with its derived chaddr"; else fail "d1 renewals: ${r:-none}"; $BIN/dhcp-leases --socket $SOCK; fi
del_all "(derived chaddrs)" d3 d2 d1
declines0=$(sent DECLINE); requests0=$(sent REQUEST)

# 2. "chaddr": "link": every lease sends the master's MAC, as the reference does.
CONF=$LINK
for c in c1 c2 c3; do lab_container $c >/dev/null; done
if out=$(cni ADD c1); then
    A=$(field "$out" address); pass "ADD c1: $A"
else
    fail "ADD c1: $out"; cat /tmp/daemon.log $DIR/udhcpd.log
fi
MSG=""
for c in c2 c3; do
    if out=$(cni ADD $c); then
        fail "ADD $c got a lease behind a MAC-keyed server: $out"
    else
        code=$(echo "$out" | tr -d '\n ' | sed -n 's/.*"code":\([0-9]*\).*/\1/p')
        msg=$(field "$out" msg)
        if [ "$code" = 7 ] && echo "$msg" | grep -q "keys leases by MAC"; then
            pass "ADD $c refused with code 7: $(echo "$msg" | cut -c1-110)..."
        else
            fail "ADD $c: $out"
        fi
        norm=$(echo "$msg" | sed "s/cid-$c/X/g")
        if [ -z "$MSG" ]; then MSG=$norm; elif [ "$MSG" = "$norm" ]; then pass "the same explanation for c2 and c3"; else fail "explanations differ: $MSG / $norm"; fi
    fi
done
declines=$(( $(sent DECLINE) - declines0 )); requests=$(( $(sent REQUEST) - requests0 ))
if [ "$declines" = 0 ]; then pass "no DHCPDECLINE sent"; else fail "DHCPDECLINEs sent: $declines"; fi
if [ "$requests" = 1 ]; then pass "one DHCPREQUEST in all (c1's): c2 and c3 requested nothing"; else fail "DHCPREQUESTs sent: $requests"; fi
leases=$(live_leases)
echo "--- udhcpd live leases: $leases"
if [ "$leases" = "$MASTER_MAC ${A%/*}" ]; then pass "udhcpd's only binding for $MASTER_MAC is still c1's ${A%/*}"; else fail "udhcpd bindings: $leases"; fi

# Two renewal cycles of the first (20 s lease: T1 about 10 s).
i=0
while [ $i -lt 60 ]; do
    r=$($BIN/dhcp-leases --socket $SOCK --json | tr -d ' \n' | sed -n 's/.*"container_id":"cid-c1".*"renewals":\([0-9]*\).*/\1/p')
    [ "${r:-0}" -ge 2 ] && break
    i=$((i + 1)); sleep 1
done
if [ "${r:-0}" -ge 2 ]; then pass "c1 renewed $r times"; else fail "c1 renewals: ${r:-none}"; $BIN/dhcp-leases --socket $SOCK; fi
if ip -n c1 -4 -o addr show dev eth0 | grep -q "${A%/*}/"; then pass "c1 still has ${A%/*}"; else fail "c1 lost its address"; fi
if $BIN/dhcp-leases --socket $SOCK --json | tr -d ' \n' | grep -q '"state":"BOUND"'; then pass "c1 BOUND"; else fail "c1 not BOUND"; fi

del_all "(the master's MAC)" c3 c2 c1

kill $UDHCPD 2>/dev/null || true
echo "--- daemon log"; grep -E "refused|MAC|released|WARN" /tmp/daemon.log | tail -n 10
lab_summary
