/**
 * What a newcomer following the README met: help texts that print a default two ways or name
 * a path that is not where the command looks, a duration flag that took only seconds, errors
 * that named an internal placeholder or an errno instead of what to do, and required TEP flags
 * reported one per try. Each test runs the real command (`bun mod.ts`), nothing is started.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { allCommands, type CommandNode, commandTree } from "../cli/command_tree.ts";
import { completionScript } from "../cli/completion.ts";
import { program } from "../cli/main.ts";
import { runtimeSocketDoc } from "../lib/config/common_schema.ts";
import { type LeaseJson, leaseTablePrinter } from "../lib/control/lease_view.ts";
import { BUN, ROOT, runDstm, spawnDstm } from "./helpers/process.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-newcomer-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const nobody = join(dir, "nobody.sock");
const server = ["server", "--tep", "2001:db8::1,203.0.113.1", "--db", "memory", "--no-control"];

/** `dstm ARGS` with extra environment variables (DSTM_CONTROL never inherited). */
async function runWithEnv(args: string[], env: Record<string, string>) {
  const { DSTM_CONTROL: _, ...inherited } = process.env;
  const proc = Bun.spawn([BUN, join(ROOT, "mod.ts"), ...args], {
    cwd: ROOT,
    stdout: "pipe",
    stderr: "pipe",
    env: { ...inherited, ...env },
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}

/** --help wraps at 80 columns: one line of text to search in. */
const flat = (help: string) => help.replace(/\s+/g, " ");

describe("help texts print defaults one way, and the paths the command really uses", () => {
  test("--lease-time's default is a duration like --key-overlap's (1h), not 3600", async () => {
    const help = flat((await runDstm(["server", "--help"])).stdout);
    expect(help).toContain("lease time granted (default: 1h)");
    expect(help).toContain("(default: 1h)");
    expect(help).not.toContain("(default: 3600)");
    expect(help).toContain("--decline-probation <duration>");
    expect(help).toContain("(default: 24h)");
  });

  // The asking commands printed the path this shell resolved (`/run/dstm/server.sock` as
  // root) while they honour $DSTM_CONTROL, $DSTM_RUNTIME_DIR and, as non-root,
  // $XDG_RUNTIME_DIR: they now say the rule, in the daemons' own words.
  test("every control socket default says the rule, as the daemons' own --control does", async () => {
    const server = `$DSTM_CONTROL if set, else ${runtimeSocketDoc("server.sock")}`;
    const cases: [string[], string][] = [
      [["tep", "stats", "--help"], `(default: ${runtimeSocketDoc("tep.sock")})`],
      [["client", "status", "--help"], `(default: ${runtimeSocketDoc("client-IFNAME.sock")})`],
      [["lease", "ls", "--help"], `(default: ${server})`],
      [["lease", "show", "--help"], `(default: ${server})`],
      [["lease", "add", "--help"], `(default: ${server})`],
      [["lease", "del", "--help"], `(default: ${server})`],
      [["lease", "reservations", "--help"], `(default: ${server})`],
      [["lease", "wipe", "--help"], `(default: ${server})`],
      [["lease", "export", "--help"], `(default: ${server})`],
      [["server", "reload", "--help"], `(default: ${server})`],
      [["server", "--help"], `(default: ${server})`],
    ];
    for (const [args, text] of cases) {
      const r = await runDstm(args);
      expect([args.join(" "), r.code, flat(r.stdout).includes(text)]).toEqual([
        args.join(" "),
        0,
        true,
      ]);
    }
    // And the daemons' own --control says where the default comes from.
    for (const [cmd, file] of [
      ["server", "server.sock"],
      ["tep", "tep.sock"],
      ["client", "client-IFNAME.sock"],
    ]) {
      const help = flat((await runDstm([cmd as string, "--help"])).stdout);
      expect(help).toContain(`$DSTM_RUNTIME_DIR/${file} if set, else /run/dstm/${file} as root`);
    }
  });

  test("no --help writes a default as '(default X)': always '(default: X)'", async () => {
    const odd: string[] = [];
    for (const node of allCommands(commandTree(program()))) {
      const help = flat((await runDstm([...node.path, "--help"])).stdout);
      for (const m of help.matchAll(/\(default [^:)][^)]*\)/g))
        odd.push(`${node.path.join(" ")}: ${m[0]}`);
    }
    expect(odd).toEqual([]);
  }, 60_000);

  test("lease add --lease-time and lease export --format name their values like the rest", async () => {
    const add = (await runDstm(["lease", "add", "--help"])).stdout;
    expect(add).toContain("--lease-time <duration>");
    const exp = (await runDstm(["lease", "export", "--help"])).stdout;
    expect(exp).toContain("--format <format>");
    expect(exp).toContain("--state <state>");
  });
});

