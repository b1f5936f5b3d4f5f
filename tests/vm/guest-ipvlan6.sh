# Guest script: dual stack (DHCPv4 + DHCPv6) through our `ipvlan` + `dhcp` plugins and `dhcp
# daemon` on real ipvlan L2 slaves, against dnsmasq serving DHCPv6 with Router Advertisements,
# inside the VM (the host kernel has no ipvlan). Run by tests/vm_ipvlan.rs through
# tests/vm/run.sh. Three slaves of one master share its MAC; DHCPv6 must still give them three
# bindings (three DUIDs) and three addresses, usable at once, over which they ping each other.
# lab.sh gives s0 fd00:cd::1/64 and IPv6 forwarding (its NAs must say "router", or the slaves
# drop the RA's default route). Prints PASS/FAIL lines and "N passed, M failed"; each ADD's
# timing as "ADD-MS CONTAINER TOTAL ipam IPAM rest REST" (ms).
LAB_SERVER_IP6=fd00:cd::1
. /lab.sh
lab_setup --no-ping

BIN=/opt/cni/bin
SOCK=/run/cni/dhcp.sock
# A transparent `dhcp` first on CNI_PATH that notes how long each IPAM call takes, so an ADD's
# time splits into IPAM (the daemon: DHCPv4 alongside RS/RA + DHCPv6) and the rest (ipvlan
# netlink work, DAD of the leased IPv6 address).
mkdir -p /tmp/ipamwrap
cat >/tmp/ipamwrap/dhcp <<'EOS'
#!/bin/sh
t0=$(cut -d' ' -f1 /proc/uptime)
/opt/cni/bin/dhcp "$@"
rc=$?
t1=$(cut -d' ' -f1 /proc/uptime)
echo "$CNI_CONTAINERID $CNI_COMMAND $t0 $t1" >>/tmp/ipam-times
exit $rc
EOS
chmod +x /tmp/ipamwrap/dhcp
export CNI_PATH=/tmp/ipamwrap:$BIN:/opt/ref/cni
ipam_ms() { # ipam_ms CONTAINER -> ms of its last IPAM ADD
    awk -v c="cid-$1" '$1 == c && $2 == "ADD" { ms = ($4 - $3) * 1000 } END { printf "%d\n", ms }' /tmp/ipam-times
}

# Milliseconds since boot (busybox date has no %N).
now_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }

$BIN/dhcp daemon -socketpath $SOCK >/tmp/daemon.log 2>&1 &
i=0; while [ ! -S $SOCK ]; do i=$((i + 1)); [ $i -gt 100 ] && break; sleep 0.1; done

conf() { # conf NAME IPAM_EXTRA [MODE]
    echo "{\"cniVersion\":\"1.1.0\",\"name\":\"$1\",\"type\":\"ipvlan\",\"master\":\"m0\",\"mode\":\"${3:-l2}\",\"ipam\":{\"type\":\"dhcp\"$2}}"
}
cni() { # cni COMMAND CONTAINER CONF -> stdout of our ipvlan plugin
    echo "$3" | CNI_COMMAND=$1 CNI_CONTAINERID=cid-$2 CNI_NETNS=/var/run/netns/$2 CNI_IFNAME=eth0 $BIN/ipvlan
}
flat() { echo "$1" | tr -d ' \n'; }
# ip_entry JSON V6 -> the ips[] object of that family (V6: 1 or 0), one line
ip_entry() {
    if [ "$2" = 1 ]; then flat "$1" | grep -o '{[^{}]*"address":"[0-9a-f:]*:[0-9a-f:]*/[0-9]*"[^{}]*}' | head -1
    else flat "$1" | grep -o '{[^{}]*"address":"[0-9.]*/[0-9]*"[^{}]*}' | head -1; fi
}
str() { # str JSON_OBJECT KEY -> its string value
    echo "$1" | sed -n "s/.*\"$2\": *\"\([^\"]*\)\".*/\1/p" | head -1
}
in_range6() { # in_range6 ADDR: within fd00:cd::100-::1ff
    case $1 in fd00:cd::1[0-9a-f][0-9a-f]) return 0 ;; *) return 1 ;; esac
}

