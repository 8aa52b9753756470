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

// FIXME(redteam): lib/lease/sqlite_lock.ts follows a symlink planted as the lock file. In a
// directory other users can write (not sticky, or group-writable), a local user links
// `.leases.db.lock` to any path and the server, as root, creates an 8 KiB SQLite file there
// (e.g. /etc/nologin: no more logins) or writes a `holder` table into another SQLite file.
// Fix (lib/lease, not this branch's to edit): createPrivate() already opens with O_EXCL; when
// it meets EEXIST, lstat the lock path and refuse (LeaseStoreError, exit 2) unless it is a
// regular file (not a symlink) owned by geteuid() with nlink 1; after `new Database(lockPath)`
// stat it again and refuse when (dev, ino) changed (closes the race). Same check for the
// database, its -wal/-shm and the .created marker. Unskip this test then.
test.skip("a symlink planted as the lock file is refused; its target is not created", () => {
  const shared = join(dir, "shared");
  mkdirSync(shared);
  chmodSync(shared, 0o777); // a directory a local user can write
  const victim = join(dir, "victim-file");
  const db = join(shared, "leases.db");
  symlinkSync(victim, lockFilePath(db));
  expect(() => lockDatabase(db).release()).toThrow(/lock file|symbolic link|not a regular file/);
  expect(existsSync(victim)).toBe(false); // on main: created, 8192 bytes of SQLite
});

// FIXME(redteam): a lock file another user created (and keeps locked with fcntl, which any
// user may do on a file they own) makes every start of the server fail with "in use by
// another dstm server": a local user blocks the server for good. Fix with the same lstat
// check as above: a lock file not owned by the server's user is refused with a message that
// names its owner (remove it, or give the database a directory only the service can write).
test.skip("a lock file owned by another user is refused, naming the owner", () => {
  const db = join(dir, "foreign.db");
  writeFileSync(lockFilePath(db), "");
  chownSync(lockFilePath(db), 65534, 65534); // nobody
  expect(() => lockDatabase(db).release()).toThrow(/owned by|owner/);
});

// Held: the kernel drops the fcntl lock of a process killed by SIGKILL: no stale lock.
test("a server killed with SIGKILL leaves no stale lock: the next one takes it", async () => {
  const db = join(dir, "killed.db");
  const child = Bun.spawn(
    [
      BUN,
      "-e",
      `const { lockDatabase } = await import(${JSON.stringify(join(ROOT, "lib/lease/sqlite_lock.ts"))});
       lockDatabase(${JSON.stringify(db)}); console.log("locked"); setInterval(() => {}, 1000);`,
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
