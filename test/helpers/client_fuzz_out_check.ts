/**
 * The out half's checks of the client batch fuzz that do not ask lib/ (client_fuzz_out.ts):
 * what was sent into the tunnel and written back into the DTI, against the lease of the time.
 */
import type { PortSetValue } from "../../lib/net/portset.ts";
import { PLACEHOLDER_IPV4 } from "../../lib/tunnel/napt.ts";
import { type OutCase, TEPS } from "./client_fuzz_out.ts";
import { bytes4, hex, isFragment, l4Sum, laterFragment, mssOf } from "./client_fuzz_packets.ts";
import { internetChecksum } from "./packets.ts";

/** A lease as the loop had it from sent packet `from` and DTI reply `fromReply` on (ipv4 −1: none). */
export interface Era {
  ipv4: number;
  portSet: PortSetValue;
  tep: number;
  mtu: number;
  from: number;
  fromReply: number;
}

/**
 * Independent of lib/: every packet sent went to the era's TEP with a right IPv4 header, from
 * the leased address (the client's anti-spoofing: only its lease goes into the tunnel), a TCP/UDP source port
 * in the port set (RFC 7597 §5.1), with DF no larger than the tunnel MTU towards that TEP
 * (RFC 2473 §7.1), a right L4 checksum, a SYN's MSS within it when clamping; every reply into
 * the DTI is to the leased address or the placeholder, with a right header checksum.
 */
export function outOracle(
  c: OutCase,
  eras: readonly Era[],
  sent: readonly { packet: Uint8Array; dst6: Uint8Array }[],
  replies: readonly Uint8Array[],
): string[] {
  const problems: string[] = [];
  const eraAt = (i: number, reply: boolean) => {
    let e: Era | undefined;
    for (const x of eras) if ((reply ? x.fromReply : x.from) <= i) e = x;
    return e;
  };
  // Per TCP flow (its number in the window field), sequence numbers never go back.
  const lastSeq = new Map<number, number>();
  for (const [i, s] of sent.entries()) {
    const p = s.packet;
    const e = eraAt(i, false);
    const say = (what: string) => problems.push(`sent #${i} ${what}: ${hex(p).slice(0, 96)}`);
    if (!e || e.ipv4 < 0) {
      say("without a lease");
      continue;
    }
    if (hex(s.dst6) !== hex(TEPS[e.tep]!)) say("to another TEP");
    const ihl = (p[0]! & 0x0f) * 4;
    if (p[0]! >>> 4 !== 4 || ihl < 20 || ((p[2]! << 8) | p[3]!) !== p.length) {
      say("malformed");
      continue;
    }
    if (internetChecksum(p, 0, ihl) !== 0) say("with a bad header checksum");
    const src = ((p[12]! << 24) | (p[13]! << 16) | (p[14]! << 8) | p[15]!) >>> 0;
    if (src !== e.ipv4) say(`from ${bytes4(src).join(".")}, leased ${bytes4(e.ipv4).join(".")}`);
    if ((p[6]! & 0x40) !== 0 && p.length > e.mtu) say(`${p.length} bytes with DF, MTU ${e.mtu}`);
    if ((p[9] !== 6 && p[9] !== 17) || laterFragment(p)) continue;
    const port = (p[ihl]! << 8) | p[ihl + 1]!;
    const { offset, psidLength, psid } = e.portSet;
    if (psidLength > 0 && ((port >> (16 - offset - psidLength)) & ((1 << psidLength) - 1)) !== psid)
      say(`source port ${port} outside the port set`);
    if (!isFragment(p) && l4Sum(p) !== 0 && !(p[9] === 17 && p[ihl + 6] === 0 && p[ihl + 7] === 0))
      say("with a bad L4 checksum");
    if (p[9] === 6 && !isFragment(p)) {
      const flow = (p[ihl + 14]! << 8) | p[ihl + 15]!;
      const seq =
        ((p[ihl + 4]! << 24) | (p[ihl + 5]! << 16) | (p[ihl + 6]! << 8) | p[ihl + 7]!) >>> 0;
      const last = lastSeq.get(flow);
      if (last !== undefined && ((seq - last) | 0) < 0)
        say(`TCP flow ${flow}: sequence ${seq} after ${last}`);
      lastSeq.set(flow, seq);
    }
    if (c.mssClamp && p[9] === 6 && (p[ihl + 13]! & 0x02) !== 0) {
      const mss = mssOf(p);
      if (mss > e.mtu - 40) say(`SYN with MSS ${mss} above ${e.mtu - 40}`);
    }
  }
  replies.forEach((p, i) => {
    const e = eraAt(i, true);
    const dst = ((p[16]! << 24) | (p[17]! << 16) | (p[18]! << 8) | p[19]!) >>> 0;
    if (internetChecksum(p, 0, (p[0]! & 0x0f) * 4) !== 0)
      problems.push(`reply #${i} bad header checksum`);
    if (dst !== PLACEHOLDER_IPV4 && dst !== e?.ipv4)
      problems.push(`reply #${i} to ${bytes4(dst).join(".")}: ${hex(p).slice(0, 96)}`);
  });
  return problems;
}
