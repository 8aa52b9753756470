/**
 * The client's acquire loop (lib/client/acquire_loop.ts) says whose failure it was: a lease
 * that came but could not be put on the DTI (here: the route add failing with EEXIST, as a
 * route the kernel already has does) is `dti-failed` naming the address and retried, not
 * `server-unreachable` (found by a newcomer); a server that does not answer is still
 * `server-unreachable`; a permanent DtiError ends the loop through `fail`.
 */
import { expect, test } from "bun:test";
import { acquireLoop } from "../lib/client/acquire_loop.ts";
import { DtiError } from "../lib/client/dti.ts";
import type { ClientLease, LeaseClient } from "../lib/client/protocol.ts";
import { Logger } from "../lib/control/log.ts";

const LEASE: ClientLease = {
  ipv4: 0xc6336401,
  host6: "2001:db8:7::10",
  tep6: "2001:db8:7::1",
  leaseTime: 60,
  obtainedAt: 0,
  expiresAt: 60_000,
};

function fakeClient(discover: () => Promise<ClientLease>): LeaseClient {
  return {
    host6: LEASE.host6,
    discover,
    request: () => Promise.reject(new Error("unused")),
    release: () => Promise.resolve(),
    close: () => {},
  };
}

/** Runs the loop until `tries` uses (or discovers) were made; returns the log text. */
async function run(
  discover: () => Promise<ClientLease>,
  use: (lease: ClientLease) => Promise<void>,
  tries: number,
): Promise<{ text: string; failed: DtiError | undefined }> {
  const lines: string[] = [];
  const log = new Logger({ sink: (t) => lines.push(t) });
  let made = 0;
  let failed: DtiError | undefined;
  await acquireLoop(fakeClient(discover), {
    log,
    server: "2001:db8:7::53",
    maxBackoffMs: 4000,
    current: () => made < tries && failed === undefined,
    use: (lease) => {
      made++;
      return use(lease);
    },
    sleep: () => Promise.resolve(),
    fail: (error) => {
      failed = error;
    },
  });
  log.flush();
  return { text: lines.join(""), failed };
}

test("a route the kernel already has is dti-failed, naming the address, and retried", async () => {
  const eexist = new Error("route add 203.0.113.0/24 dev dti1: EEXIST");
  const { text, failed } = await run(
    () => Promise.resolve(LEASE),
    () => Promise.reject(eexist),
    3,
  );
  expect(failed).toBeUndefined();
  expect(text).toContain("dti-failed");
  expect(text).toContain("the DTI could not be brought up with 198.51.100.1");
  expect(text).toContain("EEXIST");
  expect(text).not.toContain("server-unreachable");
});

test("a server that does not answer is still server-unreachable", async () => {
  let asked = 0;
  const { text } = await run(
    () => {
      asked++;
      return asked > 2 ? Promise.resolve(LEASE) : Promise.reject(new Error("no answer"));
    },
    () => Promise.resolve(),
    1,
  );
  expect(text).toContain("server-unreachable");
  expect(text).not.toContain("dti-failed");
});

test("a permanent DtiError ends the loop through fail, without a retry", async () => {
  let uses = 0;
  const { failed } = await run(
    () => Promise.resolve(LEASE),
    () => {
      uses++;
      return Promise.reject(new DtiError("no seg6 here", { permanent: true }));
    },
    5,
  );
  expect(failed?.message).toBe("no seg6 here");
  expect(uses).toBe(1);
});
