import { describe, expect, test } from "bun:test";
import { parseIPv4, parseIPv6 } from "../lib/net/addr.ts";
import {
  checksumSum,
  checksumUpdate16,
  checksumUpdate32,
  finishChecksum,
  internetChecksum,
} from "../lib/net/checksum.ts";
import {
  buildEcho,
  buildFragmentationNeeded,
  buildHostUnreachable,
  buildIcmpError,
  echoRequestToReply,
  ICMP_ERROR_MAX_LENGTH,
  IcmpType,
  icmpChecksumValid,
  icmpCode,
  icmpEchoId,
  icmpEchoSequence,
  icmpErrorAllowed,
  icmpNextHopMtu,
  icmpType,
} from "../lib/net/icmp4.ts";
import {
  computeIPv4HeaderChecksum,
  IPV4_DF,
  IPV4_MF,
  IPv4Problem,
  IpProtocol,
  ipv4Destination,
  ipv4DontFragment,
  ipv4FlagsFragment,
  ipv4FragmentOffset,
  ipv4HeaderChecksum,
  ipv4HeaderChecksumValid,
  ipv4HeaderLength,
  ipv4Identification,
  ipv4MoreFragments,
  ipv4ProblemName,
  ipv4Protocol,
  ipv4Source,
  ipv4TotalLength,
  ipv4Ttl,
  ipv4Version,
  setIPv4Destination,
  setIPv4Source,
  setIPv4Ttl,
  validateIPv4,
  writeIPv4Header,
  writeIPv4HeaderChecksum,
} from "../lib/net/ipv4.ts";
import {
  encapsulate4in6,
  IPV6_HEADER_LENGTH,
  ipv6HopLimit,
  ipv6NextHeader,
  ipv6PayloadLength,
  ipv6Version,
  NEXT_HEADER_IPV4,
} from "../lib/net/ipv6.ts";
import { l4DestinationPort, l4SourcePort } from "../lib/net/l4.ts";
import { encodePcap, LINKTYPE_RAW } from "../lib/net/pcap.ts";
import { buildPacket, hexToBytes } from "../lib/tunnel/check.ts";

const ip = (text: string) => parseIPv4(text) as number;
const TEP4 = ip("192.0.2.1");

