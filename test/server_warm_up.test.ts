/**
 * The server's warm-up (lib/server/warm_up.ts): before listening, `dstm server` runs its
 * request paths on synthetic exchanges (native DISCOVER, and DHCPv4-over-DHCPv6 DISCOVER +
 * REQUEST when on) on a scratch engine, bounded in count and time, so that the first real
 * hosts are not answered at the speed of a cold JIT. Every synthetic exchange gets its lease
 * there, and none of it reaches the server's lease store or its answers' counters.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DstmClient, DstmTransport } from "../lib/client/protocol.ts";
import { warmUp } from "../lib/server/warm_up.ts";
import { listenPort, loopbackServerArgs, runDstm, spawnDstm } from "./helpers/process.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-warmup-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const POOLS = [{ name: "p", prefixes: ["198.51.100.0/24"], tep6: "2001:db8::1", tep4: 0xc0000201 }];

describe("warmUp", () => {
  test("every native and 4o6 exchange is leased on the scratch engine", async () => {
    const r = await warmUp(
      {
        pools: POOLS,
        leaseTime: 3600,
        maxLeaseTime: 3600,
        dhcp4o6: { serverId: 0xc0000201 } as never,
      },
      "info",
      { exchanges: 300, maxMs: 60_000 },
    );
    expect(r.exchanges).toBe(300);
    expect(r.leased).toBe(300);
    expect(r.leased4o6).toBe(300);
  });

  test("a shared pool's layout is warmed too (port sets)", async () => {
    const shared = [{ ...POOLS[0]!, share: 4 }];
    const r = await warmUp({ pools: shared, leaseTime: 600 } as never, "warn", {
      exchanges: 100,
      maxMs: 60_000,
    });
    expect(r.leased).toBe(100);
  });

  test("bounded in time: no time, no exchange", async () => {
    const r = await warmUp({ pools: POOLS, leaseTime: 3600 } as never, "info", {
      exchanges: 1000,
      maxMs: 0,
    });
    expect(r.exchanges).toBe(0);
  });
});

test("dstm server warms up before it listens, and the warm-up leaves no lease behind", async () => {
  const control = join(dir, "server.sock");
  const server = spawnDstm(loopbackServerArgs("memory", ["--control", control]));
  try {
    const warm = await server.waitFor(/ warm-up /, 20_000);
    expect(warm).toMatch(/ warm-up exchanges=\d+ scratch-leases=\d+ ms=\d+ store=.*not your pools/);
    const [, exchanges, leased] = / exchanges=(\d+) scratch-leases=(\d+)/.exec(warm)!;
    expect(Number(exchanges)).toBeGreaterThan(0);
    expect(leased).toBe(exchanges);
    const start = await server.waitFor(/ start /, 20_000);
    expect(server.lines.indexOf(warm)).toBeLessThan(server.lines.indexOf(start));
    // None of the synthetic leases is the server's; a real host gets the pool's first address.
    const ls = await runDstm(["lease", "ls", "--control", control, "--json"]);
    expect(JSON.parse(ls.stdout)).toEqual({ leases: [], next: null });
    const transport = await DstmTransport.open({ server: "::1", port: listenPort(start) });
    try {
      const lease = await new DstmClient(transport, "2001:db8:1::10").discover();
      expect(lease.ipv4).toBe(0xc6336401);
    } finally {
      transport.close();
    }
    const after = JSON.parse(
      (await runDstm(["lease", "ls", "--control", control, "--json"])).stdout,
    );
    expect(after.leases.map((l: { hostIPv6: string }) => l.hostIPv6)).toEqual(["2001:db8:1::10"]);
  } finally {
    server.proc.kill("SIGTERM");
    await server.exited;
  }
}, 60_000);
