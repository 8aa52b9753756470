/**
 * The client NAPT's in-place rewrites (napt.ts): port and address fields with RFC 1624
 * incremental checksum updates, and ICMP errors whose quoted packet must be translated too
 * (RFC 5508 REQ-3/4: an ICMP error about a mapped flow is translated, header and quote).
 * Allocation-free.
 *
 * @module
 */
import { readU32, writeU32 } from "../net/bytes.ts";
import { checksumUpdate16, checksumUpdate32, internetChecksum } from "../net/checksum.ts";
import { IcmpType } from "../net/icmp4.ts";
import { IpProtocol } from "../net/ipv4.ts";
import type { NaptTable } from "./napt_table.ts";
import { PORTS } from "./napt_table.ts";

/** What the ICMP error rewrites need of a translator. */
export interface NaptView {
  readonly table: NaptTable;
  readonly ports: Uint16Array | null;
  readonly placeholder: number;
  readonly leased: number;
}

// Translation codes (napt.ts), repeated here to avoid an import cycle.
const OK = 0;
const NO_MAPPING = 2;
const NO_PORTS_IN_PACKET = 3;

/** Sets the IPv4 identification of the packet at `buf[off]`, updating the header checksum. */
export function setIdentification(buf: Uint8Array, off: number, id: number): void {
  const from = (buf[off + 4]! << 8) | buf[off + 5]!;
  if (from === id) return;
  buf[off + 4] = id >>> 8;
  buf[off + 5] = id;
  const sum = checksumUpdate16((buf[off + 10]! << 8) | buf[off + 11]!, from, id);
  buf[off + 10] = sum >>> 8;
  buf[off + 11] = sum;
}

/** 0 TCP, 1 UDP, 2 ICMP echo, −1 other. */
export function protoIndex(protocol: number): number {
  return protocol === IpProtocol.TCP
    ? 0
    : protocol === IpProtocol.UDP
      ? 1
      : protocol === IpProtocol.ICMP
        ? 2
        : -1;
}

/** Offset of the port field that names the host (source out, destination in), or −1. */
export function portField(
  buf: Uint8Array,
  l4: number,
  l4len: number,
  protocol: number,
  inbound: boolean,
): number {
  if (protocol === IpProtocol.TCP || protocol === IpProtocol.UDP) {
    if (l4len < 8) return -1;
    return inbound ? l4 + 2 : l4;
  }
  if (protocol === IpProtocol.ICMP && l4len >= 8) {
    const type = buf[l4]!;
    // The echo identifier names the flow both ways (RFC 7596 §8.1).
    if (type === IcmpType.ECHO_REQUEST || type === IcmpType.ECHO_REPLY) return l4 + 4;
  }
  return -1;
}

export function setPort(
  buf: Uint8Array,
  l4: number,
  at: number,
  protocol: number,
  from: number,
  to: number,
): void {
  buf[at] = to >>> 8;
  buf[at + 1] = to;
  const sumAt =
    protocol === IpProtocol.TCP ? l4 + 16 : protocol === IpProtocol.UDP ? l4 + 6 : l4 + 2;
  const sum = (buf[sumAt]! << 8) | buf[sumAt + 1]!;
  if (protocol === IpProtocol.UDP && sum === 0) return; // no UDP checksum: leave it absent
  const updated = checksumUpdate16(sum, from, to);
  buf[sumAt] = updated >>> 8;
  buf[sumAt + 1] = updated;
}

