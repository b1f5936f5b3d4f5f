# Guest script: our `ipvlan` + `dhcp` plugins and `dhcp daemon` on real ipvlan L2 slaves, against
# dnsmasq, inside the VM (the host kernel has no ipvlan). Run by tests/vm_ipvlan.rs through
# tests/vm/run.sh. Prints PASS/FAIL lines and "N passed, M failed".
. /lab.sh
lab_setup --no-ping

BIN=/opt/cni/bin
SOCK=/run/cni/dhcp.sock
export CNI_PATH=$BIN:/opt/ref/cni

# Milliseconds since boot (busybox date has no %N).
now_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }

$BIN/dhcp daemon -socketpath $SOCK -timeout 4s >/tmp/daemon.log 2>&1 &
i=0; while [ ! -S $SOCK ]; do i=$((i + 1)); [ $i -gt 100 ] && break; sleep 0.1; done

conf() { # conf NAME IPAM_EXTRA [MODE]
    echo "{\"cniVersion\":\"1.1.0\",\"name\":\"$1\",\"type\":\"ipvlan\",\"master\":\"m0\",\"mode\":\"${3:-l2}\",\"ipam\":{\"type\":\"dhcp\"$2}}"
}
cni() { # cni COMMAND CONTAINER CONF -> stdout of our ipvlan plugin
    echo "$3" | CNI_COMMAND=$1 CNI_CONTAINERID=cid-$2 CNI_NETNS=/var/run/netns/$2 CNI_IFNAME=eth0 $BIN/ipvlan
}
field() { # field JSON KEY -> first string value of "KEY"
    echo "$1" | tr -d ' \n' | sed -n "s/.*\"$2\":\"\([^\"]*\)\".*/\1/p"
}

CONF=$(conf labnet "")
MASTER_MAC=$(cat /sys/class/net/m0/address)

# --- three containers on one master, automatic broadcast policy (no key)
for c in c1 c2 c3; do
    lab_container $c >/dev/null
    t0=$(now_ms)
    if out=$(cni ADD $c "$CONF"); then
        t1=$(now_ms)
        echo "$out" >/tmp/add-$c.json
        pass "ADD $c: $(field "$out" address) in $((t1 - t0)) ms (plugin exec + netlink + DHCP, TCG VM)"
        echo "ADD-MS $c $((t1 - t0))"
    else
        fail "ADD $c: $out"; cat /tmp/daemon.log
    fi
done
addrs=$(for c in c1 c2 c3; do ip -n $c -4 -o addr show dev eth0 | awk '{print $4}'; done)
echo "$addrs"
n=$(echo "$addrs" | grep -c . || true); u=$(echo "$addrs" | sort -u | grep -c . || true)
if [ "$n" -eq 3 ] && [ "$u" -eq 3 ]; then pass "three distinct leases: $(echo $addrs)"; else fail "leases: $addrs"; fi
macs=$(for c in c1 c2 c3; do ip netns exec $c cat /sys/class/net/eth0/address; done | sort -u)
if [ "$macs" = "$MASTER_MAC" ]; then pass "the three slaves share the master's MAC $MASTER_MAC"; else fail "MACs: $macs vs $MASTER_MAC"; fi
echo "--- lease file"; lab_leases
ids=$(awk '{print $5}' "$LAB_DIR/dnsmasq.leases" | sort -u | grep -c '^00:' || true)
if [ "$ids" -eq 3 ]; then pass "dnsmasq keyed three distinct client IDs"; else fail "$ids client ids"; fi
# 0x00 "cid-c1/labnet/eth0", byte-identical to the reference plugin's.
if grep -q ' 00:63:69:64:2d:63:31:2f:6c:61:62:6e:65:74:2f:65:74:68:30$' "$LAB_DIR/dnsmasq.leases"; then
    pass "client ID of c1 is 0x00 + cid-c1/labnet/eth0"
else fail "client ID of c1 not found"; fi
# The automatic chaddr policy on ipvlan: each lease's own chaddr, so dnsmasq's hash of it gives
# each container its own offer (docs/design.md, *A chaddr per container*).
hw=$(awk '{print $2}' "$LAB_DIR/dnsmasq.leases" | sort -u)
if [ "$(echo "$hw" | grep -c .)" -eq 3 ] && ! echo "$hw" | grep -qi "^$MASTER_MAC$"; then
    pass "dnsmasq saw three chaddrs, none the master's MAC: $(echo $hw)"
else fail "chaddrs at dnsmasq: $(echo $hw)"; fi
if $BIN/dhcp-leases --socket $SOCK --json | tr -d ' \n' | grep -q '"broadcast":true,"broadcast_reason":"auto:linkkindipvlan"'; then
    pass "automatic policy set the broadcast flag on ipvlan slaves"
else fail "broadcast policy: $($BIN/dhcp-leases --socket $SOCK --json)"; fi
# Issue 14: once the server is known, a slave's first DHCPDISCOVER goes as an Ethernet unicast
# to its MAC through the master (ipvlan l2 sends a frame for a foreign MAC out of the master).
SERVER_MAC=$(ip netns exec "$LAB_SRV" cat /sys/class/net/s0/address)
if $BIN/dhcp-leases --socket $SOCK show cid-c3 | grep -q "DHCPDISCOVER to 255.255.255.255 via $SERVER_MAC"; then
    pass "c3's first DHCPDISCOVER went to the server's MAC $SERVER_MAC"
