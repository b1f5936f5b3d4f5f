# Guest script: 802.1q trunk parents. Our `ipvlan` (master "m0.50", or "m0" + "vlanId") makes the
# VLAN link on the trunk m0, puts ipvlan L2 slaves on it, and deletes it after its last slave;
# a VLAN link made by the administrator (m0.70) is used and left alone. The server end s0 of the
# trunk carries VLAN 50 and 60, each moved into its own namespace with its own dnsmasq. Run by
# tests/vm_ipvlan.rs through tests/vm/run.sh. Prints PASS/FAIL lines and "N passed, M failed".
. /lab.sh
lab_setup --no-ping   # the untagged server on s0: it must never see a DHCPDISCOVER

BIN=/opt/cni/bin
SOCK=/run/cni/dhcp.sock
STATE=/run/cni/ipvlan-trunks
MARK="cni-dhcp ipvlan: VLAN link made for ipvlan slaves"
export CNI_PATH=$BIN:/opt/ref/cni

# vlan_server VID: s0.VID in its own namespace srvVID, 198.18.VID.1/24, dnsmasq on it.
vlan_server() {
    ip netns add srv$1
    LAB_NETNS="$LAB_NETNS srv$1"
    ip -n "$LAB_SRV" link add link s0 name s0.$1 type vlan id $1
    ip -n "$LAB_SRV" link set s0.$1 netns srv$1
    ip -n srv$1 link set lo up
    ip -n srv$1 addr add 198.18.$1.1/24 dev s0.$1
    ip -n srv$1 link set s0.$1 up
    : >"$LAB_DIR/d$1.leases"
    ip netns exec srv$1 dnsmasq --conf-file=/dev/null --port=0 --user=root --group=root \
        --interface=s0.$1 --bind-interfaces --no-ping \
        --dhcp-range=198.18.$1.100,198.18.$1.200,255.255.255.0,1h \
        --dhcp-option=option:router,198.18.$1.1 --dhcp-authoritative \
        --dhcp-leasefile="$LAB_DIR/d$1.leases" \
        --log-dhcp --log-facility="$LAB_DIR/d$1.log" --pid-file="$LAB_DIR/d$1.pid"
    i=0; while [ ! -s "$LAB_DIR/d$1.pid" ]; do i=$((i + 1)); [ $i -gt 50 ] && break; sleep 0.1; done
}
vlan_server 50
vlan_server 60
stop_vlan_servers() {
    for v in 50 60; do kill "$(cat "$LAB_DIR/d$v.pid")" 2>/dev/null || true; done
    lab_cleanup
}
trap stop_vlan_servers EXIT

$BIN/dhcp daemon -socketpath $SOCK -timeout 6s >/tmp/daemon.log 2>&1 &
i=0; while [ ! -S $SOCK ]; do i=$((i + 1)); [ $i -gt 100 ] && break; sleep 0.1; done

DHCP='{"type":"dhcp"}'
conf() { # conf NAME MASTER_AND_KEYS [IPAM]
    echo "{\"cniVersion\":\"1.0.0\",\"name\":\"$1\",\"type\":\"ipvlan\",$2,\"ipam\":${3:-$DHCP}}"
}
cni() { # cni COMMAND CONTAINER CONF -> stdout of our ipvlan plugin
    echo "$3" | CNI_COMMAND=$1 CNI_CONTAINERID=cid-$2 CNI_NETNS=/var/run/netns/$2 CNI_IFNAME=eth0 $BIN/ipvlan
}
addr_of() { ip -n $1 -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1; }
exists() { ip link show "$1" >/dev/null 2>&1; }
C50=$(conf vlan50 '"master":"m0.50"')
C60=$(conf vlan60 '"master":"m0.60"')
C60K=$(conf vlan60 '"master":"m0","vlanId":60')
MASTER_MAC=$(cat /sys/class/net/m0/address)

# --- three containers on m0.50, which does not exist yet
if exists m0.50; then fail "m0.50 exists before the first ADD"; fi
for c in c1 c2 c3; do
    lab_container $c >/dev/null
    if out=$(cni ADD $c "$C50"); then pass "ADD $c on m0.50: $(addr_of $c)"; else fail "ADD $c: $out"; tail -n 20 /tmp/daemon.log; fi
