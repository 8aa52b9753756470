/**
 * Red team of the lease store: its files removed under a running `dstm server` (database on a
 * tmpfs of the test's own mount namespace, test/helpers/private_tmpfs.ts).
 *
 * - The `-wal` deleted: the server stops at its next write or expiry sweep (`store-failed
 *   reason=gone` at error, exit 1) and acknowledges nothing after it; its close still
 *   checkpoints the WAL it holds open into the database, so a restart finds every lease it
 *   acknowledged.
 * - The `-shm` (WAL index) deleted: an operator's sqlite3 then builds a new one from the WAL,
 *   blind to the server's later commits, and its checkpoint cut the WAL under the server: a
 *   corrupt database ("btreeInitPage() returns error code 11") and leases acknowledged but
 *   gone. The server now stops at its next write, as for the database and the WAL.
 * - The lock file (`.NAME.lock`) deleted: a second server could start on the database and
 *   hand out the first one's addresses; the first now takes a new lock file within a second.
 * - The whole directory emptied (`rm -rf DIR/*`, marker included): the server stops the same
 *   way with no request coming (the sweep notices); what the operator removed is gone, and
 *   a restart says nothing can tell it otherwise — documented in docs/metrics.md.
 */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { DstmClient, DstmTransport } from "../lib/client/protocol.ts";
import { formatIPv4 } from "../lib/net/addr.ts";
import { withTmpfsServers } from "./helpers/private_tmpfs.ts";
import { type DstmProcess, listenPort, loopbackServerArgs, spawnDstm } from "./helpers/process.ts";
import { activeInDb } from "./helpers/storage_checks.ts";

const isRoot = process.getuid?.() === 0 && Bun.which("unshare") !== null;

async function lease(server: DstmProcess, hosts: string[]): Promise<Map<string, string>> {
  const t = await DstmTransport.open({
    server: "::1",
    port: listenPort(await server.waitFor(/ start /, 20_000)),
    retry: { initialMs: 300, tries: 2 },
  });
  const acked = new Map<string, string>();
  try {
    for (const host of hosts) {
      await new DstmClient(t, host).discover().then(
        (l) => acked.set(host, formatIPv4(l.ipv4)),
        () => {},
      );
    }
  } finally {
    t.close();
  }
  return acked;
}

const hosts = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => `${prefix}${(i + 1).toString(16)}`);

test.skipIf(!isRoot)(
  "the -wal deleted under the server: it stops (reason=gone, exit 1), and a restart finds every lease it acknowledged",
  async () => {
    await withTmpfsServers("dstm-rtwal-", 4 * 1024 * 1024, async ({ fs, servers }) => {
      const db = join(fs.dir, "leases.db");
      const first = spawnDstm(loopbackServerArgs(db), {}, fs.inside([]));
      servers.push(first);
      const acked = await lease(first, hosts("2001:db8:a1::", 60));
      expect(acked.size).toBe(60);
      expect((await fs.sh('rm "$D/leases.db-wal"')).code).toBe(0);
      // Requests after the deletion: none may be acknowledged (the server stops at the first write).
      const after = await lease(first, hosts("2001:db8:a2::", 5));
      expect(after.size).toBe(0);
      expect(await first.exited).toBe(1);
      expect(await first.stderr()).toMatch(/leases\.db-wal was deleted while the server ran/);
      expect(first.lines.some((l) => / ERROR store-failed reason=gone /.test(l))).toBe(true);

      const second = spawnDstm(loopbackServerArgs(db), {}, fs.inside([]));
      servers.push(second);
      await second.waitFor(/ start /, 20_000);
      const stored = await activeInDb(fs, db);
      for (const [host, ipv4] of acked) expect(stored.get(host)).toBe(ipv4);
    });
  },
  60_000,
);

