/**
 * Red team (rt20): the SQLite holder guard (lib/lease/sqlite_holders.ts) when a batch it
 * accepted fails on a full disk (ENOSPC: SQLite's WAL write at COMMIT, SQLITE_FULL), on a real
 * tmpfs of the test's own mount namespace (test/helpers/private_tmpfs.ts): every batch that did
 * not fail on the disk must get the memory store's verdict, and the active rows must end equal
 * (test/helpers/rt20_enospc_child.ts does the batches inside the namespace).
 */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { PrivateTmpfs } from "./helpers/private_tmpfs.ts";
import { BUN, ROOT } from "./helpers/process.ts";

const isRoot = process.getuid?.() === 0 && Bun.which("unshare") !== null;

test.skipIf(!isRoot)(
  "batches failing on a full disk after the guard accepted them: the rule as the memory store's after",
  async () => {
    const fs = await PrivateTmpfs.open("dstm-rt20-enospc-", 4 * 1024 * 1024);
    try {
      const r = await fs.run([
        BUN,
        join(ROOT, "test/helpers/rt20_enospc_child.ts"),
        join(fs.dir, "leases.db"),
      ]);
      if (r.code !== 0) throw new Error(`child exited ${r.code}: ${r.stderr}`);
      const stats = JSON.parse(r.stdout.trim().split("\n").at(-1) as string);
      console.log(stats);
      expect(stats.disagreement).toBe("");
      expect(stats.disk).toBeGreaterThan(20);
      // Only the disk failed them (SQLite's "database or disk is full").
      for (const words of stats.diskErrors) expect(words).toMatch(/full/i);
      expect(stats.refused).toBeGreaterThan(20);
      expect(stats.written).toBeGreaterThan(20);
    } finally {
      await fs.close();
    }
  },
  120_000,
);