done
d=$(ip -d link show m0.50 2>&1)
echo "$d"
if echo "$d" | grep -q "vlan protocol 802.1Q id 50"; then pass "m0.50 is VLAN 50 (802.1Q) on m0"; else fail "m0.50: $d"; fi
if echo "$d" | grep -q "alias $MARK"; then pass "m0.50 carries our mark"; else fail "no mark on m0.50"; fi
if echo "$d" | grep -q "state UP\|,UP"; then pass "m0.50 is up"; else fail "m0.50 down"; fi
n=0; for c in c1 c2 c3; do case "$(addr_of $c)" in 198.18.50.*) n=$((n + 1)) ;; esac; done
if [ $n -eq 3 ]; then pass "three leases from VLAN 50's subnet"; else fail "only $n in 198.18.50.0/24"; fi
if [ "$(awk '{print $5}' "$LAB_DIR/d50.leases" | sort -u | grep -c .)" -eq 3 ]; then
    pass "VLAN 50's dnsmasq keyed three client IDs"
else fail "d50 leases: $(cat "$LAB_DIR/d50.leases")"; fi

# --- two containers on VLAN 60 at once: one by name, one by vlanId
lab_container c4 >/dev/null; lab_container c5 >/dev/null
cni ADD c4 "$C60" >/tmp/add-c4.out 2>&1 & p4=$!
cni ADD c5 "$C60K" >/tmp/add-c5.out 2>&1 & p5=$!
if wait $p4; then pass "ADD c4 (master m0.60): $(addr_of c4)"; else fail "ADD c4: $(cat /tmp/add-c4.out)"; fi
if wait $p5; then pass "ADD c5 (master m0, vlanId 60) at the same time: $(addr_of c5)"; else fail "ADD c5: $(cat /tmp/add-c5.out)"; fi
n=0; for c in c4 c5; do case "$(addr_of $c)" in 198.18.60.*) n=$((n + 1)) ;; esac; done
if [ $n -eq 2 ]; then pass "two leases from VLAN 60's subnet"; else fail "only $n in 198.18.60.0/24"; fi
if [ "$(ip -o link show | grep -c 'm0\.60@')" -eq 1 ]; then pass "one m0.60 for both"; else fail "$(ip -o link show | grep m0.60)"; fi
if [ "$(ls $STATE/m0.60 | wc -l)" -eq 2 ]; then pass "two users recorded for m0.60"; else fail "users: $(ls $STATE/m0.60)"; fi

# --- the shared MAC, tagged traffic only, and reachability
macs=$(for c in c1 c2 c3 c4 c5; do ip netns exec $c cat /sys/class/net/eth0/address; done | sort -u)
if [ "$macs" = "$MASTER_MAC" ]; then pass "five slaves on two VLANs share m0's MAC"; else fail "MACs: $macs vs $MASTER_MAC"; fi
if ! grep -q DHCPDISCOVER "$LAB_DIR/dnsmasq.log"; then pass "the untagged server saw no DHCPDISCOVER"; else fail "untagged DHCP seen: $(grep DHCPDISCOVER "$LAB_DIR/dnsmasq.log" | head -3)"; fi
if ip netns exec c1 ping -c 1 -W 2 "$(addr_of c2)" >/dev/null; then pass "c1 pings c2 on VLAN 50"; else fail "c1 cannot ping c2"; fi
if ip netns exec c5 ping -c 1 -W 2 198.18.60.1 >/dev/null; then pass "c5 pings VLAN 60's server"; else fail "c5 cannot ping 198.18.60.1"; fi

# --- an administrator's VLAN link is used as it is and survives
ip link add link m0 name m0.70 type vlan id 70
ip link set m0.70 up
lab_container c7 >/dev/null
HL=$(conf hl70 '"master":"m0","vlanId":70' '{"type":"host-local","subnet":"198.18.70.0/24","dataDir":"/tmp/hl"}')
if out=$(cni ADD c7 "$HL"); then pass "ADD c7 on the existing m0.70 (vlanId 70)"; else fail "ADD c7: $out"; fi
if out=$(cni DEL c7 "$HL") && exists m0.70; then pass "m0.70 survives its last slave's DEL"; else fail "m0.70 after DEL: $out"; fi
if ip -d link show m0.70 | grep -q "alias"; then fail "m0.70 got an alias"; else pass "m0.70 not marked as ours"; fi

