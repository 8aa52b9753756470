/**
 * The answers of one turn of the event loop, sent together: {@link UdpEndpoint.queue}
 * (./udp.ts) puts a datagram here, and the first one of a turn schedules a flush with
 * `setImmediate`, which runs after the turn's I/O callbacks and promise continuations. A busy
 * server (a group commit resolves dozens of lease writes at once, each with an answer) so
 * pays one sendmmsg(2) per batch instead of one sendmsg(2) per answer; an idle one sends a
 * lone answer at the end of the turn it was made in, with no timer between.
 *
 * @module
 */

/** A datagram waiting for the flush: where to, from which source (or undefined), and who to tell of a refusal. */
export interface QueuedDatagram {
  readonly data: Uint8Array;
  readonly address: string;
  readonly port: number;
  readonly source: string | undefined;
  readonly refused: (() => void) | undefined;
}

/**
 * Sends what was queued in one batch: `flush(batch)` must send every datagram of `batch`
 * (several system calls if it must) and call `refused` of each one the kernel refused.
 */
export class UdpSendQueue {
  #batch: QueuedDatagram[] = [];
  #scheduled = false;
  #closed = false;

  constructor(private readonly flush: (batch: readonly QueuedDatagram[]) => void) {}

  /** Queues one datagram for the end of this turn; false (nothing queued) once closed. */
  push(d: QueuedDatagram): boolean {
    if (this.#closed) return false;
    this.#batch.push(d);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.#flushNow());
    }
    return true;
  }

  /** Sends what is queued now (before the socket closes, say); later pushes are refused after {@link close}. */
  #flushNow(): void {
    this.#scheduled = false;
    if (this.#batch.length === 0) return;
    const batch = this.#batch;
    this.#batch = [];
    this.flush(batch);
  }

  /** Sends what is still queued, then takes no more. */
  close(): void {
    if (this.#closed) return;
    this.#flushNow();
    this.#closed = true;
  }
}
