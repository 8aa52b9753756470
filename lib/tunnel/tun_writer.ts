/**
 * The TUN side of a loop that forwards into a TUN in batches (the TEP's decapsulating loop,
 * tep_batch.ts; the client's inbound loop, lib/dataplane/client_batch.ts): its read buffers
 * and the GRO (gro.ts) that writes consecutive checked TCP segments of a flow as one
 * super-packet when the device takes them. The read buffers live in the GRO's ArrayBuffer, so
 * that coalescing copies without allocating.
 *
 * @module
 */
import type { BatchDevice } from "../net/device.ts";
import { type GroEmit, TcpCoalescer } from "./gro.ts";
import { type BatchLoopStats, buffers, countFailure } from "./send_vector.ts";

export interface TunWriter {
  /** The coalescer, or null (a device without GSO, or GRO off). */
  readonly gro: TcpCoalescer | null;
  /** `count` read buffers of `bytes`. */
  readonly bufs: Uint8Array[];
  /** One more, for fragments released by a later packet (fragments.ts). */
  readonly spare: Uint8Array;
  /** A packet that passed every check: to the GRO, or straight into the TUN. */
  readonly add: (buf: Uint8Array, off: number, len: number) => void;
  /** Straight into the TUN (write errors counted in the loop's stats). */
  readonly write: GroEmit;
}

/** See the module comment. `gro: false` writes every packet as it came. */
export function tunWriter(
  tun: BatchDevice,
  stats: BatchLoopStats,
  count: number,
  bytes: number,
  gro: boolean,
): TunWriter {
  const write: GroEmit = (buf, off, len, gsoSize, _segments, partial) => {
    const w = tun.write(buf, off, len, gsoSize, partial);
    if (w < 0) countFailure(stats, w);
  };
  const coalescer =
    tun.gso && gro
      ? new TcpCoalescer(write, { headroom: tun.headroom, buffers: { count: count + 1, bytes } })
      : null;
  const bufs = coalescer ? coalescer.buffers.slice() : buffers(count + 1, bytes);
  const spare = bufs.pop()!;
  const add = coalescer
    ? (b: Uint8Array, o: number, l: number) => coalescer.add(b, o, l)
    : (b: Uint8Array, o: number, l: number) => write(b, o, l, 0, 1, false);
  return { gro: coalescer, bufs, spare, add, write };
}
