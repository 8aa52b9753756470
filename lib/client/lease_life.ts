/**
 * Pieces of the client's lease life that ./node.ts runs: when it renews, what a failed
 * renewal means, a release that only logs when it fails, and the refusal of a lease another
 * client on this host already uses. Renewing
 * starts at T1, the server's (DHCPv4 option 58, RFC 2131 §4.4.5) or half the lease time
 * (the native protocol), and a renewal that fails (no answer, or SERVER_ERROR: the server
 * could not store it now) keeps the lease and retries at half the time left, until the server
 * refuses it otherwise or it has at most 1 s left: then it is lost. A renewal never outlives
 * the lease: it is bounded by the expiry, and at the expiry the lease is lost whatever the
 * exchange is doing ({@link LeaseExpiredError}; RFC 2131 §4.4.5).
 *
 * @module
 */
import type { Logger } from "../control/log.ts";
import { formatIPv4 } from "../net/addr.ts";
import { isLocalAddress } from "../sys/udp.ts";
import { Status } from "../wire/dstm_types.ts";
import { DtiError } from "./dti.ts";
import { type ClientLease, DstmRefusedError, type LeaseClient } from "./protocol.ts";

/** The lease reached its expiry while its renewal was unanswered: it is lost (RFC 2131 §4.4.5). */
export class LeaseExpiredError extends Error {
  override name = "LeaseExpiredError";
}

/**
 * Ms until renewing starts (≤ 0: now): the protocol's T1 (DHCPv4 option 58) if it has one, else
 * half the lease time, counted from when the lease was obtained (`obtainedAt`, when its
 * REQUEST was first sent, RFC 2131 §4.4.1), not from now: an ACK that came after retries must
 * not push T1 (or the renewal) towards or past the expiry.
 */
export function renewalDelay(lease: ClientLease, now = Date.now()): number {
  const t1 = lease.renewAt ?? lease.obtainedAt + lease.leaseTime * 500;
  return t1 - now;
}

/**
 * What the renewal of `lease` that failed with `error` at `now` (ms) leads to: `lost` (the
 * server refused, the lease expired, or at most 1 s is left), else a retry in half the time
 * left (ms).
 */
export function afterFailedRenewal(
  error: unknown,
  lease: ClientLease,
  now = Date.now(),
): { readonly lost: true } | { readonly lost: false; readonly retryInMs: number } {
  const remaining = lease.expiresAt - now;
  // SERVER_ERROR says the server could not do it now (its lease store failed: a full disk),
  // not that the lease is gone: the stored lease holds until its expiry, so retry as after a
  // timeout (docs/protocol.md). Every other refusal ends the lease.
  const refused = error instanceof DstmRefusedError && error.status !== Status.SERVER_ERROR;
  if (refused || error instanceof LeaseExpiredError || remaining <= 1000) return { lost: true };
  return { lost: false, retryInMs: remaining / 2 };
}

/**
 * Releases `lease` (RFC 2131 §4.4.6 for DHCPv4; DSTM_RELEASE) and logs `event` at info, or
 * `release-failed` at warn: never throws (the server frees the address at expiry anyway).
 * `withinMs` (at stop): waits about that long at most (ms), however the protocol retries;
 * then `release-failed` says the lease ends at its expiry, and the caller closes the client.
 */
export async function releaseLogged(
  client: LeaseClient,
  lease: ClientLease,
  event: string,
  log: Logger,
  withinMs?: number,
): Promise<void> {
  const ipv4 = formatIPv4(lease.ipv4);
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const release = client.release(lease.ipv4, withinMs === undefined ? {} : { withinMs });
    // A protocol that does not bound its retries (DHCPv4-over-DHCPv6) is cut off here; 10%
    // slack over the bound retries' own jitter.
    const limit =
      withinMs === undefined
        ? undefined
        : new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`no answer within ${withinMs} ms`)),
              withinMs * 1.1 + 50,
            );
          });
    await (limit ? Promise.race([release, limit]) : release);
    log.info(event, { ipv4 });
  } catch (error) {
    log.warn("release-failed", {
      ipv4,
      detail: (error as Error).message,
      ...(withinMs === undefined
        ? {}
        : { "waited-ms": withinMs, lease: "ends at its expiry at the server" }),
    });
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A permanent DtiError when the IPv4 address of `lease`, just granted, is already an address
 * of this host: another `dstm client` here holds that lease (the server gives a host IPv6
 * address's lease back to whoever asks from it: DSTM_DISCOVER answers EXISTING_LEASE, and a
 * DHCPv4 server answers the same client the same), or it is configured by hand. Taking it
 * would put the address on a second DTI, and this client's release at stop would end the
 * other's lease at the server and its TEP binding. The caller exits with the message and does
 * not release: the lease is the other client's. Else undefined. Call before this client's own
 * DTI has the address (a new lease, with the DTI down or holding the on-demand placeholder).
 */
export async function leaseInUseHere(lease: ClientLease): Promise<DtiError | undefined> {
  const ipv4 = formatIPv4(lease.ipv4);
  if (!(await isLocalAddress(ipv4))) return undefined;
  return new DtiError(
    `${ipv4}, the lease the server gave ${lease.host6}, is already an address of this host: another dstm client here holds it (run one client per host IPv6 address, or give this one another with --host6); not released`,
    { permanent: true },
  );
}
