/**
 * Orphaned leases (active leases the pools no longer serve) are said and counted the same way
 * at start and at reload (lib/server/orphans.ts): before, a server restarted with a smaller
 * pool said `start … active=0` and no `WARN orphaned` (only a later SIGHUP did), and
 * `dstm_leases_active` left them out while `dstm lease ls` listed them active; and a reload to
 * `share = 4` called whole-address leases inside the pool "outside the pools".
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DstmClient, DstmTransport } from "../lib/client/protocol.ts";
import { Logger } from "../lib/control/log.ts";
import { DstmServer, type ServerConfig } from "../lib/server/server.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-nc9a-orphans-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

const TWO_POOLS: ServerConfig["pools"] = [
  { prefixes: ["198.51.100.0/30"], tep6: "2001:db8::1" },
  { prefixes: ["203.0.113.0/30"], tep6: "2001:db8::1" },
];

async function start(db: string, pools: ServerConfig["pools"]) {
  const lines: string[] = [];
  const log = new Logger({ sink: (t) => lines.push(t) });
  const config: ServerConfig = {
    pools,
    db,
    leaseTime: 600,
    listen: { address: "::1", port: 0 },
    sourceCheck: false,
    admission: { maxLeasesPerPrefix: 0, ratePerSecond: 0 },
    log,
  };
  const server = await DstmServer.start(config);
  let next = config;
  server.onReload(() => next);
  const transport = await DstmTransport.open({
    server: "::1",
    port: server.listening.port,
    retry: { initialMs: 200, tries: 3 },
  });
  const stop = async () => {
    transport.close();
    await server.stop();
  };
  cleanup.push(stop);
  return {
    server,
    transport,
    stop,
    log: () => {
      log.flush();
      return lines.join("");
    },
    set: (pools: ServerConfig["pools"]) => {
      next = { ...config, pools };
    },
    gauge: (name: string, labels = "") =>
      server.metrics.snapshot().find((s) => s.name === name && s.labels === labels)?.value,
  };
}

describe("orphaned leases", () => {
  test("at start: counted in active, WARN orphaned, dstm_leases_active = every active lease", async () => {
    const db = join(dir, "start.db");
    const first = await start(db, TWO_POOLS);
    for (let i = 1; i <= 4; i++)
      await new DstmClient(first.transport, `2001:db8:1::${i}`).discover();
    await first.stop();
    cleanup.length = 0;
    // Restarted without the second pool: its two leases are orphans.
    const s = await start(db, [TWO_POOLS[0]!]);
    const log = s.log();
    expect(log).toMatch(/ start .*active=4 orphaned=2 /);
    expect(log).toMatch(/WARN orphaned leases=2 outside=2 at=start detail="[^"]*2 in no pool/);
    expect(s.server.engine.leases({ state: "active" }).length).toBe(4);
    expect(s.gauge("dstm_leases_active")).toBe(4);
    expect(s.gauge("dstm_leases_orphaned", '{kind="outside"}')).toBe(2);
    // A reload that changes nothing says the same.
    await s.server.reload("test");
    expect(s.log()).toMatch(/ reload .*active=4 orphaned=2/);
    expect(s.log()).toMatch(/WARN orphaned leases=2 outside=2 at=reload/);
  });

  test("re-shared: whole-address leases inside a pool now shared 4 ways are not called outside the pools", async () => {
    const s = await start(join(dir, "share.db"), [TWO_POOLS[0]!]);
    for (let i = 1; i <= 2; i++) await new DstmClient(s.transport, `2001:db8:1::${i}`).discover();
    s.set([{ prefixes: ["198.51.100.0/30"], tep6: "2001:db8::1", share: 4 }]);
    const result = await s.server.reload("test");
    expect(result.ok).toBe(true);
    const log = s.log();
    const warn = log.split("\n").find((l) => / WARN orphaned /.test(l)) ?? "";
    expect(warn).toContain("other-layout=2");
    expect(warn).toContain("port set their pool's share no longer gives");
    expect(warn).not.toMatch(/outside the pools|in no pool/);
    expect(s.gauge("dstm_leases_active")).toBe(2);
    expect(s.gauge("dstm_leases_orphaned", '{kind="other-layout"}')).toBe(2);
  });
});
