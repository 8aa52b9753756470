/**
 * Small faults a newcomer met (issue nc9, item 5), each checked as the user meets it:
 * settings that do nothing said so (`--idle` without `--on-demand`, `--pool-link` without
 * `--dhcp4o6`, `--napt-udp` below RFC 4787 REQ-5's 120 s, in --check too); a list written as
 * one string in a [[pool]] table hinted `(write prefixes = [...])`; a mistyped subcommand
 * (`tep stat`) answered with the one meant, for every command; the README's row for
 * `--no-source-check` saying what the flag does, as --help and the server's handler do.
 * dstm client and tep run only in a namespace made here (dstmt-nc9b-…).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Netns } from "../lib/sys/netns.ts";
import { addressNetns, announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { ROOT, runDstm } from "./helpers/process.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-nc9b-small-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const server = ["server", "--tep", "2001:db8::1", "--db", "memory", "--no-control", "--check"];

test("--pool-link (or links in [[pool]]) without --dhcp4o6: said to do nothing", async () => {
  const flag = await runDstm([
    ...server,
    "--pool",
    "192.0.2.0/24",
    "--pool-link",
    "192.0.2.0=2001:db8:10::/64",
  ]);
  expect([flag.code, flag.stderr]).toEqual([
    0,
    "dstm: --pool-link (links in [[pool]]) has no effect without --dhcp4o6 (TOML: dhcp4o6 = true)\n",
  ]);
  const file = join(dir, "links.toml");
  writeFileSync(file, '[[pool]]\nprefixes = ["192.0.2.0/24"]\nlinks = ["2001:db8:10::/64"]\n');
  const toml = await runDstm([...server, "--config", file]);
  expect(toml.stderr).toContain("--pool-link (links in [[pool]]) has no effect without --dhcp4o6");
  const on = await runDstm([
    ...server,
    "--config",
    file,
    "--dhcp4o6",
    "--dhcp4o6-server-id",
    "192.0.2.1",
  ]);
  expect([on.code, on.stderr]).toEqual([0, ""]);
}, 60_000);

test('prefixes = "…" in a [[pool]]: (write prefixes = [...])', async () => {
  const file = join(dir, "prefixes.toml");
  writeFileSync(file, '[[pool]]\nprefixes = "192.0.2.0/24"\n');
  const r = await runDstm([...server, "--config", file]);
  expect([r.code, r.stderr]).toEqual([
    2,
    `dstm: ${file}:2:1: pool[0].prefixes must be an array of strings, not "192.0.2.0/24" (write prefixes = ["192.0.2.0/24"])\n`,
  ]);
}, 60_000);

test("README: --no-source-check's row says what the flag does, as --help does", async () => {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const row = readme.split("\n").find((l) => l.startsWith("| `--no-source-check` |"));
  expect(row).toContain("| accept a HOST_IPV6 that differs from the request's source address;");
  const help = await runDstm(["server", "--help"]);
  expect(help.stdout.replace(/\s+/g, " ")).toContain(
    "--no-source-check accept a HOST_IPV6 that differs from the request's source address",
  );
  // And every --no-NAME row starts with what --no-NAME does.
  for (const name of ["no-hairpin", "no-offload", "no-mss-clamp"])
    for (const line of readme.split("\n").filter((l) => l.startsWith(`| \`--${name}\` |`)))
      expect(line).not.toMatch(/\| (turn|clamp|DTI|TUN) [^|]*\|$/);
}, 60_000);

const skip = netnsSkipReason();
announceSkip("newcomer nc9b: client and tep in a namespace", skip);

describe.skipIf(skip !== null)("in a namespace", () => {
  let ns: Netns;
  beforeAll(() => {
    ns = addressNetns("dstmt-nc9b-", ["2001:db8:1::1"]);
  });
  afterAll(() => ns?.delete());
  const run = (args: string[]) => runDstm(args, { DSTM_RUNTIME_DIR: join(dir, "run") }, ns.name);
  const client = ["client", "--check", "--server", "2001:db8:1::53", "--host6", "2001:db8:1::1"];

  test("client --idle without --on-demand: said to do nothing; with it, nothing said", async () => {
    const off = await run([...client, "--idle", "30s"]);
    expect([off.code, off.stderr]).toEqual([
      0,
      "dstm: --idle has no effect without --on-demand (TOML: on-demand = true): an always-on client keeps its lease\n",
    ]);
    const file = join(dir, "idle.toml");
    writeFileSync(file, 'idle = "30s"\n');
    const fromFile = await run([...client, "--config", file]);
    expect(fromFile.stderr).toStartWith(
      `dstm: ${file}:1:1: idle has no effect without --on-demand`,
    );
    const on = await run([...client, "--idle", "30s", "--on-demand"]);
    expect([on.code, on.stderr]).toEqual([0, ""]);
  }, 60_000);

  test("client --check --napt-udp below 120 s: the RFC 4787 REQ-5 minimum said", async () => {
    const r = await run([...client, "--napt-udp", "30s"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toStartWith("dstm: --napt-udp 30s is below the 120s of RFC 4787 REQ-5:");
    const ok = await run([...client, "--napt-udp", "120s"]);
    expect(ok.stderr).toBe("");
  }, 60_000);

  test("a mistyped subcommand: the one meant, for every command", async () => {
    const cases: [string[], string][] = [
      [
        ["tep", "stat"],
        "dstm: unknown command 'stat' for 'dstm tep'; did you mean 'dstm tep stats'?\n",
      ],
      [
        ["client", "stat"],
        "dstm: unknown command 'stat' for 'dstm client'; did you mean 'dstm client status'?\n",
      ],
      [
        ["server", "relod"],
        "dstm: unknown command 'relod' for 'dstm server'; did you mean 'dstm server reload'?\n",
      ],
    ];
    for (const [args, first] of cases) {
      const r = await run(args);
      expect([args, r.code, r.stderr.split("\n")[0]]).toEqual([args, 2, first.trimEnd()]);
    }
    const far = await run(["tep", "xyzzy"]);
    expect(far.stderr).toMatch(
      /^dstm: unknown command 'xyzzy' for 'dstm tep' \(it takes no arguments; its subcommands: .*stats/,
    );
  }, 60_000);
});
