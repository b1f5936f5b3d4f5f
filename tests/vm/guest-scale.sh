# Guest script: ipvlan at scale (issue 13 §3). For each size in $SIZES (default "50 200") and
# each of $IMPLS (default "static ref ours"), a fresh lab with a /22 pool and N containers that
# all ADD at once on ipvlan L2 slaves of one master:
#   static  our ipvlan with the reference's static IPAM (an address each, no DHCP): what the
#           ADDs cost before any DHCP, the floor under both others;
#   ref     the reference dhcp daemon with -broadcast, and its ipvlan;
#   ours    our ipvlan and dhcp daemon with their automatic policy (broadcast flag and a derived
#           chaddr on ipvlan: docs/design.md, *A chaddr per container*);
#   refstatic (not by default) the reference's ipvlan with its static IPAM: the floor of the
#           reference's own main plugin;
#   oursbcast (not by default) ours with "unicastDiscover": false: every DHCPDISCOVER and
#           DHCPREQUEST an Ethernet broadcast, which the master copies to every other slave
#           (docs/design.md, *Ethernet unicast to a known server*), against ours.
# Both daemons get `-timeout $TIMEOUT` (default 60s): the emulated VM is tens of times slower
# than hardware, and with the 10 s default the budget measures the emulator, not DHCP. Prints
# one "SCALE" line per batch:
#   SCALE impl=static|ref|ours n=N ok=K wall_ms=W p50_ms=P p99_ms=Q discovers=D requests=R
#         naks=A master_rx_dropped=M srv_rcvbuf_errors=U timeout=T cpu_user_ms=C
#         cpu_kernel_ms=K [slave_rx=F]
# (wall: first start to last end; p50/p99: per-ADD durations; discovers/requests/naks: what
# dnsmasq logged; master_rx_dropped: m0's rx_dropped, where ipvlan counts its full multicast
# backlog; srv_rcvbuf_errors: UDP RcvbufErrors in the server's namespace; cpu_*_ms: the guest's
# CPU time over the batch, user and kernel; slave_rx, with STATS=1: frames the N slaves received,
# summed, i.e. the master's fan-out). Software-emulated
# (TCG): only ratios between batches of one boot mean anything. It FAILs when ADDs never return
# and, with CHECK=1, when ours loses an ADD or needs more than 2 DHCPDISCOVERs per container
# (with the shared MAC as chaddr dnsmasq needs about N(N+1)/2). /scale.env, when given
# (CNI_DHCP_VM_FILES=HOST:/scale.env), may set SIZES, IMPLS, TIMEOUT, CHECK, STATS=1, and SHOW=1 (print
# our first container's history and dnsmasq's first DHCPDISCOVERs after our batches). Run by
# benches/vm_scale.rs (smoke size under `cargo test`, full size under `cargo bench`).
. /lab.sh
SIZES="50 200"
IMPLS="static ref ours"
TIMEOUT=60s
CHECK=""
SHOW=""
STATS=""
[ -f /scale.env ] && . /scale.env
LAB_PREFIX=22
LAB_RANGE=198.18.1.0,198.18.3.250,255.255.252.0,1h

now_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }
pct() { # pct FILE P -> the P-th percentile of the numbers in FILE (nearest rank)
    sort -n "$1" | awk -v p="$2" '{ a[NR] = $1 } END { if (NR == 0) { print 0; exit } i = int((NR * p + 99) / 100); if (i < 1) i = 1; print a[i] }'
}
# The guest's CPU time so far, milliseconds: "USER KERNEL" (kernel: system, irq and softirq;
# USER_HZ is 100).
cpu_ms() { awk '/^cpu / { printf "%d %d\n", ($2 + $3) * 10, ($4 + $7 + $8) * 10; exit }' /proc/stat; }
rcvbuf() { ip netns exec "$LAB_SRV" awk '/^Udp:/ { if (h) { print $6; exit } h = 1 }' /proc/net/snmp; }

