/**
 * The forwarding loops' side of ICMPv6 errors about tunnel packets: takes them off the raw
 * socket's error queue (lib/sys/raw6.ts) between two packets, a bounded number at a time,
 * and hands each to a handler (normally icmp_relay.ts's relayTunnelError); also ages the
 * path MTU table (RFC 8201 §4). Allocation-free.
 *
 * @module
 */
import { type Raw6Socket, SO_EE_ORIGIN_ICMP6, type TunnelErrorInfo } from "../sys/raw6.ts";
import { Counter } from "../tunnel/counters.ts";
import type { PathMtuTable } from "../tunnel/pmtu.ts";

/** Errors taken off the queue per call: bounded work between two packets. */
const ERRORS_PER_DRAIN = 64;
/** Calls between two looks at the clock for aging. */
const AGE_EVERY = 1024;
const TUNNEL_ERROR_OTHER = Counter["tunnel-error-other"];

/** Seconds since the epoch, as the path MTU table dates its estimates. */
export const nowSeconds = (): number => (Date.now() / 1000) | 0;

/**
 * From a client Worker: tells the main thread that the TEP reported the lease's binding gone
 * (ICMPv6 1/5, client_lease.ts); Forwarder.client hands it to `onNeedLease("binding-lost")`.
 */
export const postBindingLost = (): void =>
  (globalThis as unknown as { postMessage(m: unknown): void }).postMessage({
    kind: "dstm-binding-lost",
  });

export type TunnelErrorHandler = (
  info: TunnelErrorInfo,
  host6: Uint8Array,
  inner: Uint8Array,
  innerLength: number,
) => void;

export class TunnelErrors {
  readonly #raw: Raw6Socket;
  readonly #counters: Float64Array;
  readonly #handle: TunnelErrorHandler;
  readonly #buf = new Uint8Array(2048);
  readonly #host6 = new Uint8Array(16);
  readonly #info: TunnelErrorInfo = {
    errno: 0,
    origin: 0,
    type: 0,
    code: 0,
    info: 0,
    offender6: new Uint8Array(16),
  };
  #calls = 0;
  #nextAgeMs = 0;

  constructor(raw: Raw6Socket, counters: Float64Array, handle: TunnelErrorHandler) {
    this.#raw = raw;
    this.#counters = counters;
    this.#handle = handle;
  }

  /** Call before each read: drains pending errors, now and then ages `table`. */
  poll(table: PathMtuTable | null): void {
    if (this.#raw.errorPending) this.drain();
    if (table !== null && table.count !== 0 && (++this.#calls & (AGE_EVERY - 1)) === 0) {
      const now = Date.now();
      if (now >= this.#nextAgeMs) {
        this.#nextAgeMs = now + 1000;
        table.expire((now / 1000) | 0);
      }
    }
  }

  /** Handles up to 64 queued errors (local errors, not ICMPv6, are only counted). */
  drain(): void {
    for (let i = 0; i < ERRORS_PER_DRAIN; i++) {
      const n = this.#raw.readError(this.#buf, 0, this.#host6, 0, this.#info);
      if (n < 0) return;
      if (this.#info.origin !== SO_EE_ORIGIN_ICMP6) {
        this.#counters[TUNNEL_ERROR_OTHER]! += 1;
        continue;
      }
      this.#handle(this.#info, this.#host6, this.#buf, n);
    }
  }
}
