/**
 * Config files are checked strictly against one schema per command, and every error names
 * FILE:LINE:COL (issue 13 item 3); durations are spelled the same everywhere (item 9).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveServerConfig } from "../cli/server.ts";
import { parseDurationSeconds } from "../lib/config/duration.ts";
import { ConfigFileError, locateKey, parseConfigText } from "../lib/config/file.ts";
import { SERVER_SCHEMA } from "../lib/config/server_schema.ts";
import { TEP_SCHEMA } from "../lib/config/tep_schema.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const base = 'pool = "192.0.2.0/24"\ntep = "2001:db8::1"\ndb = "memory"\ncontrol = false\n';

/** The error `dstm server --config FILE` gives for `text`, or "ok". */
function serverError(text: string): string {
  const file = join(dir, "server.toml");
  writeFileSync(file, text);
  try {
    resolveServerConfig({ config: file }, () => {});
    return "ok";
  } catch (error) {
    return (error as Error).message.replaceAll(file, "FILE");
  }
}

describe("strict TOML types (issue 13 item 3)", () => {
  const cases: [string, string, string][] = [
    [
      "require-tep as a string",
      'require-tep = "yes"',
      'FILE:5:1: require-tep must be true or false, not "yes"',
    ],
    [
      "require-tep as a number",
      "require-tep = 1",
      "FILE:5:1: require-tep must be true or false, not 1",
    ],
    [
      "dhcp4o6 as a string",
      'dhcp4o6 = "yes"',
      'FILE:5:1: dhcp4o6 must be true or false, not "yes"',
    ],
    ["dhcp4o6 as a number", "dhcp4o6 = 1", "FILE:5:1: dhcp4o6 must be true or false, not 1"],
    [
      "source-check as a string",
      'source-check = "false"',
      'FILE:5:1: source-check must be true or false, not "false"',
    ],
    [
      "an integer as a string",
      'prefix-rate = "5"',
      'FILE:5:1: prefix-rate must be an integer, not "5"',
    ],
    [
      "a list as a string",
      'dhcp4o6-allow = "2001:db8::/64"',
      'FILE:5:1: dhcp4o6-allow must be an array of strings, not "2001:db8::/64" (write dhcp4o6-allow = ["2001:db8::/64"])',
    ],
    [
      "a log level not in the list",
      'log-level = "verbose"',
      'FILE:5:1: log-level must be "debug" or "info" or "warn" or "error", not "verbose"',
    ],
  ];
  for (const [name, line, message] of cases) {
    test(`${name} is refused with its position`, () => {
      expect(serverError(`${base}${line}\n`)).toBe(message);
    });
  }

  test("the right types are accepted, and control = false is --no-control's TOML form", () => {
    const file = join(dir, "good.toml");
    writeFileSync(
      file,
      `${base}require-tep = true\nsource-check = false\nprefix-rate = 5\nlease-time = "1h30m"\nmax-lease-time = 7200\n`,
    );
    const config = resolveServerConfig({ config: file }, () => {});
    expect(config.requireTep).toBe(true);
    expect(config.sourceCheck).toBe(false);
    expect(config.control).toBeUndefined();
    expect(config.admission?.ratePerSecond).toBe(5);
    expect([config.leaseTime, config.maxLeaseTime]).toEqual([5400, 7200]);
  });

  test("a syntax error names the line and column", () => {
    expect(serverError(`${base}pool = ["192.0.2.0/24", true, t]\n`)).toMatch(
      /^FILE:5:\d+: not valid TOML: /,
    );
    expect(serverError('pool = "192.0.2.0/24"\npool = "198.51.100.0/24"\n')).toMatch(
      /^FILE:2:1: not valid TOML/,
    );
  });

  test("a bad value read from the file is reported at its key, not as a flag", () => {
    expect(serverError(`${base}\n\nlease-time = "90x"\n`)).toBe(
      'FILE:7:1: lease-time: "90x" is not a positive duration (e.g. 3600, 90s, 15m, 2h, 1h30m, 1.5h)',
    );
    // the same value as a flag names the flag
    expect(() =>
      resolveServerConfig(
        { pool: ["192.0.2.0/24"], tep: "2001:db8::1", db: "memory", leaseTime: "90x" },
        () => {},
      ),
    ).toThrow(/^--lease-time: "90x"/);
  });

  test("unknown settings are refused with their position, at the top and in [[pool]]", () => {
    expect(serverError(`${base}  listne = "[::1]:0"\n`)).toMatch(
      /^FILE:5:3: unknown setting "listne"/,
    );
    expect(
      serverError(
        `tep = "2001:db8::1"\n[[pool]]\nprefixes = ["192.0.2.0/24"]\n[[pool]]\nprefixes = ["198.51.100.0/24"]\nshar = 2\n`,
      ),
    ).toBe('FILE:6:1: unknown setting "shar" in pool[1]; did you mean "share"?');
    // A top-level setting written after [[pool]] lands in the pool (TOML): say where it goes.
    expect(
      serverError(
        `tep = "2001:db8::1"\n[[pool]]\nprefixes = ["192.0.2.0/24"]\nlease-time = "2h"\n`,
      ),
    ).toBe(
      'FILE:4:1: unknown setting "lease-time" in pool[0] (lease-time is a top-level setting: write it above the first [[pool]])',
    );
  });

  test("a pool the engine would refuse is reported at the value it fails on, with its key path", () => {
    expect(
      serverError(
        'tep = "2001:db8::1"\ndb = "memory"\n[[pool]]\nprefixes = ["192.0.2.0/24"]\n\n[[pool]]\nprefixes = ["198.51.100.1/24"]\n',
      ),
    ).toBe(
      "FILE:7:13: pool[1].prefixes[0]: pool 198.51.100.1/24 has host bits set; did you mean 198.51.100.0/24?",
    );
    expect(
      serverError('tep = "2001:db8::1"\n\npool = ["192.0.2.0/24", "198.51.100.1/24"]\n'),
    ).toMatch(/^FILE:3:25: pool\[1\]: pool 198\.51\.100\.1\/24 has host bits set/);
  });

  test("a pool's links (4o6 pool selection): TOML links = [...] and --pool-link ADDR=LINK give the same pools; a bad link is refused", () => {
    const file = join(dir, "links.toml");
    writeFileSync(
      file,
      'tep = "2001:db8::1"\ndb = "memory"\n[[pool]]\nprefixes = ["192.0.2.0/25"]\nlinks = ["2001:db8:10::/64", "%eth1"]\n[[pool]]\nprefixes = ["192.0.2.128/25"]\n',
    );
    const fromFile = resolveServerConfig({ config: file }, () => {});
    const fromFlags = resolveServerConfig(
      {
        pool: ["192.0.2.0/25", "192.0.2.128/25"],
        tep: "2001:db8::1",
        db: "memory",
        poolLink: ["192.0.2.0=2001:db8:10::/64", "192.0.2.7=%eth1"],
      },
      () => {},
    );
    for (const config of [fromFile, fromFlags]) {
      expect(config.pools.map((p) => p.links)).toEqual([["2001:db8:10::/64", "%eth1"], undefined]);
    }
    expect(
      serverError(
        'tep = "2001:db8::1"\n[[pool]]\nprefixes = ["192.0.2.0/24"]\nlinks = ["2001:db8:10::/200"]\n',
      ),
    ).toMatch(/^FILE:4:10: pool\[0\]\.links\[0\]: "2001:db8:10::\/200" is not an IPv6 prefix/);
    expect(() =>
      resolveServerConfig(
        { pool: ["192.0.2.0/24"], tep: "2001:db8::1", db: "memory", poolLink: ["10.0.0.1=%eth0"] },
        () => {},
      ),
    ).toThrow("--pool-link: 10.0.0.1 is in no pool");
  });

  test("TOML keys are the flag names: dhcp4o6-interface (the old dhcp4o6-interfaces still read)", () => {
    const now = parseConfigText('dhcp4o6-interface = ["eth0"]\n', "f.toml", SERVER_SCHEMA);
    expect(now.values.get("dhcp4o6-interface")?.value).toEqual(["eth0"]);
    expect(now.notes).toEqual([]);
    const old = parseConfigText('\ndhcp4o6-interfaces = ["eth1"]\n', "f.toml", SERVER_SCHEMA);
    expect(old.values.get("dhcp4o6-interface")?.value).toEqual(["eth1"]);
    expect(old.notes).toEqual([
      'f.toml:2:1: "dhcp4o6-interfaces" is deprecated; call it "dhcp4o6-interface"',
    ]);
  });

  test("flag-only settings are not TOML keys; other commands have their own schema", () => {
    expect(() => parseConfigText("new-db = true\n", "f.toml", SERVER_SCHEMA)).toThrow(
      ConfigFileError,
    );
    expect(() => parseConfigText("hairpin = false\n", "f.toml", SERVER_SCHEMA)).toThrow(
      /unknown setting "hairpin"/,
    );
    expect(
      parseConfigText("hairpin = false\n", "f.toml", TEP_SCHEMA).values.get("hairpin")?.value,
    ).toBe(false);
    expect(() => parseConfigText('hairpin = "no"\n', "t.toml", TEP_SCHEMA)).toThrow(
      't.toml:1:1: hairpin must be true or false, not "no"',
    );
  });
});

