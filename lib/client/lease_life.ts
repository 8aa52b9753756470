/**
 * Pieces of the client's lease life that ./node.ts runs: when it renews, what a failed
 * renewal means, and a release that only logs when it fails. Renewing
 * starts at T1, the server's (DHCPv4 option 58, RFC 2131 §4.4.5) or half the lease time
 * (the native protocol), and a renewal that fails keeps the lease and retries at half the
 * time left, until the server refuses it or it has at most 1 s left: then it is lost.
 *
 * @module
 */
import type { Logger } from "../control/log.ts";
import { formatIPv4 } from "../net/addr.ts";
import { type ClientLease, DstmRefusedError, type LeaseClient } from "./protocol.ts";

/** Ms until renewing starts: the protocol's T1 (DHCPv4 option 58) if it has one, else half the lease. */
export function renewalDelay(lease: ClientLease, now = Date.now()): number {
  return lease.renewAt !== undefined ? lease.renewAt - now : lease.leaseTime * 500;
}

/**
 * What the renewal of `lease` that failed with `error` at `now` (ms) leads to: `lost` (the
 * server refused, or at most 1 s is left), else a retry in half the time left (ms).
 */
export function afterFailedRenewal(
  error: unknown,
  lease: ClientLease,
  now = Date.now(),
): { readonly lost: true } | { readonly lost: false; readonly retryInMs: number } {
  const remaining = lease.expiresAt - now;
  if (error instanceof DstmRefusedError || remaining <= 1000) return { lost: true };
  return { lost: false, retryInMs: remaining / 2 };
}

/**
 * Releases `lease` (RFC 2131 §4.4.6 for DHCPv4; DSTM_RELEASE) and logs `event` at info, or
 * `release-failed` at warn: never throws (the server frees the address at expiry anyway).
 */
export async function releaseLogged(
  client: LeaseClient,
  lease: ClientLease,
  event: string,
  log: Logger,
): Promise<void> {
  try {
    await client.release(lease.ipv4);
    log.info(event, { ipv4: formatIPv4(lease.ipv4) });
  } catch (error) {
    log.warn("release-failed", {
      ipv4: formatIPv4(lease.ipv4),
      detail: (error as Error).message,
    });
  }
}
