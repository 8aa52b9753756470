/**
 * The client's renewal timing and what a failed renewal means (lib/client/lease_life.ts):
 * T1 from the server when it gave one, else half the lease (RFC 2131 §4.4.5); a refusal or at
 * most 1 s left loses the lease, anything else retries at half the time left; a release that
 * fails is logged, never thrown.
 */
import { describe, expect, test } from "bun:test";
import {
  afterFailedRenewal,
  LeaseExpiredError,
  releaseLogged,
  renewalDelay,
} from "../lib/client/lease_life.ts";
import { type ClientLease, DstmRefusedError, type LeaseClient } from "../lib/client/protocol.ts";
import { Logger } from "../lib/control/log.ts";
import { Status } from "../lib/wire/dstm_types.ts";

const NOW = 1_000_000;
const lease = (extra: Partial<ClientLease> = {}): ClientLease => ({
  ipv4: 0xc6336407,
  host6: "2001:db8:1::10",
  tep6: "2001:db8:1::1",
  leaseTime: 600,
  obtainedAt: NOW,
  expiresAt: NOW + 600_000,
  ...extra,
});

describe("renewalDelay", () => {
  test("half the lease time when the protocol gives no T1", () => {
    expect(renewalDelay(lease(), NOW)).toBe(300_000);
  });
  test("half the lease counted from when it was obtained, not from the ACK (a slow answer)", () => {
    // An 8 s lease whose REQUEST was first sent 5 s before now (answered after retries): T1
    // was 1 s ago, so renew now, not 4 s from now, 1 s after the lease's expiry.
    const slow = lease({ leaseTime: 8, obtainedAt: NOW - 5_000, expiresAt: NOW + 3_000 });
    expect(renewalDelay(slow, NOW)).toBe(-1_000);
    expect(renewalDelay(lease({ obtainedAt: NOW - 100_000 }), NOW)).toBe(200_000);
  });
  test("the server's T1 when it gave one", () => {
    expect(renewalDelay(lease({ renewAt: NOW + 120_000 }), NOW)).toBe(120_000);
  });
});

describe("afterFailedRenewal", () => {
  test("a refusal loses the lease, however long it has left", () => {
    const refused = new DstmRefusedError(Status.NO_SUCH_LEASE, "gone");
    expect(afterFailedRenewal(refused, lease(), NOW)).toEqual({ lost: true });
  });
  test("a timeout retries at half the time left", () => {
    expect(afterFailedRenewal(new Error("timeout"), lease(), NOW + 200_000)).toEqual({
      lost: false,
      retryInMs: 200_000,
    });
  });
  test("the expiry reached during the renewal loses it (RFC 2131 §4.4.5)", () => {
    expect(afterFailedRenewal(new LeaseExpiredError("expired"), lease(), NOW + 300_000)).toEqual({
      lost: true,
    });
  });
  test("a timeout with at most 1 s left loses it", () => {
    expect(afterFailedRenewal(new Error("timeout"), lease(), NOW + 599_000)).toEqual({
      lost: true,
    });
  });
});

describe("releaseLogged", () => {
  const client = (release: () => Promise<void>): LeaseClient => ({
    host6: "2001:db8:1::10",
    discover: () => Promise.reject(new Error("unused")),
    request: () => Promise.reject(new Error("unused")),
    release,
    close: () => {},
  });

  test("a release that works is logged under the event, at info", async () => {
    const lines: string[] = [];
    const log = new Logger({ sink: (t) => lines.push(t) });
    await releaseLogged(
      client(() => Promise.resolve()),
      lease(),
      "idle-release",
      log,
    );
    log.flush();
    expect(lines.join("")).toContain("idle-release");
    expect(lines.join("")).toContain("198.51.100.7");
  });

  test("a release that fails is a warn line, not an exception", async () => {
    const lines: string[] = [];
    const log = new Logger({ sink: (t) => lines.push(t) });
    await releaseLogged(
      client(() => Promise.reject(new Error("no answer"))),
      lease(),
      "release",
      log,
    );
    log.flush();
    const text = lines.join("");
    expect(text).toContain("release-failed");
    expect(text).toContain("no answer");
  });
});
