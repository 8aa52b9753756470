/**
 * lib/server/lease_admin.ts without a network: a reservation on another host's lease is
 * refused (409, counted, logged with the reason); a wipe ends every lease of a large pool in
 * several store writes.
 */
import { expect, test } from "bun:test";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { parseIPv4 } from "../lib/net/addr.ts";
import { LeaseAdmin, WIPE_SLICE } from "../lib/server/lease_admin.ts";
import { ok, startEngine } from "./helpers/engine.ts";

function admin(shared: boolean, prefixes = ["192.0.2.0/29"], share = 1) {
  const lines: string[] = [];
  const metrics = new Metrics();
  const log = new Logger({ sink: (line) => lines.push(line) });
  return startEngine([{ prefixes, tep6: "2001:db8::1", share }], {
    store: new MemoryLeaseStore({ shared }),
    maxLeasesPerPrefix: 0,
  }).then(({ engine, store }) => ({
    engine,
    store,
    lines,
    log,
    metrics,
    admin: new LeaseAdmin({
      engine,
      bindings: () => undefined,
      leaseTime: () => 600,
      log,
      metrics,
    }),
  }));
}

const request = { host6: "2001:db8:1::9", ipv4: parseIPv4("192.0.2.3")!, psid: 0, reserve: true };

test("a reservation on another host's lease is refused with the reason, counted and logged", async () => {
  const { admin: a, metrics, lines, log, engine, store } = await admin(false);
  const held = ok(await engine.discover("2001:db8:1::1"));
  const reply = await a.add({ ...request, ipv4: held.ipv4 });
  expect(reply.status).toBe(409);
  expect(String(reply.body.error)).toContain("is leased to 2001:db8:1::1");
  expect(
    metrics.get("dstm_lease_admin_refused_total", { action: "reserve", reason: "in-use" }),
  ).toBe(1);
  log.flush();
  expect(lines.join("\n")).toMatch(/WARN lease-admin-refused action=reserve reason=in-use /);
  expect(engine.reservations()).toEqual([]);
  // A free address is reserved, and stored.
  expect((await a.add(request)).status).toBe(201);
  expect((await store.loadReservations?.())!.map((r) => r.host6)).toEqual([request.host6]);
  expect(metrics.get("dstm_lease_admin_total", { action: "reserve" })).toBe(1);
});

test("a wipe ends every active lease of the pool, in slices of WIPE_SLICE per store write", async () => {
  const { admin: a, engine, store } = await admin(false, ["198.51.100.0/24"], 16);
  for (let i = 0; i < 2100; i++) ok(await engine.discover(`2001:db8:${i.toString(16)}::1`));
  const before = engine.writeStats().batches;
  const reply = await a.wipe("198.51.100.0/24");
  expect(reply.body).toEqual({ pool: "198.51.100.0/24", ended: 2100 });
  expect((await store.loadAll()).filter((l) => l.state === "active")).toEqual([]);
  expect(engine.writeStats().batches - before).toBe(Math.ceil(2100 / WIPE_SLICE));
  expect(WIPE_SLICE).toBeLessThan(2100);
});

test("a reservation says whether its PSID names a port set: shared pool yes, unshared no", async () => {
  const unshared = await admin(false);
  const plain = await unshared.admin.add(request);
  expect(plain.status).toBe(201);
  expect(plain.body.reservation).toMatchObject({ hostIPv4: "192.0.2.3", shared: false });
  const shared = await admin(false, ["198.51.100.0/29"], 4);
  const slot = await shared.admin.add({ ...request, ipv4: parseIPv4("198.51.100.2")!, psid: 3 });
  expect(slot.status).toBe(201);
  expect(slot.body.reservation).toMatchObject({ hostIPv4: "198.51.100.2", psid: 3, shared: true });
});
