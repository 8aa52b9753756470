/**
 * A `dstm server` killed with SIGKILL in the middle of a load, with many allocations in
 * flight, several times over one database: every lease a client got an ACK for is in the
 * database afterwards, active, with its host, and no address or host is held twice
 * (lib/lease/wal_sync.ts: the store resolves a write only after the WAL fsync that follows
 * its commit; the handler answers only then).
 *
 * While the load runs, an operator's `sqlite3` checkpoints the WAL with TRUNCATE (the WAL is
 * cut to zero and the server's next commit starts it again from its header, on the same
 * inode): the store's fsync descriptor must still cover what it acknowledges, and the
 * operator's connection closing must not delete the WAL under the server (it cannot: the
 * server's connection holds its shared lock, https://sqlite.org/wal.html#the_wal_file).
 *
 * SIGKILL leaves the page cache intact, so this checks the order commit → ACK and SQLite's
 * recovery of a WAL cut short, not the fsync itself; that a write waits for an fsync begun
 * after its commit is checked in test/lease_durability.test.ts and test/lease_wal_sync.test.ts.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readlinkSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DstmClient, DstmTransport } from "../lib/client/protocol.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { listenPort, loopbackServerArgs, spawnDstm } from "./helpers/process.ts";
import { waitUntil } from "./helpers/wait.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-crashload-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Many hosts of one /64, all sent from ::1 (helpers/process.ts). */
const serverArgs = (db: string) => loopbackServerArgs(db, [], "198.51.100.0/22");

/** Rounds (server lives), ACKs before the kill, most hosts tried, clients in flight at once. */
const ROUNDS = 3;
const ACKS_BEFORE_KILL = 100;
// The cap only bounds the loop: a DISCOVER refused while the operator's checkpoint holds the
// database (SERVER_ERROR at once, no lease) sends its worker to the next host, so on a slow
// disk the 60 workers went through 330 hosts before the 100th ACK (the fresh-clone run at
// 2e36781: issued 330, "the cap ended the load"). ACKed leases stay far below the pool's 1,022.
const MAX_HOSTS_PER_ROUND = 1_000;
const IN_FLIGHT = 60;