batch() { # batch IMPL N
    impl=$1 n=$2
    lab_setup --no-ping
    dpid=""
    case $impl in
    ref)
        /opt/ref/cni/dhcp daemon -broadcast -timeout "$TIMEOUT" -socketpath /run/cni/dhcp.sock >/tmp/d-$impl.log 2>&1 &
        dpid=$! bin=/opt/ref/cni ;;
    ours | oursbcast)
        /opt/cni/bin/dhcp daemon -timeout "$TIMEOUT" -socketpath /run/cni/dhcp.sock -state-dir /tmp/state-$n >/tmp/d-$impl.log 2>&1 &
        dpid=$! bin=/opt/cni/bin ;;
    static)
        # Our ipvlan finds the reference's static IPAM through CNI_PATH.
        bin=/opt/cni/bin:/opt/ref/cni ;;
    refstatic)
        bin=/opt/ref/cni ;;
    esac
    if [ -n "$dpid" ]; then
        i=0; while [ ! -S /run/cni/dhcp.sock ]; do i=$((i + 1)); [ $i -gt 100 ] && break; sleep 0.1; done
    fi
    plugin=${bin%%:*}/ipvlan
    k=1; while [ $k -le $n ]; do lab_container s$k >/dev/null; k=$((k + 1)); done
    drop0=$(cat /sys/class/net/m0/statistics/rx_dropped); rb0=$(rcvbuf); cpu0=$(cpu_ms)
    : >/tmp/res
    k=1
    while [ $k -le $n ]; do
        (
            if [ "$impl" = static ] || [ "$impl" = refstatic ]; then
                ipam="{\"type\":\"static\",\"addresses\":[{\"address\":\"198.18.$((1 + k / 250)).$((k % 250 + 1))/22\"}]}"
            elif [ "$impl" = oursbcast ]; then
                ipam='{"type":"dhcp","unicastDiscover":false}'
            else
                ipam='{"type":"dhcp"}'
            fi
            conf="{\"cniVersion\":\"1.0.0\",\"name\":\"scale\",\"type\":\"ipvlan\",\"master\":\"m0\",\"mode\":\"l2\",\"ipam\":$ipam}"
            t0=$(now_ms)
            if echo "$conf" | CNI_COMMAND=ADD CNI_CONTAINERID=cid-s$k CNI_NETNS=/var/run/netns/s$k \
                CNI_IFNAME=eth0 CNI_PATH=$bin timeout 300 $plugin >/tmp/out-s$k 2>&1; then r=ok; else r=fail; fi
            echo "$r $t0 $(now_ms) $k" >>/tmp/res
        ) &
        k=$((k + 1))
    done
    wait_n=0
    while [ "$(grep -c . /tmp/res)" -lt $n ]; do wait_n=$((wait_n + 1)); [ $wait_n -gt 3100 ] && break; sleep 0.1; done
    ok=$(grep -c '^ok' /tmp/res || true)
    awk '{ print $3 - $2 }' /tmp/res >/tmp/dur
    wall=$(awk 'NR == 1 || $2 < s { s = $2 } NR == 1 || $3 > e { e = $3 } END { print e - s }' /tmp/res)
    disc=$(grep -c 'DHCPDISCOVER(' "$LAB_DIR/dnsmasq.log" || true)
    reqs=$(grep -c 'DHCPREQUEST(' "$LAB_DIR/dnsmasq.log" || true)
    naks=$(grep -c 'DHCPNAK(' "$LAB_DIR/dnsmasq.log" || true)
    drop=$(( $(cat /sys/class/net/m0/statistics/rx_dropped) - drop0 )); rb=$(( $(rcvbuf) - rb0 ))
    cpu=$(cpu_ms); cpu_user=$(( ${cpu% *} - ${cpu0% *} )); cpu_kernel=$(( ${cpu#* } - ${cpu0#* } ))
    slave_rx=""
    if [ -n "$STATS" ]; then
        # Frames delivered to the slaves: the master's fan-out of broadcasts, summed.
        slave_rx=$(k=1; while [ $k -le $n ]; do ip netns exec s$k cat /sys/class/net/eth0/statistics/rx_packets 2>/dev/null || echo 0; k=$((k + 1)); done | awk '{ s += $1 } END { print s + 0 }')
    fi
    echo "SCALE impl=$impl n=$n ok=$ok wall_ms=$wall p50_ms=$(pct /tmp/dur 50) p99_ms=$(pct /tmp/dur 99) discovers=$disc requests=$reqs naks=$naks master_rx_dropped=$drop srv_rcvbuf_errors=$rb timeout=$TIMEOUT cpu_user_ms=$cpu_user cpu_kernel_ms=$cpu_kernel${slave_rx:+ slave_rx=$slave_rx}"
    f=$(awk '$1 == "fail" { print $4; exit }' /tmp/res)
    [ -n "$f" ] && echo "first failure (s$f): $(tr -d '\n' </tmp/out-s$f | cut -c1-300)"
    if [ "$impl" = ours ] && [ -n "$CHECK" ]; then
        if [ "$ok" = "$n" ]; then pass "ours: $n of $n ADDs leased"; else fail "ours: $ok of $n ADDs leased"; fi
        if [ "$disc" -le $((2 * n)) ]; then pass "ours: $disc DHCPDISCOVERs for $n containers (at most $((2 * n)))"; else fail "ours: $disc DHCPDISCOVERs for $n containers: offers collide"; fi
    fi
    if [ "$impl" = ours ] && [ -n "$SHOW" ]; then
        /opt/cni/bin/dhcp-leases show cid-s1 | tail -n 5 || true
        grep 'DHCPDISCOVER(' "$LAB_DIR/dnsmasq.log" | head -n 14
        sort -k2 -n /tmp/res | head -n 3
    fi
    if [ "$(grep -c . /tmp/res)" -eq "$n" ]; then pass "$impl: all $n ADDs returned"; else fail "$impl: only $(grep -c . /tmp/res) of $n ADDs returned"; fi
    if [ -n "$dpid" ]; then kill $dpid 2>/dev/null || true; wait $dpid 2>/dev/null || true; fi
    rm -f /run/cni/dhcp.sock
    lab_cleanup
}

for n in $SIZES; do
    for impl in $IMPLS; do batch "$impl" "$n"; done
done
lab_summary
