/**
 * `dstm ping4`'s reading of what comes back (lib/client/ping4.ts onPingPacket), without a
 * network: ICMP errors quoting our echo requests are printed as iputils ping prints them
 * (they were never printed: the ICMP readers of lib/net/icmp4.ts were given the ICMP offset,
 * not the IPv4 header's), and a fragmented echo reply is reported with its whole ICMP size.
 */
import { describe, expect, test } from "bun:test";
import { onPingPacket, pingSession } from "../lib/client/ping4.ts";
import { parseIPv4 } from "../lib/net/addr.ts";
import {
  buildEcho,
  buildFragmentationNeeded,
  buildIcmpError,
  IcmpType,
  UnreachableCode,
} from "../lib/net/icmp4.ts";
import { writeIPv4HeaderChecksum } from "../lib/net/ipv4.ts";

const me = parseIPv4("192.0.2.10")!;
const target = parseIPv4("203.0.113.5")!;
const router = parseIPv4("198.51.100.1")!;
const ID = 0x4242;

function session() {
  const lines: string[] = [];
  const s = pingSession({ target, print: (line) => lines.push(line) }, ID);
  return { s, lines };
}

/** Our echo request `seq` with `size` data bytes. */
function request(seq: number, size = 56): Uint8Array {
  const out = new Uint8Array(28 + size);
  buildEcho(out, 0, IcmpType.ECHO_REQUEST, me, target, ID, seq, size);
  return out;
}

describe("ping4 replies", () => {
  test("an echo reply prints its size, sequence and TTL", () => {
    const { s, lines } = session();
    s.sent.set(1, 0);
    const reply = new Uint8Array(84);
    const n = buildEcho(reply, 0, IcmpType.ECHO_REPLY, target, me, ID, 1, 56);
    onPingPacket(s, reply, n, 1.5);
    expect(lines).toEqual(["64 bytes from 203.0.113.5: icmp_seq=1 ttl=64 time=1.500 ms"]);
    expect(s.result.received).toBe(1);
  });

  test("frag needed prints the next-hop MTU; net unreachable its words", () => {
    const { s, lines } = session();
    s.sent.set(3, 0);
    s.sent.set(4, 0);
    const out = new Uint8Array(576);
    const req3 = request(3, 1472);
    let n = buildFragmentationNeeded(out, 0, router, req3, 0, req3.length, 1400);
    expect(n).toBeGreaterThan(0);
    onPingPacket(s, out, n, 2);
    const req4 = request(4);
    n = buildIcmpError(
      out,
      0,
      IcmpType.DEST_UNREACHABLE,
      UnreachableCode.NET,
      0,
      router,
      req4,
      0,
      req4.length,
    );
    expect(n).toBeGreaterThan(0);
    onPingPacket(s, out, n, 2);
    expect(lines).toEqual([
      "From 198.51.100.1 icmp_seq=3 Frag needed and DF set (mtu = 1400)",
      "From 198.51.100.1 icmp_seq=4 Destination Net Unreachable",
    ]);
    expect(s.result.errors).toBe(2);
    expect(s.sent.size).toBe(0);
  });

  test("an error quoting another ping's request is not ours", () => {
    const { s, lines } = session();
    s.sent.set(1, 0);
    const other = new Uint8Array(84);
    buildEcho(other, 0, IcmpType.ECHO_REQUEST, me, target, ID + 1, 1, 56);
    const out = new Uint8Array(576);
    const n = buildFragmentationNeeded(out, 0, router, other, 0, other.length, 1400);
    onPingPacket(s, out, n, 2);
    expect(lines).toEqual([]);
    expect(s.result.errors).toBe(0);
  });

  test("a fragmented echo reply (-s 1572 -M dont) is 1580 bytes, printed once all came", () => {
    const { s, lines } = session();
    s.sent.set(7, 0);
    const whole = new Uint8Array(20 + 8 + 1572);
    buildEcho(whole, 0, IcmpType.ECHO_REPLY, target, me, ID, 7, 1572);
    // Split at 1480 bytes of payload (a 1500-byte link), as the target's stack would.
    const fragment = (from: number, to: number, more: boolean) => {
      const f = new Uint8Array(20 + (to - from));
      f.set(whole.subarray(0, 20));
      f.set(whole.subarray(20 + from, 20 + to), 20);
      f[2] = f.length >> 8;
      f[3] = f.length & 0xff;
      f[4] = 0x12;
      f[5] = 0x34;
      const units = from / 8;
      f[6] = (more ? 0x20 : 0) | (units >> 8);
      f[7] = units & 0xff;
      writeIPv4HeaderChecksum(f, 0);
      return f;
    };
    const first = fragment(0, 1480, true);
    const last = fragment(1480, 1580, false);
    // The last fragment may come first.
    onPingPacket(s, last, last.length, 3);
    expect(lines).toEqual([]);
    onPingPacket(s, first, first.length, 4);
    expect(lines).toEqual(["1580 bytes from 203.0.113.5: icmp_seq=7 ttl=64 time=4.000 ms"]);
    expect(s.result.received).toBe(1);
    expect(s.fragments.size).toBe(0);
  });
});
