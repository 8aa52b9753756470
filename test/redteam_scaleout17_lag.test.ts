/**
 * Red team, issue 12 §3 (docs/scale-out.md, "TEPs with several servers"): a server that has
 * not yet taken in the other server's latest rows (NOTIFY not yet read: a pause, a busy event
 * loop, a lost notification polled a second later) must not answer a TEP's SYNC with a
 * snapshot cut from its stale view: that snapshot replaces the TEP's table and drops the
 * bindings the other server BIND-ed meanwhile, for leases that are active in the database and
 * acknowledged to their hosts (their packets dropped until a later SYNC repairs it).
 *
 * Two real `dstm server` processes on one throwaway PostgreSQL, one real `dstm tep --server A
 * --server B`, in namespaces (prefix `r17`). Server A is paused (SIGSTOP) while 10 hosts lease
 * through B (B BINDs each at the TEP); the TEP's SYNCs to A queue up meanwhile. A resumes: it
 * must take in B's rows before it judges the TEP's SYNC, so every snapshot it sends holds
 * all 10 bindings. Before the fix A cut a snapshot of 0 bindings at once and the TEP applied
 * it (log `snapshot bindings=0 server=A`), dropping the 10 live bindings.
 *
 * The other way round: A holds the 10 leases, is paused, 4 hosts release through B (B
 * UNBINDs them); A resumes. Before the fix A's snapshots held all 10, bringing the 4 released
 * bindings back at the TEP (their addresses free in the database); now they hold 6.
 */
import { describe, expect, test } from "bun:test";
import { AA } from "./helpers/aa_lab.ts";
import { type AaPair, aaSuite } from "./helpers/aa_suite.ts";
import { waitUntil } from "./helpers/wait.ts";

const { skip, defer, twoServers } = aaSuite("redteam_scaleout17_lag", {
  dirPrefix: "dstm-r17lag-",
});

/** The TEP's `snapshot` log lines: bindings and sending server. */
function snapshots(lines: readonly string[]): { bindings: number; server: string }[] {
  const out: { bindings: number; server: string }[] = [];
  for (const line of lines) {
    if (!/ snapshot /.test(line)) continue;
    const bindings = /bindings=(\d+)/.exec(line)?.[1];
    const server = /server=(\S+)/.exec(line)?.[1];
    if (bindings !== undefined && server !== undefined)
      out.push({ bindings: Number(bindings), server });
  }
  return out;
}

/** The TEP's count of `kind` messages from server `server`, and its server-made bindings. */
function tepCounters({ tepMetric }: AaPair) {
  return {
    tepCount: (server: number, kind: string) =>
      tepMetric("dstm_tep_control_by_server_total", { server: AA.server6(server), kind }),
    bindings: () => tepMetric("dstm_tep_bindings", { origin: "server" }),
  };
}

describe.skipIf(skip !== null)("a server behind the database answers a TEP's SYNC", () => {
  test("its snapshot never drops the bindings the other server made meanwhile", async () => {
    const pair = await twoServers({ nsPrefix: "r17l-" });
    const { lab, a, serverMetric, plan } = pair;
    const { tepCount, bindings } = tepCounters(pair);

    // A paused: it hears neither NOTIFY nor the TEP until it resumes.
    a.proc.proc.kill("SIGSTOP");
    let resumed = false;
    defer(() => {
      if (!resumed) a.proc.proc.kill("SIGCONT");
    });
    const { leases } = await plan([{ op: "discover", server: 1, from: 1, to: 11 }]);
    expect(Object.keys(leases).length).toBe(10);
    expect(await bindings()).toBe(10);
    // The TEP's SYNCs to A (reporting the 10 bindings) queue up at A: B answers the same
    // SYNCs, so two more answers from B mean at least one SYNC with 10 went to A too.
    const bSyncs = await tepCount(1, "sync");
    await waitUntil(async () => (await tepCount(1, "sync")) >= bSyncs + 2, {
      timeoutMs: 20_000,
      what: "two more SYNC rounds while A is paused",
    });
    const aSyncs = await tepCount(0, "sync");
    a.proc.proc.kill("SIGCONT");
    resumed = true;
    // A answers the queued SYNCs and then fresh ones: two answers later, whatever snapshot
    // it sent for the queued ones has reached the TEP (one socket, in order).
    await waitUntil(async () => (await tepCount(0, "sync")) >= aSyncs + 2, {
      timeoutMs: 20_000,
      what: "A answering the TEP again",
    });
    await waitUntil(async () => (await serverMetric(a, "dstm_leases_active")) === 10, {
      timeoutMs: 10_000,
      what: "A holding B's 10 leases",
    });
    const fromA = snapshots(lab.tep!.lines).filter((s) => s.server === AA.server6(0));
    // Every snapshot A sent holds the 10 active leases: none dropped live bindings.
    expect(fromA.filter((s) => s.bindings < 10)).toEqual([]);
    expect(await bindings()).toBe(10);
  }, 120_000);

  test("its snapshot never brings back the bindings the other server released meanwhile", async () => {
    const pair = await twoServers({ nsPrefix: "r17m-" });
    const { lab, a, serverMetric, plan } = pair;
    const { tepCount, bindings } = tepCounters(pair);
    // 10 hosts lease through B; A takes them in; then A is paused.
    const granted = await plan([{ op: "discover", server: 1, from: 1, to: 11 }]);
    expect(Object.keys(granted.leases).length).toBe(10);
    await waitUntil(async () => (await serverMetric(a, "dstm_leases_active")) === 10, {
      timeoutMs: 10_000,
      what: "A holding B's 10 leases",
    });
    a.proc.proc.kill("SIGSTOP");
    let resumed = false;
    defer(() => {
      if (!resumed) a.proc.proc.kill("SIGCONT");
    });
    // 4 of them release through B (B UNBINDs them) while A cannot hear of it.
    await plan([
      { op: "renew", server: 1, from: 1, to: 5, leases: granted.leases },
      { op: "release", server: 1, from: 1, to: 5 },
    ]);
    await waitUntil(async () => (await bindings()) === 6, {
      timeoutMs: 10_000,
      what: "6 bindings left at the TEP",
    });
    const bSyncs = await tepCount(1, "sync");
    await waitUntil(async () => (await tepCount(1, "sync")) >= bSyncs + 2, {
      timeoutMs: 20_000,
      what: "two more SYNC rounds while A is paused",
    });
    const aSyncs = await tepCount(0, "sync");
    a.proc.proc.kill("SIGCONT");
    resumed = true;
    await waitUntil(async () => (await tepCount(0, "sync")) >= aSyncs + 2, {
      timeoutMs: 20_000,
      what: "A answering the TEP again",
    });
    const fromA = snapshots(lab.tep!.lines).filter((s) => s.server === AA.server6(0));
    // No snapshot from A held the 4 released leases again.
    expect(fromA.filter((s) => s.bindings !== 6)).toEqual([]);
    expect(await bindings()).toBe(6);
  }, 120_000);
});