describe("locateKey", () => {
  const text =
    'a = 1\n  b = "x"\n\n[[pool]]\nprefixes = []\n\n[[pool]]\n  share = 4\n[other]\nc = 2\n';
  test("top-level keys, keys of the Nth [[table]], table headers, fallbacks", () => {
    expect(locateKey(text, ["a"])).toEqual({ line: 1, column: 1 });
    expect(locateKey(text, ["b"])).toEqual({ line: 2, column: 3 });
    expect(locateKey(text, ["pool", 1, "share"])).toEqual({ line: 8, column: 3 });
    expect(locateKey(text, ["pool", 0, "share"])).toEqual({ line: 4, column: 3 }); // missing: the table
    expect(locateKey(text, ["other"])).toEqual({ line: 9, column: 2 });
    expect(locateKey(text, ["nowhere"])).toEqual({ line: 1, column: 1 });
  });
});

describe("durations (issue 13 item 9)", () => {
  test("seconds, units, compound and decimal forms", () => {
    expect(parseDurationSeconds("90")).toBe(90);
    expect(parseDurationSeconds(90)).toBe(90);
    expect(parseDurationSeconds("30s")).toBe(30);
    expect(parseDurationSeconds("15m")).toBe(900);
    expect(parseDurationSeconds("1h30m")).toBe(5400);
    expect(parseDurationSeconds("1.5h")).toBe(5400);
    expect(parseDurationSeconds("1d2h")).toBe(93600);
    for (const bad of ["", "1h1h", "h", "1x", "-5", "1 h", "1h 30m"])
      expect(parseDurationSeconds(bad)).toBeNull();
  });
});
