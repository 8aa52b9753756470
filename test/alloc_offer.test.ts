import { describe, expect, test } from "bun:test";
import { AllocationEngine } from "../lib/alloc/engine.ts";
import type { LeaseOp } from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";

const POOL = { prefixes: ["198.51.100.0/29"], tep6: "2001:db8::1" };

describe("discover with persist: false (a DHCP OFFER)", () => {
  test("a new lease is held in memory only, and written by the REQUEST that confirms it", async () => {
    const store = new MemoryLeaseStore();
    const engine = new AllocationEngine({ pools: [POOL], store, leaseTime: 600 });
    await engine.start();
    const offer = await engine.discover("2001:db8:1::1", { leaseTime: 60, persist: false });
    expect(offer.ok).toBe(true);
    const ipv4 = offer.ok ? offer.lease.ipv4 : 0;
    expect(engine.lookupHost("2001:db8:1::1")?.ipv4).toBe(ipv4);
    expect((await store.loadAll()).length).toBe(0);
    // The address is taken meanwhile: another host gets another one.
    const other = await engine.discover("2001:db8:1::2");
    expect(other.ok && other.lease.ipv4).not.toBe(ipv4);
    const ack = await engine.request("2001:db8:1::1", ipv4);
    expect(ack.ok).toBe(true);
    const rows = await store.loadAll();
    expect(rows.find((r) => r.host6 === "2001:db8:1::1")?.state).toBe("active");
    await engine.close();
  });

  test("after a restart an unconfirmed offer is gone and its address free again", async () => {
    const store = new MemoryLeaseStore();
    const first = new AllocationEngine({ pools: [POOL], store, leaseTime: 600 });
    await first.start();
    const offer = await first.discover("2001:db8:1::1", { persist: false });
    const ipv4 = offer.ok ? offer.lease.ipv4 : 0;
    await first.close();
    const second = new AllocationEngine({ pools: [POOL], store, leaseTime: 600 });
    await second.start();
    expect(second.lookupHost("2001:db8:1::1")).toBeUndefined();
    // The REQUEST of the crashed exchange still succeeds (INIT-REBOOT path).
    const ack = await second.request("2001:db8:1::1", ipv4);
    expect(ack.ok && ack.lease.ipv4).toBe(ipv4);
    await second.close();
  });

  test("a failed write rolls an unconfirmed offer back with everything else", async () => {
    let fail = false;
    const inner = new MemoryLeaseStore();
    const store = {
      kind: "flaky",
      loadAll: () => inner.loadAll(),
      write: (ops: readonly LeaseOp[]) =>
        fail ? Promise.reject(new Error("disk full")) : inner.write(ops),
      close: () => inner.close(),
    };
    const engine = new AllocationEngine({ pools: [POOL], store, leaseTime: 600 });
    await engine.start();
    await engine.discover("2001:db8:1::1", { persist: false });
    fail = true;
    const refused = await engine.discover("2001:db8:1::2");
    expect(refused.ok).toBe(false);
    expect(engine.lookupHost("2001:db8:1::1")).toBeUndefined();
    expect(engine.lookupHost("2001:db8:1::2")).toBeUndefined();
    await engine.close().catch(() => {});
  });
});
