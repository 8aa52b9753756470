/**
 * How the client service (./node.ts) obtains a lease: DISCOVER until one is granted and taken
 * into use, waiting 1 s after a failure, then twice as long each time up to the configured
 * longest wait (default 30 s); failures are said by ./acquire_warnings.ts. The loop ends when
 * the node stops or replaces its lease client (renumbering): a lease granted meanwhile is
 * released at once, since it is for an address the node no longer uses. A DTI that can never
 * be made (./dti.ts DtiError.permanent) ends it too, through `fail`: no retry.
 *
 * @module
 */
import type { Logger } from "../control/log.ts";
import { formatIPv4 } from "../net/addr.ts";
import type { AcquireState } from "./acquire_state.ts";
import { AcquireWarnings } from "./acquire_warnings.ts";
import { DtiError } from "./dti.ts";
import type { ClientLease, LeaseClient } from "./protocol.ts";

export interface AcquireLoopOptions {
  readonly log: Logger;
  /** The server, as the warnings name it. */
  readonly server: string;
  /** The longest wait between two tries (ms). */
  readonly maxBackoffMs: number;
  /** False once the node stopped or `client` is no longer its lease client: the loop ends. */
  readonly current: () => boolean;
  /** Takes a granted lease into use; when it throws, that counts as a failed try. */
  readonly use: (lease: ClientLease) => Promise<void>;
  /** Waits `ms` between tries (the node can cut it short). */
  readonly sleep: (ms: number) => Promise<void>;
  /** A DTI that can never be made (./dti.ts DtiError.permanent; `use` released its lease, unless another client here holds it): the loop ends. */
  readonly fail: (error: DtiError) => void;
  /** Told of each failed try and of the end, for the status and the metrics (./acquire_state.ts). */
  readonly state?: AcquireState;
}

/** Runs the loop of the module comment with `client`; resolves when a lease is in use or the loop ends. */
export async function acquireLoop(client: LeaseClient, o: AcquireLoopOptions): Promise<void> {
  let backoff = 1000;
  const warnings = new AcquireWarnings(o.log, o.server, o.maxBackoffMs);
  while (o.current()) {
    try {
      const lease = await client.discover();
      if (!o.current()) {
        await client.release(lease.ipv4).catch(() => {});
        return;
      }
      await useOrSayWhy(o, lease);
      o.state?.clear();
      return;
    } catch (error) {
      if (!o.current()) return;
      // A DTI that can never be made (./dti.ts DtiError.permanent): no retry; the node gives up.
      if (error instanceof DtiError && error.permanent) return o.fail(error);
      warnings.failed(error, backoff);
      o.state?.failed(error, backoff);
      await o.sleep(backoff);
      backoff = Math.min(backoff * 2, o.maxBackoffMs);
    }
  }
}

/**
 * `o.use(lease)`; what it throws is the DTI's failure, not the server's: an error of the
 * system (a route the kernel already has: EEXIST, a TUN that cannot be made) becomes a
 * transient DtiError naming the address, so it is said as `dti-failed`, not as
 * `server-unreachable` (./acquire_warnings.ts), and retried with back-off.
 */
async function useOrSayWhy(o: AcquireLoopOptions, lease: ClientLease): Promise<void> {
  try {
    await o.use(lease);
  } catch (error) {
    if (error instanceof DtiError) throw error;
    throw new DtiError(
      `the DTI could not be brought up with ${formatIPv4(lease.ipv4)}: ${(error as Error).message}`,
      { cause: error },
    );
  }
}
