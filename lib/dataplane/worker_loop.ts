/**
 * What a forwarding Worker's one-by-one loop is given (forwarder_worker.ts runs the TEP's,
 * client_loops.ts the client's), and how every loop counts its device errors (ForwarderStats)
 * and knows it was stopped: a read that fails with -EBADF means the device was closed under
 * the loop, nothing more to read. The batched loops (client_batched.ts, forwarder_worker.ts)
 * stop on {@link CLOSED} too; the counting itself is lib/tunnel/send_vector.ts'.
 *
 * @module
 */
import { Errno } from "../sys/libc.ts";
import type { Raw6Socket } from "../sys/raw6.ts";
import type { TunDevice } from "../sys/tun_linux.ts";
import type { WorkerContext } from "../sys/worker.ts";
import { countFailure, countReadFailure } from "../tunnel/send_vector.ts";
import type { ForwarderInit, ForwarderStats } from "./forwarder.ts";

/** What a read returns once the device was closed (stop): −EBADF. */
export const CLOSED = -Errno.EBADF;

/** A one-by-one loop's Worker, devices and counters (its slice), and the stats it returns. */
export interface LoopIO {
  readonly init: ForwarderInit;
  readonly ctx: WorkerContext;
  readonly counters: Float64Array;
  readonly tun: TunDevice;
  readonly raw: Raw6Socket;
  readonly stats: ForwarderStats;
}

/** Counts a failed write (`w`: −errno). */
export const writeFailed: (stats: ForwarderStats, w: number) => void = countFailure;

/** Counts a failed read (`n`: −errno); true when the device was closed (the loop stops). */
export function readStops(stats: ForwarderStats, n: number): boolean {
  countReadFailure(stats, n);
  return n === CLOSED;
}
