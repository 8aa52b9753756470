/**
 * What a batched loop hands the tunnel socket (lib/net/device.ts `TunnelBatchSocket.write`):
 * references to the packets that passed, never copies, with each packet's outer destination,
 * traffic class and flow label beside; sent when the batch ends or the vector is full. Shared
 * by the TEP's encapsulating loop (tep_batch.ts) and the client's outbound loop
 * (lib/dataplane/client_batch.ts). Nothing is allocated after construction.
 *
 * @module
 */
import type { TunnelBatchSocket } from "../net/device.ts";

/** Read and write errors of a loop (as ForwarderStats in lib/dataplane/forwarder.ts). */
export interface BatchLoopStats {
  readErrors: number;
  writeErrors: number;
  lastError: number;
}

/** Room of a segment buffer: a segment of up to a 9,000-byte (jumbo) MTU, plus slack. */
export const SEGMENT_BYTES = 9216;

/** `count` zeroed buffers of `bytes` each. */
export function buffers(count: number, bytes: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) out.push(new Uint8Array(bytes));
  return out;
}

/** Counts a failed call: `code` is -errno. */
export function countFailure(stats: BatchLoopStats, code: number): void {
  stats.writeErrors++;
  stats.lastError = code;
}

/** Counts a failed read: `code` is -errno; returns it (what a loop's step returns). */
export function countReadFailure(stats: BatchLoopStats, code: number): number {
  stats.readErrors++;
  stats.lastError = code;
  return code;
}

/** See the module comment. */
export class SendVector {
  readonly packets: Uint8Array[];
  readonly sizes: Int32Array;
  /** Outer destination of packet `i` at `16 i`: the caller writes it before {@link add}. */
  readonly addrs: Uint8Array;
  readonly trafficClass: Uint8Array;
  readonly flowLabel: Int32Array;
  /** Packets in the vector. */
  count = 0;
  readonly #raw: TunnelBatchSocket;
  readonly #offset: number;
  readonly #stats: BatchLoopStats;

  /** Up to `capacity` packets at `offset` of their buffers, to `raw`; failures into `stats`. */
  constructor(raw: TunnelBatchSocket, capacity: number, offset: number, stats: BatchLoopStats) {
    this.#raw = raw;
    this.#offset = offset;
    this.#stats = stats;
    this.packets = buffers(capacity, 0);
    this.sizes = new Int32Array(capacity);
    this.addrs = new Uint8Array(16 * capacity);
    this.trafficClass = new Uint8Array(capacity);
    this.flowLabel = new Int32Array(capacity);
  }

  get full(): boolean {
    return this.count === this.packets.length;
  }

  /** Adds `buf[offset, offset+length)` (its destination already at `addrs[16 count …]`). */
  add(buf: Uint8Array, length: number, trafficClass: number, flowLabel: number): void {
    const k = this.count;
    this.packets[k] = buf;
    this.sizes[k] = length;
    this.trafficClass[k] = trafficClass;
    this.flowLabel[k] = flowLabel;
    this.count = k + 1;
  }

  /** Sends what is in the vector (sendmmsg); returns how many went. */
  send(): number {
    const k = this.count;
    if (k === 0) return 0;
    this.count = 0;
    const w = this.#raw.write(
      this.packets,
      this.sizes,
      k,
      this.#offset,
      this.addrs,
      this.trafficClass,
      this.flowLabel,
    );
    if (w < 0) countFailure(this.#stats, w);
    else if (w < k) countFailure(this.#stats, -11); // some refused (EAGAIN or a per-packet error)
    return Math.max(w, 0);
  }
}
