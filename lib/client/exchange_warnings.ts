/**
 * What the client service says while it waits on the DSTM server (./lease_client.ts):
 * `no-answer` before each retransmission (fields `server`, `message`, `attempt`) and
 * `server-unreachable-icmp` when the kernel reports an ICMPv6 destination unreachable for a
 * message sent to the server (RFC 4443 §3.1; most often port unreachable: nothing listens on
 * UDP 4607 at that address, e.g. `--server` names the TEP), at once, without waiting for the
 * retries to run out. Each is said at warn the first time, then at debug until the server
 * answers or {@link REWARN_MS} has passed (then at warn again, with `repeated`), as the
 * `server-unreachable` warning of ./acquire_warnings.ts says. ICMPv6 errors are counted
 * (`dstm_client_server_icmp_unreachable_total`, ./node_metrics.ts).
 *
 * @module
 */
import type { LogFields, Logger } from "../control/log.ts";
import { messageTypeName } from "../wire/dstm.ts";
import { REWARN_MS } from "./acquire_warnings.ts";
import { UNREACHABLE_HINT } from "./protocol.ts";

/** One event said at warn once, then at debug until reset or {@link REWARN_MS} later. */
export class Quiet {
  #at: number | undefined;
  #repeats = 0;

  /** Logs `event` with `fields` at warn or debug; `now`: wall clock (ms). */
  say(log: Logger, event: string, fields: LogFields, now: number): void {
    if (this.#at !== undefined && now - this.#at < REWARN_MS) {
      this.#repeats++;
      log.debug(event, fields);
      return;
    }
    const repeated = this.#repeats;
    log.warn(event, {
      ...fields,
      ...(repeated > 0 ? { repeated } : {}),
      again: "logged at debug until the server answers",
    });
    this.#at = now;
    this.#repeats = 0;
  }

  reset(): void {
    this.#at = undefined;
    this.#repeats = 0;
  }
}

export class ExchangeWarnings {
  /** ICMPv6 errors reported for messages sent to the server. */
  icmpUnreachable = 0;
  readonly #noAnswer = new Quiet();
  readonly #unreachable = new Quiet();

  constructor(
    readonly log: Logger,
    readonly server: string,
    readonly now: () => number = Date.now,
  ) {}

  /**
   * Try `attempt` (2, 3, …) of a message of `type` goes out: the earlier ones had no answer.
   * `server`: which one (several, failing over), default the configured one.
   */
  retransmit(attempt: number, type: number | string, server = this.server): void {
    const message = typeof type === "string" ? type : messageTypeName(type);
    this.#noAnswer.say(this.log, "no-answer", { server, message, attempt }, this.now());
  }

  /**
   * An ICMPv6 destination unreachable came back for a message of `type` sent to `server`;
   * `detail`: its code in words (./unreachable_reason.ts), or what it most often means.
   */
  unreachable(
    type: number,
    server = this.server,
    detail = `ICMPv6 destination unreachable from the server's address; ${UNREACHABLE_HINT}`,
  ): void {
    this.icmpUnreachable++;
    this.#unreachable.say(
      this.log,
      "server-unreachable-icmp",
      { server, message: messageTypeName(type), detail, retrying: "yes" },
      this.now(),
    );
  }

  /** The server answered: the next silence or ICMPv6 error is news again, said at warn. */
  answered(): void {
    this.#noAnswer.reset();
    this.#unreachable.reset();
  }
}
