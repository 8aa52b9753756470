/**
 * The client NAPT's mapping table (napt.ts explains the translation): one SharedArrayBuffer
 * that the main thread creates and the two forwarding Workers attach. The outbound Worker
 * writes the mappings; both Workers write the TCP state bytes (napt_tcp.ts) with Atomics.
 *
 * Layout, per protocol index (0 TCP, 1 UDP, 2 ICMP echo) and 16-bit port:
 * `out[original] = external`, `back[external] = original` (0: free), `used[external]` = last
 * use (s since the epoch); for TCP also the state byte and the last SYN's remote endpoint per
 * external port; then the timeouts (NaptTimeouts, s), which the Workers read at each lease.
 *
 * @module
 */
import { TcpPhase, tcpPhase } from "./napt_tcp.ts";

export const PROTOCOLS = 3; // TCP, UDP, ICMP echo
export const PORTS = 65536;

/** Idle timeouts (s) of the NAPT's mappings, and how long a fragmented datagram is tracked. */
export interface NaptTimeouts {
  /** TCP, SYNs seen both ways and no FIN/RST: RFC 5382 REQ-5, at least 7,440 s. */
  tcpEstablished: number;
  /** TCP, half-open, closing or closed: RFC 5382 REQ-5, at least 240 s. */
  tcpTransitory: number;
  /** UDP: RFC 4787 REQ-5, at least 120 s (300 s recommended). */
  udp: number;
  /** ICMP echo: RFC 5508 REQ-1, at least 60 s. */
  icmp: number;
  /** Fragments: a datagram is forgotten this long after its first fragment arrived (RFC 791: 15 s). */
  fragment: number;
}

/** The defaults (RFC minimums, UDP at the recommended 300 s). */
export const DEFAULT_NAPT_TIMEOUTS: Readonly<NaptTimeouts> = Object.freeze({
  tcpEstablished: 7440,
  tcpTransitory: 240,
  udp: 300,
  icmp: 60,
  fragment: 15,
});

/** The shared mapping table. Create on the main thread, attach in each Worker. */
export class NaptTable {
  readonly buffer: SharedArrayBuffer;
  readonly out: Uint16Array;
  readonly back: Uint16Array;
  readonly used: Uint32Array;
  /** TCP, per external port: the SYN/FIN/RST bits of napt_tcp.ts. */
  readonly tcpState: Uint8Array;
  /** TCP, per external port: the remote endpoint of the last SYN (for port reuse). */
  readonly tcpRemote: Uint32Array;
  readonly tcpRemotePort: Uint16Array;
  /** NaptTimeouts, in the order of TIMEOUT_KEYS. */
  readonly #timeouts: Uint32Array;

  private constructor(buffer: SharedArrayBuffer) {
    const n = PROTOCOLS * PORTS;
    this.buffer = buffer;
    this.out = new Uint16Array(buffer, 0, n);
    this.back = new Uint16Array(buffer, n * 2, n);
    this.used = new Uint32Array(buffer, n * 4, n);
    this.tcpState = new Uint8Array(buffer, n * 8, PORTS);
    this.tcpRemote = new Uint32Array(buffer, n * 8 + PORTS, PORTS);
    this.tcpRemotePort = new Uint16Array(buffer, n * 8 + PORTS * 5, PORTS);
    this.#timeouts = new Uint32Array(buffer, n * 8 + PORTS * 7, 8);
  }

  static create(timeouts: Partial<NaptTimeouts> = {}): NaptTable {
    const table = new NaptTable(new SharedArrayBuffer(PROTOCOLS * PORTS * 8 + PORTS * 7 + 32));
    table.setTimeouts({ ...DEFAULT_NAPT_TIMEOUTS, ...timeouts });
    return table;
  }

  /** Sets timeouts (s); the Workers use them from their next lease (or `configure`). */
  setTimeouts(timeouts: Partial<NaptTimeouts>): void {
    TIMEOUT_KEYS.forEach((key, i) => {
      const v = timeouts[key];
      if (v === undefined) return;
      if (!Number.isInteger(v) || v < 1 || v > 0xffffffff)
        throw new RangeError(`NAPT timeout ${key} ${v} is not a whole number of seconds ≥ 1`);
      Atomics.store(this.#timeouts, i, v);
    });
  }

  get timeouts(): NaptTimeouts {
    const t = {} as NaptTimeouts;
    TIMEOUT_KEYS.forEach((key, i) => {
      t[key] = Atomics.load(this.#timeouts, i);
    });
    return t;
  }

  /**
   * Live mappings (not idle past their timeout at `nowSeconds`) by protocol and, for TCP, by
   * phase. For status pages; walks the whole table.
   */
  census(nowSeconds: number): NaptCensus {
    const t = this.timeouts;
    const c: NaptCensus = {
      tcpEstablished: 0,
      tcpHalfOpen: 0,
      tcpClosing: 0,
      tcpClosed: 0,
      udp: 0,
      icmp: 0,
    };
    for (let pi = 0; pi < PROTOCOLS; pi++) {
      for (let p = 1; p < PORTS; p++) {
        if (this.back[pi * PORTS + p] === 0) continue;
        const idle = nowSeconds - this.used[pi * PORTS + p]!;
        if (pi === 0) {
          const phase = tcpPhase(this.tcpState[p]!);
          const limit = phase === TcpPhase.ESTABLISHED ? t.tcpEstablished : t.tcpTransitory;
          if (idle > limit) continue;
          if (phase === TcpPhase.ESTABLISHED) c.tcpEstablished++;
          else if (phase === TcpPhase.HALF_OPEN) c.tcpHalfOpen++;
          else if (phase === TcpPhase.CLOSING) c.tcpClosing++;
          else c.tcpClosed++;
        } else if (pi === 1) {
          if (idle <= t.udp) c.udp++;
        } else if (idle <= t.icmp) c.icmp++;
      }
    }
    return c;
  }

  static attach(buffer: SharedArrayBuffer): NaptTable {
    return new NaptTable(buffer);
  }

  /** Forgets every mapping (a new lease has a new port set). */
  clear(): void {
    this.out.fill(0);
    this.back.fill(0);
    this.used.fill(0);
    this.tcpState.fill(0);
    this.tcpRemote.fill(0);
    this.tcpRemotePort.fill(0);
  }

  /** Mappings in use (for status and tests). */
  count(): number {
    let n = 0;
    for (let i = 0; i < this.back.length; i++) if (this.back[i] !== 0) n++;
    return n;
  }
}

const TIMEOUT_KEYS = ["tcpEstablished", "tcpTransitory", "udp", "icmp", "fragment"] as const;

/** Live mappings by protocol and TCP phase (NaptTable.census). */
export interface NaptCensus {
  tcpEstablished: number;
  tcpHalfOpen: number;
  tcpClosing: number;
  tcpClosed: number;
  udp: number;
  icmp: number;
}
