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
 * of mappings, the inbound Worker reads them. Per protocol (TCP, UDP, ICMP echo):
 * `out[original] = external`, `back[external] = original`, `used[external]` = last use (s).
 * Mappings are endpoint-independent (RFC 4787 REQ-1, RFC 5382 REQ-1): one external port per
 * internal port, whatever the destination. A mapping idle longer than its protocol's timeout
 * may be reused for a new flow; TCP mappings follow the connection (napt_tcp.ts: SYN, FIN,
 * RST both ways) so that a closed connection's port is reused after the transitory timeout,
 * or sooner when the set is full and the far end cannot be confused (the choice of port is
 * napt_ports.ts). When no port is free, the host is told (napt_reply.ts: a RST, or ICMPv4
 * 3/13), rate limited.
 *
 * Fragments (RFC 7597 §8.3.3): a datagram's later fragments carry no ports; they pass when
 * their first fragment did, held until it comes if they come first (fragments.ts). Datagrams
 * the host sends that may be fragmented (DF clear) get an identification from the port set,
 * the same for all of their fragments, so hosts sharing the address never send the same one.
 *
 * The timeouts live in the table too (set by the main thread, read by the Workers at each
 * lease): TCP established 7,440 s and transitory 240 s (RFC 5382 REQ-5), UDP 300 s
 * (RFC 4787 REQ-5: at least 120 s, 300 s recommended), ICMP echo 60 s (RFC 5508 REQ-1).
 *
 * @module
 */

import { readU32 } from "../net/bytes.ts";
import { ICMP_ERROR_MAX_LENGTH, isIcmpErrorType } from "../net/icmp4.ts";
import { IpProtocol } from "../net/ipv4.ts";
import { type PortSetValue, portSetRanges } from "../net/portset.ts";
import { COUNTER_NAMES, Counter } from "./counters.ts";
import { fragmentCounterIndexes } from "./fragment_steps.ts";
import { FragmentLookup, FragmentTable, isFirstFragment, isLaterFragment } from "./fragments.ts";
import { PortMapper, TAKEN_OVER } from "./napt_ports.ts";
import { buildAdminProhibited, buildTcpResetForSyn } from "./napt_reply.ts";
import {
  inboundIcmpError,
  outboundIcmpError,
  portField,
  protoIndex,
  setAddress,
  setIdentification,
  setPort,
} from "./napt_rewrite.ts";
import { type NaptTable, PORTS } from "./napt_table.ts";
import { isTcpSyn, tcpInbound } from "./napt_tcp.ts";
import { TokenBucket } from "./ratelimit.ts";

export {
  DEFAULT_NAPT_TIMEOUTS,
  type NaptCensus,
  NaptTable,
  type NaptTimeouts,
} from "./napt_table.ts";

/** RFC 6333 §5.7: the B4 element's IPv4 address, 192.0.0.2. */
export const PLACEHOLDER_IPV4 = 0xc0000002;

/** ICMP errors / RSTs per second the NAPT may send to the host when no port is free. */
const NO_PORT_REPLY_RATE = 100;
const NO_PORT_REPLY_BURST = 20;

const NO_PORT_RST = Counter["client-napt-no-port-rst"];
const NO_PORT_ICMP = Counter["client-napt-no-port-icmp"];
const NO_PORT_RATE_LIMITED = Counter["client-napt-no-port-rate-limited"];

/** What a translation step decided. */
export const Translation = {
  OK: 0,
  /** Outbound: every port of the set is in use by a live flow. */
  NO_PORT: 1,
  /** Inbound: no mapping for the destination port. */
  NO_MAPPING: 2,
  /** Shared lease and a packet without ports (a protocol other than TCP/UDP/ICMP echo). */
  NO_PORTS_IN_PACKET: 3,
  /** A later fragment whose first fragment has not come: held (fragments.ts), nothing to send yet. */
  HELD: 4,
  /** A fragment dropped for want of room in the fragment table (counted there). */
  FRAGMENT_NO_ROOM: 5,
  /**
   * Outbound: a TCP segment other than a SYN from an internal port whose closed connection's
   * external port a new SYN took over (the host's TIME-WAIT answering a late segment): dropped,
   * never given a new port (napt_tcp.ts, port reuse).
   */
  CLOSED: 6,
} as const;
export type Translation = (typeof Translation)[keyof typeof Translation];

