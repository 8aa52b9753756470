/**
 * `dstm server --db DIR` and `dstm lease ls --db DIR` (the state directory instead of the
 * database file in it) are refused with the file to give, by --check too, instead of SQLite's
 * "unable to open database file" / "disk I/O error".
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runDstm } from "./helpers/process.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-dbpath-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const server = ["server", "--pool", "198.51.100.0/24", "--tep", "2001:db8::1", "--no-control"];

test("--db naming a directory: exit 2, one line naming the file to give; nothing created", async () => {
  const expected = `dstm: --db: ${dir} is a directory; give the database file, e.g. --db ${join(dir, "leases.db")}\n`;
  const check = await runDstm([...server, "--db", dir, "--check"]);
  expect([check.code, check.stderr]).toEqual([2, expected]);
  const start = await runDstm([...server, "--db", dir, "--listen", "[::1]:0"]);
  expect([start.code, start.stderr]).toEqual([2, expected]);
  expect(readdirSync(dir)).toEqual([]);
}, 60_000);

test("--db naming a file in that directory still starts (checked)", async () => {
  const ok = await runDstm([...server, "--db", join(dir, "leases.db"), "--check"]);
  expect([ok.code, ok.stderr]).toEqual([0, ""]);
}, 60_000);

test("lease ls --db naming a directory: the same line, exit 2 (SQLite said 'disk I/O error')", async () => {
  const r = await runDstm(["lease", "ls", "--db", dir]);
  expect([r.code, r.stdout, r.stderr]).toEqual([
    2,
    "",
    `dstm: --db: ${dir} is a directory; give the database file, e.g. --db ${join(dir, "leases.db")}\n`,
  ]);
}, 60_000);

test("lease ls --db with a postgres:// URL: exit 2, says it reads SQLite only and what to do instead", async () => {
  // Before: "lease database postgres://… does not exist; check the --db path".
  const url = "postgres://dstm@db.example/dstm";
  const r = await runDstm(["lease", "ls", "--db", url]);
  expect([r.code, r.stdout]).toEqual([2, ""]);
  expect(r.stderr).toStartWith(`dstm: --db ${url}: lease ls --db reads SQLite files only`);
  expect(r.stderr).toContain("--control");
  expect(r.stderr).not.toContain("does not exist");
}, 60_000);
