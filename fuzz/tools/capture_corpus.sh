#!/usr/bin/env bash
# Regenerates the dhcp_reply and options seed corpora from real dnsmasq traffic in a throwaway
# netns lab (198.18.0.0/24 only): OFFER/ACK with a plain and a rich option set, and a NAK.
# Needs root, dnsmasq, busybox, python3. Usage: fuzz/tools/capture_corpus.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
S=fz5srv C=fz5cli MAC=02:00:c6:12:00:02
cleanup() {
    [ -n "${dns:-}" ] && kill "$dns" 2>/dev/null || true
    ip netns del $S 2>/dev/null || true
    ip netns del $C 2>/dev/null || true
}
trap cleanup EXIT
cleanup
ip netns add $S
ip netns add $C
ip link add s0 netns $S type veth peer name c0 netns $C
ip -n $S addr add 198.18.0.1/24 dev s0
ip -n $S link set s0 up
ip -n $C link set c0 address $MAC
ip -n $C link set c0 up
ip -n $C link set lo up
run_dnsmasq() {
    ip netns exec $S dnsmasq --keep-in-foreground --port=0 --no-ping --dhcp-authoritative \
        --interface=s0 --bind-interfaces --conf-file=/dev/null \
        --dhcp-leasefile="$out/leases" --pid-file="$out/pid" \
        --dhcp-range=198.18.0.100,198.18.0.200,1h "$@" &
    dns=$!
    sleep 1
}
lease() { # prefix, udhcpc args...
    local p=$1
    shift
    ip netns exec $C python3 "$here/capture.py" c0 "$out/pkts" "$p" 8 &
    local cap=$!
    sleep 0.5
    ip netns exec $C busybox udhcpc -i c0 -n -q -f -s /bin/true -t 3 -T 1 "$@" || true
    wait $cap
}
run_dnsmasq
lease plain
lease plainreq -r 198.18.0.150
ip netns exec $C python3 "$here/capture.py" c0 "$out/pkts" nak 4 &
cap=$!
sleep 0.5
ip netns exec $C python3 "$here/nak.py" c0 $MAC 198.18.0.5
wait $cap
kill $dns; wait $dns 2>/dev/null || true
rm -f "$out/leases"
run_dnsmasq --dhcp-option=3,198.18.0.1 --dhcp-option=6,198.18.0.1,198.18.0.2 \
    --dhcp-option=15,lab.example --dhcp-option=119,lab.example,example.com,svc.cluster.local \
    --dhcp-option=121,198.19.0.0/16,198.18.0.1,0.0.0.0/0,198.18.0.1 \
    --dhcp-option=33,198.19.1.1,198.18.0.1 --dhcp-option=26,1400 --dhcp-option=28,198.18.0.255 \
    --dhcp-option=12,host-a --dhcp-option=58,600 --dhcp-option=59,1050
lease rich -O 119 -O 121 -O 33 -O 26 -O 28 -O 58 -O 59 -O 12 -O 15
kill $dns; wait $dns 2>/dev/null || true
ls -l "$out/pkts"
dest="$here/../corpus"
for f in "$out"/pkts/*; do
    name=$(basename "$f")
    cp "$f" "$dest/dhcp_reply/$name"
    # options target: first byte 0 (no sname/file), then the options area after the cookie.
    python3 -c 'import sys; p=open(sys.argv[1],"rb").read(); ihl=(p[0]&15)*4; d=p[ihl+8:]; sys.stdout.buffer.write(b"\0"+d[240:])' "$f" >"$dest/options/$name"
done
rm -rf "$out"
