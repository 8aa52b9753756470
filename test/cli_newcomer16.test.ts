/**
 * What a newcomer following the README met (round 16): a mistyped command told in two lines,
 * the second without `dstm:`; `lease ls --all --state active` ignoring --all; `--pool NAME`
 * for pools that have no name setting; help examples that did not work as written (the TEP
 * without --key, the server without --tep-key) and commands without examples. Each test runs
 * the real command (`bun mod.ts`); nothing is started, no server is asked.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { allCommands, commandTree } from "../cli/command_tree.ts";
import { program } from "../cli/main.ts";
import { runDstm } from "./helpers/process.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-newcomer16-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const nobody = join(dir, "nobody.sock");

/** The example lines of a --help: the indented `dstm …` lines after "Examples". */
function exampleLines(help: string): string[] {
  const at = help.indexOf("\nExamples");
  if (at < 0) return [];
  return help
    .slice(at)
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.startsWith("dstm "));
}

describe("a mistyped command is one dstm: line", () => {
  test.each([
    [["leases", "ls"], "dstm: unknown command 'leases' for 'dstm'; did you mean 'dstm lease'?"],
    [
      ["lease", "lss"],
      "dstm: unknown command 'lss' for 'dstm lease'; did you mean 'dstm lease ls'?",
    ],
  ])("%p", async (args, line) => {
    const r = await runDstm(args);
    expect(r.code).toBe(2);
    const lines = r.stderr.trimEnd().split("\n");
    expect(lines[0]).toBe(line);
    // Was "(Did you mean lease?)" on a line of its own, without the prefix.
    for (const l of lines) expect(l).toStartWith("dstm: ");
  });
});

describe("lease ls --all with another --state is refused (--all was ignored)", () => {
  test.each(["active", "released", "expired"])(
    "--all --state %s: exit 2, said why",
    async (state) => {
      const r = await runDstm(["lease", "ls", "--all", "--state", state, "--control", nobody]);
      expect([r.code, r.stderr]).toEqual([
        2,
        `dstm: --all (every state) and --state ${state} contradict each other; give --state ${state} alone, or --all\n`,
      ]);
    },
  );

  test("--all --state all agrees: not refused (it asks the server, here none)", async () => {
    const r = await runDstm(["lease", "ls", "--all", "--state", "all", "--control", nobody]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("no dstm server answers");
  });
});

test("--pool of lease ls and lease wipe takes a CIDR: a pool has no name setting", async () => {
  for (const args of [
    ["lease", "ls", "--help"],
    ["lease", "wipe", "--help"],
  ]) {
    const help = (await runDstm(args)).stdout.replace(/\s+/g, " ");
    expect(help).toContain("--pool <cidr>");
    expect(help).not.toMatch(/--pool <name>|name or CIDR|pool's name/);
  }
  const readme = await Bun.file(join(import.meta.dir, "..", "README.md")).text();
  expect(readme).not.toContain("--pool NAME");
});

describe("help examples work as written, and every command group has some", () => {
  test("every command's --help has examples, as the README promises", () => {
    const without = allCommands(commandTree(program()))
      .filter((n) => !/^Examples\b/m.test(n.epilog))
      .map((n) => `dstm ${n.path.join(" ")}`.trim());
    expect(without).toEqual([]);
  });

  test("dstm, lease and lab --help have examples", async () => {
    for (const args of [["--help"], ["lease", "--help"], ["lab", "--help"]])
      expect({ args, examples: exampleLines((await runDstm(args)).stdout).length > 0 }).toEqual({
        args,
        examples: true,
      });
  });

  test("every full `dstm tep` and `dstm server` example has the key its peer needs", async () => {
    const tep = exampleLines((await runDstm(["tep", "--help"])).stdout).filter((l) =>
      l.includes("--ipv6"),
    );
    expect(tep.length).toBeGreaterThan(0);
    for (const l of tep) expect(l).toContain("--key ");
    const server = exampleLines((await runDstm(["server", "--help"])).stdout).filter((l) =>
      l.includes("--pool"),
    );
    expect(server.length).toBeGreaterThan(0);
    for (const l of server) expect(l).toContain("--tep-key ");
  });

  test("the server examples pass --check without a warning (keys made as the help says)", async () => {
    const key = join(dir, "etc", "key");
    const tepKey = join(dir, "etc", "tep.key");
    for (const file of [key, tepKey]) expect((await runDstm(["keygen", file])).code).toBe(0);
    const lines = exampleLines((await runDstm(["server", "--help"])).stdout).filter((l) =>
      l.includes("--pool"),
    );
    for (const line of lines) {
      const args = line
        .replace(/#.*$/, "")
        .trim()
        .split(/\s+/)
        .slice(1)
        .map((a) => a.replace(/^'(.*)'$/, "$1"))
        .map((a) => (a === "/etc/dstm/key" ? key : a === "/etc/dstm/tep.key" ? tepKey : a));
      const r = await runDstm([...args, "--db", "memory", "--no-control", "--check"]);
      expect({ line, code: r.code, stderr: r.stderr }).toEqual({ line, code: 0, stderr: "" });
    }
  });
});

// The README's own example warned under --check: `--pool-link (links in [[pool]]) has no
// effect without --dhcp4o6`. Its key files are made here, its database is memory.
test("the README's server TOML example passes --check without a warning", async () => {
  const readme = await Bun.file(join(import.meta.dir, "..", "README.md")).text();
  const blocks = [...readme.matchAll(/^```toml\n([\s\S]*?)^```$/gm)].map((m) => m[1] as string);
  expect(blocks.length).toBeGreaterThan(0);
  const keys = join(dir, "readme-keys");
  for (const file of ["key", "tep.key"])
    expect((await runDstm(["keygen", join(keys, file)])).code).toBe(0);
  const file = join(dir, "readme-server.toml");
  writeFileSync(
    file,
    (blocks[0] as string)
      .replaceAll("/etc/dstm/", `${keys}/`)
      .replace('"/var/lib/dstm/leases.db"', '"memory"'),
  );
  const r = await runDstm(["server", "--config", file, "--no-control", "--check"]);
  expect([r.code, r.stderr]).toEqual([0, ""]);
  expect(r.stdout).toContain("configuration OK (3 pool(s)");
});
