/**
 * `dstm completion bash|zsh|fish`: each script is loaded by its real shell and asked for
 * candidates the way the shell asks (bash: COMP_WORDS/COMP_CWORD and the completion function;
 * fish: `complete -C`; zsh: _dstm with words/CURRENT and zsh's completion builtins recorded),
 * and all three are syntax-checked. Candidates are compared with the commander program itself.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { allCommands, commandTree } from "../cli/command_tree.ts";
import { completionScript } from "../cli/completion.ts";
import { program } from "../cli/main.ts";
import { BUN, ROOT } from "./helpers/process.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-completion-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const tree = commandTree(program());
const script = (shell: "bash" | "zsh" | "fish") => {
  const path = join(dir, `dstm.${shell}`);
  writeFileSync(path, completionScript(tree, shell));
  return path;
};
const run = (argv: string[]) => {
  const r = Bun.spawnSync(argv, { cwd: dir, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${argv[0]} failed: ${r.stderr.toString()}`);
  return r.stdout.toString();
};
/** The sorted candidates, one per line in `out`, first tab-separated field. */
const words = (out: string) =>
  out
    .split("\n")
    .filter(Boolean)
    .map((l) => l.split("\t")[0]!)
    .sort();
const sorted = (list: string[]) => [...list].sort();
const subcommandsOf = (...path: string[]) => {
  const node = allCommands(tree).find((n) => n.path.join(" ") === path.join(" "))!;
  return [...node.subcommands.map((s) => s.name), ...(node.subcommands.length ? ["help"] : [])];
};
const longOptionsOf = (...path: string[]) =>
  allCommands(tree)
    .find((n) => n.path.join(" ") === path.join(" "))!
    .options.flatMap((o) => (o.long ? [o.long] : []));

/** Cases: words typed (the last being completed) and the expected candidates. */
const CASES: [string[], string[]][] = [
  [["dstm", ""], subcommandsOf()],
  [["dstm", "le"], ["lease"]],
  [["dstm", "lease", ""], subcommandsOf("lease")],
  [["dstm", "lease", "ls", "--"], longOptionsOf("lease", "ls")],
  [
    ["dstm", "server", "--log-format", ""],
    ["json", "text"],
  ],
  [["dstm", "server", "--pool", "192.0.2.0/24", "--log-level", "w"], ["warn"]],
  [
    ["dstm", "--version", "server", "--co"],
    ["--config", "--control"],
  ],
  [
    ["dstm", "ping4", "-c", "3", "--se"],
    ["--server", "--server-port"],
  ],
  [["dstm", "tep", "stats", "--j"], ["--json"]],
  [
    ["dstm", "completion", "-"],
    ["--help", "-h"],
  ],
];

describe("dstm completion", () => {
  test("covers every command and option of the program", () => {
    const bash = completionScript(tree, "bash");
    for (const node of allCommands(tree)) {
      expect(bash).toContain(
        `'${node.path.join(" ")}') echo '${node.options.flatMap((o) => [o.short, o.long].filter(Boolean)).join(" ")}'`,
      );
    }
    expect(subcommandsOf()).toContain("completion");
  });

  test.skipIf(!Bun.which("bash"))("bash: the completion function offers the right words", () => {
    const path = script("bash");
    expect(run(["bash", "-n", path])).toBe("");
    for (const [typed, want] of CASES) {
      const array = typed.map((w) => `'${w}'`).join(" ");
      const out = run([
        "bash",
        "-c",
        `source '${path}'; COMP_WORDS=(${array}); COMP_CWORD=${typed.length - 1}; _dstm; printf '%s\\n' "\${COMPREPLY[@]}"`,
      ]);
      expect({ typed, got: words(out) }).toEqual({ typed, got: sorted(want) });
    }
    // File names for a <path> value.
    writeFileSync(join(dir, "leases-x.db"), "");
    const files = run([
      "bash",
      "-c",
      `source '${path}'; COMP_WORDS=(dstm lease ls --db leases-); COMP_CWORD=4; _dstm; echo "\${COMPREPLY[@]}"`,
    ]);
    expect(files.trim()).toBe("leases-x.db");
  });

  test.skipIf(!Bun.which("fish"))("fish: `complete -C` offers the right words", () => {
    const path = script("fish");
    expect(run(["fish", "-n", path])).toBe("");
    for (const [typed, want] of CASES) {
      const line = typed.join(" ");
      const out = run(["fish", "-c", `source '${path}'; complete -C '${line}'`]);
      expect({ typed, got: words(out) }).toEqual({ typed, got: sorted(want) });
    }
  });

  test.skipIf(!Bun.which("zsh"))(
    "zsh: _dstm hands the right words to _describe / compadd / _files",
    () => {
      const path = script("zsh");
      expect(run(["zsh", "-n", path])).toBe("");
      // zsh's completion builtins only work inside a completion widget: stand-ins record their input.
      const harness = `compdef() { :; }
_describe() { local -a arr; arr=("\${(@P)4}"); print -rl -- "\${arr[@]%%:*}"; }
compadd() { shift; print -rl -- "$@"; }
_files() { print -r -- "<files>"; }
_message() { print -r -- "<message>"; }
source '${path}'
comp() { words=("$@"); CURRENT=\${#words}; _dstm; }
`;
      for (const [typed, want] of CASES) {
        const call = `comp ${typed.map((w) => `'${w}'`).join(" ")}`;
        const out = run(["zsh", "-c", `${harness}${call}`]);
        // zsh filters by the typed prefix itself (after _describe): do the same here.
        const prefix = typed.at(-1)!;
        const got = words(out).filter((w) => w.startsWith(prefix));
        expect({ typed, got }).toEqual({ typed, got: sorted(want) });
      }
      expect(run(["zsh", "-c", `${harness}comp dstm lease ls --db ''`]).trim()).toBe("<files>");
    },
  );

  test("`dstm completion` refuses an unknown shell with a usage error", () => {
    const r = Bun.spawnSync([BUN, join(ROOT, "mod.ts"), "completion", "tcsh"], { cwd: ROOT });
    expect(r.exitCode).toBe(2);
    expect(r.stderr.toString()).toBe('dstm: completion: "tcsh" is not bash, zsh or fish\n');
    const ok = Bun.spawnSync([BUN, join(ROOT, "mod.ts"), "completion", "bash"], { cwd: ROOT });
    expect(ok.stdout.toString()).toBe(completionScript(tree, "bash"));
  });
});
