/**
 * "Did you mean" for the whole kind of near miss (lib/config/did_you_mean.ts): a switch given
 * a value (`--rx-ring=yes`: commander takes `=VALUE` only for flags with a value, so it was a
 * bare "unknown option"), a flag or TOML key written with `_` (`rx_ring`: TOML keys are spelled
 * as the flags, `rx-ring`), and a key or flag one typo from a known one. For server, client
 * and tep alike: the refusal (exit 2) names the flag or key meant and how a switch is written.
 * Before, none of these had a hint (cli/flag_hint.ts in cli/main.ts; lib/config/file.ts).
 *
 * The client and the TEP are run in a namespace of our own (never in the host's, even to see
 * an error); the server with --check only.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type FlagShape, unknownFlagHint, withFlagHint } from "../cli/flag_hint.ts";
import { closestName, editDistance } from "../lib/config/did_you_mean.ts";
import { parseConfigText } from "../lib/config/file.ts";
import { SERVER_SCHEMA } from "../lib/config/server_schema.ts";
import { TEP_SCHEMA } from "../lib/config/tep_schema.ts";
import { createNetns, type Netns } from "../lib/sys/netns.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { runDstm } from "./helpers/process.ts";

describe("closestName (no host needed)", () => {
  test("_ for -, case, one typo; a tie or a far name is no hint", () => {
    expect(closestName("rx_ring", ["rx-ring", "hairpin"])).toBe("rx-ring");
    expect(closestName("RX_RING", ["rx-ring"])).toBe("rx-ring");
    expect(closestName("psid_offset", ["share", "psid-offset"])).toBe("psid-offset");
    expect(closestName("lease-tme", ["lease-time", "lease-file"])).toBe("lease-time");
    expect(closestName("hairpn", ["hairpin"])).toBe("hairpin");
    expect(closestName("ipv5", ["ipv4", "ipv6"])).toBeUndefined();
    expect(closestName("frobnicate", ["rx-ring", "hairpin"])).toBeUndefined();
    // A short name gets one edit, not two: "db" is not "dti".
    expect(closestName("db", ["dti"])).toBeUndefined();
    expect(editDistance("ab", "ba")).toBe(1);
    expect(editDistance("kitten", "sitting")).toBe(3);
  });
});

describe("unknownFlagHint (no host needed)", () => {
  const options: FlagShape[] = [
    { long: "--rx-ring", required: false, optional: false },
    { long: "--no-hairpin", required: false, optional: false },
    { long: "--lease-time", required: true, optional: false },
    { long: "--control", required: true, optional: false },
    { long: "--no-control", required: false, optional: false },
  ];
  test.each([
    ["--rx-ring=yes", "did you mean --rx-ring? (a switch: it takes no value)"],
    ["--rx-ring=true", "did you mean --rx-ring? (a switch: it takes no value)"],
    [
      "--rx-ring=no",
      "did you mean to leave --rx-ring out? (a switch, off unless given: it takes no value)",
    ],
    ["--rx_ring", "did you mean --rx-ring?"],
    ["--rx_ring=1", "did you mean --rx-ring? (a switch: it takes no value)"],
    ["--no-hairpin=yes", "did you mean --no-hairpin? (a switch: it takes no value)"],
    ["--no-hairpin=false", "did you mean to leave --no-hairpin out? (a switch: it takes no value)"],
    ["--hairpin=false", "did you mean --no-hairpin?"],
    ["--hairpin=off", "did you mean --no-hairpin?"],
    ["--hairpin", "did you mean to leave it out? (on unless --no-hairpin)"],
    ["--hairpin=yes", "did you mean to leave it out? (on unless --no-hairpin)"],
    ["--lease_time=2h", "did you mean --lease-time=2h?"],
    ["--no-control=yes", "did you mean --no-control? (a switch: it takes no value)"],
  ])("%s", (flag, hint) => {
    expect(unknownFlagHint(flag, options)).toBe(hint);
  });
  test("no hint for a far name; commander's own text stays then", () => {
    expect(unknownFlagHint("--frobnicate", options)).toBeUndefined();
    expect(unknownFlagHint("-x", options)).toBeUndefined();
    expect(withFlagHint("unknown option '--frobnicate'\n", options)).toBe(
      "unknown option '--frobnicate'\n",
    );
    expect(withFlagHint("too many arguments\n", options)).toBe("too many arguments\n");
    // Ours replaces commander's suggestion line.
    expect(withFlagHint("unknown option '--rx_ring'\n(Did you mean --rx-ring?)\n", options)).toBe(
      "unknown option '--rx_ring'; did you mean --rx-ring?\n",
    );
  });
});

describe("TOML keys (no host needed)", () => {
  const error = (text: string, schema = SERVER_SCHEMA) => {
    try {
      parseConfigText(text, "FILE", schema);
    } catch (e) {
      return (e as Error).message;
    }
    throw new Error("accepted");
  };
  test("a key with _, or one typo, names the key meant; a far one lists the known keys", () => {
    expect(error("rx_ring = true\n", TEP_SCHEMA)).toBe(
      'FILE:1:1: unknown setting "rx_ring"; did you mean "rx-ring"? (TOML keys are spelled as the flags, with -)',
    );
    expect(error('tep = "2001:db8::1"\nlease-tme = "1h"\n')).toBe(
      'FILE:2:1: unknown setting "lease-tme"; did you mean "lease-time"?',
    );
    expect(error('[[pool]]\nprefixes = ["192.0.2.0/24"]\npsid_offset = 4\n')).toBe(
      'FILE:3:1: unknown setting "psid_offset" in pool[0]; did you mean "psid-offset"? (TOML keys are spelled as the flags, with -)',
    );
    // A flag for one run is no key of the file.
    expect(error("new_db = true\n")).toBe(
      'FILE:1:1: unknown setting "new_db": --new-db is a command-line flag only, not a key of the file',
    );
    expect(error("frobnicate = 1\n")).toMatch(
      /^FILE:1:1: unknown setting "frobnicate" \(dstm server knows: pool, /,
    );
  });
});

const skip = netnsSkipReason();
announceSkip("did you mean: server, client, tep", skip);

describe.skipIf(skip !== null)("every command says it (client and tep in a namespace)", () => {
  let ns: Netns;
  let dir: string;
  beforeAll(() => {
    ns = createNetns("dstmt-nc8-");
    dir = mkdtempSync(join(tmpdir(), "dstm-nc8-dym-"));
  });
  afterAll(() => {
    ns?.delete();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  const run = (args: readonly string[]) => runDstm(args, {}, ns.name);
  const toml = (name: string, text: string) => {
    const file = join(dir, name);
    writeFileSync(file, text);
    return file;
  };
  const tep = ["tep", "--ipv6", "2001:db8:1::1", "--ipv4", "192.0.2.1", "--server", "::1"];
  const client = ["client", "--server", "2001:db8:1::53"];
  const server = ["server", "--pool", "192.0.2.0/24", "--tep", "2001:db8::1", "--db", "memory"];

  test.each([
    [
      "tep --rx-ring=yes",
      [...tep, "--rx-ring=yes", "--check"],
      "dstm: unknown option '--rx-ring=yes'; did you mean --rx-ring? (a switch: it takes no value)\ndstm: see 'dstm tep --help'\n",
    ],
    [
      "tep --hairpin=false",
      [...tep, "--hairpin=false", "--check"],
      "dstm: unknown option '--hairpin=false'; did you mean --no-hairpin?\ndstm: see 'dstm tep --help'\n",
    ],
    [
      "client --on-demand=yes",
      [...client, "--on-demand=yes", "--check"],
      "dstm: unknown option '--on-demand=yes'; did you mean --on-demand? (a switch: it takes no value)\ndstm: see 'dstm client --help'\n",
    ],
    [
      "client --kernel_encap",
      [...client, "--kernel_encap", "--check"],
      "dstm: unknown option '--kernel_encap'; did you mean --kernel-encap?\ndstm: see 'dstm client --help'\n",
    ],
    [
      "server --new-db=yes",
      [...server, "--new-db=yes", "--check"],
      "dstm: unknown option '--new-db=yes'; did you mean --new-db? (a switch: it takes no value)\ndstm: see 'dstm server --help'\n",
    ],
    [
      "server --source-check=false",
      [...server, "--source-check=false", "--check"],
      "dstm: unknown option '--source-check=false'; did you mean --no-source-check?\ndstm: see 'dstm server --help'\n",
    ],
  ])("flag: %s", async (_name, args, stderr) => {
    const r = await run(args);
    expect([r.code, r.stdout, r.stderr]).toEqual([2, "", stderr]);
  });

  test("TOML: rx_ring (tep), on_demand (client), source_check and psid_offset in [[pool]] (server)", async () => {
    const tepFile = toml("tep.toml", "rx_ring = true\n");
    const t = await run([...tep, "--config", tepFile, "--check"]);
    expect([t.code, t.stderr]).toEqual([
      2,
      `dstm: ${tepFile}:1:1: unknown setting "rx_ring"; did you mean "rx-ring"? (TOML keys are spelled as the flags, with -)\n`,
    ]);
    const clientFile = toml("client.toml", 'server = "2001:db8:1::53"\non_demand = true\n');
    const c = await run(["client", "--config", clientFile, "--check"]);
    expect([c.code, c.stderr]).toEqual([
      2,
      `dstm: ${clientFile}:2:1: unknown setting "on_demand"; did you mean "on-demand"? (TOML keys are spelled as the flags, with -)\n`,
    ]);
    const serverFile = toml("server.toml", 'tep = "2001:db8::1"\nsource_check = false\n');
    const s = await run(["server", "--db", "memory", "--config", serverFile, "--check"]);
    expect([s.code, s.stderr]).toEqual([
      2,
      `dstm: ${serverFile}:2:1: unknown setting "source_check"; did you mean "source-check"? (TOML keys are spelled as the flags, with -)\n`,
    ]);
    const poolFile = toml(
      "pool.toml",
      'tep = "2001:db8::1"\n[[pool]]\nprefixes = ["192.0.2.0/24"]\npsid_offset = 4\n',
    );
    const p = await run(["server", "--db", "memory", "--config", poolFile, "--check"]);
    expect([p.code, p.stderr]).toEqual([
      2,
      `dstm: ${poolFile}:4:1: unknown setting "psid_offset" in pool[0]; did you mean "psid-offset"? (TOML keys are spelled as the flags, with -)\n`,
    ]);
  });
});
