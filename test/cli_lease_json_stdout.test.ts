/**
 * `dstm lease ls --json` whose server does not answer leaves stdout empty (the error on
 * stderr, exit 1), where it printed a truncated document ('{"leases":[') that a script's jq
 * then failed on; with leases or none it is one whole JSON document.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runDstm, spawnDstm } from "./helpers/process.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-lsjson-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("no server answering: nothing on stdout, the reason on stderr, exit 1", async () => {
  const nobody = join(dir, "nobody.sock");
  const r = await runDstm(["lease", "ls", "--json", "--control", nobody]);
  expect([r.code, r.stdout]).toEqual([1, ""]);
  expect(r.stderr).toContain(`no dstm server answers on ${nobody}`);
}, 60_000);

test("a database with no lease: one whole JSON document", async () => {
  const db = join(dir, "leases.db");
  // A server creates the database (--check creates nothing): start one, then stop it.
  const server = spawnDstm([
    ...["server", "--pool", "198.51.100.0/24", "--tep", "2001:db8::1", "--db", db],
    ...["--no-control", "--listen", "[::1]:0"],
  ]);
  try {
    await server.waitFor(/ start /, 30_000);
  } finally {
    server.proc.kill();
    await server.exited;
  }
  const r = await runDstm(["lease", "ls", "--json", "--db", db]);
  expect(r.code).toBe(0);
  expect(JSON.parse(r.stdout)).toEqual({ leases: [], next: null });
}, 60_000);
