/**
 * Red team on the SQLite lock file guard (lib/lease/sqlite_lock.ts) as a local user who can
 * write to the database's directory (a world- or group-writable directory given to --db), and
 * after a crash. The lock file is `.NAME.lock` beside the database, opened by the server (root)
 * through bun:sqlite, which follows symbolic links.
 */
import { afterAll, expect, test } from "bun:test";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { lockDatabase, lockFilePath } from "../lib/lease/sqlite_lock.ts";
import { BUN, ROOT } from "./helpers/process.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-rt-lock-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// A local user who can write the database's directory plants `.leases.db.lock` as a symbolic
// link: the server (root) must refuse it rather than create or write the link's target.
test("a symlink planted as the lock file is refused; its target is not created", () => {
  const shared = join(dir, "shared");
  mkdirSync(shared);
  chmodSync(shared, 0o777); // a directory a local user can write
  const victim = join(dir, "victim-file");
  const db = join(shared, "leases.db");
  symlinkSync(victim, lockFilePath(db));
  expect(() => lockDatabase(db).release()).toThrow(/lock file|symbolic link|not a regular file/);
  expect(existsSync(victim)).toBe(false); // on main: created, 8192 bytes of SQLite
});

// A lock file another user created (and could keep locked with fcntl) must be refused with a
// message naming its owner, not taken for "in use by another dstm server" for ever.
test("a lock file owned by another user is refused, naming the owner", () => {
  const db = join(dir, "foreign.db");
  writeFileSync(lockFilePath(db), "");
  chownSync(lockFilePath(db), 65534, 65534); // nobody
  expect(() => lockDatabase(db).release()).toThrow(/owned by|owner/);
});

// Held: the kernel drops the fcntl lock of a process killed by SIGKILL: no stale lock.
// The child keeps its lock referenced (globalThis.held), as the store does: an unreferenced
// lock's database is closed by the garbage collector, which gives the lock back.
test("a server killed with SIGKILL leaves no stale lock: the next one takes it", async () => {
  const db = join(dir, "killed.db");
  const child = Bun.spawn(
    [
      BUN,
      "-e",
      `const { lockDatabase } = await import(${JSON.stringify(join(ROOT, "lib/lease/sqlite_lock.ts"))});
       globalThis.held = lockDatabase(${JSON.stringify(db)}); console.log("locked"); setInterval(() => {}, 1000);`,
    ],
    { stdout: "pipe", stderr: "inherit" },
  );
  try {
    const reader = child.stdout.getReader();
    let text = "";
    const deadline = Date.now() + 60_000;
    while (!text.includes("locked") && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    expect(text).toContain("locked");
    expect(() => lockDatabase(db)).toThrow(/in use by another dstm server/);
    child.kill("SIGKILL");
    await child.exited;
    const lock = lockDatabase(db);
    lock.release();
  } finally {
    child.kill("SIGKILL");
  }
});