/** `sqlite3 DB "PRAGMA wal_checkpoint(TRUNCATE)"` as an operator would run it; its output. */
async function operatorCheckpoint(db: string): Promise<string> {
  const proc = Bun.spawn(
    ["sqlite3", db, "PRAGMA busy_timeout = 100; PRAGMA wal_checkpoint(TRUNCATE);"],
    {
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  const [out, err] = [
    await new Response(proc.stdout).text(),
    await new Response(proc.stderr).text(),
  ];
  await proc.exited;
  return `${out}${err}`;
}

test("SIGKILL mid-load, three times over one database: every ACKed lease is stored, active, with its host, none twice", async () => {
  const db = join(dir, "leases.db");
  /** host6 → IPv4 of every ACK received, over all rounds. */
  const acked = new Map<string, number>();
  let checkpoints = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const server = spawnDstm(serverArgs(db));
    let killed = false;
    try {
      const port = listenPort(await server.waitFor(/ start /));
      const transport = await DstmTransport.open({
        server: "::1",
        port,
        retry: { initialMs: 400, tries: 3 },
      });
      // Each worker always has a DISCOVER out, with a new host after each ACK, until the
      // kill: the kill comes under load by construction, not by timing.
      let issued = 0;
      let inRound = 0;
      const worker = async () => {
        while (!killed && issued < MAX_HOSTS_PER_ROUND) {
          const host = `2001:db8:${(0x200 + round).toString(16)}::${(++issued).toString(16)}`;
          try {
            const lease = await new DstmClient(transport, host).discover();
            expect(lease.host6).toBe(host);
            acked.set(host, lease.ipv4);
            inRound++;
          } catch {
            // no ACK (the server was killed): nothing promised, nothing to check
          }
        }
      };
      const workers = Array.from({ length: IN_FLIGHT }, worker);
      // An operator checkpoints (TRUNCATE) while the load runs, then the kill comes mid-load.
      await waitUntil(() => inRound >= ACKS_BEFORE_KILL / 2, {
        timeoutMs: 30_000,
        what: "half the ACKs before the kill",
      });
      const result = await operatorCheckpoint(db);
      if (/^0\|/m.test(result)) checkpoints++;
      await waitUntil(() => inRound >= ACKS_BEFORE_KILL, {
        timeoutMs: 30_000,
        what: "the ACKs before the kill",
      });
      server.proc.kill("SIGKILL");
      killed = true;
      await server.exited;
      await Promise.all(workers);
      transport.close();
      expect(issued).toBeLessThan(MAX_HOSTS_PER_ROUND); // the kill, not the cap, ended the load
      // Not stopped by itself before the kill (e.g. a WAL deleted by the operator's sqlite3).
      expect(server.lines.some((l) => / ERROR /.test(l))).toBe(false);
    } finally {
      if (!killed) {
        server.proc.kill("SIGKILL");
        await server.exited;
      }
    }

    // Offline, as `dstm lease ls --db` reads it (SQLite recovers the WAL the kill left).
    const store = SqliteLeaseStore.openReadOnly(db);
    try {
      const rows = await store.loadAll();
      const active = rows.filter((r) => r.state === "active");
      const byHost = new Map(active.map((r) => [r.host6, r]));
      expect(byHost.size).toBe(active.length); // no host twice
      expect(new Set(active.map((r) => r.ipv4)).size).toBe(active.length); // no address twice
      const missing: string[] = [];
      for (const [host, ipv4] of acked) {
        const row = byHost.get(host);
        if (row?.ipv4 !== ipv4) missing.push(`${host} ACKed ${ipv4}, stored ${row?.ipv4}`);
      }
      expect({ round, missing }).toEqual({ round, missing: [] });
    } finally {
      await store.close();
    }
  }
  expect(acked.size).toBeGreaterThanOrEqual(ROUNDS * ACKS_BEFORE_KILL);
  // The TRUNCATE checkpoint ran at least once with the server writing (else angle untested).
  expect(checkpoints).toBeGreaterThan(0);
}, 180_000);

/** The inodes of `pid`'s open descriptors of `file` (one entry per descriptor). */
function descriptorsOf(pid: number, file: string): number[] {
  const out: number[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) === file)
        out.push(statSync(`/proc/${pid}/fd/${fd}`).ino);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

test("SIGTERM mid-load: exit 0, nothing on stderr, every ACKed lease stored; the WAL open three times (SQLite's, the checkpointer's connection and the fsync's, one inode), never more", async () => {
  const db = join(dir, "term.db");
  const server = spawnDstm(serverArgs(db));
  const pid = server.proc.pid;
  const acked = new Map<string, number>();
  const walDescriptors = new Set<number>();
  const walInodes = new Set<number>();
  try {
    const port = listenPort(await server.waitFor(/ start /));
    const transport = await DstmTransport.open({
      server: "::1",
      port,
      retry: { initialMs: 400, tries: 2 },
    });
    // As above: every worker has a DISCOVER out until the SIGTERM (the load is on by construction).
    let issued = 0;
    let stopping = false;
    const worker = async () => {
      while (!stopping && issued < 600) {
        const host = `2001:db8:2ff::${(++issued).toString(16)}`;
        try {
          const lease = await new DstmClient(transport, host).discover();
          acked.set(host, lease.ipv4);
        } catch {
          // refused or unanswered once the server stops: no ACK, nothing promised
        }
      }
    };
    const workers = Array.from({ length: IN_FLIGHT }, worker);
    await waitUntil(
      () => {
        const inodes = descriptorsOf(pid, `${db}-wal`);
        walDescriptors.add(inodes.length);
        // SQLite's descriptor, the checkpointer's (lib/lease/wal_checkpointer.ts) and the
        // fsync's are the same file, the one at the path.
        for (const ino of inodes) walInodes.add(ino);
        walInodes.add(statSync(`${db}-wal`).ino);
        return acked.size >= 150;
      },
      { timeoutMs: 30_000, what: "150 ACKs" },
    );
    server.proc.kill("SIGTERM");
    stopping = true;
    expect(await server.exited).toBe(0);
    await Promise.all(workers);
    transport.close();
    expect(issued).toBeLessThan(600); // the SIGTERM, not the cap, ended the load
    expect(await server.stderr()).toBe("");
    expect(server.lines.some((l) => / ERROR /.test(l))).toBe(false);
    expect(Math.max(...walDescriptors)).toBe(3);
    expect(walInodes.size).toBe(1);
  } finally {
    server.proc.kill("SIGKILL");
    await server.exited;
  }
  const store = SqliteLeaseStore.openReadOnly(db);
  try {
    const active = (await store.loadAll()).filter((r) => r.state === "active");
    const byHost = new Map(active.map((r) => [r.host6, r.ipv4]));
    expect(new Set(active.map((r) => r.ipv4)).size).toBe(active.length);
    const missing = [...acked].filter(([host, ipv4]) => byHost.get(host) !== ipv4);
    expect(missing).toEqual([]);
  } finally {
    await store.close();
  }
}, 90_000);
