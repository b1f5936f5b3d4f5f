# Guest script: ipvlan at scale (issue 13 §3). For each size in $SCALE_SIZES (default "50 200") and
# each implementation (the reference dhcp daemon with -broadcast and its ipvlan; ours with its
# automatic policy), a fresh lab with a /22 pool and N containers that all ADD at once on
# ipvlan L2 slaves of one master. Prints one "SCALE" line per batch:
#   SCALE impl=ref|ours n=N ok=K wall_ms=W p50_ms=P p99_ms=Q discovers=D requests=R
#         master_rx_dropped=M srv_rcvbuf_errors=U
# (wall: first start to last end; p50/p99: per-ADD durations; discovers/requests: what dnsmasq
# logged; master_rx_dropped: m0's rx_dropped, where ipvlan counts its full multicast backlog;
# srv_rcvbuf_errors: UDP RcvbufErrors in the server's namespace). Software-emulated (TCG): only
# ratios between implementations of one boot mean anything. Not a test: it never FAILs on
# numbers, only on ADDs that never return; no CI test runs it yet (docs/performance.md,
# *ipvlan at scale*). /scale.env, when given (CNI_DHCP_VM_FILES=HOST:/scale.env), may set
# SIZES="10 50" and SCALE_SHOW=1 (print our first container's history and dnsmasq's first
# DHCPDISCOVERs after each of our batches).
. /lab.sh
SIZES=${SCALE_SIZES:-50 200}
[ -f /scale.env ] && . /scale.env
LAB_PREFIX=22
LAB_RANGE=198.18.1.0,198.18.3.250,255.255.252.0,1h

now_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }
pct() { # pct FILE P -> the P-th percentile of the numbers in FILE (nearest rank)
    sort -n "$1" | awk -v p="$2" '{ a[NR] = $1 } END { if (NR == 0) { print 0; exit } i = int((NR * p + 99) / 100); if (i < 1) i = 1; print a[i] }'
}
rcvbuf() { ip netns exec "$LAB_SRV" awk '/^Udp:/ { if (h) { print $6; exit } h = 1 }' /proc/net/snmp; }

batch() { # batch IMPL N
    impl=$1 n=$2
    lab_setup --no-ping
    if [ "$impl" = ref ]; then
        /opt/ref/cni/dhcp daemon -broadcast -socketpath /run/cni/dhcp.sock >/tmp/d-$impl.log 2>&1 &
        bin=/opt/ref/cni
    else
        /opt/cni/bin/dhcp daemon -socketpath /run/cni/dhcp.sock -state-dir /tmp/state-$n >/tmp/d-$impl.log 2>&1 &
        bin=/opt/cni/bin
    fi
    dpid=$!
    i=0; while [ ! -S /run/cni/dhcp.sock ]; do i=$((i + 1)); [ $i -gt 100 ] && break; sleep 0.1; done
    conf='{"cniVersion":"1.0.0","name":"scale","type":"ipvlan","master":"m0","mode":"l2","ipam":{"type":"dhcp"}}'
    k=1; while [ $k -le $n ]; do lab_container s$k >/dev/null; k=$((k + 1)); done
    drop0=$(cat /sys/class/net/m0/statistics/rx_dropped); rb0=$(rcvbuf)
    : >/tmp/res
    k=1
    while [ $k -le $n ]; do
        (
            t0=$(now_ms)
            if echo "$conf" | CNI_COMMAND=ADD CNI_CONTAINERID=cid-s$k CNI_NETNS=/var/run/netns/s$k \
                CNI_IFNAME=eth0 CNI_PATH=$bin timeout 120 $bin/ipvlan >/tmp/out-s$k 2>&1; then r=ok; else r=fail; fi
            echo "$r $t0 $(now_ms) $k" >>/tmp/res
        ) &
        k=$((k + 1))
    done
    wait_n=0
    while [ "$(grep -c . /tmp/res)" -lt $n ]; do wait_n=$((wait_n + 1)); [ $wait_n -gt 1500 ] && break; sleep 0.1; done
    ok=$(grep -c '^ok' /tmp/res || true)
    awk '{ print $3 - $2 }' /tmp/res >/tmp/dur
    wall=$(awk 'NR == 1 || $2 < s { s = $2 } NR == 1 || $3 > e { e = $3 } END { print e - s }' /tmp/res)
    disc=$(grep -c 'DHCPDISCOVER(' "$LAB_DIR/dnsmasq.log" || true)
    reqs=$(grep -c 'DHCPREQUEST(' "$LAB_DIR/dnsmasq.log" || true)
    drop=$(( $(cat /sys/class/net/m0/statistics/rx_dropped) - drop0 )); rb=$(( $(rcvbuf) - rb0 ))
    echo "SCALE impl=$impl n=$n ok=$ok wall_ms=$wall p50_ms=$(pct /tmp/dur 50) p99_ms=$(pct /tmp/dur 99) discovers=$disc requests=$reqs master_rx_dropped=$drop srv_rcvbuf_errors=$rb"
    f=$(awk '$1 == "fail" { print $4; exit }' /tmp/res)
    [ -n "$f" ] && echo "first failure (s$f): $(tr -d '\n' </tmp/out-s$f | cut -c1-300)"
    if [ "$impl" = ours ] && [ -n "${SCALE_SHOW:-}" ]; then
        /opt/cni/bin/dhcp-leases show cid-s1 | tail -n 5 || true
        grep 'DHCPDISCOVER(' "$LAB_DIR/dnsmasq.log" | head -n 14
        sort -k2 -n /tmp/res | head -n 3
    fi
    if [ "$(grep -c . /tmp/res)" -eq "$n" ]; then pass "$impl: all $n ADDs returned"; else fail "$impl: only $(grep -c . /tmp/res) of $n ADDs returned"; fi
    kill $dpid 2>/dev/null || true; wait $dpid 2>/dev/null || true
    rm -f /run/cni/dhcp.sock
    lab_cleanup
}

for n in $SIZES; do
    batch ref "$n"
    batch ours "$n"
done
lab_summary
