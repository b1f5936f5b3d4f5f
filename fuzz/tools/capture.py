#!/usr/bin/env python3
"""Capture IPv4 packets to UDP port 68 on IFACE as the daemon's packet socket sees them
(AF_PACKET, SOCK_DGRAM, ETH_P_IP: the IP packet without the Ethernet header) and write each to
OUTDIR/<prefix>-<n>-<dhcp type>. Runs until killed or for SECONDS."""
import os, socket, struct, sys, time

iface, outdir, prefix, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
ETH_P_IP = 0x0800
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
s.bind((iface, ETH_P_IP))
s.settimeout(0.2)
names = {1: "discover", 2: "offer", 3: "request", 4: "decline", 5: "ack", 6: "nak", 7: "release", 8: "inform"}
end = time.time() + seconds
n = 0
os.makedirs(outdir, exist_ok=True)
while time.time() < end:
    try:
        pkt = s.recv(65535)
    except socket.timeout:
        continue
    if len(pkt) < 28 or pkt[9] != 17:
        continue
    ihl = (pkt[0] & 15) * 4
    dport = struct.unpack("!H", pkt[ihl + 2:ihl + 4])[0]
    if dport != 68:
        continue
    payload = pkt[ihl + 8:]
    kind = "unknown"
    opts = payload[240:]
    i = 0
    while i < len(opts):
        c = opts[i]
        if c == 0:
            i += 1; continue
        if c == 255 or i + 1 >= len(opts):
            break
        l = opts[i + 1]
        if c == 53 and l == 1 and i + 2 < len(opts):
            kind = names.get(opts[i + 2], "type%d" % opts[i + 2])
        i += 2 + l
    n += 1
    with open(os.path.join(outdir, "%s-%02d-%s" % (prefix, n, kind)), "wb") as f:
        f.write(pkt)
    print("captured", prefix, n, kind, len(pkt), flush=True)