DUAL=$(conf labnet ',"dhcp6":true')
MASTER_MAC=$(cat /sys/class/net/m0/address)
ROUTER6=$(lab_router6) || fail "s0 has no IPv6 link-local 10 s after set-up"
echo "router (s0 link-local): $ROUTER6"

# --- three dual-stack containers on one master
for c in c1 c2 c3; do
    lab_container $c >/dev/null
    t0=$(now_ms)
    if out=$(cni ADD $c "$DUAL"); then
        t1=$(now_ms)
        echo "$out" >/tmp/add-$c.json
        e4=$(ip_entry "$out" 0); e6=$(ip_entry "$out" 1)
        a4=$(str "$e4" address); a6=$(str "$e6" address)
        ipam=$(ipam_ms $c)
        echo "ADD-MS $c $((t1 - t0)) ipam $ipam rest $((t1 - t0 - ipam))"
        if [ -n "$a4" ] && [ -n "$a6" ]; then
            pass "dual-stack ADD $c: $a4 + $a6 in $((t1 - t0)) ms, IPAM $ipam ms (DHCPv4 alongside link-local DAD + RS/RA + DHCPv6), ipvlan + DAD of the address $((t1 - t0 - ipam)) ms (TCG VM)"
        else fail "ADD $c lacks a family: $out"; fi
        # What the plugin put on the link is usable at once: the ADD waited for DAD.
        shown=$(ip -n $c -6 -o addr show dev eth0 scope global)
        if echo "$shown" | grep -q " $a6 " && ! echo "$shown" | grep -q tentative; then
            pass "$c: $a6 on eth0, out of DAD when ADD returned"
        else fail "$c: IPv6 on eth0: $shown"; fi
        echo "$a6" >/tmp/v6-$c
        echo "$a4" >/tmp/v4-$c
        g6=$(str "$e6" gateway)
        if [ "${a6#*/}" = 64 ] && [ "$g6" = "$ROUTER6" ]; then
            pass "$c: the RA's /64 and the router's link-local $g6 as gateway"
        else fail "$c: IPv6 entry $e6 (router $ROUTER6)"; fi
        if flat "$out" | grep -q '"dst":"::/0"'; then fail "$c: ::/0 in the result: $out"; else
            pass "$c: no ::/0 route in the result"; fi
    else
        fail "ADD $c: $out"; tail -n 30 /tmp/daemon.log
    fi
done
echo "--- result of c1"; cat /tmp/add-c1.json

v6s=$(cat /tmp/v6-c1 /tmp/v6-c2 /tmp/v6-c3 2>/dev/null | cut -d/ -f1)
n=$(echo "$v6s" | grep -c : || true); u=$(echo "$v6s" | sort -u | grep -c : || true)
inr=0; for a in $v6s; do if in_range6 "$a"; then inr=$((inr + 1)); fi; done
if [ "$n" -eq 3 ] && [ "$u" -eq 3 ] && [ "$inr" -eq 3 ]; then pass "three distinct DHCPv6 addresses in the range: $(echo $v6s)"; else fail "IPv6 addresses: $v6s"; fi
macs=$(for c in c1 c2 c3; do ip netns exec $c cat /sys/class/net/eth0/address; done | sort -u)
if [ "$macs" = "$MASTER_MAC" ]; then pass "the three slaves share the master's MAC $MASTER_MAC"; else fail "MACs: $macs vs $MASTER_MAC"; fi
dad=$(for c in c1 c2 c3; do ip -n $c -6 addr show dev eth0; done | grep -c dadfailed || true)
if [ "$dad" -eq 0 ]; then pass "no dadfailed on the slaves (link-locals or leased addresses)"; else fail "$dad dadfailed"; fi

echo "--- lease file"; lab_leases
# DHCPv6 lines: EXPIRY IAID ADDRESS HOSTNAME CLIENT-DUID, after the "duid" line.
v6lines=$(awk '/^duid /{v6=1; next} v6' "$LAB_DIR/dnsmasq.leases")
duids=$(echo "$v6lines" | awk 'NF >= 5 {print $5}' | sort -u)
nd=$(echo "$duids" | grep -c '^00:04:' || true)
if [ "$nd" -eq 3 ]; then pass "dnsmasq holds three bindings under three distinct DUID-UUIDs"; else fail "DUIDs: $duids"; fi
bound=0; for a in $v6s; do if echo "$v6lines" | grep -q " $a "; then bound=$((bound + 1)); fi; done
if [ "$bound" -eq 3 ]; then pass "dnsmasq's bindings are the three addresses"; else fail "$bound of 3 addresses in the lease file"; fi