test("lease add --reserve does not say 'single server only': reservations hold under active-active", async () => {
  const help = flat((await runDstm(["lease", "add", "--help"])).stdout);
  expect(help).not.toContain("single server only");
  expect(help).toContain("held by every server sharing the database: docs/scale-out.md");
});

test("client --check names the DTI mode it checked (--dti kernel is not the default tun)", async () => {
  const kernel = await runDstm([
    "client",
    "--server",
    "2001:db8::53",
    "--dti",
    "kernel",
    "--check",
  ]);
  expect([kernel.code, kernel.stdout]).toEqual([
    0,
    "dstm client: configuration OK (server 2001:db8::53, dstm, dti dti0: kernel)\n",
  ]);
  const tun = await runDstm(["client", "--server", "2001:db8::53", "--check"]);
  expect(tun.stdout).toContain("dti dti0: tun)");
  // The kernel DTI doc says what --check asks the kernel, and shows the line.
  const doc = flat(await Bun.file(join(ROOT, "docs/kernel-dti.md")).text());
  expect(doc).toContain("`--check --dti ip6tnl` also asks the kernel as the start does");
  expect(doc).toContain("dti dti0: ip6tnl)");
});

describe("--decline-probation is a duration like every other one", () => {
  const dhcp4o6 = [...server, "--pool", "192.0.2.0/24", "--dhcp4o6", "--check"];

  test("1d, 24h, 86400 and 0 are accepted; a non-duration is refused naming the flag", async () => {
    for (const value of ["1d", "24h", "86400", "0"]) {
      const r = await runDstm([...dhcp4o6, "--decline-probation", value]);
      expect([value, r.code, r.stderr]).toEqual([value, 0, ""]);
    }
    // --check says that DHCPv4-over-DHCPv6 is on, and where.
    const on = await runDstm(dhcp4o6);
    expect(on.stdout).toContain(", dhcp4o6 [::]:547,");
    expect((await runDstm([...server, "--pool", "192.0.2.0/24", "--check"])).stdout).not.toContain(
      "dhcp4o6",
    );
    const bad = await runDstm([...dhcp4o6, "--decline-probation", "soon"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^dstm: --decline-probation: "soon" is not a positive duration/);
  });

  test("in TOML too: a string duration", async () => {
    const file = join(dir, "probation.toml");
    writeFileSync(
      file,
      'tep = "2001:db8::1,192.0.2.1"\ndb = "memory"\ncontrol = false\ndhcp4o6 = true\ndecline-probation = "12h"\n[[pool]]\nprefixes = ["198.51.100.0/24"]\n',
    );
    const r = await runDstm(["server", "--config", file, "--check"]);
    expect([r.code, r.stderr]).toEqual([0, ""]);
  });
});

describe("errors say what to do", () => {
  test("--max-lease-time below --lease-time names both values", async () => {
    const r = await runDstm([
      ...server,
      "--pool",
      "192.0.2.0/24",
      "--lease-time",
      "1h",
      "--max-lease-time",
      "30m",
      "--check",
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      "--max-lease-time (1800s) must not be shorter than --lease-time (3600s)",
    );
  });

  test("a missing key file: create it with dstm keygen, not ENOENT", async () => {
    const key = join(dir, "no-such.key");
    const r = await runDstm([...server, "--pool", "192.0.2.0/24", "--key", key, "--check"]);
    expect([r.code, r.stderr]).toEqual([
      2,
      `dstm: cannot read key file ${key}: no such file (create it with dstm keygen ${key})\n`,
    ]);
  });

  test("dstm tep without its required flags names all of them at once", async () => {
    const r = await runDstm(["tep"]);
    expect(r.code).toBe(2);
    for (const flag of ["--ipv6 V6", "--ipv4 V4", "--server V6", "--route CIDR"])
      expect(r.stderr).toContain(flag);
    const two = await runDstm(["tep", "--ipv6", "2001:db8::1", "--ipv4", "192.0.2.1"]);
    expect(two.stderr).toMatch(/^dstm: --server V6, --route CIDR are required/);
  });

  test("lease show/del name the argument as --help does, and point a host address to ls --host", async () => {
    for (const cmd of ["show", "del"]) {
      const r = await runDstm(["lease", cmd, "2001:db8:1::11", "--control", nobody]);
      expect([cmd, r.code, r.stderr]).toEqual([
        cmd,
        2,
        'dstm: IPV4: "2001:db8:1::11" is not an IPv4 address; the leases of host 2001:db8:1::11: dstm lease ls --host 2001:db8:1::11 --state all\n',
      ]);
    }
    const junk = await runDstm(["lease", "show", "nonsense", "--control", nobody]);
    expect(junk.stderr).toBe('dstm: IPV4: "nonsense" is not an IPv4 address\n');
  });

  test("lease unreserve with an IPv4 address says a reservation is named by its host", async () => {
    const r = await runDstm(["lease", "unreserve", "192.0.2.11", "--control", nobody]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("a reservation is removed by its host's IPv6 address");
  });

  test("lease ls/export --state is checked before asking a server (exit 2, the choices)", async () => {
    for (const args of [
      ["lease", "ls", "--state", "foo", "--control", nobody],
      ["lease", "export", "--state", "foo", "--control", nobody],
    ]) {
      const r = await runDstm(args);
      expect([args[1], r.code]).toEqual([args[1], 2]);
      expect(r.stderr).toContain("Allowed choices are active, released, expired, all");
    }
  });

  test("tep stats and client status with nobody on the socket suggest --control", async () => {
    const tep = await runDstm(["tep", "stats", "--control", nobody]);
    expect([tep.code, tep.stderr]).toEqual([
      1,
      `dstm: no dstm tep answers on ${nobody}; is it running? (use --control PATH)\n`,
    ]);
    const client = await runDstm(["client", "status", "--control", nobody]);
    expect(client.code).toBe(1);
    expect(client.stderr).toContain("(use --ifname NAME or --control PATH)");
  });
});

test("bash completion offers the --state choices of lease ls", () => {
  const path = join(dir, "dstm.bash");
  writeFileSync(path, completionScript(commandTree(program()), "bash"));
  const r = Bun.spawnSync(
    [
      "bash",
      "-c",
      `source ${path}; COMP_WORDS=(dstm lease ls --state ""); COMP_CWORD=4; _dstm; printf '%s\\n' "\${COMPREPLY[@]}"`,
    ],
    { stdout: "pipe", stderr: "pipe" },
  );
  expect(r.stdout.toString().split("\n").filter(Boolean).sort()).toEqual([
    "active",
    "all",
    "expired",
    "released",
  ]);
});

test("lease ls shows a long lease in days (30d), as the duration flags take it", () => {
  const now = Date.parse("2026-01-01T00:00:00Z");
  const lease: LeaseJson = {
    hostIPv4: "192.0.2.10",
    hostIPv6: "2001:db8:1::10",
    tepIPv4: "192.0.2.1",
    tepIPv6: "2001:db8::1",
    ports: "all",
    portSet: "all",
    portRanges: [[0, 65535]],
    identity: null,
    pool: "192.0.2.0/24",
    state: "active",
    grantedAt: "2026-01-01T00:00:00.000Z",
    expiresAt: new Date(now + 30 * 86400_000 + 5_000).toISOString(),
  };
  const late = {
    ...lease,
    hostIPv4: "192.0.2.11",
    expiresAt: new Date(now - 90_000).toISOString(),
  };
  const text = leaseTablePrinter(now)([lease, late]);
  expect(text).toContain("in 30d0h0m5s");
  expect(text).toContain("1m30s ago");
});

test("docs/metrics.md names every metric the daemons register (quoted dstm_* names in lib/)", async () => {
  const doc = await Bun.file(join(ROOT, "docs", "metrics.md")).text();
  const names = new Set<string>();
  for await (const file of new Bun.Glob("lib/**/*.ts").scan(ROOT)) {
    if (file.startsWith("lib/lease/")) continue; // SQL table and index names, not metrics
    const text = await Bun.file(join(ROOT, file)).text();
    // A metric name ends in a letter or digit: "dstm_ring_" (lib/sys/nft_ring.ts) is a prefix.
    for (const m of text.matchAll(/"(dstm_[a-z0-9_]*[a-z0-9])"/g)) names.add(m[1] as string);
  }
  expect(names.size).toBeGreaterThan(20);
  expect([...names].filter((n) => !doc.includes(`\`${n}\``)).sort()).toEqual([]);
});

test("ping4 --use-client with no client there: exit 1 (run time), naming the client sockets it can see", async () => {
  const run = join(dir, "ping4-run");
  mkdirSync(join(run, "lab-x"), { recursive: true });
  const empty = await runWithEnv(["ping4", "192.0.2.80", "--use-client"], {
    DSTM_RUNTIME_DIR: run,
  });
  expect([empty.code, empty.stderr]).toEqual([
    1,
    `dstm: no dstm client answers on ${join(run, "client-dti0.sock")}; is it running? (--use-client IFNAME or PATH)\n`,
  ]);
  // As in a lab: the clients' sockets are in a subdirectory, named by node, not by DTI.
  writeFileSync(join(run, "lab-x", "client-a.sock"), "");
  const lab = await runWithEnv(["ping4", "192.0.2.80", "--use-client"], { DSTM_RUNTIME_DIR: run });
  expect([lab.code, lab.stderr]).toEqual([
    1,
    `dstm: no dstm client answers on ${join(run, "client-dti0.sock")}; control sockets found: ${join(run, "lab-x", "client-a.sock")} (--use-client PATH)\n`,
  ]);
});

test("README, docs and examples use the current flag names (renamed ones only where the rename is told)", async () => {
  const renamed = ["port", "source", "stats", "control-port"];
  const files = ["README.md", "examples/server-loopback.sh"];
  for (const glob of ["docs/*.md", "packaging/examples/*", "packaging/systemd/*"])
    for await (const f of new Bun.Glob(glob).scan(ROOT)) files.push(f);
  const uses: string[] = [];
  const pattern = new RegExp(`--(${renamed.join("|")})(?![a-z0-9-])`);
  for (const file of files) {
    const lines = (await Bun.file(join(ROOT, file)).text()).split("\n");
    lines.forEach((line, i) => {
      // The rename table entries "(was `--port`)" and the sentence "`--port` → `--server-port`".
      if (/\(was `--|` → `--|`--stats` → /.test(line)) return;
      // A bench script's own options (bench/alloc.ts --port is the server's port to load).
      if (/\bbench\/\w+\.ts\b/.test(line)) return;
      if (pattern.test(line)) uses.push(`${file}:${i + 1}: ${line.trim()}`);
    });
  }
  expect(files.length).toBeGreaterThan(8);
  expect(uses).toEqual([]);
});

test("the server's config file is /etc/dstm/server.toml in --help, the README and the unit alike", async () => {
  const help = (await runDstm(["server", "--help"])).stdout;
  const readme = await Bun.file(join(ROOT, "README.md")).text();
  const unit = await Bun.file(join(ROOT, "packaging/systemd/dstm-server.service")).text();
  expect(unit).toContain("--config /etc/dstm/server.toml");
  expect(help).toContain("--config /etc/dstm/server.toml");
  expect(readme).toContain("dstm server --config /etc/dstm/server.toml");
  expect(`${help}${readme}`).not.toContain("/etc/dstm/dstm.toml");
});

test("example command lines quote [IPv6]:PORT (zsh refuses an unquoted one: 'no matches found')", async () => {
  const lines: string[] = [];
  for (const node of allCommands(commandTree(program()))) {
    const help = (await runDstm([...node.path, "--help"])).stdout;
    for (const line of help.split("\n"))
      if (/^\s+dstm /.test(line)) lines.push(`dstm ${node.path.join(" ")} --help: ${line}`);
  }
  const docs = ["README.md"];
  for await (const f of new Bun.Glob("docs/*.md").scan(ROOT)) docs.push(f);
  for (const file of docs) {
    let fenced = false;
    for (const line of (await Bun.file(join(ROOT, file)).text()).split("\n")) {
      if (line.startsWith("```")) fenced = !fenced;
      else if (fenced) lines.push(`${file}: ${line}`); // continuation lines too
    }
  }
  expect(lines.length).toBeGreaterThan(200);
  // A shell word that starts with [ and is not inside quotes.
  expect(lines.filter((l) => /\s\[[0-9a-fA-F:.]+\]:\d/.test(l))).toEqual([]);
}, 60_000);

test("DHCPv4-over-DHCPv6 settings without --dhcp4o6 are said to do nothing (flags and file); none when it is on", async () => {
  const base = [...server, "--pool", "192.0.2.0/24", "--check"];
  const off = await runDstm([
    ...base,
    "--dhcp4o6-allow",
    "2001:db8::/64",
    "--decline-probation",
    "1d",
  ]);
  expect([off.code, off.stderr]).toEqual([
    0,
    "dstm: --dhcp4o6-allow, --decline-probation have no effect without --dhcp4o6 (TOML: dhcp4o6 = true)\n",
  ]);
  const file = join(dir, "no-4o6.toml");
  writeFileSync(file, 'dhcp4o6-identity = "client-id"\n');
  const fromFile = await runDstm([...base, "--config", file]);
  expect(fromFile.stderr).toBe(
    "dstm: --dhcp4o6-identity has no effect without --dhcp4o6 (TOML: dhcp4o6 = true)\n",
  );
  const on = await runDstm([...base, "--dhcp4o6", "--dhcp4o6-allow", "2001:db8::/64"]);
  expect([on.code, on.stderr]).toEqual([0, ""]);
  expect((await runDstm(base)).stderr).toBe("");
});

/**
 * Every `dstm …` command line in the README's and docs' code blocks and in every --help's
 * examples, split at `|`, `&&`, `;` and `#`: the longest command path it names, and each
 * `--flag` it gives that this command does not have (a copy-pasted example that fails).
 */
async function unknownExampleFlags(): Promise<{ checked: number; unknown: string[] }> {
  const root = commandTree(program());
  const byPath = new Map(allCommands(root).map((n) => [n.path.join(" "), n]));
  const lines: { where: string; text: string }[] = [];
  for (const node of allCommands(root))
    for (const line of node.epilog.split("\n"))
      lines.push({ where: `dstm ${node.path.join(" ")} --help`, text: line });
  const docs = ["README.md"];
  for await (const f of new Bun.Glob("docs/*.md").scan(ROOT)) docs.push(f);
  for (const file of docs) {
    let fenced = false;
    let joined = "";
    (await Bun.file(join(ROOT, file)).text()).split("\n").forEach((line, i) => {
      if (line.startsWith("```")) fenced = !fenced;
      else if (fenced) {
        // A continued line (`\` at the end) is one command.
        joined += line.replace(/\\$/, " ");
        if (line.endsWith("\\")) return;
        lines.push({ where: `${file}:${i + 1}`, text: joined });
        joined = "";
      }
    });
  }
  let checked = 0;
  const unknown: string[] = [];
  for (const { where, text } of lines) {
    for (const part of text.replace(/#.*$/, "").split(/\|\||\||&&|;/)) {
      const words = part.trim().split(/\s+/);
      const at = words.indexOf("dstm");
      if (at < 0) continue;
      let node: CommandNode | undefined = byPath.get("");
      let rest = words.slice(at + 1);
      for (let n = rest.length; n > 0; n--) {
        const found = byPath.get(rest.slice(0, n).join(" "));
        if (found) {
          node = found;
          rest = rest.slice(n);
          break;
        }
      }
      if (!node) continue;
      const names = new Set(node.options.flatMap((o) => [o.long, o.short]));
      checked++;
      for (const w of rest) {
        const flag = /^(--?[a-z0-9][a-z0-9-]*)/.exec(w)?.[1];
        if (flag && !names.has(flag) && flag !== "--help" && flag !== "-h")
          unknown.push(`${where}: dstm ${node.path.join(" ")} has no ${flag}: ${part.trim()}`);
      }
    }
  }
  return { checked, unknown };
}

test("every dstm example in the README, docs and --help uses flags its command has", async () => {
  const { checked, unknown } = await unknownExampleFlags();
  expect(checked).toBeGreaterThan(100);
  expect(unknown).toEqual([]);
}, 60_000);

test("dstm_pool_addresses counts reserved slots: active + free + reserved + blocked is the pool", async () => {
  const control = join(dir, "pool-metrics.sock");
  const s = spawnDstm([
    ...["server", "--pool", "192.0.2.0/28", "--tep", "2001:db8::1", "--db", "memory"],
    ...["--listen", "[::1]:0", "--control", control, "--metrics", "[::1]:0"],
  ]);
  try {
    const where = /metrics=(\S+)/.exec(await s.waitFor(/ start /))?.[1];
    const add = await runDstm([
      ...["lease", "add", "--host6", "2001:db8:1::11", "--ipv4", "192.0.2.11", "--reserve"],
      ...["--control", control],
    ]);
    expect([add.code, add.stderr]).toEqual([0, ""]);
    const text = await (await fetch(`http://${where}/metrics`)).text();
    const gauge = (state: string) =>
      Number(
        new RegExp(`dstm_pool_addresses\\{pool="192.0.2.0/28",state="${state}"\\} (\\d+)`).exec(
          text,
        )?.[1],
      );
    expect(["active", "free", "reserved", "blocked"].map(gauge)).toEqual([0, 13, 1, 0]);
  } finally {
    s.proc.kill("SIGTERM");
    await s.exited;
  }
});
