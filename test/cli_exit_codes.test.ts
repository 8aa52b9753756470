/**
 * One exit code rule for every subcommand (issue 13 item 4, cli/errors.ts): 0 done, 1 failed
 * at run time, 2 bad command line or configuration; always `dstm: …` on stderr, and a
 * malformed command line adds the help hint of the command it was for. And `--check`
 * (item 2): exit 0 or 2, nothing started, nothing created.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ownAddressesNetns } from "./helpers/netns.ts";
import { runDstm } from "./helpers/process.ts";
import { tepArgv } from "./helpers/tep_argv.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-exit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// `tep --check` and `client --check` ask the host whether --ipv6 / --host6 are its own: the
// runs that pass them do so in a namespace of their own whose loopback holds them.
const own = ownAddressesNetns("--check with this host's --ipv6 / --host6", [
  "2001:db8:1::1",
  "2001:db8::5",
]);
const skip = own.skip;
/** runDstm inside the namespace that holds the TEP's --ipv6 (tepArgv's) and 2001:db8::5. */
const inNs = (args: readonly string[]) => runDstm(args, {}, own.ns()!.name);
const nobody = join(dir, "nobody.sock");
const server = ["server", "--tep", "2001:db8::1", "--db", "memory", "--no-control"];

/** [command line, the command its hint names (commander errors) or null, stderr pattern] */
const usage: [string[], string | null, RegExp][] = [
  [["--frobnicate"], "dstm", /unknown option '--frobnicate'/],
  [["nosuchcommand"], "dstm", /unknown command 'nosuchcommand'/],
  [["server", "--frobnicate"], "dstm server", /unknown option/],
  [
    [...server, "--pool", "192.0.2.0/24", "--log-level", "verbose"],
    "dstm server",
    /'verbose' is invalid/,
  ],
  [[...server, "--pool", "192.0.2.1/24"], null, /host bits set/],
  [[...server, "--pool", "192.0.2.0/24", "--pool", "192.0.2.0/25"], null, /overlap/],
  [[...server, "--pool", "192.0.2.0/33"], null, /pool/],
  [[...server, "--pool", "192.0.2.0/24", "--idle", "5"], "dstm server", /unknown option '--idle'/],
  [["server", "reload", "--frob"], "dstm server reload", /unknown option/],
  [["client", "--frobnicate"], "dstm client", /unknown option/],
  [["client"], null, /--server V6 is required/],
  [["client", "--server", "2001:db8::53", "--idle", "soon"], null, /--idle: "soon"/],
  [["client", "status", "--frob"], "dstm client status", /unknown option/],
  [["tep", "--frobnicate"], "dstm tep", /unknown option/],
  [["tep", "--ipv4", "192.0.2.1"], null, /--ipv6/],
  [["tep", "stats", "--frob"], "dstm tep stats", /unknown option/],
  [["lease", "--frob"], "dstm lease", /unknown option/],
  [["lease", "ls", "--frob"], "dstm lease ls", /unknown option/],
  [["lease", "get", "192.0.2.1"], "dstm lease get", /required option '--server <v6>'/],
  [["lease", "release", "192.0.2.1"], "dstm lease release", /required option/],
  [["lease", "ls", "--db", join(dir, "missing.db")], null, /missing\.db/],
  [["keygen", "--id", "x"], null, /--id must be/],
  [["ping4", "--frob"], "dstm ping4", /unknown option/],
  [["lab", "--frob"], "dstm lab", /unknown option/],
  [["lab", "status", "--frob"], "dstm lab status", /unknown option/],
];

const runtime: [string[], RegExp][] = [
  [["lease", "ls", "--control", nobody], /no dstm server answers/],
  [["server", "reload", "--control", nobody], /no dstm server answers/],
  [["client", "status", "--control", nobody], /no dstm client answers/],
  [["tep", "stats", "--control", nobody], /no dstm tep answers/],
];

describe("exit code 2: the command line or the configuration is wrong", () => {
  for (const [args, hint, message] of usage) {
    test(`dstm ${args.join(" ")}`, async () => {
      const r = await runDstm(args);
      expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 2, stdout: "" });
      const lines = r.stderr.trimEnd().split("\n");
      expect(lines[0]).toStartWith("dstm: ");
      expect(lines[0]).toMatch(message);
      expect(lines.slice(1)).toEqual(hint === null ? [] : [`dstm: see '${hint} --help'`]);
    });
  }
});

describe("exit code 1: well formed, but it failed at run time", () => {
  for (const [args, message] of runtime) {
    test(`dstm ${args.join(" ")}`, async () => {
      const r = await runDstm(args);
      expect(r.code).toBe(1);
      expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
      expect(r.stderr).toStartWith("dstm: ");
      expect(r.stderr).toMatch(message);
    });
  }
});