# --- the daemon's view: an ipv4 and an ipv6 record per container
json=$(flat "$($BIN/dhcp-leases --socket $SOCK --json)")
n6=$(echo "$json" | grep -o '"family":"ipv6"' | grep -c . || true)
# IPv4 records carry no "family" (the default); theirs is the "lease" object, null in ipv6 ones.
n4=$(echo "$json" | grep -o '"lease":{"address"' | grep -c . || true)
listed=0; for a in $v6s; do if echo "$json" | grep -q "\"address\":\"$a\""; then listed=$((listed + 1)); fi; done
if [ "$n6" -eq 3 ] && [ "$n4" -eq 3 ] && [ "$listed" -eq 3 ]; then
    pass "dhcp-leases --json: three ipv4 and three ipv6 records, the ipv6 ones with the leased addresses"
else fail "dhcp-leases --json: $n4 ipv4, $n6 ipv6, $listed addresses: $json"; fi
# The DUIDs dnsmasq keyed are the ones the daemon sent (client_id: hex without colons).
same=0; for d in $duids; do if echo "$json" | grep -q "\"client_id\":\"$(echo "$d" | tr -d :)\""; then same=$((same + 1)); fi; done
if [ "$same" -eq 3 ]; then pass "the daemon's DUIDs are dnsmasq's"; else fail "$same of 3 DUIDs match the daemon's"; fi
echo "--- dhcp-leases"; $BIN/dhcp-leases --socket $SOCK

# --- the kernel took the RA on each slave: default route via the router's link-local
for c in c1 c2 c3; do
    echo "$c: $(ip netns exec $c cat /proc/net/dev_snmp6/eth0 | awk '/Icmp6(In|Out)Router|Icmp6InMsgs/ {printf "%s=%s ", $1, $2}') accept_ra=$(ip netns exec $c cat /proc/sys/net/ipv6/conf/eth0/accept_ra) fwd=$(ip netns exec $c cat /proc/sys/net/ipv6/conf/eth0/forwarding) maddr=$(ip -n $c maddr show dev eth0 | grep -c inet6)"
    ip -n $c -6 neigh
done
ra=0; for c in c1 c2 c3; do if ip -n $c -6 route show default | grep -q "via $ROUTER6 dev eth0"; then ra=$((ra + 1)); fi; done
if [ "$ra" -eq 3 ]; then pass "each slave has the RA's default route via $ROUTER6"; else
    fail "$ra of 3 slaves have the RA's default route"; for c in c1 c2 c3; do ip -n $c -6 route; done; fi

# --- the containers talk to each other (and to the server) over IPv6
p1=$(cut -d/ -f1 /tmp/v6-c1); p2=$(cut -d/ -f1 /tmp/v6-c2); p3=$(cut -d/ -f1 /tmp/v6-c3)
for pair in "c1 $p2" "c2 $p3" "c3 $p1" "c1 $LAB_SERVER_IP6"; do
    set -- $pair
    if ip netns exec "$1" ping -6 -c 1 -W 3 "$2" >/tmp/ping.out 2>&1; then pass "$1 pings -6 $2"; else fail "$1 cannot ping -6 $2: $(cat /tmp/ping.out)"; fi
done
a2=$(cut -d/ -f1 /tmp/v4-c2)
if ip netns exec c1 ping -c 1 -W 3 "$a2" >/dev/null; then pass "c1 pings c2 over IPv4 ($a2)"; else fail "c1 cannot ping c2 ($a2)"; fi

# --- CHECK with the dual-stack prevResult
prev=$(flat "$(cat /tmp/add-c1.json)")
if out=$(cni CHECK c1 "${DUAL%\}},\"prevResult\":$prev}"); then pass "CHECK c1 (both families)"; else fail "CHECK c1: $out"; fi