/** Rewrites the address at `off + field` (12 source, 16 destination) with checksum updates. */
export function setAddress(
  buf: Uint8Array,
  off: number,
  field: number,
  l4: number,
  protocol: number,
  firstFragment: boolean,
  from: number,
  to: number,
): void {
  writeU32(buf, off + field, to);
  const ipSum = checksumUpdate32((buf[off + 10]! << 8) | buf[off + 11]!, from, to);
  buf[off + 10] = ipSum >>> 8;
  buf[off + 11] = ipSum;
  if (!firstFragment) return;
  // TCP and UDP checksums cover the addresses (pseudo-header); ICMP's does not.
  const sumAt = protocol === IpProtocol.TCP ? l4 + 16 : protocol === IpProtocol.UDP ? l4 + 6 : -1;
  if (sumAt < 0) return;
  const sum = (buf[sumAt]! << 8) | buf[sumAt + 1]!;
  if (protocol === IpProtocol.UDP && sum === 0) return;
  const updated = checksumUpdate32(sum, from, to);
  buf[sumAt] = updated >>> 8;
  buf[sumAt + 1] = updated;
}

/**
 * An ICMP error from the IPv4 network about a packet the host sent: the quoted packet's
 * source is the leased address and its source port the external one; restore both.
 */
export function inboundIcmpError(t: NaptView, buf: Uint8Array, l4: number, l4len: number): void {
  const q = l4 + 8;
  if (l4len < 8 + 20) return;
  const qihl = (buf[q]! & 0x0f) << 2;
  const qproto = buf[q + 9]!;
  let changed = false;
  if (t.ports !== null && l4len >= 8 + qihl + 8) {
    const pi = protoIndex(qproto);
    const at = portField(buf, q + qihl, l4len - 8 - qihl, qproto, false);
    if (pi >= 0 && at >= 0) {
      const external = (buf[at]! << 8) | buf[at + 1]!;
      const original = t.table.back[pi * PORTS + external]!;
      if (original !== 0 && original !== external) {
        buf[at] = original >>> 8;
        buf[at + 1] = original;
        changed = true;
      }
    }
  }
  if (t.placeholder !== 0 && readU32(buf, q + 12) === t.leased) {
    writeU32(buf, q + 12, t.placeholder);
    buf[q + 10] = 0;
    buf[q + 11] = 0;
    const qsum = internetChecksum(buf, q, qihl);
    buf[q + 10] = qsum >>> 8;
    buf[q + 11] = qsum;
    changed = true;
  }
  if (changed) icmpChecksum(buf, l4, l4len);
}

/**
 * An ICMP error the host sends about a packet it received (e.g. port unreachable): the
 * quoted packet's destination is the placeholder / original port; make it leased / external.
 */
export function outboundIcmpError(
  t: NaptView,
  buf: Uint8Array,
  off: number,
  l4: number,
  len: number,
): number {
  const l4len = len - (l4 - off);
  const q = l4 + 8;
  if (l4len < 8 + 20) return NO_PORTS_IN_PACKET;
  const qihl = (buf[q]! & 0x0f) << 2;
  const qproto = buf[q + 9]!;
  const pi = protoIndex(qproto);
  const at = portField(buf, q + qihl, l4len - 8 - qihl, qproto, true);
  if (pi < 0 || at < 0) return NO_PORTS_IN_PACKET;
  const original = (buf[at]! << 8) | buf[at + 1]!;
  const external = t.table.out[pi * PORTS + original]!;
  if (external === 0) return NO_MAPPING;
  buf[at] = external >>> 8;
  buf[at + 1] = external;
  if (t.placeholder !== 0 && readU32(buf, q + 16) === t.placeholder) {
    writeU32(buf, q + 16, t.leased);
    buf[q + 10] = 0;
    buf[q + 11] = 0;
    const qsum = internetChecksum(buf, q, qihl);
    buf[q + 10] = qsum >>> 8;
    buf[q + 11] = qsum;
  }
  icmpChecksum(buf, l4, l4len);
  return OK;
}

export function icmpChecksum(buf: Uint8Array, l4: number, l4len: number): void {
  buf[l4 + 2] = 0;
  buf[l4 + 3] = 0;
  const sum = internetChecksum(buf, l4, l4len);
  buf[l4 + 2] = sum >>> 8;
  buf[l4 + 3] = sum;
}
