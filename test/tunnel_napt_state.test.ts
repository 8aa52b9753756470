/**
 * The client NAPT's state (RFC 5382 / 4787 / 5508 / 7857): TCP phases and their timeouts,
 * reuse of closed connections' ports, answers when no port is free, fragments of shared
 * flows. Time is the `nowSeconds` argument: no sleeping.
 */
import { describe, expect, test } from "bun:test";
import { checksumSum, internetChecksum } from "../lib/net/checksum.ts";
import { buildEcho, IcmpType } from "../lib/net/icmp4.ts";
import {
  IpProtocol,
  ipv4Destination,
  ipv4HeaderChecksumValid,
  ipv4Source,
} from "../lib/net/ipv4.ts";
import { portInSet } from "../lib/net/portset.ts";
import { COUNTER_NAMES, Counter } from "../lib/tunnel/counters.ts";
import { ClientTranslator, NaptTable, Translation } from "../lib/tunnel/napt.ts";
import { fragmentedUdp, portAt } from "./helpers/fragments.ts";
import { l4Packet } from "./helpers/napt_packets.ts";

const LEASED = 0xc6336407; // 198.51.100.7
const WEB = 0xc0000250; // 192.0.2.80
const OTHER = 0xc0000251; // 192.0.2.81
/** a = 6, k = 10, PSID 3: m = 0, 63 ports (1027, 2051, …). */
const TINY = { offset: 6, psidLength: 10, psid: 3 };
const SYN = 0x02;
const SYN_ACK = 0x12;
const ACK = 0x10;
const FIN_ACK = 0x11;
const RST = 0x04;

/** A TCP segment without payload, `flags` and sequence number `seq`, valid checksums. */
function tcp(src: number, dst: number, sport: number, dport: number, flags: number, seq = 1000) {
  return l4Packet(IpProtocol.TCP, src, dst, sport, dport, 0, flags, seq);
}

function udp(src: number, dst: number, sport: number, dport: number) {
  return fragmentedUdp({ src, dst, sport, dport, payload: 12, id: 9, mtu: 1500 })[0]!;
}

function napt(timeouts = {}, replyRate = 100) {
  const counters = new Float64Array(COUNTER_NAMES.length);
  const table = NaptTable.create(timeouts);
  const out = new ClientTranslator(table, { counters, replyRate });
  const back = new ClientTranslator(table, { counters });
  out.configure(LEASED, 0, TINY);
  back.configure(LEASED, 0, TINY);
  const count = (name: (typeof COUNTER_NAMES)[number]) => counters[Counter[name]]!;
  /** One TCP connection from host port `sport`; returns its external port. */
  const open = (sport: number, now: number, remote = WEB, rport = 80) => {
    const syn = tcp(LEASED, remote, sport, rport, SYN);
    const r = out.outbound(syn, 0, 40, now);
    if (r !== Translation.OK) return -1;
    const external = portAt(syn, 20);
    const synAck = tcp(remote, LEASED, rport, external, SYN_ACK);
    expect(back.inbound(synAck, 0, 40, now)).toBe(Translation.OK);
    return external;
  };
  const closeFrom = (
    who: "host" | "far",
    sport: number,
    external: number,
    now: number,
    remote = WEB,
    rport = 80,
  ) => {
    const hostFin = tcp(LEASED, remote, sport, rport, FIN_ACK);
    const farFin = tcp(remote, LEASED, rport, external, FIN_ACK);
    if (who === "host") {
      expect(out.outbound(hostFin, 0, 40, now)).toBe(Translation.OK);
      expect(back.inbound(farFin, 0, 40, now)).toBe(Translation.OK);
    } else {
      expect(back.inbound(farFin, 0, 40, now)).toBe(Translation.OK);
      expect(out.outbound(hostFin, 0, 40, now)).toBe(Translation.OK);
    }
    const lastAck = tcp(LEASED, remote, sport, rport, ACK);
    expect(out.outbound(lastAck, 0, 40, now)).toBe(Translation.OK);
  };
  /** 63 connections from host ports 41000…, closed by the host at 1000 + i; their external ports. */
  const fillClosedByHost = () => {
    const externals: number[] = [];
    for (let i = 0; i < 63; i++) {
      const e = open(41000 + i, 1000 + i);
      externals.push(e);
      closeFrom("host", 41000 + i, e, 1000 + i);
    }
    return externals;
  };
  return { table, out, back, count, open, closeFrom, fillClosedByHost };
}

