/**
 * Failover under load (issue 12, item 4): two `dstm server` processes on one throwaway
 * PostgreSQL, one `dstm tep`, one real `dstm client` behind it, and HOSTS simulated hosts
 * (test/sys_scripts/aa_hosts.ts, `load`) leasing and renewing through both servers with
 * failover; server A is killed with SIGKILL in the middle. Returns what happened; the test
 * (test/active_active_failover.test.ts) asserts on it, bench/failover.ts prints it.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SQL } from "bun";
import { canonicalIPv6 } from "../../lib/net/addr.ts";
import { AA, AaLab } from "./aa_lab.ts";
import { startScript } from "./netns.ts";
import { startPostgres } from "./postgres.ts";

export interface FailoverLoad {
  readonly hosts: number;
  readonly renewals: number;
  readonly intervalMs: number;
  /** The load stops after this long at the latest (ms). */
  readonly maxMs: number;
  /** A is killed once this many exchanges were answered. */
  readonly killAfter: number;
}

export interface FailoverOutcome {
  /** Each host's last acknowledged lease. */
  readonly acked: Record<string, { ipv4: string; psid: number }>;
  /** Acknowledged leases the database does not hold active for that host afterwards. */
  readonly missing: string[];
  /**
   * Held twice (must be none): active (address, PSID) pairs and hosts that occur more than
   * once, addresses whose active rows mix port-set layouts (overlapping port sets).
   */
  readonly duplicates: { addressPsid: number; host: number; layouts: number };
  /** Exchanges answered, in total and after the kill by server (A: once it had exited). */
  readonly answered: number;
  readonly answeredAfterKill: [number, number];
  /** Hosts answered by B after the kill. */
  readonly hostsOnBAfterKill: number;
  /** Exchanges that failed over from a silent server to the next. */
  readonly failovers: number;
  /** Exchanges no server answered, and exchanges refused (NAK). */
  readonly lost: number;
  readonly refused: number;
  /** From the kill to the last answer of an exchange that failed over (ms). */
  readonly recoverMs: number;
  /** Longest time without any answer after the kill (ms). */
  readonly longestGapMs: number;
  /** Exchange latency after the kill (ms): p50, p99, max. */
  readonly latencyAfterKill: { p50: number; p99: number; max: number };
  /** Echo replies through the TEP out of 3, before and after the kill. */
  readonly pingBefore: number;
  readonly pingAfter: number;
}

const quantile = (sorted: readonly number[], q: number) =>
  sorted.length === 0
    ? 0
    : (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0);

/** Runs the scenario (root, namespaces, PostgreSQL installed); cleans up after itself. */
export async function runFailover(load: FailoverLoad): Promise<FailoverOutcome> {
  const dir = mkdtempSync(join(tmpdir(), "dstm-failover-"));
  const pg = await startPostgres();
  let lab: AaLab | undefined;
  try {
    const url = await pg.createDatabase();
    lab = new AaLab({
      dir,
      db: url,
      pool: "198.18.0.0/22",
      serverArgs: ["--lease-time", "300", "--share", "4"],
    });
    const [a] = await Promise.all([lab.startServer(0), lab.startServer(1)]);
    await lab.startTep();
    await lab.startClient();
    const pingBefore = lab.ping(3);
    const run = startScript<{
      leases: Record<string, { ipv4: string; psid: number }>;
      answers: [number, number, number, number, number][];
      lost: number;
      refused: number;
    }>(
      lab.srv,
      "aa_hosts.ts",
      [
        "load",
        `${AA.server6(0)},${AA.server6(1)}`,
        String(load.hosts),
        String(load.renewals),
        String(load.intervalMs),
        String(load.maxMs),
      ],
      load.maxMs + 60_000,
    );
    await run.waitFor(new RegExp(`progress answered=${load.killAfter}\\b`), load.maxMs);
    const killedAt = Date.now();
    await lab.stop(a.proc, "SIGKILL");
    // A is gone: nothing it answers can arrive after this (what it sent before may arrive
    // between killedAt and now).
    const deadAt = Date.now() + 50;
    const result = await run.result;
    const pingAfter = lab.ping(3);

    const sql = new SQL(url);
    const rows = (await sql`
      SELECT ipv4::bigint AS ipv4, psid, host6 FROM dstm_leases WHERE state = 'active'`) as {
      ipv4: string;
      psid: number;
      host6: string;
    }[];
    const [dupes] = (await sql`
      SELECT
        (SELECT count(*) FROM (SELECT ipv4, psid FROM dstm_leases WHERE state = 'active'
          GROUP BY ipv4, psid HAVING count(*) > 1) d)::int AS address_psid,
        (SELECT count(*) FROM (SELECT host6 FROM dstm_leases WHERE state = 'active'
          GROUP BY host6 HAVING count(*) > 1) h)::int AS host,
        (SELECT count(*) FROM (SELECT ipv4 FROM dstm_leases WHERE state = 'active'
          GROUP BY ipv4 HAVING count(DISTINCT (psid_offset, psid_length)) > 1) l)::int AS layouts`) as {
      address_psid: number;
      host: number;
      layouts: number;
    }[];
    await sql.close();
    const toIPv4 = (n: number) => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join(".");
    const held = new Map(rows.map((r) => [r.host6, `${toIPv4(Number(r.ipv4))}/${r.psid}`]));
    const missing = Object.entries(result.leases)
      .filter(([h, l]) => held.get(canonicalIPv6(h) ?? h) !== `${l.ipv4}/${l.psid}`)
      .map(([h]) => h);

    const after = result.answers.filter(([end]) => end >= killedAt);
    const ends = [killedAt, ...after.map(([end]) => end)].sort((x, y) => x - y);
    let longestGapMs = 0;
    for (let i = 1; i < ends.length; i++)
      longestGapMs = Math.max(longestGapMs, (ends[i] ?? 0) - (ends[i - 1] ?? 0));
    const failedOver = result.answers.filter(([, , , f]) => f === 1);
    const latencies = after.map(([, ms]) => ms).sort((x, y) => x - y);
    return {
      acked: result.leases,
      missing,
      duplicates: {
        addressPsid: dupes?.address_psid ?? -1,
        host: dupes?.host ?? -1,
        layouts: dupes?.layouts ?? -1,
      },
      answered: result.answers.length,
      answeredAfterKill: [
        after.filter(([end, , s]) => s === 0 && end > deadAt).length,
        after.filter(([, , s]) => s === 1).length,
      ],
      hostsOnBAfterKill: new Set(after.filter(([, , s]) => s === 1).map(([, , , , n]) => n)).size,
      failovers: failedOver.length,
      lost: result.lost,
      refused: result.refused,
      recoverMs: Math.max(0, ...failedOver.map(([end]) => end - killedAt)),
      longestGapMs,
      latencyAfterKill: {
        p50: quantile(latencies, 0.5),
        p99: quantile(latencies, 0.99),
        max: latencies.at(-1) ?? 0,
      },
      pingBefore,
      pingAfter,
    };
  } finally {
    await lab?.down();
    await pg.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