# --- errors name the cause and leave nothing
ip link add m0.90 type veth peer name x90
lab_container e1 >/dev/null
if out=$(cni ADD e1 "$(conf e '"master":"m0","vlanId":90')"); then fail "vlanId 90 over a veth named m0.90 accepted"; else
    if echo "$out" | grep -q '"code": *7' && echo "$out" | grep -q "kind veth"; then pass "a name taken by a veth: code 7 naming it"; else fail "taken: $out"; fi
fi
if out=$(cni ADD e1 "$(conf e '"master":"m0.4095"')"); then fail "VID 4095 accepted"; else
    if echo "$out" | grep -q "out of range 1-4094"; then pass "VID 4095 refused naming the range"; else fail "4095: $out"; fi
fi
if out=$(cni ADD e1 "$(conf e '"master":"nosuch0.50"')"); then fail "missing parent accepted"; else
    if echo "$out" | grep -q 'parent \\"nosuch0\\"'; then pass "missing parent named"; else fail "parent: $out"; fi
fi
# A failed ADD removes the VLAN link it made (here the IPAM plugin does not exist).
if out=$(cni ADD e1 "$(conf e '"master":"m0.80"' '{"type":"nosuchipam"}')"); then fail "ADD with a missing IPAM succeeded"; else
    if exists m0.80; then fail "failed ADD left m0.80"; else pass "failed ADD removed the m0.80 it made"; fi
fi
if ip -n e1 link show eth0 >/dev/null 2>&1; then fail "failed ADD left a slave"; else pass "failed ADD left no slave"; fi

# --- DEL: the VLAN link goes with its last slave, after the lease
for c in c1 c2; do if out=$(cni DEL $c "$C50"); then :; else fail "DEL $c: $out"; fi; done
if exists m0.50; then pass "m0.50 stays while c3 uses it"; else fail "m0.50 deleted under c3"; fi
if ip netns exec c3 ping -c 1 -W 2 198.18.50.1 >/dev/null; then pass "c3 still reaches its server"; else fail "c3 lost its VLAN"; fi
if out=$(cni DEL c3 "$C50"); then pass "DEL c3"; else fail "DEL c3: $out"; fi
if exists m0.50; then fail "m0.50 left after its last slave"; else pass "m0.50 deleted with its last slave"; fi
if [ "$(grep -c DHCPRELEASE "$LAB_DIR/d50.log")" -eq 3 ]; then pass "VLAN 50's server saw three DHCPRELEASEs"; else fail "releases: $(grep -c DHCPRELEASE "$LAB_DIR/d50.log")"; fi
if out=$(cni DEL c3 "$C50"); then pass "repeated DEL succeeds"; else fail "repeated DEL: $out"; fi
cni DEL c4 "$C60" >/tmp/del-c4.out 2>&1 & p4=$!
cni DEL c5 "$C60K" >/tmp/del-c5.out 2>&1 & p5=$!
if wait $p4 && wait $p5; then pass "DEL c4 and c5 at once"; else fail "DEL: $(cat /tmp/del-c4.out /tmp/del-c5.out)"; fi
if exists m0.60; then fail "m0.60 left"; else pass "m0.60 deleted after both"; fi
if [ "$(grep -c DHCPRELEASE "$LAB_DIR/d60.log")" -eq 2 ]; then pass "VLAN 60's server saw two DHCPRELEASEs"; else fail "releases: $(grep -c DHCPRELEASE "$LAB_DIR/d60.log")"; fi

# --- a container that died without DEL does not keep the link forever
lab_container c6 >/dev/null; lab_container c8 >/dev/null
for c in c6 c8; do if out=$(cni ADD $c "$C50"); then :; else fail "ADD $c: $out"; fi; done
ip netns del c6
if out=$(cni DEL c8 "$C50") && ! exists m0.50; then pass "DEL of the last live user deletes m0.50 (c6's namespace is gone)"; else fail "m0.50 after c8's DEL: $out"; fi
if [ -z "$(ls $STATE 2>/dev/null | grep -v '\.lock$')" ]; then pass "no user records left"; else fail "left: $(ls -R $STATE)"; fi
if exists m0.70 && exists m0; then pass "m0 and m0.70 still there"; else fail "m0 or m0.70 gone"; fi
ip link del m0.90 2>/dev/null || true

echo "--- daemon log"; tail -n 15 /tmp/daemon.log
lab_summary