describe("NAPT TCP state (RFC 5382 §5, RFC 7857 §2.2)", () => {
  test("phases: half-open, established, closing, closed, as the census reports them", () => {
    const n = napt();
    const syn = tcp(LEASED, WEB, 40000, 80, SYN);
    n.out.outbound(syn, 0, 40, 100);
    expect(n.table.census(100)).toMatchObject({ tcpHalfOpen: 1, tcpEstablished: 0 });
    const e = n.open(40001, 100);
    expect(n.table.census(100)).toMatchObject({ tcpHalfOpen: 1, tcpEstablished: 1 });
    n.out.outbound(tcp(LEASED, WEB, 40001, 80, FIN_ACK), 0, 40, 101);
    expect(n.table.census(101)).toMatchObject({ tcpEstablished: 0, tcpClosing: 1 });
    n.back.inbound(tcp(WEB, LEASED, 80, e, FIN_ACK), 0, 40, 101);
    expect(n.table.census(101)).toMatchObject({ tcpClosing: 0, tcpClosed: 1 });
    // A RST either way closes too.
    const r = n.open(40002, 102);
    n.back.inbound(tcp(WEB, LEASED, 80, r, RST), 0, 40, 102);
    expect(n.table.census(102)).toMatchObject({ tcpClosed: 2 });
  });

  test("timeouts: established kept 7,440 s, half-open and closed only the transitory 240 s", () => {
    const n = napt();
    for (let i = 0; i < 62; i++) expect(n.open(41000 + i, 1000)).toBeGreaterThan(0);
    // The 63rd port: a half-open connection (SYN, no answer).
    expect(n.out.outbound(tcp(LEASED, WEB, 42000, 80, SYN), 0, 40, 1000)).toBe(Translation.OK);
    const probe = (now: number) => n.out.outbound(tcp(LEASED, WEB, 43000, 80, ACK), 0, 40, now);
    expect(probe(1000 + 240)).toBe(Translation.NO_PORT); // not past 240 s yet
    expect(probe(1000 + 241)).toBe(Translation.OK); // the half-open mapping is reused
    expect(n.out.outbound(tcp(LEASED, WEB, 43001, 80, ACK), 0, 40, 1000 + 7440)).toBe(
      Translation.NO_PORT,
    );
    expect(n.out.outbound(tcp(LEASED, WEB, 43001, 80, ACK), 0, 40, 1000 + 7441)).toBe(
      Translation.OK,
    );
  });

  test("timeouts are configurable: --napt-tcp-transitory 30s", () => {
    const n = napt({ tcpTransitory: 30 });
    for (let i = 0; i < 63; i++) n.out.outbound(tcp(LEASED, WEB, 41000 + i, 80, SYN), 0, 40, 0);
    expect(n.out.outbound(tcp(LEASED, WEB, 50000, 80, ACK), 0, 40, 30)).toBe(Translation.NO_PORT);
    expect(n.out.outbound(tcp(LEASED, WEB, 50000, 80, ACK), 0, 40, 31)).toBe(Translation.OK);
    expect(n.table.timeouts.tcpTransitory).toBe(30);
  });

  test("a full set of connections the host closed first: new SYNs reuse their ports, least recently used first", () => {
    const n = napt();
    const externals = n.fillClosedByHost();
    expect(new Set(externals).size).toBe(63);
    // 1,000 more short connections to the same server, long before 240 s have passed.
    for (let i = 0; i < 1000; i++) {
      const sport = 44000 + (i % 20000);
      const e = n.open(sport, 1100);
      expect(e).toBeGreaterThan(0);
      expect(portInSet(e, TINY)).toBe(true);
      if (i === 0) expect(e).toBe(externals[0]!); // the least recently used
      n.closeFrom("host", sport, e, 1100);
    }
    expect(n.count("client-napt-tcp-reuse-closed")).toBe(1000);
    expect(n.count("client-napt-drop-no-port")).toBe(0);
  });

  test("lab_napt flake: the host's TIME-WAIT re-ACK from a port a new SYN just took over is a closed-connection drop, not a no-port drop", () => {
    // The race of test/lab_napt.test.ts: the far end retransmits its FIN (the host's last ACK
    // came late); the inbound Worker hands it to the old internal port while the outbound
    // Worker, whose scan saw that mapping as the least recently used closed one, gives its port
    // to a new SYN; the host's TIME-WAIT answers the FIN with an ACK from the old port, which
    // the outbound Worker reads after the SYN. That ACK has no mapping and, with every port of
    // the set held, no port: it was counted as `client-napt-drop-no-port`.
    const n = napt();
    const externals = n.fillClosedByHost();
    // The far end's retransmitted FIN, translated to the old internal port 41000.
    const farFin = tcp(WEB, LEASED, 80, externals[0]!, FIN_ACK);
    expect(n.back.inbound(farFin, 0, 40, 1000)).toBe(Translation.OK);
    expect(portAt(farFin, 22)).toBe(41000);
    // The new SYN takes over the oldest closed port (the scan ran before that FIN's stamp).
    n.table.used[externals[0]!] = 1000;
    expect(n.open(45000, 1100)).toBe(externals[0]!);
    expect(n.count("client-napt-tcp-reuse-closed")).toBe(1);
    // The TIME-WAIT ACK from 41000 comes after the SYN.
    const reAck = tcp(LEASED, WEB, 41000, 80, ACK);
    expect(n.out.outbound(reAck, 0, 40, 1100)).toBe(Translation.CLOSED);
    expect(n.out.replyLength).toBe(0);
    expect(n.count("client-napt-drop-no-port")).toBe(0);
    // The new connection keeps its port; 41000 gets no other port for its old connection.
    expect(n.table.back[externals[0]!]).toBe(45000);
    expect(n.table.count()).toBe(63);
    // A new connection from 41000 is a SYN: it maps again (taking over another closed port).
    expect(n.open(41000, 1100)).toBeGreaterThan(0);
    expect(n.count("client-napt-tcp-reuse-closed")).toBe(2);
  });

  test("after a port set's idle timeout an old TCP flow still gets a new port for a late segment (RFC 5382 §5)", () => {
    const n = napt();
    const e = n.open(41000, 1000);
    n.closeFrom("host", 41000, e, 1000);
    // Past the transitory timeout the port is free for anyone (the cursor's idle reuse).
    for (let i = 0; i < 63; i++) expect(n.open(46000 + i, 1000 + 241)).toBeGreaterThan(0);
    expect(n.count("client-napt-tcp-reuse-closed")).toBe(0);
    const late = tcp(LEASED, WEB, 41000, 80, ACK);
    expect(n.out.outbound(late, 0, 40, 1000 + 241)).toBe(Translation.NO_PORT);
  });

  test("a closed connection the far end closed first (its TIME-WAIT) keeps its port from the same remote endpoint, not from another", () => {
    const n = napt();
    for (let i = 0; i < 63; i++) {
      const e = n.open(41000 + i, 1000);
      n.closeFrom("far", 41000 + i, e, 1000);
    }
    const same = tcp(LEASED, WEB, 45000, 80, SYN);
    expect(n.out.outbound(same, 0, 40, 1010)).toBe(Translation.NO_PORT);
    expect(n.out.replyLength).toBe(40); // a RST for the application
    const other = tcp(LEASED, OTHER, 45000, 80, SYN);
    expect(n.out.outbound(other, 0, 40, 1010)).toBe(Translation.OK);
    const otherPort = tcp(LEASED, WEB, 45001, 8080, SYN);
    expect(n.out.outbound(otherPort, 0, 40, 1010)).toBe(Translation.OK);
    // After the transitory timeout the same remote endpoint may have them again.
    expect(n.out.outbound(tcp(LEASED, WEB, 45002, 80, SYN), 0, 40, 1241)).toBe(Translation.OK);
  });

  test("a reset connection's port is reused at once; a non-SYN never takes over a closed port", () => {
    const n = napt();
    for (let i = 0; i < 63; i++) {
      const e = n.open(41000 + i, 1000);
      n.back.inbound(tcp(WEB, LEASED, 80, e, RST), 0, 40, 1000);
    }
    expect(n.out.outbound(tcp(LEASED, WEB, 46000, 80, ACK), 0, 40, 1001)).toBe(Translation.NO_PORT);
    expect(n.out.replyLength).toBe(0); // only a SYN is answered
    expect(n.out.outbound(tcp(LEASED, WEB, 46000, 80, SYN), 0, 40, 1001)).toBe(Translation.OK);
  });
});