# --- an IPv6-only network on a fourth slave
lab_container c4 >/dev/null
V6ONLY=$(conf v6net ',"dhcp4":false,"dhcp6":true')
t0=$(now_ms)
if out=$(cni ADD c4 "$V6ONLY"); then
    t1=$(now_ms)
    ipam=$(ipam_ms c4)
    echo "ADD-MS c4 $((t1 - t0)) ipam $ipam rest $((t1 - t0 - ipam))"
    a6=$(str "$(ip_entry "$out" 1)" address)
    if [ -z "$(ip_entry "$out" 0)" ] && [ -n "$a6" ] && [ -z "$(ip -n c4 -4 -o addr show dev eth0)" ]; then
        pass "IPv6-only ADD c4: $a6 alone in $((t1 - t0)) ms (IPAM $ipam ms)"
    else fail "IPv6-only ADD c4: $out"; fi
    if ip netns exec c4 ping -6 -c 1 -W 3 "$p1" >/dev/null 2>&1; then pass "c4 pings -6 c1"; else fail "c4 cannot ping -6 c1"; fi
    if cni DEL c4 "$V6ONLY" >/dev/null; then pass "IPv6-only DEL c4"; else fail "IPv6-only DEL c4"; fi
else fail "IPv6-only ADD c4: $out"; tail -n 30 /tmp/daemon.log; fi

# --- l3 + dhcp6 is refused before anything is created
lab_container c5 >/dev/null
before=$(ip -n c5 -o link | wc -l); rootlinks=$(ip -o link | wc -l)
for mode in l3 l3s; do
    if out=$(cni ADD c5 "$(conf labnet ',"dhcp6":true' $mode)"); then fail "$mode + dhcp6 accepted: $out"; else
        if flat "$out" | grep -q '"code":7'; then pass "$mode + dhcp6 refused with code 7: $(str "$out" msg | cut -c1-70)"; else fail "$mode + dhcp6: $out"; fi
    fi
done
if [ "$(ip -n c5 -o link | wc -l)" -eq "$before" ] && [ "$(ip -o link | wc -l)" -eq "$rootlinks" ] \
    && ! $BIN/dhcp-leases --socket $SOCK --json | grep -q cid-c5; then
    pass "refused ADDs created no link and asked the daemon for nothing"
else fail "after refused ADDs: links $(ip -n c5 -o link), leases $($BIN/dhcp-leases --socket $SOCK)"; fi

# --- DEL of the three: links gone, RELEASEs drop dnsmasq's bindings, the daemon lists nothing
for c in c1 c2 c3; do
    if out=$(cni DEL $c "$DUAL"); then :; else fail "DEL $c: $out"; fi
    if ip -n $c link show eth0 >/dev/null 2>&1; then fail "DEL $c left eth0"; else pass "DEL $c removed the link"; fi
done
left=""; i=0
while :; do
    left=""; for a in $v6s; do if grep -q " $a " "$LAB_DIR/dnsmasq.leases"; then left="$left $a"; fi; done
    if [ -z "$left" ]; then break; fi
    i=$((i + 1)); if [ $i -gt 50 ]; then break; fi
    sleep 0.1
done
if [ -z "$left" ]; then pass "dnsmasq's lease file no longer lists the IPv6 addresses"; else fail "still bound:$left"; lab_leases; fi
if [ -z "$(grep -v '^duid ' "$LAB_DIR/dnsmasq.leases")" ]; then pass "no lease of either family left"; else fail "leases left: $(lab_leases)"; fi
json=$(flat "$($BIN/dhcp-leases --socket $SOCK --json)")
if [ "$json" = "[]" ]; then pass "dhcp-leases lists nothing after DEL"; else fail "dhcp-leases after DEL: $json"; fi
if out=$(cni DEL c1 "$DUAL"); then pass "second DEL succeeds"; else fail "second DEL: $out"; fi

echo "--- dnsmasq log (DHCPv6)"; grep -E 'DHCPSOLICIT|DHCPADVERTISE|DHCPREQUEST|DHCPREPLY|DHCPRELEASE|RTR-' "$LAB_DIR/dnsmasq.log" | grep -v 'DHCPREQUEST(s0) 198' | head -n 40
echo "--- daemon log"; tail -n 20 /tmp/daemon.log
lab_summary
