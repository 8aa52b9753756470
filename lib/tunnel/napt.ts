/**
 * The DSTM client's translations, applied in the DTI's forwarding Workers:
 *
 * - **Port sets** (a shared lease, RFC 7597 §5.1): the host's applications pick their ports
 *   from the whole range, so each flow's source port (ICMP echo identifier) is mapped into
 *   the lease's port set on the way out and back on the way in (NAPT, RFC 3022 style, with
 *   RFC 1624 incremental checksum updates). The TEP would drop anything outside the set.
 * - **On-demand** (`--on-demand`): the DTI carries the placeholder 192.0.0.2 (RFC 6333's B4
 *   address) from before any lease until after the last; sources 192.0.0.2 become the leased
 *   address on the way out and destinations the reverse on the way in. Applications keep
 *   their sockets across leases, and a new lease may even be a different address.
 *
 * The mapping table lives in a SharedArrayBuffer: the outbound Worker is its only writer
 * (it creates mappings), the inbound Worker reads it. Per protocol (TCP, UDP, ICMP echo):
 * `out[original] = external`, `back[external] = original`, `used[external]` = last use (s).
 * A mapping idle longer than its protocol's timeout may be reused for a new flow.
 *
 * @module
 */

import { readU32, writeU32 } from "../net/bytes.ts";
import { checksumUpdate16, checksumUpdate32, internetChecksum } from "../net/checksum.ts";
import { IcmpType, isIcmpErrorType } from "../net/icmp4.ts";
import { IpProtocol } from "../net/ipv4.ts";
import { type PortSetValue, portSetRanges } from "../net/portset.ts";

/** RFC 6333 §5.7: the B4 element's IPv4 address, 192.0.0.2. */
export const PLACEHOLDER_IPV4 = 0xc0000002;

const PROTOCOLS = 3; // TCP, UDP, ICMP echo
const PORTS = 65536;
/** Idle time (s) after which a mapping may be reused: TCP RFC 5382 (2 h 4 min), UDP RFC 4787 (2 min), ICMP RFC 5508 (60 s). */
const IDLE_SECONDS = [7440, 120, 60];

function protoIndex(protocol: number): number {
  return protocol === IpProtocol.TCP
    ? 0
    : protocol === IpProtocol.UDP
      ? 1
      : protocol === IpProtocol.ICMP
        ? 2
        : -1;
}

/** The shared mapping table. Create on the main thread, attach in each Worker. */
export class NaptTable {
  readonly buffer: SharedArrayBuffer;
  readonly out: Uint16Array;
  readonly back: Uint16Array;
  readonly used: Uint32Array;

  private constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer;
    this.out = new Uint16Array(buffer, 0, PROTOCOLS * PORTS);
    this.back = new Uint16Array(buffer, PROTOCOLS * PORTS * 2, PROTOCOLS * PORTS);
    this.used = new Uint32Array(buffer, PROTOCOLS * PORTS * 4, PROTOCOLS * PORTS);
  }

  static create(): NaptTable {
    return new NaptTable(new SharedArrayBuffer(PROTOCOLS * PORTS * 8));
  }

  static attach(buffer: SharedArrayBuffer): NaptTable {
    return new NaptTable(buffer);
  }

  /** Forgets every mapping (a new lease has a new port set). */
  clear(): void {
    this.out.fill(0);
    this.back.fill(0);
    this.used.fill(0);
  }

  /** Mappings in use (for status and tests). */
  count(): number {
    let n = 0;
    for (let i = 0; i < this.back.length; i++) if (this.back[i] !== 0) n++;
    return n;
  }
}

/** What a translation step decided. */
export const Translation = {
  OK: 0,
  /** Outbound: every port of the set is in use by a live flow. */
  NO_PORT: 1,
  /** Inbound: no mapping for the destination port. */
  NO_MAPPING: 2,
  /** Shared lease and a packet without ports (a protocol other than TCP/UDP/ICMP echo). */
  NO_PORTS_IN_PACKET: 3,
} as const;
export type Translation = (typeof Translation)[keyof typeof Translation];

/**
 * One direction's translator; configure it for each lease. All methods work in place on
 * `buf[off ..]`, a validated IPv4 packet of `len` bytes, and allocate nothing.
 */