/** A deterministic pseudo-random generator (xorshift32), so failures reproduce. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

function randomHeader(rand: () => number): Uint8Array {
  const words = 5 + Math.floor(rand() * 11); // IHL 5..15, options are random bytes
  const h = new Uint8Array(words * 4);
  for (let i = 0; i < h.length; i++) h[i] = Math.floor(rand() * 256);
  h[0] = 0x40 | words;
  writeIPv4HeaderChecksum(h, 0);
  return h;
}

describe("internet checksum", () => {
  test("RFC 1071 §3 example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2", () => {
    const bytes = hexToBytes("0001f203f4f5f6f7");
    expect(checksumSum(bytes, 0, 8)).toBe(0xddf2);
    expect(internetChecksum(bytes, 0, 8)).toBe(0x220d);
    expect(finishChecksum(0xddf2)).toBe(0x220d);
  });

  test("a textbook IPv4 header verifies and recomputes to its stored checksum 0xb861", () => {
    const h = hexToBytes("450000730000400040 11b861c0a80001c0a800c7".replace(/ /g, ""));
    expect(ipv4HeaderChecksumValid(h, 0)).toBe(true);
    expect(internetChecksum(h, 0, 20)).toBe(0);
    expect(computeIPv4HeaderChecksum(h, 0)).toBe(0xb861);
    h[10] = 0;
    h[11] = 0;
    expect(internetChecksum(h, 0, 20)).toBe(0xb861);
  });

  test("an odd length pads the last byte with zero", () => {
    const odd = Uint8Array.from([0x12, 0x34, 0x56]);
    const even = Uint8Array.from([0x12, 0x34, 0x56, 0x00]);
    expect(internetChecksum(odd, 0, 3)).toBe(internetChecksum(even, 0, 4));
  });

  test("works on a range at an offset and over 64 KiB without losing carries", () => {
    const big = new Uint8Array(70001).fill(0xff);
    big[0] = 0x01;
    const framed = new Uint8Array(big.length + 7);
    framed.set(big, 7);
    expect(internetChecksum(framed, 7, big.length)).toBe(internetChecksum(big, 0, big.length));
    // All-ones data sums to 0xffff in one's complement whatever its length.
    expect(checksumSum(new Uint8Array(131072).fill(0xff), 0, 131072)).toBe(0xffff);
  });

  test("RFC 1624 §4 example: HC 0xdd2f, m 0x5555 → m' 0x3285 gives 0x0000 (not 0xffff)", () => {
    expect(checksumUpdate16(0xdd2f, 0x5555, 0x3285)).toBe(0x0000);
  });

  test("RFC 1624 incremental update equals a full recompute over 5,000 random headers", () => {
    const rand = rng(1624);
    for (let n = 0; n < 5000; n++) {
      const h = randomHeader(rand);
      const words = h.length / 2;
      // Any word but the first (it holds the IHL, which decides what is summed) and the
      // checksum field itself.
      let word = 1 + Math.floor(rand() * (words - 1));
      if (word === 5) word = 4;
      const old = (h[2 * word]! << 8) | h[2 * word + 1]!;
      const next = rand() < 0.1 ? old : Math.floor(rand() * 65536);
      h[2 * word] = next >>> 8;
      h[2 * word + 1] = next & 0xff;
      const incremental = checksumUpdate16(ipv4HeaderChecksum(h, 0), old, next);
      expect(incremental).toBe(computeIPv4HeaderChecksum(h, 0));
    }
  });

  test("32-bit incremental update (an address change) equals a full recompute", () => {
    const rand = rng(32);
    for (let n = 0; n < 2000; n++) {
      const h = randomHeader(rand);
      const old = ipv4Source(h, 0);
      const next = Math.floor(rand() * 2 ** 32);
      setIPv4Source(h, 0, next);
      expect(checksumUpdate32(ipv4HeaderChecksum(h, 0), old, next)).toBe(
        computeIPv4HeaderChecksum(h, 0),
      );
    }
  });

  test("setIPv4Ttl keeps the header checksum valid (RFC 1624 update)", () => {
    const rand = rng(64);
    for (let n = 0; n < 1000; n++) {
      const h = randomHeader(rand);
      setIPv4Ttl(h, 0, Math.floor(rand() * 256));
      expect(ipv4HeaderChecksumValid(h, 0)).toBe(true);
    }
  });
});

describe("IPv4 header accessors", () => {
  test("writeIPv4Header() writes every field and a valid checksum, at an offset", () => {
    const buf = new Uint8Array(64).fill(0xaa);
    writeIPv4Header(
      buf,
      7,
      1500,
      0xbeef,
      IPV4_DF | 0x0123,
      17,
      IpProtocol.UDP,
      ip("198.51.100.10"),
      ip("203.0.113.80"),
    );
    expect(ipv4Version(buf, 7)).toBe(4);
    expect(ipv4HeaderLength(buf, 7)).toBe(20);
    expect(ipv4TotalLength(buf, 7)).toBe(1500);
    expect(ipv4Identification(buf, 7)).toBe(0xbeef);
    expect(ipv4DontFragment(buf, 7)).toBe(true);
    expect(ipv4MoreFragments(buf, 7)).toBe(false);
    expect(ipv4FragmentOffset(buf, 7)).toBe(0x0123);
    expect(ipv4FlagsFragment(buf, 7)).toBe(IPV4_DF | 0x0123);
    expect(ipv4Ttl(buf, 7)).toBe(17);
    expect(ipv4Protocol(buf, 7)).toBe(IpProtocol.UDP);
    expect(ipv4Source(buf, 7)).toBe(ip("198.51.100.10"));
    expect(ipv4Destination(buf, 7)).toBe(ip("203.0.113.80"));
    expect(ipv4HeaderChecksumValid(buf, 7)).toBe(true);
    expect(buf[6]).toBe(0xaa); // nothing written before the offset
    expect(buf[27]).toBe(0xaa); // nor after the header
  });

  test("MF and addresses above 2^31 read back unsigned", () => {
    const buf = new Uint8Array(20);
    writeIPv4Header(buf, 0, 20, 0, IPV4_MF, 1, 6, 0xfffffffe, 0xc0000201);
    expect(ipv4MoreFragments(buf, 0)).toBe(true);
    expect(ipv4DontFragment(buf, 0)).toBe(false);
    expect(ipv4Source(buf, 0)).toBe(0xfffffffe);
    setIPv4Destination(buf, 0, 0xe0000001);
    expect(ipv4Destination(buf, 0)).toBe(0xe0000001);
  });
});

describe("validateIPv4()", () => {
  const good = buildPacket({
    src: "198.51.100.10",
    dst: "203.0.113.80",
    protocol: "udp",
    length: 60,
  });

  test("a well-formed packet is NONE, also with trailing link padding", () => {
    expect(validateIPv4(good, 0, good.length)).toBe(IPv4Problem.NONE);
    const padded = new Uint8Array(good.length + 6);
    padded.set(good);
    expect(validateIPv4(padded, 0, padded.length)).toBe(IPv4Problem.NONE);
  });

  test("fewer than 20 bytes is TOO_SHORT", () => {
    expect(validateIPv4(good, 0, 19)).toBe(IPv4Problem.TOO_SHORT);
    expect(validateIPv4(good, 0, 0)).toBe(IPv4Problem.TOO_SHORT);
  });

  test("version 6 is BAD_VERSION", () => {
    const p = good.slice();
    p[0] = 0x65;
    expect(validateIPv4(p, 0, p.length)).toBe(IPv4Problem.BAD_VERSION);
  });

  test("IHL 4, or an IHL longer than the bytes at hand, is BAD_IHL", () => {
    const p = good.slice();
    p[0] = 0x44;
    expect(validateIPv4(p, 0, p.length)).toBe(IPv4Problem.BAD_IHL);
    p[0] = 0x4f; // 60-byte header
    expect(validateIPv4(p, 0, 40)).toBe(IPv4Problem.BAD_IHL);
  });

  test("total length beyond the bytes (truncated) or below the header is BAD_TOTAL_LENGTH", () => {
    expect(validateIPv4(good, 0, good.length - 1)).toBe(IPv4Problem.BAD_TOTAL_LENGTH);
    const p = good.slice();
    p[2] = 0;
    p[3] = 19;
    writeIPv4HeaderChecksum(p, 0);
    expect(validateIPv4(p, 0, p.length)).toBe(IPv4Problem.BAD_TOTAL_LENGTH);
  });

  test("a flipped header bit is BAD_CHECKSUM; a flipped payload bit is not checked here", () => {
    const p = good.slice();
    p[8]! ^= 1;
    expect(validateIPv4(p, 0, p.length)).toBe(IPv4Problem.BAD_CHECKSUM);
    const q = good.slice();
    q[40]! ^= 1;
    expect(validateIPv4(q, 0, q.length)).toBe(IPv4Problem.NONE);
  });

  test("problem names", () => {
    expect(ipv4ProblemName(IPv4Problem.BAD_IHL)).toBe("bad-ihl");
    expect(ipv4ProblemName(99)).toBe("unknown-99");
  });
});

describe("ICMPv4 errors", () => {
  const big = buildPacket({
    src: "203.0.113.80",
    dst: "198.51.100.10",
    protocol: "tcp",
    length: 1600,
    srcPort: 80,
    dstPort: 40000,
    df: true,
  });

  test("buildFragmentationNeeded(): 3/4, next-hop MTU, valid checksums, quoted header + 8 bytes", () => {
    const out = new Uint8Array(ICMP_ERROR_MAX_LENGTH + 10).fill(0xee);
    const n = buildFragmentationNeeded(out, 10, TEP4, big, 0, big.length, 1460);
    expect(n).toBe(20 + 8 + 20 + 8);
    expect(validateIPv4(out, 10, n)).toBe(IPv4Problem.NONE);
    expect(ipv4Source(out, 10)).toBe(TEP4);
    expect(ipv4Destination(out, 10)).toBe(ip("203.0.113.80"));
    expect(ipv4Protocol(out, 10)).toBe(IpProtocol.ICMP);
    expect(ipv4TotalLength(out, 10)).toBe(56);
    expect(icmpType(out, 10)).toBe(3);
    expect(icmpCode(out, 10)).toBe(4);
    expect(icmpNextHopMtu(out, 10)).toBe(1460);
    expect(out[10 + 24]).toBe(0); // unused half of the rest word (RFC 1191 §4)
    expect(out[10 + 25]).toBe(0);
    expect(icmpChecksumValid(out, 10, n)).toBe(true);
    expect([...out.subarray(10 + 28, 10 + 56)]).toEqual([...big.subarray(0, 28)]);
    expect(out[9]).toBe(0xee);
    expect(out[10 + n]).toBe(0xee);
  });

  test("the quote stops at the offending packet's end and includes its IP options", () => {
    const tiny = buildPacket({
      src: "203.0.113.80",
      dst: "198.51.100.10",
      protocol: "udp",
      length: 28,
    });
    const out = new Uint8Array(ICMP_ERROR_MAX_LENGTH);
    expect(buildHostUnreachable(out, 0, TEP4, tiny, 0, tiny.length)).toBe(56);
    const withOptions = new Uint8Array(60);
    writeIPv4Header(
      withOptions,
      0,
      60,
      1,
      0,
      64,
      IpProtocol.UDP,
      ip("203.0.113.80"),
      ip("198.51.100.10"),
    );
    withOptions[0] = 0x46; // 24-byte header: one word of options (NOPs)
    withOptions.fill(1, 20, 24);
    writeIPv4HeaderChecksum(withOptions, 0);
    const n = buildHostUnreachable(out, 0, TEP4, withOptions, 0, 60);
    expect(n).toBe(20 + 8 + 24 + 8);
    expect(icmpType(out, 0)).toBe(3);
    expect(icmpCode(out, 0)).toBe(1);
    expect([...out.subarray(28, n)]).toEqual([...withOptions.subarray(0, 32)]);
    expect(icmpChecksumValid(out, 0, n)).toBe(true);
  });

  test("no error about an ICMP error (destination unreachable, time exceeded, …)", () => {
    const out = new Uint8Array(ICMP_ERROR_MAX_LENGTH);
    const first = new Uint8Array(ICMP_ERROR_MAX_LENGTH);
    const n = buildFragmentationNeeded(first, 0, TEP4, big, 0, big.length, 1460);
    expect(icmpErrorAllowed(first, 0, n)).toBe(false);
    expect(buildHostUnreachable(out, 0, TEP4, first, 0, n)).toBe(0);
    for (const type of [3, 4, 5, 11, 12]) {
      const err = first.slice(0, n);
      err[20] = type;
      expect(icmpErrorAllowed(err, 0, n)).toBe(false);
    }
  });

  test("errors about ICMP queries (echo request) are allowed", () => {
    const echo = new Uint8Array(84);
    buildEcho(echo, 0, IcmpType.ECHO_REQUEST, ip("203.0.113.80"), ip("198.51.100.10"), 7, 1, 56);
    expect(icmpErrorAllowed(echo, 0, 84)).toBe(true);
  });

  test("no error about a non-first fragment; a first fragment (MF, offset 0) is fine", () => {
    const frag = big.slice();
    frag[6] = 0x20; // MF
    frag[7] = 0;
    writeIPv4HeaderChecksum(frag, 0);
    expect(icmpErrorAllowed(frag, 0, frag.length)).toBe(true);
    frag[7] = 185; // offset 1480 bytes
    writeIPv4HeaderChecksum(frag, 0);
    expect(icmpErrorAllowed(frag, 0, frag.length)).toBe(false);
    expect(buildFragmentationNeeded(new Uint8Array(100), 0, TEP4, frag, 0, frag.length, 1460)).toBe(
      0,
    );
  });

  test("no error about multicast or limited-broadcast destinations", () => {
    for (const dst of ["224.0.0.1", "239.255.255.250", "255.255.255.255"]) {
      const p = buildPacket({ src: "203.0.113.80", dst, protocol: "udp", length: 40 });
      expect(icmpErrorAllowed(p, 0, p.length)).toBe(false);
    }
  });

  test("no error to a source that is not one host: 0.0.0.0, loopback, multicast, class E", () => {
    for (const src of ["0.0.0.0", "127.0.0.1", "224.0.0.5", "240.0.0.1", "255.255.255.255"]) {
      const p = buildPacket({ src, dst: "198.51.100.10", protocol: "udp", length: 40 });
      expect(icmpErrorAllowed(p, 0, p.length)).toBe(false);
    }
    for (const src of ["0.0.0.1", "10.1.2.3", "223.255.255.254"]) {
      const p = buildPacket({ src, dst: "198.51.100.10", protocol: "udp", length: 40 });
      expect(icmpErrorAllowed(p, 0, p.length)).toBe(true);
    }
  });

  test("buildIcmpError() carries any rest word, e.g. a parameter-problem pointer", () => {
    const out = new Uint8Array(ICMP_ERROR_MAX_LENGTH);
    const n = buildIcmpError(out, 0, 12, 0, 0x08000000, TEP4, big, 0, big.length);
    expect(n).toBe(56);
    expect(out[24]).toBe(8);
    expect(icmpChecksumValid(out, 0, n)).toBe(true);
  });
});

describe("ICMPv4 echo", () => {
  test("buildEcho() then echoRequestToReply(): addresses swapped, type 0, checksums valid", () => {
    const buf = new Uint8Array(100);
    const src = ip("198.51.100.10");
    const dst = ip("203.0.113.80");
    const n = buildEcho(buf, 4, IcmpType.ECHO_REQUEST, src, dst, 0x1234, 9, 56);
    expect(n).toBe(84);
    expect(validateIPv4(buf, 4, n)).toBe(IPv4Problem.NONE);
    expect(icmpChecksumValid(buf, 4, n)).toBe(true);
    expect(icmpEchoId(buf, 4)).toBe(0x1234);
    expect(icmpEchoSequence(buf, 4)).toBe(9);
    expect(echoRequestToReply(buf, 4, n)).toBe(true);
    expect(icmpType(buf, 4)).toBe(IcmpType.ECHO_REPLY);
    expect(ipv4Source(buf, 4)).toBe(dst);
    expect(ipv4Destination(buf, 4)).toBe(src);
    expect(validateIPv4(buf, 4, n)).toBe(IPv4Problem.NONE);
    expect(icmpChecksumValid(buf, 4, n)).toBe(true);
    expect(icmpEchoId(buf, 4)).toBe(0x1234);
    expect(echoRequestToReply(buf, 4, n)).toBe(false); // a reply is not a request
  });
});

describe("L4 ports", () => {
  const A = "198.51.100.10";
  const W = "203.0.113.80";

  test("TCP and UDP: source and destination ports", () => {
    for (const protocol of ["tcp", "udp"] as const) {
      const p = buildPacket({
        src: A,
        dst: W,
        protocol,
        length: 100,
        srcPort: 40000,
        dstPort: 443,
      });
      expect(l4SourcePort(p, 0, p.length)).toBe(40000);
      expect(l4DestinationPort(p, 0, p.length)).toBe(443);
    }
  });

  test("ICMP echo: the identifier on both sides", () => {
    const p = buildPacket({ src: A, dst: W, protocol: "icmp-echo", length: 84, id: 1300 });
    expect(l4SourcePort(p, 0, p.length)).toBe(1300);
    expect(l4DestinationPort(p, 0, p.length)).toBe(1300);
  });

  test("ICMP error: the quoted packet's port on the host's side", () => {
    // The host sent UDP 40000 → 53; a router answers with time exceeded.
    const sent = buildPacket({
      src: A,
      dst: W,
      protocol: "udp",
      length: 60,
      srcPort: 40000,
      dstPort: 53,
    });
    const err = new Uint8Array(ICMP_ERROR_MAX_LENGTH);
    const n = buildIcmpError(
      err,
      0,
      IcmpType.TIME_EXCEEDED,
      0,
      0,
      ip("203.0.113.1"),
      sent,
      0,
      sent.length,
    );
    expect(l4DestinationPort(err, 0, n)).toBe(40000);
    // The host answers a packet it received (53 → 40000) with port unreachable.
    const got = buildPacket({
      src: W,
      dst: A,
      protocol: "udp",
      length: 60,
      srcPort: 53,
      dstPort: 40000,
    });
    const n2 = buildIcmpError(err, 0, 3, 3, 0, ip(A), got, 0, got.length);
    expect(l4SourcePort(err, 0, n2)).toBe(40000);
    // A quoted echo request: its identifier.
    const ping = buildPacket({ src: A, dst: W, protocol: "icmp-echo", length: 84, id: 2330 });
    const n3 = buildIcmpError(
      err,
      0,
      IcmpType.TIME_EXCEEDED,
      0,
      0,
      ip("203.0.113.1"),
      ping,
      0,
      ping.length,
    );
    expect(l4DestinationPort(err, 0, n3)).toBe(2330);
  });

  test("−1 for non-first fragments, truncated transport headers, port-less protocols", () => {
    const p = buildPacket({ src: A, dst: W, protocol: "udp", length: 100, srcPort: 1, dstPort: 2 });
    p[7] = 10;
    expect(l4SourcePort(p, 0, p.length)).toBe(-1);
    const q = buildPacket({ src: A, dst: W, protocol: "udp", length: 100, srcPort: 1, dstPort: 2 });
    expect(l4SourcePort(q, 0, 22)).toBe(-1);
    q[9] = 47; // GRE
    expect(l4DestinationPort(q, 0, q.length)).toBe(-1);
    const r = buildPacket({ src: A, dst: W, protocol: "icmp-echo", length: 84, id: 5 });
    r[20] = 13; // timestamp request: no identifier role here
    expect(l4DestinationPort(r, 0, r.length)).toBe(-1);
  });
});

describe("IPv6 and pcap (fixtures)", () => {
  test("encapsulate4in6(): next header 4, payload length, addresses, inner packet intact", () => {
    const inner = buildPacket({
      src: "198.51.100.10",
      dst: "203.0.113.80",
      protocol: "udp",
      length: 48,
    });
    const src6 = parseIPv6("2001:db8:ffff::1")!;
    const dst6 = parseIPv6("2001:db8:a::1")!;
    const pkt = encapsulate4in6(inner, src6, dst6);
    expect(pkt.length).toBe(IPV6_HEADER_LENGTH + 48);
    expect(ipv6Version(pkt, 0)).toBe(6);
    expect(ipv6PayloadLength(pkt, 0)).toBe(48);
    expect(ipv6NextHeader(pkt, 0)).toBe(NEXT_HEADER_IPV4);
    expect(ipv6HopLimit(pkt, 0)).toBe(64);
    expect([...pkt.subarray(8, 24)]).toEqual([...src6]);
    expect([...pkt.subarray(24, 40)]).toEqual([...dst6]);
    expect([...pkt.subarray(40)]).toEqual([...inner]);
  });

  test("encodePcap(): libpcap header with LINKTYPE_RAW and one record per packet", () => {
    const a = Uint8Array.from([0x45, 1, 2]);
    const b = Uint8Array.from([0x60]);
    const file = encodePcap([
      { timeMs: 1500.5, data: a },
      { timeMs: 2000, data: b },
    ]);
    const v = new DataView(file.buffer);
    expect(v.getUint32(0, true)).toBe(0xa1b2c3d4);
    expect(v.getUint16(4, true)).toBe(2);
    expect(v.getUint16(6, true)).toBe(4);
    expect(v.getUint32(20, true)).toBe(LINKTYPE_RAW);
    expect(v.getUint32(24, true)).toBe(1);
    expect(v.getUint32(28, true)).toBe(500500);
    expect(v.getUint32(32, true)).toBe(3);
    expect([...file.subarray(40, 43)]).toEqual([0x45, 1, 2]);
    expect(file.length).toBe(24 + 16 + 3 + 16 + 1);
  });
});
