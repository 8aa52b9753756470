import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseKeyFile } from "../lib/wire/auth.ts";
import { listenPort, ROOT, runDstm, spawnDstm } from "./helpers/process.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SUBCOMMANDS = ["server", "client", "tep", "lease", "ping4", "lab"];
const base = ["--tep", "2001:db8::1", "--db", "memory", "--no-control", "--listen", "[::1]:0"];

describe("dstm command line", () => {
  test('the lab is named in quotes: lab "NAME", not "lab lab"', async () => {
    const name = `q${Math.random().toString(36).slice(2, 7)}`;
    const { code, stdout } = await runDstm(["lab", "status", "--name", name]);
    expect(code).toBe(0);
    expect(stdout).toBe(`lab "${name}" is not up\n`);
  });

  test("--help lists every subcommand", async () => {
    const { code, stdout } = await runDstm(["--help"]);
    expect(code).toBe(0);
    for (const name of SUBCOMMANDS) expect(stdout).toMatch(new RegExp(`^\\s+${name}\\b`, "m"));
  });

  test.skipIf(!existsSync(join(ROOT, "dist", "dstm")))(
    "the compiled dist/dstm lists every subcommand",
    async () => {
      const proc = Bun.spawn([join(ROOT, "dist", "dstm"), "--help"], { stdout: "pipe" });
      const stdout = await new Response(proc.stdout).text();
      expect(await proc.exited).toBe(0);
      for (const name of SUBCOMMANDS) expect(stdout).toMatch(new RegExp(`^\\s+${name}\\b`, "m"));
    },
  );

  const badConfigs: [string, string[], RegExp][] = [
    ["no pool", ["server", ...base], /no pool/],
    ["unparsable pool", ["server", "--pool", "192.0.2.0/33", ...base], /192\.0\.2\.0\/33/],
    ["pool with host bits", ["server", "--pool", "192.0.2.7/24", ...base], /192\.0\.2\.7\/24/],
    [
      "overlapping pools",
      ["server", "--pool", "192.0.2.0/24", "--pool", "192.0.2.128/25", ...base],
      /overlap/i,
    ],
    ["no TEP", ["server", "--pool", "192.0.2.0/24", "--db", "memory", "--no-control"], /no TEP/],
    [
      "bad TEP",
      ["server", "--pool", "192.0.2.0/24", "--tep", "192.0.2.1", "--db", "memory"],
      /--tep/,
    ],
    [
      "IPv4 listen address",
      ["server", "--pool", "192.0.2.0/24", ...base, "--listen", "127.0.0.1:4604"],
      /IPv6/,
    ],
    [
      "address not on this host",
      ["server", "--pool", "192.0.2.0/24", ...base, "--listen", "[2001:db8::99]:4604"],
      /no interface has this address/,
    ],
    [
      "bad lease time",
      ["server", "--pool", "192.0.2.0/24", ...base, "--lease-time", "-5"],
      /--lease-time/,
    ],
    [
      "unwritable database",
      ["server", "--pool", "192.0.2.0/24", ...base, "--db", "/proc/dstm-no/leases.db"],
      /leases\.db/,
    ],
    [
      "exclusion outside every pool",
      ["server", "--pool", "192.0.2.0/24", ...base, "--exclude", "198.51.100.1"],
      /in no pool/,
    ],
    [
      "missing key file",
      ["server", "--pool", "192.0.2.0/24", ...base, "--key", "/nonexistent/key"],
      /key file/,
    ],
  ];
  for (const [name, args, message] of badConfigs) {
    test(`bad configuration (${name}) is one line on stderr and exit 2 or 1`, async () => {
      const { code, stderr } = await runDstm(args);
      expect(code === 1 || code === 2).toBe(true);
      expect(stderr).toMatch(message);
      expect(stderr.trim().split("\n").length).toBe(1);
      expect(stderr).toStartWith("dstm: ");
    });
  }

  test("a port in use is reported clearly", async () => {
    const first = spawnDstm(["server", "--pool", "192.0.2.0/24", ...base]);
    try {
      const port = listenPort(await first.waitFor(/ start /));
      const { code, stdout, stderr } = await runDstm([
        "server",
        "--pool",
        "192.0.2.0/24",
        ...base,
        "--listen",
        `[::1]:${port}`,
      ]);
      expect(code).toBe(1);
      expect(stderr).toMatch(/port is in use/);
      // It never started, so it does not log `stop` either (a newcomer read that as a crash).
      expect(`${stdout}${stderr}`).not.toMatch(/ stop\b/);
    } finally {
      first.proc.kill("SIGTERM");
      await first.exited;
    }
  });

  test("--config reads a TOML file, flags override it, unknown settings are refused", async () => {
    const file = join(dir, "dstm.toml");
    writeFileSync(
      file,
      `listen = "[::1]:0"\ndb = "memory"\ncontrol = "${join(dir, "c.sock")}"\nlease-time = "2m"\nlog-format = "json"\n\n[[pool]]\nprefixes = ["203.0.113.0/28"]\nexclude = ["203.0.113.1"]\ntep = "2001:db8::7,192.0.2.7"\n`,
    );
    const server = spawnDstm(["server", "--config", file, "--no-control"]);
    try {
      const line = await server.waitFor(/"event":"start"/);
      const start = JSON.parse(line) as Record<string, unknown>;
      expect(start.pools).toBe("203.0.113.0/28");
      expect(start.addresses).toBe(13); // /28 = 16, minus network, broadcast and one exclusion
      expect(start.control).toBeUndefined();
    } finally {
      server.proc.kill("SIGINT");
      expect(await server.exited).toBe(0);
    }
    writeFileSync(
      join(dir, "bad.toml"),
      `pool = "192.0.2.0/24"\ntep = "2001:db8::1"\nlistne = "[::1]:0"\n`,
    );
    const bad = await runDstm(["server", "--config", join(dir, "bad.toml")]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/unknown setting "listne"/);
    writeFileSync(join(dir, "broken.toml"), `pool = [\n`);
    const broken = await runDstm(["server", "--config", join(dir, "broken.toml")]);
    expect(broken.code).toBe(2);
    expect(broken.stderr).toMatch(/not valid TOML/);
  });

  test("--metrics serves Prometheus text over HTTP and the control socket serves stats", async () => {
    const control = join(dir, "m.sock");
    const server = spawnDstm([
      "server",
      "--pool",
      "192.0.2.0/28",
      "--tep",
      "2001:db8::1",
      "--db",
      "memory",
      "--listen",
      "[::1]:0",
      "--control",
      control,
      "--metrics",
      "[::1]:0",
    ]);
    try {
      const start = await server.waitFor(/ start /);
      const where = /metrics=(\S+)/.exec(start)?.[1];
      expect(where).toMatch(/^\[::1\]:\d+$/);
      const text = await (await fetch(`http://${where}/metrics`)).text();
      expect(text).toContain('dstm_pool_addresses{pool="192.0.2.0/28",state="free"} 14');
      expect(text).toContain("# TYPE dstm_messages_total counter");
      const stats = (await (
        await fetch("http://localhost/v1/stats", { unix: control })
      ).json()) as {
        pools: { pool: string; size: number }[];
      };
      expect(stats.pools).toEqual([expect.objectContaining({ pool: "192.0.2.0/28", size: 14 })]);
    } finally {
      server.proc.kill("SIGTERM");
      expect(await server.exited).toBe(0);
    }
  });

  test("SIGTERM stops the server cleanly with exit 0 and a stop line", async () => {
    const server = spawnDstm(["server", "--pool", "192.0.2.0/24", ...base]);
    await server.waitFor(/ start /);
    server.proc.kill("SIGTERM");
    expect(await server.exited).toBe(0);
    expect(server.lines.some((l) => / stop/.test(l))).toBe(true);
  });

  test("keygen prints a key file that parses", async () => {
    const { code, stdout } = await runDstm(["keygen", "--id", "42"]);
    expect(code).toBe(0);
    const parsed = parseKeyFile(stdout);
    expect(parsed.ok && parsed.keys[0]!.id).toBe(42);
  });

  test("lease ls without a running server says how to fix it", async () => {
    const { code, stderr } = await runDstm(["lease", "ls", "--control", join(dir, "nobody.sock")]);
    expect(code).toBe(1); // an unavailable resource, not a usage error (README: exit codes)
    expect(stderr).toMatch(/no dstm server answers/);
  });
});
