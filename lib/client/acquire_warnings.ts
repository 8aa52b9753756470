/**
 * How the client service says that acquiring a lease failed (lib/client/node.ts): the same
 * failure again and again (a NOT_AUTHORISED for a missing --key, say) is said once at warn,
 * then at debug, and again at warn every {@link REWARN_MS} with how often it recurred.
 * Events: `refused` (the server answered with a NAK), `dti-failed` (a lease came, the DTI
 * could not be made with it for now: ./dti.ts DtiError; a permanent one is not retried) or `server-unreachable` (no answer);
 * fields `server`, `detail`, `retry-in-s`, and at warn `max-backoff-s`, `repeated`.
 * A NOT_AUTHORISED refusal is said at error, not warn (rate-limited the same way), its
 * detail naming `--key`: the client cannot get a lease until its key is fixed, but it keeps
 * asking, since anyone on the link can forge that unsigned NAK (./acquire_state.ts).
 *
 * @module
 */
import type { Logger } from "../control/log.ts";
import { acquireDetail, acquireFailureOf } from "./acquire_state.ts";

/** How long the client stays quiet (debug only) about the same acquire failure (ms). */
export const REWARN_MS = 10 * 60_000;

export class AcquireWarnings {
  #said: { detail: string; at: number; repeats: number } | undefined;

  /** `maxBackoffMs`: the longest wait between two tries (ms), said in the warning. */
  constructor(
    readonly log: Logger,
    readonly server: string,
    readonly maxBackoffMs: number,
  ) {}

  /** One try failed with `error`; the next comes in `backoffMs` (ms). `now`: wall clock (ms). */
  failed(error: unknown, backoffMs: number, now = Date.now()): void {
    const failure = acquireFailureOf(error);
    const notAuthorised = failure === "not-authorised";
    const event = notAuthorised ? "refused" : failure;
    const detail = acquireDetail(error);
    const fields = { server: this.server, detail, "retry-in-s": Math.round(backoffMs / 1000) };
    const said = this.#said;
    if (said?.detail === detail && now - said.at < REWARN_MS) {
      said.repeats++;
      this.log.debug(event, fields);
      return;
    }
    const repeats = said?.detail === detail ? said.repeats : 0;
    (notAuthorised ? this.log.error : this.log.warn).call(this.log, event, {
      ...fields,
      ...(repeats > 0 ? { repeated: repeats } : {}),
      "max-backoff-s": Math.round(this.maxBackoffMs / 1000),
      backoff: "doubling; the same failure again is logged at debug",
    });
    this.#said = { detail, at: now, repeats: 0 };
  }
}
