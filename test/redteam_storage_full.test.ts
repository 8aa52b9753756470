/**
 * Red team of the durable lease store against a full disk (ENOSPC → SQLITE_FULL), with a real
 * `dstm server` whose database lives on a 2 MiB tmpfs of the test's own mount namespace
 * (test/helpers/private_tmpfs.ts), filled by a file while clients allocate.
 *
 * What a demanding operator expects, and what is checked:
 * - no ACK for a lease the database does not hold: every ACK the clients got is an active
 *   row afterwards (sqlite3, and `dstm lease ls`), no address or host twice;
 * - the server keeps running and answers every request: a new lease or a release it cannot
 *   store gets NAK SERVER_ERROR (docs/protocol.md); a renewal gets the lease as stored, its
 *   expiry unchanged (test/redteam_storage_renewal.test.ts);
 * - each refusal counted by cause (`dstm_store_refused_total{reason="disk-full"}`, failed
 *   batches in `dstm_store_write_failures_total`) and logged at warn with ENOSPC named, a
 *   bounded number of lines however many batches fail;
 * - once space is freed, allocation resumes without a restart (`store-recovered` logged), a
 *   host that was refused gets a lease, and the server's memory equals the database.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DstmClient, DstmRefusedError, type DstmTransport } from "../lib/client/protocol.ts";
import { formatIPv4, parseIPv4 } from "../lib/net/addr.ts";
import { Status } from "../lib/wire/dstm_types.ts";
import { PrivateTmpfs } from "./helpers/private_tmpfs.ts";
import { loopbackServerArgs, spawnDstm } from "./helpers/process.ts";
import { activeInDb, activeInServer, metric, serverReady } from "./helpers/storage_checks.ts";
import { waitUntil } from "./helpers/wait.ts";

const sockets = mkdtempSync(join(tmpdir(), "dstm-rtfull-ctl-"));
afterAll(() => rmSync(sockets, { recursive: true, force: true }));

const isRoot = process.getuid?.() === 0 && Bun.which("unshare") !== null;

/** Outcome of one client exchange: the lease's IPv4 (dotted), or why not. */
type Outcome = { ipv4: string } | { refused: Status } | { error: string };

async function outcome<T extends { ipv4: number }>(p: Promise<T>): Promise<Outcome> {
  try {
    return { ipv4: formatIPv4((await p).ipv4) };
  } catch (error) {
    if (error instanceof DstmRefusedError) return { refused: error.status };
    return { error: (error as Error).message };
  }
}

