/**
 * Run in an attacker's namespace on the IPv6 side: sends the TEP an ICMPv6 Packet Too Big
 * (RFC 4443 §3.2) with MTU `mtu`, quoting a made-up tunnel packet from the TEP to HOST6 whose
 * inner IPv4 packet goes from SRC4 to DST4 with DF. The kernel fills in the ICMPv6 checksum
 * (raw ICMPv6 sockets always do, RFC 3542 §3.1).
 *
 * usage: bun send_fake_ptb.ts TEP6 HOST6 SRC4 DST4 MTU
 */
import { parseIPv4, parseIPv6 } from "../../lib/net/addr.ts";
import { buildEcho, IcmpType } from "../../lib/net/icmp4.ts";
import { writeIPv4HeaderChecksum } from "../../lib/net/ipv4.ts";
import { Raw6Socket } from "../../lib/sys/raw6.ts";

const [tep6, host6, src4, dst4, mtuText] = process.argv.slice(2);
const IPPROTO_ICMPV6 = 58;
const inner = new Uint8Array(1460);
buildEcho(inner, 0, IcmpType.ECHO_REQUEST, parseIPv4(src4!)!, parseIPv4(dst4!)!, 0x7777, 1, 1432);
inner[6] = 0x40; // DF
writeIPv4HeaderChecksum(inner, 0);
// ICMPv6 header (8) + outer IPv6 header (40) + the start of the inner packet: 1232 bytes in all.
const msg = new Uint8Array(8 + 40 + 1184);
msg[0] = 2; // Packet Too Big
const mtu = Number(mtuText);
msg[4] = mtu >>> 24;
msg[5] = mtu >>> 16;
msg[6] = mtu >>> 8;
msg[7] = mtu;
const outer = msg.subarray(8);
outer[0] = 0x60;
outer[4] = 1460 >>> 8; // payload length of the quoted packet: the inner 1460 bytes
outer[5] = 1460 & 0xff;
outer[6] = 4; // next header: IPv4
outer[7] = 64;
outer.set(parseIPv6(tep6!)!, 8);
outer.set(parseIPv6(host6!)!, 24);
msg.set(inner.subarray(0, 1184), 48);
const raw = Raw6Socket.open({ protocol: IPPROTO_ICMPV6 });
const n = raw.sendTo(msg, 0, msg.length, parseIPv6(tep6!)!, 0);
raw.close();
console.log(JSON.stringify({ sent: n === msg.length ? 1 : 0 }));