export class ClientTranslator {
  readonly table: NaptTable;
  leased = 0;
  /** 0: addresses are not translated (no on-demand). */
  placeholder = 0;
  /** The lease's ports, or null for a whole address (ports are not translated). */
  ports: Uint16Array | null = null;
  readonly #cursor = new Int32Array(PROTOCOLS);
  readonly #inSet = new Uint8Array(PORTS);

  constructor(table: NaptTable) {
    this.table = table;
  }

  /** Sets the lease; `placeholder` 0 disables address translation. */
  configure(leased: number, placeholder: number, portSet: PortSetValue | undefined): void {
    this.leased = leased >>> 0;
    this.placeholder = placeholder >>> 0;
    this.#inSet.fill(0);
    if (!portSet || portSet.psidLength === 0) {
      this.ports = null;
      return;
    }
    const list: number[] = [];
    for (const [first, last] of portSetRanges(portSet))
      for (let p = first; p <= last; p++) if (p !== 0) list.push(p);
    this.ports = Uint16Array.from(list);
    for (const p of list) this.#inSet[p] = 1;
    this.#cursor.fill(0);
  }

  /** Host → TEP: placeholder source → leased, source port → a port of the set. */
  outbound(buf: Uint8Array, off: number, len: number, nowSeconds: number): Translation {
    const ihl = (buf[off]! & 0x0f) << 2;
    const protocol = buf[off + 9]!;
    const l4 = off + ihl;
    const firstFragment = (((buf[off + 6]! & 0x1f) << 8) | buf[off + 7]!) === 0;
    if (this.ports !== null) {
      if (!firstFragment) return Translation.NO_PORTS_IN_PACKET;
      const pi = protoIndex(protocol);
      const at = this.#portField(buf, l4, len - ihl, protocol, false);
      if (pi < 0 || at < 0) {
        if (protocol === IpProtocol.ICMP && isIcmpErrorType(buf[l4]!))
          return this.#outboundIcmpError(buf, off, l4, len);
        return Translation.NO_PORTS_IN_PACKET;
      }
      const original = (buf[at]! << 8) | buf[at + 1]!;
      const external = this.#map(pi, original, nowSeconds);
      if (external < 0) return Translation.NO_PORT;
      if (external !== original) this.#setPort(buf, l4, at, protocol, original, external);
    }
    if (this.placeholder !== 0 && readU32(buf, off + 12) === this.placeholder) {
      this.#setAddress(buf, off, 12, l4, protocol, firstFragment, this.placeholder, this.leased);
    }
    return Translation.OK;
  }

  /** TEP → host: destination port → the flow's original port, leased → placeholder. */
  inbound(buf: Uint8Array, off: number, len: number, nowSeconds: number): Translation {
    const ihl = (buf[off]! & 0x0f) << 2;
    const protocol = buf[off + 9]!;
    const l4 = off + ihl;
    const firstFragment = (((buf[off + 6]! & 0x1f) << 8) | buf[off + 7]!) === 0;
    if (
      protocol === IpProtocol.ICMP &&
      firstFragment &&
      len - ihl >= 8 &&
      isIcmpErrorType(buf[l4]!)
    ) {
      this.#inboundIcmpError(buf, l4, len - ihl);
    } else if (this.ports !== null) {
      if (!firstFragment) return Translation.NO_PORTS_IN_PACKET;
      const pi = protoIndex(protocol);
      const at = this.#portField(buf, l4, len - ihl, protocol, true);
      if (pi < 0 || at < 0) return Translation.NO_PORTS_IN_PACKET;
      const external = (buf[at]! << 8) | buf[at + 1]!;
      const original = this.table.back[pi * PORTS + external]!;
      if (original === 0) return Translation.NO_MAPPING;
      this.table.used[pi * PORTS + external] = nowSeconds;
      if (original !== external) this.#setPort(buf, l4, at, protocol, external, original);
    }
    if (this.placeholder !== 0 && readU32(buf, off + 16) === this.leased) {
      this.#setAddress(buf, off, 16, l4, protocol, firstFragment, this.leased, this.placeholder);
    }
    return Translation.OK;
  }