test.skipIf(!isRoot)(
  "disk full mid-load: no ACK without a stored lease, refusals counted and warned with ENOSPC, allocation resumes once space is freed, memory equals the database",
  async () => {
    const fs = await PrivateTmpfs.open("dstm-rtfull-", 2 * 1024 * 1024);
    const db = join(fs.dir, "leases.db");
    const control = join(sockets, "full.sock");
    const server = spawnDstm(
      loopbackServerArgs(db, ["--metrics", "[::1]:0", "--control", control], "198.51.100.0/22"),
      {},
      fs.inside([]),
    );
    let transport: DstmTransport | undefined;
    try {
      const ready = await serverReady(server);
      const metrics = ready.metrics;
      transport = ready.transport;
      const t = transport;
      const client = (host: string) => new DstmClient(t, host);
      /** host → IPv4 of every ACK (DISCOVER or REQUEST) received. */
      const acked = new Map<string, string>();
      const refusedHosts: string[] = [];
      const errors: string[] = [];
      let issued = 0;
      let loading = true;
      const worker = async () => {
        while (loading && issued < 900) {
          const host = `2001:db8:f::${(++issued).toString(16)}`;
          const got = await outcome(client(host).discover());
          if ("ipv4" in got) acked.set(host, got.ipv4);
          else if ("refused" in got && got.refused === Status.SERVER_ERROR) refusedHosts.push(host);
          else errors.push(`${host}: ${JSON.stringify(got)}`);
        }
      };
      const workers = Array.from({ length: 16 }, worker);
      await waitUntil(() => acked.size >= 100, { timeoutMs: 30_000, what: "100 leases" });
      // The disk fills up while the clients allocate.
      expect(await fs.fill()).toBe(0);
      await waitUntil(() => refusedHosts.length >= 50, {
        timeoutMs: 30_000,
        what: "50 refusals on the full disk",
      });
      loading = false;
      await Promise.all(workers);
      expect(errors).toEqual([]); // every request answered: an ACK or NAK SERVER_ERROR
      const ackedWhileFull = acked.size;

      // Renewal and release of existing leases on the full disk: answered either way.
      const [renewHost, renewIPv4] = [...acked][0] as [string, string];
      const [releaseHost, releaseIPv4] = [...acked][1] as [string, string];
      const renew = await outcome(client(renewHost).request(parseIPv4(renewIPv4) as number));
      expect("error" in renew).toBe(false);
      if ("ipv4" in renew) expect(renew.ipv4).toBe(renewIPv4);
      const released = await client(releaseHost)
        .release(parseIPv4(releaseIPv4) as number)
        .then(
          () => true,
          (error: Error) => {
            expect(error).toBeInstanceOf(DstmRefusedError);
            return false;
          },
        );
      if (released) acked.delete(releaseHost);

      // Counted by cause, at least once per refusal a client saw; warned, few lines, ENOSPC named.
      const refusedCount = await metric(metrics, "dstm_store_refused_total", {
        reason: "disk-full",
      });
      expect(refusedCount).toBeGreaterThanOrEqual(refusedHosts.length);
      const failedWrites = await metric(metrics, "dstm_store_write_failures_total", {
        reason: "disk-full",
      });
      expect(failedWrites).toBeGreaterThan(0);
      // The first warning's line may still be on its way (written at the next turn of the
      // server's event loop, read through a pipe): waited for before the lines are counted.
      await server.waitFor(/ WARN store-failed /, 5_000);
      const warned = server.lines.filter((l) => / WARN store-failed /.test(l));
      expect(warned.length).toBeGreaterThanOrEqual(1);
      expect(warned[0]).toMatch(/reason=disk-full .*ENOSPC/);
      expect(warned.length).toBeLessThanOrEqual(3);
      expect(server.lines.some((l) => / ERROR /.test(l))).toBe(false);
      // Nothing in the server's memory that the database does not hold (and the reverse).
      expect(await activeInServer(control)).toEqual(await activeInDb(fs, db));

      // Space freed: allocation resumes without a restart; refused hosts get a lease now.
      await fs.free();
      for (const host of refusedHosts.slice(0, 20)) {
        const got = await outcome(client(host).discover());
        expect(got).toHaveProperty("ipv4");
        if ("ipv4" in got) acked.set(host, got.ipv4);
      }
      await server.waitFor(/ store-recovered .*reason=disk-full/);
      expect(acked.size).toBe(ackedWhileFull - (released ? 1 : 0) + 20);
      const inDb = await activeInDb(fs, db);
      for (const [host, ipv4] of acked) expect(inDb.get(host)).toBe(ipv4);
      expect(await activeInServer(control)).toEqual(inDb);

      server.proc.kill("SIGTERM");
      expect(await server.exited).toBe(0);
      // After the stop, offline: `dstm lease ls --db` lists exactly the database's active rows.
      const offline = await fs.run([
        process.execPath,
        join(import.meta.dir, "..", "mod.ts"),
        "lease",
        "ls",
        "--json",
        "--db",
        db,
      ]);
      expect(offline.code).toBe(0);
      const listed = (
        JSON.parse(offline.stdout) as { leases: { hostIPv6: string; hostIPv4: string }[] }
      ).leases;
      expect(new Map(listed.map((l) => [l.hostIPv6, l.hostIPv4]))).toEqual(inDb);
    } finally {
      transport?.close();
      server.proc.kill("SIGKILL");
      await server.exited;
      await fs.close();
    }
  },
  120_000,
);
