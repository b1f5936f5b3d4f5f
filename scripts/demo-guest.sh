# The main job on a built-in default, run by scripts/demo.sh: a throw-away lab with dnsmasq, our
# lease daemon, three containers attached with our ipvlan plugin (L2 mode, ipam dhcp, no
# broadcast key: the daemon sets the flag itself on ipvlan slaves), each container's address,
# the daemon's lease list, then DEL of all three and cleanup.
# Runs as the VM's /test.sh (lab.sh at /lab.sh, binaries in /opt/cni/bin), or natively inside a
# private network and mount namespace with LAB_SH, BIN, SOCK and LAB_DIR set by demo.sh.
. "${LAB_SH:-/lab.sh}"
BIN=${BIN:-/opt/cni/bin}
SOCK=${SOCK:-/run/cni/dhcp.sock}
export CNI_PATH=$BIN

lab_setup --no-ping
"$BIN/dhcp" daemon -socketpath "$SOCK" -state-dir "$LAB_DIR/state" >"$LAB_DIR/daemon.log" 2>&1 &
DAEMON=$!
trap 'kill $DAEMON 2>/dev/null; lab_cleanup' EXIT
i=0; while [ ! -S "$SOCK" ]; do i=$((i + 1)); [ $i -gt 100 ] && { cat "$LAB_DIR/daemon.log"; exit 1; }; sleep 0.1; done

CONF='{"cniVersion":"1.1.0","name":"demonet","type":"ipvlan","master":"m0","mode":"l2","ipam":{"type":"dhcp","daemonSocketPath":"'"$SOCK"'"}}'
echo "== network configuration"; echo "$CONF"
for c in c1 c2 c3; do
    lab_container $c >/dev/null
    if ! out=$(echo "$CONF" | CNI_COMMAND=ADD CNI_CONTAINERID=demo-$c CNI_NETNS=/var/run/netns/$c CNI_IFNAME=eth0 "$BIN/ipvlan"); then
        echo "ADD $c failed: $out"; cat "$LAB_DIR/daemon.log"; exit 1
    fi
    echo "== container $c: $(ip -n $c -4 -o addr show dev eth0 | awk '{print $4}')  mac $(ip netns exec $c cat /sys/class/net/eth0/address)"
done
echo "== master m0 mac $(cat /sys/class/net/m0/address) (ipvlan slaves share it)"
echo "== dhcp-leases"
"$BIN/dhcp-leases" --socket "$SOCK"
echo "== dnsmasq lease file (expiry mac ip host client-id)"
lab_leases
for c in c1 c2 c3; do
    echo "$CONF" | CNI_COMMAND=DEL CNI_CONTAINERID=demo-$c CNI_NETNS=/var/run/netns/$c CNI_IFNAME=eth0 "$BIN/ipvlan"
done
lab_wait_log DHCPRELEASE 5 || true
echo "== after DEL: $(grep -c DHCPRELEASE "$LAB_DIR/dnsmasq.log") DHCPRELEASE seen by dnsmasq, $(wc -l <"$LAB_DIR/dnsmasq.leases") leases left"
echo "demo done"