describe("NAPT: no port free (answer instead of silence)", () => {
  test("a SYN gets a RST from the remote endpoint, with the right ports, ACK and checksums", () => {
    const n = napt();
    for (let i = 0; i < 63; i++) n.open(41000 + i, 0);
    const syn = tcp(LEASED, WEB, 47000, 443, SYN, 0xfffffffe);
    expect(n.out.outbound(syn, 0, 40, 1)).toBe(Translation.NO_PORT);
    const r = n.out.reply.subarray(0, n.out.replyLength);
    expect(r.length).toBe(40);
    expect(ipv4Source(r, 0)).toBe(WEB);
    expect(ipv4Destination(r, 0)).toBe(LEASED);
    expect(ipv4HeaderChecksumValid(r, 0)).toBe(true);
    expect(portAt(r, 20)).toBe(443);
    expect(portAt(r, 22)).toBe(47000);
    expect(r[33]).toBe(0x14); // RST + ACK
    expect(new DataView(r.buffer, r.byteOffset).getUint32(28)).toBe(0xffffffff); // SEQ + 1
    const pseudo = new Uint8Array(12);
    pseudo.set(r.subarray(12, 20));
    pseudo[9] = IpProtocol.TCP;
    pseudo[11] = 20;
    expect(~checksumSum(r, 20, 20, checksumSum(pseudo, 0, 12)) & 0xffff).toBe(0);
    expect(n.count("client-napt-no-port-rst")).toBe(1);
  });

  test("UDP and ICMP echo get ICMPv4 3/13 quoting the packet; answers are rate limited and counted", () => {
    const n = napt({}, 2); // 2 answers a second (burst 20)
    for (let i = 0; i < 63; i++) n.out.outbound(udp(LEASED, WEB, 41000 + i, 53), 0, 40, 0);
    const d = udp(LEASED, WEB, 48000, 53);
    expect(n.out.outbound(d, 0, d.length, 1)).toBe(Translation.NO_PORT);
    const r = n.out.reply.subarray(0, n.out.replyLength);
    expect([r[20], r[21]]).toEqual([3, 13]);
    expect(ipv4Source(r, 0)).toBe(WEB);
    expect(ipv4Destination(r, 0)).toBe(LEASED);
    expect(portAt(r, 48)).toBe(48000); // the quoted UDP source port: the host's own
    expect(internetChecksum(r, 20, r.length - 20)).toBe(0);
    for (let i = 0; i < 63; i++) {
      const e = new Uint8Array(64);
      buildEcho(e, 0, IcmpType.ECHO_REQUEST, LEASED, WEB, 100 + i, 1, 8);
      n.out.outbound(e, 0, 36, 0);
    }
    const echo = new Uint8Array(64);
    buildEcho(echo, 0, IcmpType.ECHO_REQUEST, LEASED, WEB, 999, 1, 8);
    expect(n.out.outbound(echo, 0, 36, 1)).toBe(Translation.NO_PORT);
    expect(n.out.reply[20]).toBe(3);
    expect(n.count("client-napt-no-port-icmp")).toBe(2);
    for (let i = 0; i < 30; i++) n.out.outbound(udp(LEASED, WEB, 49000 + i, 53), 0, 40, 1);
    expect(n.count("client-napt-no-port-icmp")).toBe(20); // the burst
    expect(n.count("client-napt-no-port-rate-limited")).toBe(12);
  });
});