else fail "no unicast DHCPDISCOVER in c3's history: $($BIN/dhcp-leases --socket $SOCK show cid-c3)"; fi

# --- IPv6 link-locals: distinct per slave, no DAD failure
sleep 2
lls=$(for c in c1 c2 c3; do ip -n $c -6 -o addr show dev eth0 scope link | awk '{print $4}'; done)
echo "$lls"
if [ "$(echo "$lls" | sort -u | grep -c fe80)" -eq 3 ]; then pass "three distinct IPv6 link-locals"; else fail "link-locals: $lls"; fi
dad=$(for c in c1 c2 c3; do ip -n $c -6 addr show dev eth0; done | grep -c dadfailed || true)
if [ "$dad" -eq 0 ]; then pass "no dadfailed"; else fail "$dad dadfailed"; fi

# --- containers talk to each other and to the server
a2=$(ip -n c2 -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1)
if ip netns exec c1 ping -c 1 -W 2 "$a2" >/dev/null; then pass "c1 pings c2 ($a2)"; else fail "c1 cannot ping c2"; fi
if ip netns exec c3 ping -c 1 -W 2 "$LAB_SERVER_IP" >/dev/null; then pass "c3 pings the server"; else fail "c3 cannot ping the server"; fi

# --- CHECK with prevResult
prev=$(cat /tmp/add-c1.json)
checkconf="${CONF%\}},\"prevResult\":$(echo "$prev" | tr -d '\n')}"
if out=$(cni CHECK c1 "$checkconf"); then pass "CHECK c1"; else fail "CHECK c1: $out"; fi

# --- "broadcast": false on ipvlan fails within the timeout and names the cause
lab_container c4 >/dev/null
t0=$(now_ms)
if out=$(cni ADD c4 "$(conf labnet ',"broadcast":false')"); then
    fail "ADD without broadcast flag succeeded: $out"
else
    t1=$(now_ms)
    echo "$out"
    if echo "$out" | grep -q "broadcast flag is off"; then pass "no-broadcast ADD failed in $((t1 - t0)) ms naming the cause"; else fail "error does not name the cause: $out"; fi
    if [ $((t1 - t0)) -lt 8000 ]; then pass "within its 4 s timeout"; else fail "took $((t1 - t0)) ms"; fi
fi
if ip -n c4 link show eth0 >/dev/null 2>&1; then fail "failed ADD leaked its link"; else pass "failed ADD left no link"; fi

# --- L3 modes refuse DHCP at once
lab_container c5 >/dev/null
if out=$(cni ADD c5 "$(conf labnet "" l3)"); then fail "l3 + dhcp accepted"; else
    if echo "$out" | grep -qi "broadcast"; then pass "l3 + dhcp refused: $(field "$out" msg | cut -c1-100)"; else fail "l3 error: $out"; fi
fi

# --- DEL of all three: no link left, releases seen by dnsmasq
echo "--- dhcp-leases"; $BIN/dhcp-leases --socket $SOCK
for c in c1 c2 c3; do
    if out=$(cni DEL $c "$CONF"); then :; else fail "DEL $c: $out"; fi
    if ip -n $c link show eth0 >/dev/null 2>&1; then fail "DEL $c left eth0"; else pass "DEL $c removed the link"; fi
done
if lab_wait_log "DHCPRELEASE.*" 5 && [ "$(grep -c DHCPRELEASE "$LAB_DIR/dnsmasq.log")" -eq 3 ]; then
    pass "dnsmasq saw three DHCPRELEASEs"
else fail "releases: $(grep DHCPRELEASE "$LAB_DIR/dnsmasq.log")"; fi
if [ ! -s "$LAB_DIR/dnsmasq.leases" ]; then pass "lease file empty after DEL"; else fail "leases left: $(lab_leases)"; fi
if out=$(cni DEL c1 "$CONF"); then pass "second DEL succeeds"; else fail "second DEL: $out"; fi

# --- our ipvlan with the reference's host-local and static IPAM
if [ -x /opt/ref/cni/host-local ]; then
    lab_container h1 >/dev/null
    hl='{"cniVersion":"1.0.0","name":"hlnet","type":"ipvlan","master":"m0","ipam":{"type":"host-local","subnet":"198.19.7.0/24","dataDir":"/tmp/hl"}}'
    if out=$(cni ADD h1 "$hl") && ip -n h1 -4 addr show dev eth0 | grep -q 198.19.7.; then pass "ipvlan + reference host-local"; else fail "host-local: $out"; fi
    if cni DEL h1 "$hl" >/dev/null; then pass "host-local DEL"; else fail "host-local DEL"; fi
    lab_container s1 >/dev/null
    st='{"cniVersion":"1.0.0","name":"stnet","type":"ipvlan","master":"m0","ipam":{"type":"static","addresses":[{"address":"198.19.8.5/24","gateway":"198.19.8.1"}],"routes":[{"dst":"0.0.0.0/0"}]}}'
    if out=$(cni ADD s1 "$st") && ip -n s1 -4 addr show dev eth0 | grep -q 198.19.8.5/24 && ip -n s1 route | grep -q "default via 198.19.8.1"; then pass "ipvlan + reference static (address and default route)"; else fail "static: $out"; fi
    if cni DEL s1 "$st" >/dev/null && ! ip -n s1 link show eth0 >/dev/null 2>&1; then pass "static DEL"; else fail "static DEL"; fi
else
    fail "reference plugins missing in /opt/ref/cni"
fi

echo "--- daemon log"; tail -n 20 /tmp/daemon.log
lab_summary