test.skipIf(!isRoot)(
  "the database's directory emptied under an idle server: the sweep notices, it stops (reason=gone, exit 1); a restart cannot know, and starts empty",
  async () => {
    await withTmpfsServers("dstm-rtdir-", 4 * 1024 * 1024, async ({ fs, servers }) => {
      const db = join(fs.dir, "leases.db");
      const first = spawnDstm(loopbackServerArgs(db), {}, fs.inside([]));
      servers.push(first);
      expect((await lease(first, hosts("2001:db8:b1::", 10))).size).toBe(10);
      expect((await fs.sh('rm -rf "$D"/* "$D"/.[!.]*; ls -A "$D" | wc -l')).stdout.trim()).toBe(
        "0",
      );
      // No request comes: the expiry sweep (every second) checks the files.
      expect(await first.exited).toBe(1);
      expect(await first.stderr()).toMatch(/leases\.db was deleted while the server ran/);
      expect(first.lines.some((l) => / ERROR store-failed reason=gone /.test(l))).toBe(true);

      const second = spawnDstm(loopbackServerArgs(db), {}, fs.inside([]));
      servers.push(second);
      expect(await second.waitFor(/ start /, 20_000)).toContain(" active=0 ");
    });
  },
  60_000,
);

test.skipIf(!isRoot)(
  "the -shm deleted under the server: it stops before writing more (reason=gone); an operator's sqlite3 checkpoint then leaves a whole database with every acknowledged lease",
  async () => {
    await withTmpfsServers("dstm-rtshm-", 8 * 1024 * 1024, async ({ fs, servers }) => {
      const db = join(fs.dir, "leases.db");
      const sqlite = (sql: string) => fs.run(["sqlite3", "-cmd", ".timeout 2000", db, sql]);
      const first = spawnDstm(loopbackServerArgs(db), {}, fs.inside([]));
      servers.push(first);
      const acked = await lease(first, hosts("2001:db8:c1::", 100));
      expect(acked.size).toBe(100);
      // "Delete the -shm, it is a temporary file", then more hosts come, then an operator
      // checkpoints with sqlite3 (which makes a new -shm from the WAL as it is then).
      expect((await fs.sh('rm "$D/leases.db-shm"')).code).toBe(0);
      for (const [host, ipv4] of await lease(first, hosts("2001:db8:c2::", 3)))
        acked.set(host, ipv4);
      expect((await sqlite("PRAGMA wal_checkpoint(TRUNCATE);")).code).toBe(0);
      for (const [host, ipv4] of await lease(first, hosts("2001:db8:c3::", 3)))
        acked.set(host, ipv4);
      expect(acked.size).toBe(100); // nothing acknowledged after the deletion
      expect(await first.exited).toBe(1);
      expect(await first.stderr()).toMatch(/leases\.db-shm \(its WAL index.*\) was deleted/);
      expect(first.lines.some((l) => / ERROR store-failed reason=gone /.test(l))).toBe(true);

      expect((await sqlite("PRAGMA integrity_check;")).stdout.trim()).toBe("ok");
      const second = spawnDstm(loopbackServerArgs(db), {}, fs.inside([]));
      servers.push(second);
      await second.waitFor(/ start /, 20_000);
      const stored = await activeInDb(fs, db);
      for (const [host, ipv4] of acked) expect(stored.get(host)).toBe(ipv4);
      expect((await sqlite("PRAGMA integrity_check;")).stdout.trim()).toBe("ok");
    });
  },
  60_000,
);

test.skipIf(!isRoot)(
  "the lock file deleted under the server: a new one is locked within a second (warned), and a second server on the database is refused",
  async () => {
    await withTmpfsServers("dstm-rtlock-", 4 * 1024 * 1024, async ({ fs, servers }) => {
      const db = join(fs.dir, "leases.db");
      const first = spawnDstm(loopbackServerArgs(db), {}, fs.inside([]));
      servers.push(first);
      expect((await lease(first, hosts("2001:db8:d1::", 5))).size).toBe(5);
      expect((await fs.sh('rm "$D/.leases.db.lock"')).code).toBe(0);
      // Before: nothing noticed, and a second server started on the same database and handed
      // out the addresses the first one hands out (198.51.100.2 to two hosts).
      await first.waitFor(/ WARN lock-file-restored /, 10_000);
      const second = spawnDstm(loopbackServerArgs(db), {}, fs.inside([]));
      servers.push(second);
      expect(await second.exited).toBe(1);
      expect(await second.stderr()).toMatch(/is in use by another dstm server/);
      // The first one goes on.
      expect((await lease(first, hosts("2001:db8:d2::", 5))).size).toBe(5);
      expect((await activeInDb(fs, db)).size).toBe(10);
    });
  },
  60_000,
);