/** Options of `new ClientTranslator`. */
export interface TranslatorOptions {
  /** The Worker's counter slice (fragments, no-port answers); default: counted nowhere. */
  counters?: Float64Array;
  /** Answers (RST / ICMP) per second when no port is free. Default 100; 0 sends none. */
  replyRate?: number;
}

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
  /** Later fragments of datagrams from the host (outbound) and to it (inbound). */
  readonly outFragments: FragmentTable;
  readonly inFragments: FragmentTable;
  /** After NO_PORT: the answer to write back into the DTI (`replyLength` 0: none). */
  readonly reply = new Uint8Array(ICMP_ERROR_MAX_LENGTH);
  replyLength = 0;
  readonly #counters: Float64Array;
  readonly #limiter: TokenBucket;
  /** Identifications handed out round-robin over the set; `#id` holds one (16 bytes, 2 used). */
  #idCursor = 0;
  readonly #id = new Uint8Array(16);
  readonly #mapper: PortMapper;

  constructor(table: NaptTable, options: TranslatorOptions = {}) {
    this.table = table;
    this.#counters = options.counters ?? new Float64Array(COUNTER_NAMES.length);
    const rate = options.replyRate ?? NO_PORT_REPLY_RATE;
    this.#limiter = new TokenBucket(rate, rate === 0 ? 0 : NO_PORT_REPLY_BURST);
    this.#mapper = new PortMapper(table, this.#counters);
    const timeoutMs = table.timeouts.fragment * 1000;
    const counters = this.#counters;
    this.outFragments = new FragmentTable({
      timeoutMs,
      counters,
      indexes: fragmentCounterIndexes("client-out"),
    });
    this.inFragments = new FragmentTable({
      timeoutMs,
      counters,
      indexes: fragmentCounterIndexes("client-in"),
    });
    this.#readTimeouts();
  }

  /** Sets the lease; `placeholder` 0 disables address translation. Rereads the timeouts. */
  configure(leased: number, placeholder: number, portSet: PortSetValue | undefined): void {
    this.leased = leased >>> 0;
    this.placeholder = placeholder >>> 0;
    this.#readTimeouts();
    this.outFragments.clear();
    this.inFragments.clear();
    this.#idCursor = 0;
    if (!portSet || portSet.psidLength === 0) this.ports = null;
    else {
      const list: number[] = [];
      for (const [first, last] of portSetRanges(portSet))
        for (let p = first; p <= last; p++) if (p !== 0) list.push(p);
      this.ports = Uint16Array.from(list);
    }
    this.#mapper.configure(this.ports);
  }

  #readTimeouts(): void {
    const t = this.table.timeouts;
    this.outFragments.timeoutMs = t.fragment * 1000;
    this.inFragments.timeoutMs = t.fragment * 1000;
  }

  /**
   * Host → TEP: placeholder source → leased, source port → a port of the set. NO_PORT may
   * leave an answer for the host in `reply[0 .. replyLength)`.
   */
  outbound(
    buf: Uint8Array,
    off: number,
    len: number,
    nowSeconds: number,
    nowMs = nowSeconds * 1000,
  ): Translation {
    const ihl = (buf[off]! & 0x0f) << 2;
    const protocol = buf[off + 9]!;
    const l4 = off + ihl;
    const later = isLaterFragment(buf, off);
    this.replyLength = 0;
    if (this.ports !== null) {
      // RFC 7597 §8.3.3: a datagram that may be fragmented gets an identification from the
      // port set (the same for all of its fragments), so that hosts sharing the address never
      // send the same one; atomic datagrams (DF, unfragmented: RFC 6864) keep theirs.
      const id = this.#id;
      if (later) {
        // Goes (or not) with its first fragment, and takes its identification.
        const r = this.outFragments.lookup(buf, off, len, id, 0, null, 0, nowMs);
        if (r === FragmentLookup.HELD) return Translation.HELD;
        if (r === FragmentLookup.NO_ROOM) return Translation.FRAGMENT_NO_ROOM;
        if (r !== Translation.OK) return r as Translation;
        setIdentification(buf, off, (id[0]! << 8) | id[1]!);
      } else {
        const result = this.#outboundPorts(buf, off, l4, len, ihl, protocol, nowSeconds, nowMs);
        const atomic = (buf[off + 6]! & 0x60) === 0x40; // DF set, MF clear (offset is 0 here)
        let fresh = -1;
        if (!atomic) {
          const ports = this.ports;
          fresh = ports[this.#idCursor]!;
          this.#idCursor = this.#idCursor + 1 === ports.length ? 0 : this.#idCursor + 1;
          id[0] = fresh >>> 8;
          id[1] = fresh;
        }
        // Keyed by the host's own identification: resolve before rewriting it.
        if (isFirstFragment(buf, off))
          this.outFragments.resolve(buf, off, len, result, id, 0, nowMs);
        if (result !== Translation.OK) return result;
        if (fresh >= 0) setIdentification(buf, off, fresh);
      }
    }
    if (this.placeholder !== 0 && readU32(buf, off + 12) === this.placeholder) {
      setAddress(buf, off, 12, l4, protocol, !later, this.placeholder, this.leased);
    }
    return Translation.OK;
  }

  #outboundPorts(
    buf: Uint8Array,
    off: number,
    l4: number,
    len: number,
    ihl: number,
    protocol: number,
    now: number,
    nowMs: number,
  ): Translation {
    const pi = protoIndex(protocol);
    const at = portField(buf, l4, len - ihl, protocol, false);
    if (pi < 0 || at < 0) {
      if (protocol === IpProtocol.ICMP && isIcmpErrorType(buf[l4]!))
        return outboundIcmpError(this, buf, off, l4, len) as Translation;
      return Translation.NO_PORTS_IN_PACKET;
    }
    const original = (buf[at]! << 8) | buf[at + 1]!;
    const flags = pi === 0 && len - ihl >= 20 ? buf[l4 + 13]! : 0;
    const external = this.#mapper.map(pi, original, now, buf, off, l4, flags);
    if (external === TAKEN_OVER) return Translation.CLOSED;
    if (external < 0) {
      this.#answerNoPort(buf, off, len, pi, flags, nowMs);
      return Translation.NO_PORT;
    }
    if (external !== original) setPort(buf, l4, at, protocol, original, external);
    return Translation.OK;
  }

  /** No port for a new flow: a RST for a SYN, ICMPv4 3/13 for UDP / ICMP echo; rate limited. */
  #answerNoPort(
    buf: Uint8Array,
    off: number,
    len: number,
    pi: number,
    flags: number,
    nowMs: number,
  ): void {
    if (pi === 0 && !isTcpSyn(flags)) return; // only a SYN asks for a new mapping
    if (!this.#limiter.take(nowMs)) {
      this.#counters[NO_PORT_RATE_LIMITED]! += 1;
      return;
    }
    if (pi === 0) {
      this.replyLength = buildTcpResetForSyn(this.reply, 0, buf, off, len);
      if (this.replyLength > 0) this.#counters[NO_PORT_RST]! += 1;
    } else {
      this.replyLength = buildAdminProhibited(this.reply, 0, buf, off, len);
      if (this.replyLength > 0) this.#counters[NO_PORT_ICMP]! += 1;
    }
  }

  /** TEP → host: destination port → the flow's original port, leased → placeholder. */
  inbound(
    buf: Uint8Array,
    off: number,
    len: number,
    nowSeconds: number,
    nowMs = nowSeconds * 1000,
  ): Translation {
    const ihl = (buf[off]! & 0x0f) << 2;
    const protocol = buf[off + 9]!;
    const l4 = off + ihl;
    const later = isLaterFragment(buf, off);
    if (protocol === IpProtocol.ICMP && !later && len - ihl >= 8 && isIcmpErrorType(buf[l4]!)) {
      inboundIcmpError(this, buf, l4, len - ihl);
    } else if (this.ports !== null) {
      if (later) {
        const r = this.inFragments.lookup(buf, off, len, null, 0, null, 0, nowMs);
        if (r === FragmentLookup.HELD) return Translation.HELD;
        if (r === FragmentLookup.NO_ROOM) return Translation.FRAGMENT_NO_ROOM;
        if (r !== Translation.OK) return r as Translation;
      } else {
        const result = this.#inboundPorts(buf, l4, len - ihl, protocol, nowSeconds);
        if (isFirstFragment(buf, off))
          this.inFragments.resolve(buf, off, len, result, null, 0, nowMs);
        if (result !== Translation.OK) return result;
      }
    }
    if (this.placeholder !== 0 && readU32(buf, off + 16) === this.leased) {
      setAddress(buf, off, 16, l4, protocol, !later, this.leased, this.placeholder);
    }
    return Translation.OK;
  }

  #inboundPorts(
    buf: Uint8Array,
    l4: number,
    l4len: number,
    protocol: number,
    now: number,
  ): Translation {
    const pi = protoIndex(protocol);
    const at = portField(buf, l4, l4len, protocol, true);
    if (pi < 0 || at < 0) return Translation.NO_PORTS_IN_PACKET;
    const external = (buf[at]! << 8) | buf[at + 1]!;
    const original = this.table.back[pi * PORTS + external]!;
    if (original === 0) return Translation.NO_MAPPING;
    this.table.used[pi * PORTS + external] = now;
    if (pi === 0 && l4len >= 20) tcpInbound(this.table.tcpState, external, buf[l4 + 13]!);
    if (original !== external) setPort(buf, l4, at, protocol, external, original);
    return Translation.OK;
  }
}
