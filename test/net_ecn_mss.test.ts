/**
 * RFC 6040 ECN tables, DSCP choices, MSS clamping with checksums checked from scratch, and
 * RFC 6438 flow labels: the pure functions of lib/net that the tunnel steps use.
 */
import { describe, expect, test } from "bun:test";
import {
  DSCP_COPY,
  ECN_DROP,
  Ecn,
  ecnDecapsulate,
  ecnEncapsulate,
  outerTrafficClass,
  setIPv4Ecn,
} from "../lib/net/ecn.ts";
import { flowLabelOf } from "../lib/net/flowlabel.ts";
import { clampTcpMss } from "../lib/net/mss.ts";
import { internetChecksum, ipv4Packet, udpPacket } from "./helpers/packets.ts";

const { NOT_ECT, ECT0, ECT1, CE } = Ecn;

describe("RFC 6040", () => {
  test("§4.2 Figure 4, every cell: outer CE marks ECT packets, drops Not-ECT ones", () => {
    // [inner, outer, result] as written in the RFC's table.
    const figure4: [number, number, number][] = [
      [NOT_ECT, NOT_ECT, NOT_ECT],
      [NOT_ECT, ECT0, NOT_ECT],
      [NOT_ECT, ECT1, NOT_ECT],
      [NOT_ECT, CE, ECN_DROP],
      [ECT0, NOT_ECT, ECT0],
      [ECT0, ECT0, ECT0],
      [ECT0, ECT1, ECT1],
      [ECT0, CE, CE],
      [ECT1, NOT_ECT, ECT1],
      [ECT1, ECT0, ECT1],
      [ECT1, ECT1, ECT1],
      [ECT1, CE, CE],
      [CE, NOT_ECT, CE],
      [CE, ECT0, CE],
      [CE, ECT1, CE],
      [CE, CE, CE],
    ];
    for (const [inner, outer, result] of figure4) expect(ecnDecapsulate(inner, outer)).toBe(result);
  });

  test("§4.1: normal mode copies the inner ECN (CE too); compatibility mode sends Not-ECT", () => {
    for (const ecn of [NOT_ECT, ECT0, ECT1, CE]) {
      expect(ecnEncapsulate(ecn, true)).toBe(ecn);
      expect(ecnEncapsulate(ecn, false)).toBe(NOT_ECT);
    }
  });

  test("DSCP copied by default (RFC 2983 uniform), or fixed; ECN bits kept apart", () => {
    const ef = 46 << 2;
    expect(outerTrafficClass(ef | ECT0, DSCP_COPY, true)).toBe(ef | ECT0);
    expect(outerTrafficClass(ef | CE, 10, true)).toBe((10 << 2) | CE);
    expect(outerTrafficClass(ef | ECT0, 0, false)).toBe(0);
  });

  test("setIPv4Ecn rewrites the two bits and keeps the header checksum right", () => {
    const p = udpPacket("192.0.2.1", "198.51.100.7", 20);
    p[1] = (34 << 2) | ECT0;
    const c = internetChecksum(
      Uint8Array.of(...p.subarray(0, 10), 0, 0, ...p.subarray(12, 20)),
      0,
      20,
    );
    p[10] = c >> 8;
    p[11] = c & 0xff;
    setIPv4Ecn(p, 0, CE);
    expect(p[1]).toBe((34 << 2) | CE);
    expect(internetChecksum(p, 0, 20)).toBe(0);
  });
});

/** A TCP segment (valid checksums) with `options` after the 20-byte header. */
function tcpSegment(flags: number, options: number[], payload = 0): Uint8Array {
  const optLen = (options.length + 3) & ~3;
  const tcp = new Uint8Array(20 + optLen + payload);
  tcp[0] = 0xc3;
  tcp[1] = 0x50; // 50000
  tcp[3] = 80;
  tcp[12] = ((20 + optLen) / 4) << 4;
  tcp[13] = flags;
  tcp[14] = 0xff;
  tcp[15] = 0xff;
  tcp.set(options, 20);
  for (let i = 0; i < payload; i++) tcp[20 + optLen + i] = i & 0xff;
  const p = ipv4Packet("198.51.100.3", "192.0.2.80", 6, tcp);
  const c = tcpChecksum(p);
  p[36] = c >> 8;
  p[37] = c & 0xff;
  return p;
}