describe("--check (issue 13 item 2)", () => {
  test("dstm server --check: 0 for a valid configuration, nothing created or bound", async () => {
    const db = join(dir, "state", "sub", "leases.db");
    const r = await runDstm([
      "server",
      "--pool",
      "192.0.2.0/24",
      "--tep",
      "2001:db8::1",
      "--db",
      db,
      "--control",
      join(dir, "check.sock"),
      "--check",
    ]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^dstm server: configuration OK \(1 pool\(s\), listen \[::\]:4607/);
    // No --key: the check says what start warns (auth-off), and how to fix it.
    expect(r.stdout).toMatch(
      /\ndstm server: warning: no --key: DSTM requests are not authenticated, .*take leases.*`dstm keygen .*--key/,
    );
    expect(existsSync(join(dir, "state"))).toBe(false);
    expect(existsSync(join(dir, "check.sock"))).toBe(false);
    // With --key: no warning.
    const keyFile = join(dir, "check.key");
    expect((await runDstm(["keygen", keyFile])).code).toBe(0);
    const keyed = await runDstm([
      ...["server", "--pool", "192.0.2.0/24", "--tep", "2001:db8::1", "--no-control"],
      ...["--key", keyFile, "--check"],
    ]);
    expect([keyed.code, keyed.stderr]).toEqual([0, ""]);
    expect(keyed.stdout).toMatch(/^dstm server: configuration OK [^\n]*\n$/);
  });

  test("dstm server --check: 2 for what start would refuse (overlap, key file, TOML type)", async () => {
    const pools = await runDstm([
      ...server,
      "--pool",
      "192.0.2.0/24",
      "--pool",
      "192.0.2.128/25",
      "--check",
    ]);
    expect([pools.code, pools.stderr]).toEqual([
      2,
      expect.stringMatching(/^dstm: pools .* overlap/),
    ]);
    const key = await runDstm([
      ...server,
      "--pool",
      "192.0.2.0/24",
      "--key",
      join(dir, "no-key"),
      "--check",
    ]);
    expect([key.code, key.stderr]).toEqual([
      2,
      expect.stringMatching(/^dstm: cannot read key file/),
    ]);
    const ifname = await runDstm([
      ...server,
      "--pool",
      "192.0.2.0/24",
      "--dhcp4o6",
      "--dhcp4o6-server-id",
      "192.0.2.1",
      "--dhcp4o6-interface",
      "dstmnosuch0",
      "--check",
    ]);
    expect([ifname.code, ifname.stderr]).toEqual([
      2,
      expect.stringMatching(
        /^dstm: --dhcp4o6-interface dstmnosuch0: no such interface on this host/,
      ),
    ]);
    const file = join(dir, "bad.toml");
    writeFileSync(file, 'pool = "192.0.2.0/24"\ntep = "2001:db8::1"\nrequire-tep = "yes"\n');
    const toml = await runDstm(["server", "--config", file, "--check"]);
    expect([toml.code, toml.stderr]).toEqual([
      2,
      `dstm: ${file}:3:1: require-tep must be true or false, not "yes"\n`,
    ]);
  });

  test.skipIf(skip !== null)(
    "dstm tep --check and dstm client --check: 0 or 2, reading --config too",
    async () => {
      const tep = await inNs([...tepArgv({ server: "::1" }), "--check"]);
      expect(tep.code).toBe(0);
      expect(tep.stdout).toMatch(/^dstm tep: configuration OK/);
      const file = join(dir, "client.toml");
      writeFileSync(file, 'server = "2001:db8::53"\nidle = "1h30m"\non-demand = true\n');
      const client = await runDstm(["client", "--config", file, "--check"]);
      expect([client.code, client.stdout]).toEqual([
        0,
        expect.stringMatching(/^dstm client: configuration OK \(server 2001:db8::53/),
      ]);
      writeFileSync(file, 'server = "2001:db8::53"\non-demand = "yes"\n');
      const bad = await runDstm(["client", "--config", file, "--check"]);
      expect([bad.code, bad.stderr]).toEqual([
        2,
        `dstm: ${file}:2:1: on-demand must be true or false, not "yes"\n`,
      ]);
    },
  );
});

describe("--ifname: the TEP checks its tunnel interface's name as the client does", () => {
  // Before, `dstm tep --ifname a/b --check` said OK; the TEP could never create that interface.
  test.skipIf(skip !== null)(
    "bad names exit 2 under --check with one line naming the flag; a dotted name is OK",
    async () => {
      for (const name of ["a/b", "tep:0", "tep 0", "", "..", "abcdefghijklmnop"]) {
        const tep = await inNs([...tepArgv({ server: "::1" }), "--ifname", name, "--check"]);
        expect(tep.stdout).not.toContain("configuration OK");
        expect([name, tep.code, tep.stderr]).toEqual([
          name,
          2,
          `dstm: --ifname: "${name}" is not an interface name (1 to 15 bytes, no '/', ':' or spaces)\n`,
        ]);
        // The same rule and message as the client's (lib/config/ifname.ts).
        const client = await runDstm(["client", "--server", "::1", "--ifname", name, "--check"]);
        expect([name, client.code, client.stderr]).toEqual([name, 2, tep.stderr]);
      }
      for (const name of ["tep.7", "abcdefghijklmno"]) {
        const ok = await inNs([...tepArgv({ server: "::1" }), "--ifname", name, "--check"]);
        expect([name, ok.code, ok.stderr]).toEqual([name, 0, ""]);
        expect(ok.stdout).toMatch(/^dstm tep: configuration OK/);
      }
    },
  );
});

describe("renamed flags (issue 13 item 9): the old names still work, with a warning", () => {
  test.skipIf(skip !== null)("client --port/--source, tep --control-port/--stats", async () => {
    const client = await inNs([
      "client",
      "--server",
      "::1",
      "--port",
      "9",
      "--source",
      "2001:db8::5",
      "--check",
    ]);
    expect(client.code).toBe(0);
    expect(client.stderr).toBe(
      "dstm: --port is deprecated; use --server-port\ndstm: --source is deprecated; use --host6\n",
    );
    const both = await runDstm([
      "client",
      "--server",
      "::1",
      "--port",
      "9",
      "--server-port",
      "9",
      "--check",
    ]);
    expect([both.code, both.stderr]).toEqual([
      2,
      "dstm: --port and --server-port are the same setting; give --server-port\n",
    ]);
    const tep = await runDstm([...tepArgv({ server: "::1" }), "--control-port", "0", "--check"]);
    // the old name reaches the same check as the new one
    expect([tep.code, tep.stderr]).toEqual([
      2,
      'dstm: --control-port is deprecated; use --tep-port\ndstm: --tep-port: "0" is not a port (1–65535)\n',
    ]);
  });
});
