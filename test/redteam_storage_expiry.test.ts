/**
 * Red team of the lease store: leases that expire while the disk is full. The expiry sweep
 * (lib/alloc/reclamation.ts) must store a lease's end before it frees the address: while it
 * cannot, the lease stays active in the database and in the server's memory alike (its
 * address handed to nobody else, its TEP binding kept), the sweep tries again every second
 * (each failure counted, `dstm_store_write_failures_total{reason="disk-full"}`), and once
 * space is freed the lease ends, counted in `dstm_leases_expired_total`.
 */
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DstmClient, DstmRefusedError, type DstmTransport } from "../lib/client/protocol.ts";
import { formatIPv4 } from "../lib/net/addr.ts";
import { PrivateTmpfs } from "./helpers/private_tmpfs.ts";
import { loopbackServerArgs, spawnDstm } from "./helpers/process.ts";
import { activeInDb, activeInServer, metric, serverReady } from "./helpers/storage_checks.ts";
import { waitUntil } from "./helpers/wait.ts";

const isRoot = process.getuid?.() === 0 && Bun.which("unshare") !== null;

test.skipIf(!isRoot)(
  "a lease due while the disk is full stays active (store and memory) until its end is stored; it ends once space is freed",
  async () => {
    const sockets = mkdtempSync(join(tmpdir(), "dstm-rtexp-ctl-"));
    const fs = await PrivateTmpfs.open("dstm-rtexp-", 2 * 1024 * 1024);
    const db = join(fs.dir, "leases.db");
    const control = join(sockets, "s.sock");
    const server = spawnDstm(
      loopbackServerArgs(
        db,
        ["--metrics", "[::1]:0", "--control", control, "--lease-time", "3s"],
        "198.51.100.0/22",
      ),
      // No checkpoint copies the WAL during the test: it never starts over, so on the full
      // disk every write needs it to grow and fails (with copies, writes that fit in the WAL
      // it already has succeed on a full disk, and are stored: correct, but not under test).
      { DSTM_WAL_CHECKPOINT_MS: "60000" },
      fs.inside([]),
    );
    let transport: DstmTransport | undefined;
    try {
      const ready = await serverReady(server);
      const metrics = ready.metrics;
      transport = ready.transport;
      const t = transport;
      const due = "2001:db8:ee::1";
      const ipv4 = formatIPv4((await new DstmClient(t, due).discover()).ipv4);
      expect(await fs.fill()).toBe(0);
      // Until a write is refused: the WAL has no room left either.
      let n = 0;
      let refused = false;
      while (!refused && n < 500) {
        refused = await new DstmClient(t, `2001:db8:ef::${(++n).toString(16)}`).discover().then(
          () => false,
          (error) => error instanceof DstmRefusedError,
        );
      }
      expect(refused).toBe(true);
      const failures = () =>
        metric(metrics, "dstm_store_write_failures_total", { reason: "disk-full" });
      const before = await failures();
      // No request now: the failures that follow are the sweep's, once the 3 s are up.
      await waitUntil(async () => (await failures()) >= before + 2, {
        timeoutMs: 20_000,
        what: "two failed expiry sweeps",
      });
      expect(await metric(metrics, "dstm_leases_expired_total")).toBe(0);
      const inDb = await activeInDb(fs, db);
      expect(inDb.get(due)).toBe(ipv4);
      expect(await activeInServer(control)).toEqual(inDb);

      await fs.free();
      await waitUntil(async () => (await metric(metrics, "dstm_leases_expired_total")) >= 1, {
        timeoutMs: 20_000,
        what: "the lease to end once space is freed",
      });
      await waitUntil(async () => !(await activeInDb(fs, db)).has(due), {
        what: "the database to say it ended",
      });
      expect((await activeInServer(control)).has(due)).toBe(false);
      expect(await activeInServer(control)).toEqual(await activeInDb(fs, db));
    } finally {
      transport?.close();
      server.proc.kill("SIGKILL");
      await server.exited;
      await fs.close();
      rmSync(sockets, { recursive: true, force: true });
    }
  },
  120_000,
);
