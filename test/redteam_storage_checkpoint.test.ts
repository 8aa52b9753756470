/**
 * Red team of the lease store: the WAL checkpointer (lib/lease/wal_checkpointer.ts) on a full
 * disk. Its PASSIVE checkpoint copies WAL frames into the database file, which has to grow
 * for new pages: on a full disk that fails with SQLITE_FULL. That used to end the
 * checkpointer's Worker for good (`wal-checkpointer-failed`): once space was freed, every
 * checkpoint ran on the server's event loop again, for the rest of its life. A full disk is
 * not a failed disk (a write(2) that fails with ENOSPC drops no dirty page, unlike a failed
 * fsync), so such a checkpoint is now counted (`dstm_wal_checkpoint_faults_total`) and tried
 * again at the next interval, and it copies the WAL again as soon as there is room.
 *
 * The checkpoint interval is 1 s in the first test (DSTM_WAL_CHECKPOINT_MS) so that the disk
 * fills while the last allocations' frames are still in the WAL only.
 *
 * The second: space freed after a full disk, under a load that never pauses. The WAL starts
 * over only after a complete checkpoint, which the checkpointer's PASSIVE ones never are
 * while commits keep coming, so it grew into the freed space and filled the disk again, and
 * every write was refused for good (255 to 305 of 400 in a row, before lib/lease/wal_tight.ts
 * kept the WAL short after a full disk).
 */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { DstmClient, DstmTransport } from "../lib/client/protocol.ts";
import { PrivateTmpfs } from "./helpers/private_tmpfs.ts";
import { listenPort, loopbackServerArgs, spawnDstm } from "./helpers/process.ts";
import { activeInDb, metric, serverReady } from "./helpers/storage_checks.ts";
import { waitUntil } from "./helpers/wait.ts";

const isRoot = process.getuid?.() === 0 && Bun.which("unshare") !== null;

test.skipIf(!isRoot)(
  "a checkpoint that finds the disk full is tried again, not the end of the checkpointer: it copies the WAL once space is freed",
  async () => {
    const fs = await PrivateTmpfs.open("dstm-rtckpt-", 2 * 1024 * 1024);
    const db = join(fs.dir, "leases.db");
    const server = spawnDstm(
      loopbackServerArgs(db, ["--metrics", "[::1]:0"], "198.51.100.0/22"),
      { DSTM_WAL_CHECKPOINT_MS: "1000" },
      fs.inside([]),
    );
    let transport: DstmTransport | undefined;
    try {
      const ready = await serverReady(server);
      const metrics = ready.metrics;
      transport = ready.transport;
      const t = transport;
      let n = 0;
      let acks = 0;
      let loading = true;
      const worker = async () => {
        while (loading && n < 2000) {
          await new DstmClient(t, `2001:db8:c::${(++n).toString(16)}`).discover().then(
            () => acks++,
            () => {},
          );
        }
      };
      const workers = Array.from({ length: 16 }, worker);
      await waitUntil(() => acks >= 150, { timeoutMs: 30_000, what: "150 leases" });
      expect(await fs.fill()).toBe(0);
      const failedLine = () => server.lines.some((l) => /wal-checkpointer-failed/.test(l));
      await waitUntil(
        async () => failedLine() || (await metric(metrics, "dstm_wal_checkpoint_faults_total")) > 0,
        { timeoutMs: 30_000, what: "a checkpoint on the full disk" },
      );
      loading = false;
      await Promise.all(workers);
      expect(failedLine()).toBe(false);
      const dbSize = async () => Number((await fs.sh('stat -c %s "$D/leases.db"')).stdout);
      const sizeWhenFull = await dbSize();

      await fs.free();
      // The checkpointer copies the frames it could not: the database file grows.
      await waitUntil(async () => (await dbSize()) > sizeWhenFull, {
        timeoutMs: 15_000,
        what: "the checkpointer to copy the WAL into the database",
      });
      expect(failedLine()).toBe(false);
      expect(await metric(metrics, "dstm_wal_checkpoints_total")).toBeGreaterThan(0);
      const acked = acks;
      for (let i = 0; i < 50; i++)
        await new DstmClient(t, `2001:db8:cc::${(i + 1).toString(16)}`).discover();
      expect((await activeInDb(fs, db)).size).toBe(acked + 50);
    } finally {
      transport?.close();
      server.proc.kill("SIGKILL");
      await server.exited;
      await fs.close();
    }
  },
  120_000,
);

test.skipIf(!isRoot)(
  "space freed after a full disk: a load that never pauses is stored, the WAL does not fill the freed space again",
  async () => {
    // 1 MiB: once filled and freed, about 700 KiB for a database of a few dozen KiB. Before,
    // the WAL (never started over under a steady load below 16 MiB) took all of it within
    // about a hundred allocations, and then every write was refused for good.
    const fs = await PrivateTmpfs.open("dstm-rtrefill-", 1024 * 1024);
    const db = join(fs.dir, "leases.db");
    const server = spawnDstm(loopbackServerArgs(db, [], "198.51.100.0/22"), {}, fs.inside([]));
    let transport: DstmTransport | undefined;
    try {
      transport = await DstmTransport.open({
        server: "::1",
        port: listenPort(await server.waitFor(/ start /, 20_000)),
        retry: { initialMs: 500, tries: 4 },
      });
      const t = transport;
      let n = 0;
      /** `count` DISCOVERs of new hosts, one after the other: [ACKs, refusals]. */
      const allocate = async (count: number) => {
        let [acks, refusals] = [0, 0];
        for (let i = 0; i < count; i++) {
          await new DstmClient(t, `2001:db8:d::${(++n).toString(16)}`).discover().then(
            () => acks++,
            () => refusals++,
          );
        }
        return [acks, refusals];
      };
      expect(await allocate(20)).toEqual([20, 0]);
      expect(await fs.fill()).toBe(0);
      let refused = 0;
      await waitUntil(
        async () => {
          refused += (await allocate(20))[1] as number;
          return refused >= 60;
        },
        { timeoutMs: 30_000, what: "refusals on the full disk" },
      );
      await fs.free();
      const [acks, refusals] = await allocate(400);
      expect(refusals).toBe(0);
      expect(acks).toBe(400);
      expect((await activeInDb(fs, db)).size).toBeGreaterThanOrEqual(420);
    } finally {
      transport?.close();
      server.proc.kill("SIGKILL");
      await server.exited;
      await fs.close();
    }
  },
  120_000,
);