  /** The external port for `original` (creating the mapping), or −1 when the set is full. */
  #map(pi: number, original: number, now: number): number {
    const t = this.table;
    const base = pi * PORTS;
    const current = t.out[base + original]!;
    if (current !== 0 && t.back[base + current] === original) {
      t.used[base + current] = now;
      return current;
    }
    // Keep the application's own port when it is in the set and free.
    let chosen = -1;
    if (this.#inSet[original] && this.#reusable(base, original, pi, now)) chosen = original;
    const ports = this.ports!;
    for (let tries = 0; chosen < 0 && tries < ports.length; tries++) {
      const cursor = this.#cursor[pi]!;
      const candidate = ports[cursor]!;
      this.#cursor[pi] = cursor + 1 === ports.length ? 0 : cursor + 1;
      if (this.#reusable(base, candidate, pi, now)) chosen = candidate;
    }
    if (chosen < 0) return -1;
    const previous = t.back[base + chosen]!;
    if (previous !== 0 && t.out[base + previous] === chosen) t.out[base + previous] = 0;
    // back first: the inbound Worker must never see out → external without external → back.
    t.back[base + chosen] = original;
    t.out[base + original] = chosen;
    t.used[base + chosen] = now;
    return chosen;
  }

  #reusable(base: number, external: number, pi: number, now: number): boolean {
    return (
      this.table.back[base + external] === 0 ||
      now - this.table.used[base + external]! > IDLE_SECONDS[pi]!
    );
  }

  /** Offset of the port field that names the host (source out, destination in), or −1. */
  #portField(
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

  #setPort(
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
  #setAddress(
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
  #inboundIcmpError(buf: Uint8Array, l4: number, l4len: number): void {
    const q = l4 + 8;
    if (l4len < 8 + 20) return;
    const qihl = (buf[q]! & 0x0f) << 2;
    const qproto = buf[q + 9]!;
    let changed = false;
    if (this.ports !== null && l4len >= 8 + qihl + 8) {
      const pi = protoIndex(qproto);
      const at = this.#portField(buf, q + qihl, l4len - 8 - qihl, qproto, false);
      if (pi >= 0 && at >= 0) {
        const external = (buf[at]! << 8) | buf[at + 1]!;
        const original = this.table.back[pi * PORTS + external]!;
        if (original !== 0 && original !== external) {
          buf[at] = original >>> 8;
          buf[at + 1] = original;
          changed = true;
        }
      }
    }
    if (this.placeholder !== 0 && readU32(buf, q + 12) === this.leased) {
      writeU32(buf, q + 12, this.placeholder);
      buf[q + 10] = 0;
      buf[q + 11] = 0;
      const qsum = internetChecksum(buf, q, qihl);
      buf[q + 10] = qsum >>> 8;
      buf[q + 11] = qsum;
      changed = true;
    }
    if (changed) this.#icmpChecksum(buf, l4, l4len);
  }

  /**
   * An ICMP error the host sends about a packet it received (e.g. port unreachable): the
   * quoted packet's destination is the placeholder / original port; make it leased / external.
   */
  #outboundIcmpError(buf: Uint8Array, off: number, l4: number, len: number): Translation {
    const l4len = len - (l4 - off);
    const q = l4 + 8;
    if (l4len < 8 + 20) return Translation.NO_PORTS_IN_PACKET;
    const qihl = (buf[q]! & 0x0f) << 2;
    const qproto = buf[q + 9]!;
    const pi = protoIndex(qproto);
    const at = this.#portField(buf, q + qihl, l4len - 8 - qihl, qproto, true);
    if (pi < 0 || at < 0) return Translation.NO_PORTS_IN_PACKET;
    const original = (buf[at]! << 8) | buf[at + 1]!;
    const external = this.table.out[pi * PORTS + original]!;
    if (external === 0) return Translation.NO_MAPPING;
    buf[at] = external >>> 8;
    buf[at + 1] = external;
    if (this.placeholder !== 0 && readU32(buf, q + 16) === this.placeholder) {
      writeU32(buf, q + 16, this.leased);
      buf[q + 10] = 0;
      buf[q + 11] = 0;
      const qsum = internetChecksum(buf, q, qihl);
      buf[q + 10] = qsum >>> 8;
      buf[q + 11] = qsum;
    }
    this.#icmpChecksum(buf, l4, l4len);
    return Translation.OK;
  }

  #icmpChecksum(buf: Uint8Array, l4: number, l4len: number): void {
    buf[l4 + 2] = 0;
    buf[l4 + 3] = 0;
    const sum = internetChecksum(buf, l4, l4len);
    buf[l4 + 2] = sum >>> 8;
    buf[l4 + 3] = sum;
  }
}
