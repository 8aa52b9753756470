/**
 * A TEP whose `--server`s do not share one lease database (docs/scale-out.md): two real
 * `dstm server` processes, each on its own SQLite file, one real `dstm tep --server A
 * --server B`, in namespaces. Each server holds only its own leases, so each replaces the
 * TEP's table with its own at every SYNC: the TEP says so at warn (`servers-disagree`, both
 * servers named) and in `dstm_tep_servers_disagree` (lib/tep/snapshot_flaps.ts). The same
 * lab on one PostgreSQL database never says it (test/active_active_tep.test.ts).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AA, AaLab, metric } from "./helpers/aa_lab.ts";
import { announceSkip, netnsSkipReason, startScript } from "./helpers/netns.ts";
import { waitUntil } from "./helpers/wait.ts";

const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const fn of cleanup.reverse()) await fn();
}, 60_000);
const dir = mkdtempSync(join(tmpdir(), "dstm-disagree-"));
cleanup.push(() => rmSync(dir, { recursive: true, force: true }));

const skip = netnsSkipReason({ tun: true });
announceSkip("tep_servers_disagree", skip);

describe.skipIf(skip !== null)("servers with separate databases, one TEP (namespaces)", () => {
  test("the TEP warns once that its servers replace each other's bindings, naming both", async () => {
    const lab = new AaLab({
      dir,
      db: "",
      dbOf: (i) => join(dir, `server${i}.db`),
      pool: "198.18.0.0/24",
    });
    cleanup.push(() => lab.down());
    await Promise.all([lab.startServer(0), lab.startServer(1)]);
    const tep = await lab.startTep();
    // Three hosts lease through each server: each server's view of the TEP has only its own.
    const plan = [
      { op: "discover", server: 0, from: 1, to: 4 },
      { op: "discover", server: 1, from: 4, to: 7 },
    ];
    const run = startScript<{ leases: Record<string, string> }>(
      lab.srv,
      "aa_hosts.ts",
      ["plan", `${AA.server6(0)},${AA.server6(1)}`, JSON.stringify(plan)],
      60_000,
    );
    expect(Object.keys((await run.result).leases).length).toBe(6);
    const line = await tep.waitFor(/ servers-disagree /, 40_000);
    expect(line).toContain(`servers=${AA.server6(0)},${AA.server6(1)}`);
    expect(line).toMatch(/ WARN /);
    await waitUntil(async () => metric(await lab.tepMetrics(), "dstm_tep_servers_disagree") === 1, {
      what: "dstm_tep_servers_disagree 1",
    });
    expect(metric(await lab.tepMetrics(), "dstm_tep_snapshot_flaps_total")).toBeGreaterThanOrEqual(
      3,
    );
    // Said once, not at every flap.
    expect(tep.lines.filter((l) => l.includes("servers-disagree"))).toHaveLength(1);
  }, 120_000);
});
