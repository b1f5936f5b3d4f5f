#!/usr/bin/env python3
"""Send one INIT-REBOOT DHCPREQUEST for ADDRESS out of IFACE (no address needed), so an
authoritative server that does not know the lease answers DHCPNAK."""
import random, socket, struct, sys

iface, mac, address = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), sys.argv[3]
xid = random.getrandbits(32)
m = bytearray(240)
m[0:4] = bytes([1, 1, 6, 0])
m[4:8] = struct.pack("!I", xid)
m[10:12] = struct.pack("!H", 0x8000)
m[28:34] = mac
m[236:240] = bytes([99, 130, 83, 99])
m += bytes([53, 1, 3, 50, 4]) + socket.inet_aton(address) + bytes([61, 7, 1]) + mac + bytes([55, 3, 1, 3, 6, 255])
m += bytes(300 - len(m)) if len(m) < 300 else b""
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
s.bind(("0.0.0.0", 68))
s.sendto(bytes(m), ("255.255.255.255", 67))
