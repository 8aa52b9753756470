/**
 * Child of test/rt20_guard_enospc.test.ts, run inside a private tmpfs's mount namespace
 * (test/helpers/private_tmpfs.ts): random lease batches into a SqliteLeaseStore at argv[2]
 * (hash-colliding holders among 400 hosts, 1,000 slots), the disk filled to ENOSPC now and
 * then (a filler file beside it) and freed again; each batch also goes to the memory store
 * unless SQLite failed on the disk. Prints one JSON line: counts, and the first disagreement.
 */
import { appendFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { type LeaseOp, type LeaseState, LeaseStoreError, leaseOf } from "../../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../../lib/lease/memory.ts";
import { SqliteLeaseStore } from "../../lib/lease/sqlite.ts";
import { HOST_PAIRS, random } from "./rt20_guard_fuzz.ts";

const path = process.argv[2] as string;
const filler = join(dirname(path), "filler");
const store = SqliteLeaseStore.open(path);
await store.loadAll();
const memory = new MemoryLeaseStore();
const next = random(0xe05c);
const hosts = [
  ...HOST_PAIRS.flat(),
  ...Array.from({ length: 400 }, (_, i) => `2001:db8:e:${i.toString(16)}::1`),
];
const states: LeaseState[] = ["active", "active", "released", "expired"];
const stats = {
  disk: 0,
  refused: 0,
  written: 0,
  fills: 0,
  disagreement: "",
  diskErrors: [] as string[],
};

function fill(): void {
  const chunk = new Uint8Array(16384);
  try {
    for (;;) appendFileSync(filler, chunk);
  } catch {
    // ENOSPC: the disk is full
  }
  stats.fills++;
}

for (let round = 0; round < 4000 && !stats.disagreement; round++) {
  if (round % 500 === 100) fill();
  if (round % 500 === 350) rmSync(filler, { force: true });
  const ops: LeaseOp[] = [];
  for (let n = 1 + Math.floor(next() * 12); n > 0; n--) {
    const slot = Math.floor(next() * 1000);
    const host = hosts[Math.floor(next() * hosts.length)] as string;
    const state = states[Math.floor(next() * states.length)] as LeaseState;
    // A long pool name: rows take room, so a full disk is felt at once.
    ops.push({
      op: "put",
      lease: leaseOf(
        0xc6336400 + slot,
        { offset: 0, psidLength: 0, psid: 0 },
        host,
        0,
        "2001:db8::1",
        `pool-${"x".repeat(200)}`,
        state,
        round,
        round + 1,
        undefined,
      ),
    });
  }
  let got = "written";
  try {
    await store.write(ops);
  } catch (error) {
    const rule = error instanceof LeaseStoreError && /two active leases/.test(error.message);
    if (!rule && (error as { fatal?: boolean }).fatal) {
      stats.disagreement = `round ${round}: fatal ${String(error)}`;
      break;
    }
    got = rule ? "refused" : "disk";
    const words = String(error).replace(/\/[^ :]+/g, "PATH");
    if (!rule && !stats.diskErrors.includes(words)) stats.diskErrors.push(words);
  }
  if (got === "disk") {
    stats.disk++;
    continue;
  }
  const want = await memory.write(ops).then(
    () => "written",
    () => "refused",
  );
  if (got !== want) stats.disagreement = `round ${round}: sqlite ${got}, memory ${want}`;
  else stats[got as "written" | "refused"]++;
}
rmSync(filler, { force: true });
const active = (rows: Awaited<ReturnType<typeof memory.loadAll>>) =>
  JSON.stringify(rows.filter((l) => l.state === "active").map((l) => [l.ipv4, l.host6]));
if (!stats.disagreement) {
  const a = active(await store.loadAll());
  const b = active(await memory.loadAll());
  if (a !== b) stats.disagreement = "the active rows differ at the end";
}
await store.close();
// After a restart on the file: the rule still as the memory store's.
const again = SqliteLeaseStore.open(path);
await again.loadAll();
console.log(JSON.stringify(stats));
await again.close();