/** The TCP checksum over the pseudo-header and segment, with the field taken as is (0 if valid). */
function tcpChecksum(p: Uint8Array): number {
  const segment = p.subarray(20);
  const pseudo = new Uint8Array(12 + segment.length);
  pseudo.set(p.subarray(12, 20), 0);
  pseudo[9] = 6;
  pseudo[10] = segment.length >> 8;
  pseudo[11] = segment.length & 0xff;
  pseudo.set(segment, 12);
  return internetChecksum(pseudo, 0, pseudo.length);
}

const mssOf = (p: Uint8Array, at: number) => (p[at]! << 8) | p[at + 1]!;

describe("clampTcpMss (RFC 4459 §3.2)", () => {
  test("a SYN's MSS 1460 becomes 1320; the TCP checksum still verifies", () => {
    const p = tcpSegment(0x02, [2, 4, 0x05, 0xb4]);
    expect(clampTcpMss(p, 0, p.length, 1320)).toBe(1460);
    expect(mssOf(p, 42)).toBe(1320);
    expect(tcpChecksum(p)).toBe(0);
  });

  test("the MSS option at an odd offset (after one NOP) is clamped with a right checksum", () => {
    const p = tcpSegment(0x12, [1, 2, 4, 0x23, 0x00, 1, 1, 1]); // SYN-ACK, MSS 8960
    expect(clampTcpMss(p, 0, p.length, 1320)).toBe(8960);
    expect(mssOf(p, 43)).toBe(1320);
    expect(tcpChecksum(p)).toBe(0);
  });

  test("after SACK-permitted, timestamps and window scale, as Linux orders them", () => {
    const linux = [2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7];
    const p = tcpSegment(0x02, [...linux.slice(4), ...linux.slice(0, 4)]);
    expect(clampTcpMss(p, 0, p.length, 1000)).toBe(1460);
    expect(tcpChecksum(p)).toBe(0);
  });

  test("left alone: smaller MSS, no SYN, no MSS option, not TCP, cut-short options", () => {
    const small = tcpSegment(0x02, [2, 4, 0x04, 0x00]);
    expect(clampTcpMss(small, 0, small.length, 1320)).toBe(0);
    const ack = tcpSegment(0x10, [2, 4, 0x05, 0xb4]);
    expect(clampTcpMss(ack, 0, ack.length, 1320)).toBe(0);
    expect(mssOf(ack, 42)).toBe(1460);
    const none = tcpSegment(0x02, [1, 1, 1, 1]);
    expect(clampTcpMss(none, 0, none.length, 1320)).toBe(0);
    const udp = udpPacket("192.0.2.1", "198.51.100.7", 40);
    expect(clampTcpMss(udp, 0, udp.length, 1320)).toBe(0);
    const broken = tcpSegment(0x02, [8, 40, 0, 0]); // option length past the header
    expect(clampTcpMss(broken, 0, broken.length, 1320)).toBe(0);
  });
});

describe("flowLabelOf (RFC 6438)", () => {
  const withPorts = (sport: number) => {
    const p = udpPacket("198.51.100.3", "192.0.2.80", 10);
    p[20] = sport >> 8;
    p[21] = sport & 0xff;
    return p;
  };

  test("one label per inner flow: the same for every packet of a flow, 20 bits, never 0", () => {
    const labels = new Set<number>();
    for (let port = 1000; port < 1256; port++) {
      const a = flowLabelOf(withPorts(port), 0, 38);
      expect(flowLabelOf(withPorts(port), 0, 38)).toBe(a);
      expect(a).toBeGreaterThan(0);
      expect(a).toBeLessThanOrEqual(0xfffff);
      labels.add(a);
    }
    // 256 flows between the same two addresses: (nearly) all different labels.
    expect(labels.size).toBeGreaterThan(250);
  });

  test("fragments of a datagram share the 3-tuple label whatever their offset", () => {
    const first = withPorts(4000);
    first[6] = 0x20; // MF
    const later = withPorts(5000);
    later[7] = 0x10; // offset 128
    expect(flowLabelOf(first, 0, 38)).toBe(flowLabelOf(later, 0, 38));
  });
});
