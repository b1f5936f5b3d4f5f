# Guest script (run by tests/vm/run.sh as /test.sh under sh -e): proves the VM harness and the
# ipvlan+DHCP facts (docs/design.md, *ipvlan and DHCP*) with busybox udhcpc alone, not our binaries.
# Three ipvlan L2 slaves of m0 in three container netns; each gets a lease with its own client id
# (option 61) and the broadcast flag.
. /lab.sh

lab_setup --no-ping
pass "dnsmasq up in $LAB_SRV ($(cat /proc/uptime | cut -d' ' -f1)s uptime)"

for i in 1 2 3; do
    lab_container c$i >/dev/null
    lab_ipvlan c$i eth0 l2
done

for i in 1 2 3; do
    if lab_udhcpc c$i eth0 "00636964$(printf '%02x' $((0x30 + i)))"; then
        pass "c$i: udhcpc got a lease"
    else
        fail "c$i: udhcpc got no lease"
    fi
done

addrs=""
macs=""
for i in 1 2 3; do
    a=$(ip -n c$i -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1)
    m=$(ip -n c$i -o link show dev eth0 | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
    echo "c$i: ipv4=$a mac=$m"
    addrs="$addrs $a"
    macs="$macs $m"
done
n=$(echo $addrs | tr ' ' '\n' | grep -c '^198\.18\.0\.' || true)
u=$(echo $addrs | tr ' ' '\n' | sort -u | grep -c . || true)
if [ "$n" -eq 3 ] && [ "$u" -eq 3 ]; then pass "three distinct addresses:$addrs"; else fail "addresses not three distinct:$addrs"; fi
um=$(echo $macs | tr ' ' '\n' | sort -u | grep -c . || true)
mm=$(ip -o link show dev m0 | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
if [ "$um" -eq 1 ] && [ "$(echo $macs | cut -d' ' -f1)" = "$mm" ]; then pass "the three slaves share m0's MAC $mm"; else fail "MACs:$macs master $mm"; fi

echo "--- lease file"
lab_leases
nl=$(grep -c ' 00:63:69:64:3[123]$' "$LAB_DIR/dnsmasq.leases" || true)
if [ "$nl" -eq 3 ]; then pass "three client IDs in the lease file"; else fail "lease file has $nl of the three client IDs"; fi

# IPv6 link-local: ipvlan gives each slave its own dev_id, so EUI-64 addresses differ despite one MAC.
# Wait for DAD to finish (tentative flag gone) before judging.
ll6() { ip -n "$1" -6 -o addr show dev eth0 scope link; }
t=0
while { ll6 c1; ll6 c2; ll6 c3; } | grep -q tentative; do
    t=$((t + 1)); [ $t -gt 50 ] && break
    sleep 0.1
done
lls=""
for i in 1 2 3; do
    echo "c$i: $(ll6 c$i)"
    lls="$lls $(ll6 c$i | awk '{print $4}')"
done
if { ll6 c1; ll6 c2; ll6 c3; } | grep -q dadfailed; then fail "an IPv6 link-local address failed DAD"; else pass "no dadfailed"; fi
nll=$(echo $lls | tr ' ' '\n' | grep -c '^fe80:' || true)
ull=$(echo $lls | tr ' ' '\n' | sort -u | grep -c . || true)
if [ "$nll" -eq 3 ] && [ "$ull" -eq 3 ]; then pass "three distinct link-local addresses:$lls"; else fail "link-local addresses:$lls"; fi

a2=$(echo $addrs | cut -d' ' -f2)
if ip netns exec c1 ping -c 2 -W 2 "$a2" >/dev/null; then pass "c1 pings c2 ($a2)"; else fail "c1 cannot ping c2 ($a2)"; fi
if ip netns exec c3 ping -c 1 -W 2 "$LAB_SERVER_IP" >/dev/null; then pass "c3 pings the server"; else fail "c3 cannot ping the server"; fi

# dnsmasq's --log-dhcp does not print option 61; the lease file (above) shows it.
na=$(grep -c 'DHCPACK(s0)' "$LAB_DIR/dnsmasq.log" || true)
nb=$(grep -c 'broadcast response' "$LAB_DIR/dnsmasq.log" || true)
if [ "$na" -eq 3 ] && [ "$nb" -eq 6 ]; then pass "dnsmasq logged 3 DHCPACKs, all 6 replies broadcast"; else fail "dnsmasq log: $na DHCPACKs, $nb broadcast replies"; lab_log | tail -40; fi

lab_summary
