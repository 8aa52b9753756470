/**
 * Why the client service has no lease yet, for `dstm client status` and the metrics: the
 * failure the last tries of ./acquire_loop.ts met, since when, how many, and when the next
 * try comes; and every failed try counted by reason.
 *
 * Reasons: `not-authorised` (a NAK NOT_AUTHORISED: no `--key` where the server requires
 * signed requests, or a key it does not know, docs/protocol.md, Authentication; or a host
 * the server does not allow, docs/security.md), `refused`
 * (any other NAK), `dti-failed` (./dti.ts DtiError) and `server-unreachable` (no answer).
 *
 * A NOT_AUTHORISED NAK to a DISCOVER is unsigned (the server could not verify the request,
 * so it has nothing to sign with) and anyone who sees the request on the link can forge one.
 * The client therefore never gives up on it: it keeps asking with the loop's doubling
 * back-off, and makes the state visible here, in `dstm_client_acquire_not_authorised` and
 * at error level in the log (./acquire_warnings.ts) for the operator to act on.
 *
 * @module
 */
import { Status } from "../wire/dstm_types.ts";
import { DtiError } from "./dti.ts";
import { DstmRefusedError } from "./protocol.ts";

/** Why one try to obtain a lease failed. */
export type AcquireFailure = "not-authorised" | "refused" | "dti-failed" | "server-unreachable";

export const ACQUIRE_FAILURES: readonly AcquireFailure[] = [
  "not-authorised",
  "refused",
  "dti-failed",
  "server-unreachable",
];

/** The reason of a failed try's `error`. */
export function acquireFailureOf(error: unknown): AcquireFailure {
  if (error instanceof DstmRefusedError)
    return error.status === Status.NOT_AUTHORISED ? "not-authorised" : "refused";
  return error instanceof DtiError ? "dti-failed" : "server-unreachable";
}

/**
 * What a failed try said, as logged and shown: a NOT_AUTHORISED refusal always names `--key`
 * (the refusal's own hint does for a missing key and the known MAC failures).
 */
export function acquireDetail(error: unknown): string {
  const message = (error as Error).message;
  // NOT_AUTHORISED also refuses a host the server does not allow (HOST_IPV6 not the source,
  // a TEP's own address): those texts say so, and --key is not the fix.
  const authentication =
    error instanceof DstmRefusedError &&
    error.status === Status.NOT_AUTHORISED &&
    (error.statusText === "" || error.statusText.startsWith("authentication"));
  return authentication && !message.includes("--key")
    ? `${message}; check --key FILE: it must hold a key of the server's --key`
    : message;
}

/** The status's `acquire`: the failure of the last tries, null while none failed since the last lease. */
export interface AcquireStatus {
  failing: AcquireFailure;
  /** What the last failure said (with the `--key` hint for `not-authorised`). */
  detail: string;
  /** When the tries began to fail this way (ISO 8601). */
  since: string;
  /** Tries failed this way in a row. */
  tries: number;
  /** When the next try comes (ISO 8601). */
  nextTry: string;
}

/** The acquire loop's failures of one node: the current run and the counts by reason. */
export class AcquireState {
  /** Failed tries by reason, since the node started. */
  readonly counts: Record<AcquireFailure, number> = {
    "not-authorised": 0,
    refused: 0,
    "dti-failed": 0,
    "server-unreachable": 0,
  };
  #run:
    | { failing: AcquireFailure; detail: string; since: number; tries: number; next: number }
    | undefined;

  /** One try failed with `error`; the next comes in `backoffMs` (ms). `now`: wall clock (ms). */
  failed(error: unknown, backoffMs: number, now = Date.now()): void {
    const failing = acquireFailureOf(error);
    this.counts[failing]++;
    const detail = acquireDetail(error);
    const run = this.#run?.failing === failing ? this.#run : undefined;
    this.#run = {
      failing,
      detail,
      since: run?.since ?? now,
      tries: (run?.tries ?? 0) + 1,
      next: now + backoffMs,
    };
  }

  /** A lease is in use (or the loop ended): no failure any more. */
  clear(): void {
    this.#run = undefined;
  }

  /** True while the last tries were refused NOT_AUTHORISED. */
  get notAuthorised(): boolean {
    return this.#run?.failing === "not-authorised";
  }

  status(): AcquireStatus | null {
    const run = this.#run;
    if (!run) return null;
    return {
      failing: run.failing,
      detail: run.detail,
      since: new Date(run.since).toISOString(),
      tries: run.tries,
      nextTry: new Date(run.next).toISOString(),
    };
  }
}