describe("NAPT: fragments of shared flows (RFC 7597 §8.3.3)", () => {
  const big = (src: number, dst: number, sport: number, dport: number, id: number) =>
    fragmentedUdp({ src, dst, sport, dport, payload: 2992, id, mtu: 1460 });

  test("host → TEP: the later fragments of a 3,000-byte datagram pass once the first was mapped", () => {
    const n = napt();
    const [first, second, third] = big(LEASED, WEB, 40000, 7, 77);
    expect(n.out.outbound(first!, 0, first!.length, 1)).toBe(Translation.OK);
    expect(portInSet(portAt(first!, 20), TINY)).toBe(true);
    expect(n.out.outbound(second!, 0, second!.length, 1)).toBe(Translation.OK);
    expect(n.out.outbound(third!, 0, third!.length, 1)).toBe(Translation.OK);
  });

  test("host → TEP, first fragment last: the others are held and released after it", () => {
    const n = napt();
    const [first, second, third] = big(LEASED, WEB, 40000, 7, 78);
    expect(n.out.outbound(third!, 0, third!.length, 1)).toBe(Translation.HELD);
    expect(n.out.outbound(second!, 0, second!.length, 1)).toBe(Translation.HELD);
    expect(n.out.outbound(first!, 0, first!.length, 1)).toBe(Translation.OK);
    const buf = new Uint8Array(2048);
    const released: number[] = [];
    for (let m = n.out.outFragments.popReleased(buf, 0, null, 0); m > 0; ) {
      expect(n.out.outbound(buf, 0, m, 1)).toBe(Translation.OK);
      released.push(m);
      m = n.out.outFragments.popReleased(buf, 0, null, 0);
    }
    expect(released).toEqual([third!.length, second!.length]);
    expect(n.count("client-out-frag-held")).toBe(2);
  });

  test("host → TEP: a datagram that may be fragmented gets an identification from the set, the same for all its fragments", () => {
    const n = napt();
    const ids = new Set<number>();
    for (const order of [
      [0, 1, 2],
      [2, 0, 1],
    ]) {
      const frags = big(LEASED, WEB, 40000, 7, 4242); // the host's own identification: 4242
      const buf = new Uint8Array(2048);
      const seen: number[] = [];
      for (const i of order) {
        const f = frags[i]!;
        const r = n.out.outbound(f, 0, f.length, 1);
        if (r === Translation.OK) seen.push(portAt(f, 4));
        for (let m = n.out.outFragments.popReleased(buf, 0, null, 0); m > 0; ) {
          expect(n.out.outbound(buf, 0, m, 1)).toBe(Translation.OK);
          expect(ipv4HeaderChecksumValid(buf, 0)).toBe(true);
          seen.push(portAt(buf, 4));
          m = n.out.outFragments.popReleased(buf, 0, null, 0);
        }
      }
      for (const f of frags) expect(ipv4HeaderChecksumValid(f, 0)).toBe(true);
      expect(seen.length).toBe(3);
      expect(new Set(seen).size).toBe(1);
      expect(portInSet(seen[0]!, TINY)).toBe(true);
      ids.add(seen[0]!);
    }
    expect(ids.size).toBe(2); // two datagrams, two identifications
    // Unfragmented: DF clear → from the set; DF set (atomic, RFC 6864) → untouched.
    const loose = udp(LEASED, WEB, 40001, 7);
    expect(n.out.outbound(loose, 0, loose.length, 1)).toBe(Translation.OK);
    expect(portInSet(portAt(loose, 4), TINY)).toBe(true);
    expect(ipv4HeaderChecksumValid(loose, 0)).toBe(true);
    const atomic = tcp(LEASED, WEB, 40002, 80, SYN);
    expect(n.out.outbound(atomic, 0, 40, 1)).toBe(Translation.OK);
    expect(portAt(atomic, 4)).toBe(1);
  });

  test("TEP → host: a 3,000-byte reply to a mapped port passes whole; an unknown datagram's fragments time out", () => {
    const n = napt();
    const probe = udp(LEASED, WEB, 40000, 7);
    n.out.outbound(probe, 0, probe.length, 1);
    const external = portAt(probe, 20);
    const [first, second, third] = big(WEB, LEASED, 7, external, 500);
    expect(n.back.inbound(second!, 0, second!.length, 2)).toBe(Translation.HELD);
    expect(n.back.inbound(first!, 0, first!.length, 2)).toBe(Translation.OK);
    expect(portAt(first!, 22)).toBe(40000);
    const buf = new Uint8Array(2048);
    const m = n.back.inFragments.popReleased(buf, 0, null, 0);
    expect(n.back.inbound(buf, 0, m, 2)).toBe(Translation.OK);
    expect(n.back.inbound(third!, 0, third!.length, 2)).toBe(Translation.OK);
    expect(n.back.inFragments.size).toBe(0);
    // Fragments of a reply to no mapping: the first is refused, the rest with it.
    const stray = big(WEB, LEASED, 7, 2051, 501);
    expect(n.back.inbound(stray[0]!, 0, stray[0]!.length, 3)).toBe(Translation.NO_MAPPING);
    expect(n.back.inbound(stray[1]!, 0, stray[1]!.length, 3)).toBe(Translation.NO_MAPPING);
    // A later fragment whose first never comes: dropped after --fragment-timeout (15 s).
    const lost = big(WEB, LEASED, 7, external, 502);
    expect(n.back.inbound(lost[1]!, 0, lost[1]!.length, 10)).toBe(Translation.HELD);
    n.back.inFragments.expire(25_000);
    expect(n.count("client-in-frag-drop-timeout")).toBe(1);
  });
});
