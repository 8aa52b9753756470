/**
 * The set-up the active-active tests share (test/active_active_tep, test/redteam_scaleout17_kill,
 * _race, _lag, test/scaleout18_snapshot_bind, _unbind_order): a temporary directory, the skip
 * reason, one teardown list run by `afterAll`, and {@link AaSuite.twoServers} — a throwaway
 * PostgreSQL, servers A and B on it, one TEP with both as `--server`, returned once the TEP's
 * SYNC is heard at both. Each test keeps only its scenario. Apart from ./aa_lab.ts because it
 * registers `afterAll` (bun:test), which bench/failover.ts (through ./aa_failover.ts) must not
 * import.
 */
import { afterAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AA, AaLab, type AaServer, controlGet, metric } from "./aa_lab.ts";
import { announceSkip, netnsSkipReason, startScript } from "./netns.ts";
import { postgresBin, startPostgres } from "./postgres.ts";
import { waitUntil } from "./wait.ts";

/** Two servers on one database and a TEP that syncs with both, ready. */
export interface AaPair {
  readonly lab: AaLab;
  /** Server 0, on [AA.server6(0)]:4607. */
  readonly a: AaServer;
  /** Server 1, on [AA.server6(1)]:4607. */
  readonly b: AaServer;
  /** The `postgres://` URL both servers use. */
  readonly url: string;
  /** One sample of server `s`'s /metrics (0 when absent: ./prometheus.ts metric). */
  serverMetric(s: AaServer, name: string, labels?: Record<string, string>): Promise<number>;
  /** One sample of the TEP's /metrics. */
  tepMetric(name: string, labels?: Record<string, string>): Promise<number>;
  /**
   * Runs test/sys_scripts/aa_hosts.ts `plan` with `ops` (its steps: discover, renew, release …)
   * against both servers, in the servers' namespace (60 s at the most): the leases it holds
   * after, host → IPv4 address.
   */
  plan(ops: readonly object[]): Promise<{ leases: Record<string, string> }>;
}

export interface AaSuite {
  /** Why the file's tests cannot run here (root, TUN, PostgreSQL, `nft` when asked), or null. */
  readonly skip: string | null;
  /** The file's temporary directory (removed in `afterAll`). */
  readonly dir: string;
  /** Runs `fn` in the file's `afterAll`, the last added first (also when a test failed). */
  defer(fn: () => unknown): void;
  /**
   * A new PostgreSQL database, servers A and B on it (`serverArgs` added to both), a TEP
   * with both as `--server`, in namespaces named `nsPrefix…` and a socket directory of its
   * own; resolves once both servers count the TEP connected (20 s at the most).
   */
  twoServers(o: { nsPrefix: string; serverArgs?: readonly string[] }): Promise<AaPair>;
}

/**
 * Registers the file's teardown (`afterAll`, 60 s) and announces a skip; `name` names the
 * suite, `dirPrefix` the temporary directory, `needsNft` adds `nft` to what is required.
 */
export function aaSuite(name: string, o: { dirPrefix: string; needsNft?: boolean }): AaSuite {
  const cleanup: (() => unknown)[] = [];
  afterAll(async () => {
    for (const fn of cleanup.reverse()) await fn();
  }, 60_000);
  const dir = mkdtempSync(join(tmpdir(), o.dirPrefix));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  const skip =
    netnsSkipReason({ tun: true }) ??
    (postgresBin() ? null : "needs PostgreSQL (scripts/test-deps.sh installs it)") ??
    (!o.needsNft || Bun.which("nft") ? null : "needs nft");
  announceSkip(name, skip);
  return {
    skip,
    dir,
    defer: (fn) => {
      cleanup.push(fn);
    },
    async twoServers({ nsPrefix, serverArgs }) {
      const pg = await startPostgres();
      cleanup.push(() => pg.stop());
      const url = await pg.createDatabase();
      // A directory per pair: an earlier test's servers (and sockets) stay until afterAll.
      const own = mkdtempSync(join(dir, "lab-"));
      const lab = new AaLab({ dir: own, db: url, pool: "198.18.0.0/24", nsPrefix, serverArgs });
      cleanup.push(() => lab.down());
      const [a, b] = await Promise.all([lab.startServer(0), lab.startServer(1)]);
      await lab.startTep();
      const serverMetric = async (s: AaServer, name: string, labels?: Record<string, string>) =>
        metric(await controlGet(s.control, "/metrics"), name, labels);
      const tepMetric = async (name: string, labels?: Record<string, string>) =>
        metric(await lab.tepMetrics(), name, labels);
      await waitUntil(
        async () =>
          (await serverMetric(a, "dstm_tep_connected", { tep: AA.tep6 })) === 1 &&
          (await serverMetric(b, "dstm_tep_connected", { tep: AA.tep6 })) === 1,
        { timeoutMs: 20_000, what: "the TEP's SYNC at both servers" },
      );
      const servers = `${AA.server6(0)},${AA.server6(1)}`;
      const plan = (ops: readonly object[]) =>
        startScript<{ leases: Record<string, string> }>(
          lab.srv,
          "aa_hosts.ts",
          ["plan", servers, JSON.stringify(ops)],
          60_000,
        ).result;
      return { lab, a, b, url, serverMetric, tepMetric, plan };
    },
  };
}
