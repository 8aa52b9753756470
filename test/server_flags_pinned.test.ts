/**
 * Command-line flags of `dstm server` that a newcomer misread:
 *
 * - `--config s.toml --lease-time 3h`, then lease-time edited in the file and `dstm server
 *   reload`: the flag keeps winning (flags over file), and the reload now says so
 *   ("pinned by command-line flags … --lease-time (the file's lease-time not used)") instead of
 *   a bare "reloaded: nothing changed";
 * - `--tep A --tep B`: the last silently won; one `--tep` is the TEP of every `--pool` (a TEP
 *   per pool is a `[[pool]]` table's `tep`), so a second one is refused, exit 2, one line.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runDstm, spawnDstm } from "./helpers/process.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-nc9a-pinned-"));
const procs: { proc: { kill(signal?: NodeJS.Signals): void }; exited: Promise<number> }[] = [];
afterAll(async () => {
  for (const p of procs) p.proc.kill("SIGTERM");
  await Promise.all(procs.map((p) => p.exited));
  rmSync(dir, { recursive: true, force: true });
});

const toml = (leaseTime: string) =>
  `tep = "2001:db8::1,192.0.2.1"\nlease-time = "${leaseTime}"\n\n[[pool]]\nprefixes = ["198.51.100.0/28"]\n`;

test("reload under --lease-time: says the flag pins it and the file's value is not used", async () => {
  const config = join(dir, "s.toml");
  const socket = join(dir, "server.sock");
  writeFileSync(config, toml("1h"));
  const server = spawnDstm([
    "server",
    "--config",
    config,
    "--lease-time",
    "3h",
    "--listen",
    "[::1]:0",
    "--db",
    "memory",
    "--control",
    socket,
  ]);
  procs.push(server);
  await server.waitFor(/ start /, 20_000);
  writeFileSync(config, toml("2h"));
  const r = await runDstm(["server", "reload", "--control", socket]);
  expect(r.code).toBe(0);
  expect(r.stdout).toContain("reloaded: nothing changed");
  expect(r.stdout).toContain("pinned by command-line flags");
  expect(r.stdout).toContain("--lease-time");
  expect(r.stdout).toContain("the file's lease-time not used");
  await server.waitFor(/ reload-pinned flags=--lease-time /, 10_000);
}, 60_000);

test("--tep twice is refused (exit 2, one line naming [[pool]]); one --tep is every --pool's", async () => {
  const r = await runDstm([
    "server",
    "--pool",
    "198.51.100.0/28",
    "--tep",
    "2001:db8::1",
    "--tep",
    "2001:db8::2",
    "--listen",
    "[::1]:0",
    "--db",
    "memory",
    "--no-control",
    // --check: on the old code this exits 0 at once (the last --tep won) instead of serving.
    "--check",
  ]);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/--tep given twice \(2001:db8::1, then 2001:db8::2\)/);
  expect(r.stderr).toContain("[[pool]]");
  expect(r.stdout).not.toMatch(/ start /);
}, 30_000);
