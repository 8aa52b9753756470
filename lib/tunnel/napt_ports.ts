/**
 * The client NAPT's port choice (./napt.ts): which external port of the lease's port set a
 * flow gets, reusing a mapping idle past its protocol's timeout (RFC 4787 REQ-5, RFC 5382
 * REQ-5, RFC 5508 REQ-1) and, when the set is full, a closed TCP connection's port for a new
 * SYN (./napt_tcp.ts). Endpoint-independent (RFC 4787 REQ-1, RFC 5382 REQ-1): one external
 * port per internal port, whatever the destination. Allocates nothing.
 *
 * @module
 */
import { readU32 } from "../net/bytes.ts";
import { Counter } from "./counters.ts";
import { type NaptTable, PORTS, PROTOCOLS } from "./napt_table.ts";
import { isTcpSyn, TcpPhase, tcpMayTakeOver, tcpOutbound, tcpPhase } from "./napt_tcp.ts";

const REUSE_CLOSED = Counter["client-napt-tcp-reuse-closed"];

/** {@link PortMapper.map}: a TCP segment of a connection whose port a SYN took over. */
export const TAKEN_OVER = -2;

/** The port choice of one translator; `configure` it for each lease. */
export class PortMapper {
  /** The lease's ports, or null for a whole address. */
  ports: Uint16Array | null = null;
  readonly #table: NaptTable;
  readonly #counters: Float64Array;
  readonly #cursor = new Int32Array(PROTOCOLS);
  readonly #inSet = new Uint8Array(PORTS);
  /** Idle timeouts (s): TCP established, TCP transitory, UDP, ICMP (read from the table). */
  readonly #idle = new Uint32Array(4);

  constructor(table: NaptTable, counters: Float64Array) {
    this.#table = table;
    this.#counters = counters;
    this.readTimeouts();
  }

  /** The lease's ports (null: a whole address); rereads the timeouts. */
  configure(ports: Uint16Array | null): void {
    this.ports = ports;
    this.#inSet.fill(0);
    if (ports) for (const p of ports) this.#inSet[p] = 1;
    this.#cursor.fill(0);
    this.readTimeouts();
  }

  /** Rereads the idle timeouts from the shared table. */
  readTimeouts(): void {
    const t = this.#table.timeouts;
    this.#idle[0] = t.tcpEstablished;
    this.#idle[1] = t.tcpTransitory;
    this.#idle[2] = t.udp;
    this.#idle[3] = t.icmp;
  }

  /**
   * The external port for `original` (creating the mapping), −1 when the set is full, or
   * {@link TAKEN_OVER} for a TCP segment other than a SYN whose connection's port went to
   * another connection.
   * TCP (`pi` 0): `flags` of the segment, whose destination is at `buf[off + 16]`, port `l4 + 2`.
   */
  map(
    pi: number,
    original: number,
    now: number,
    buf: Uint8Array,
    off: number,
    l4: number,
    flags: number,
  ): number {
    const t = this.#table;
    const base = pi * PORTS;
    const current = t.out[base + original]!;
    const syn = pi === 0 && isTcpSyn(flags);
    if (current !== 0 && t.back[base + current] === original) {
      t.used[base + current] = now;
      if (pi === 0) {
        if (syn) this.#remember(current, buf, off, l4);
        tcpOutbound(t.tcpState, current, flags, false);
      }
      return current;
    }
    // `out` still names the port a SYN took over from this internal port's closed connection
    // (below): what follows of that connection, e.g. the host's TIME-WAIT acknowledging a
    // retransmitted FIN, belongs to no mapping any more. Only a SYN (a new connection) maps it.
    if (pi === 0 && current !== 0 && !syn) return TAKEN_OVER;
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
    let takeover = false;
    if (chosen < 0 && syn) {
      chosen = this.#closedToTakeOver(buf, off, l4);
      takeover = chosen >= 0;
    }
    if (chosen < 0) return -1;
    const previous = t.back[base + chosen]!;
    // After an idle timeout the old flow may come back and get a new port (RFC 5382 §5); after
    // a takeover its `out` entry stays, stale, to recognise its late segments (above).
    if (previous !== 0 && t.out[base + previous] === chosen && !takeover)
      t.out[base + previous] = 0;
    // back first: the inbound Worker must never see out → external without external → back.
    t.back[base + chosen] = original;
    t.out[base + original] = chosen;
    t.used[base + chosen] = now;
    if (pi === 0) {
      this.#remember(chosen, buf, off, l4);
      tcpOutbound(t.tcpState, chosen, flags, true);
    }
    return chosen;
  }

  /** The TCP port of the least recently used closed mapping a SYN may take over, or −1. */
  #closedToTakeOver(buf: Uint8Array, off: number, l4: number): number {
    const t = this.#table;
    const remote = readU32(buf, off + 16);
    const remotePort = (buf[l4 + 2]! << 8) | buf[l4 + 3]!;
    const ports = this.ports!;
    let best = -1;
    let bestUsed = 0;
    for (let i = 0; i < ports.length; i++) {
      const p = ports[i]!;
      if (t.back[p] === 0) continue;
      const used = t.used[p]!;
      if (best >= 0 && used >= bestUsed) continue;
      if (
        tcpMayTakeOver(t.tcpState[p]!, t.tcpRemote[p]!, t.tcpRemotePort[p]!, remote, remotePort)
      ) {
        best = p;
        bestUsed = used;
      }
    }
    if (best >= 0) this.#counters[REUSE_CLOSED]! += 1;
    return best;
  }

  /** TCP: the remote endpoint of the SYN on external port `p`. */
  #remember(p: number, buf: Uint8Array, off: number, l4: number): void {
    this.#table.tcpRemote[p] = readU32(buf, off + 16);
    this.#table.tcpRemotePort[p] = (buf[l4 + 2]! << 8) | buf[l4 + 3]!;
  }

  #reusable(base: number, external: number, pi: number, now: number): boolean {
    const t = this.#table;
    if (t.back[base + external] === 0) return true;
    const idle = now - t.used[base + external]!;
    if (pi !== 0) return idle > this.#idle[pi + 1]!;
    const established = tcpPhase(t.tcpState[external]!) === TcpPhase.ESTABLISHED;
    return idle > this.#idle[established ? 0 : 1]!;
  }
}
