# Guest script: the reference plugins (containernetworking-plugins, /opt/ref/cni) on ipvlan L2 in
# the lab. Shows how a guest script drives CNI plugins, and what the reference does on ipvlan:
# with -broadcast (works in Debian's 1.1.1) two containers get two leases keyed by client id.
. /lab.sh
lab_setup --no-ping
[ -x /opt/ref/cni/ipvlan ] || { echo "no reference plugins in /opt/ref/cni"; exit 77; }

/opt/ref/cni/dhcp daemon -broadcast -socketpath /run/cni/dhcp.sock >/tmp/refdhcp.log 2>&1 &
i=0; while [ ! -S /run/cni/dhcp.sock ]; do i=$((i + 1)); [ $i -gt 100 ] && break; sleep 0.1; done

conf='{"cniVersion":"1.0.0","name":"labnet","type":"ipvlan","master":"m0","mode":"l2","ipam":{"type":"dhcp"}}'
for c in c1 c2; do
    lab_container $c >/dev/null
    if out=$(echo "$conf" | CNI_COMMAND=ADD CNI_CONTAINERID=cid-$c CNI_NETNS=/var/run/netns/$c \
            CNI_IFNAME=eth0 CNI_PATH=/opt/ref/cni /opt/ref/cni/ipvlan); then
        pass "reference ipvlan+dhcp ADD $c: $(echo "$out" | tr -d ' \n' | cut -c1-160)"
    else
        fail "reference ADD $c: $out"
    fi
done
echo "--- lease file"; lab_leases
n=$(grep -c ' 00:63:69:64:2d:63:3[12]:2f:6c:61:62:6e:65:74:2f:65:74:68:30$' "$LAB_DIR/dnsmasq.leases" || true)
if [ "$n" -eq 2 ]; then pass "two leases with the reference's client ids (0x00 cid-cN/labnet/eth0)"; else fail "$n reference client ids in the lease file"; fi
a2=$(ip -n c2 -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1)
if ip netns exec c1 ping -c 1 -W 2 "$a2" >/dev/null; then pass "c1 pings c2 ($a2)"; else fail "c1 cannot ping c2 ($a2)"; fi
for c in c1 c2; do
    if echo "$conf" | CNI_COMMAND=DEL CNI_CONTAINERID=cid-$c CNI_NETNS=/var/run/netns/$c \
            CNI_IFNAME=eth0 CNI_PATH=/opt/ref/cni /opt/ref/cni/ipvlan; then pass "DEL $c"; else fail "DEL $c"; fi
done
lab_summary
