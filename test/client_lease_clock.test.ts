/**
 * A native lease counts from when its request was first sent, not when the answer came
 * (RFC 2131 §4.4.1, lib/client/protocol.ts): the client's expiry is never after the server's,
 * so at the expiry it has stopped using the address before the server may give it to another.
 */
import { afterAll, expect, test } from "bun:test";
import { DstmClient, DstmTransport } from "../lib/client/protocol.ts";
import { Logger } from "../lib/control/log.ts";
import { DstmServer } from "../lib/server/server.ts";

const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const fn of cleanup.reverse()) await fn();
});

test("DISCOVER and REQUEST leases count from the request's sending", async () => {
  const server = await DstmServer.start({
    pools: [{ prefixes: ["198.18.0.0/28"], tep6: "2001:db8::1" }],
    leaseTime: 600,
    listen: { address: "::1", port: 0 },
    sourceCheck: false,
    admission: { maxLeasesPerPrefix: 0, ratePerSecond: 0 },
    log: new Logger({ sink: () => {} }),
  });
  cleanup.push(() => server.stop());
  let t = 1_000_000;
  // The answer takes 700 ms on the client's (fake) clock.
  const transport = await DstmTransport.open({
    server: "::1",
    port: server.listening.port,
    onMessage: (direction) => {
      if (direction === "received") t += 700;
    },
  });
  cleanup.push(() => transport.close());
  const client = new DstmClient(transport, "2001:db8::9", () => t);
  const lease = await client.discover();
  expect(t).toBe(1_000_700);
  expect(lease.obtainedAt).toBe(1_000_000);
  expect(lease.expiresAt).toBe(1_000_000 + 600_000);
  const renewed = await client.request(lease.ipv4);
  expect(renewed.obtainedAt).toBe(1_000_700);
  expect(renewed.expiresAt).toBe(1_000_700 + 600_000);
});
