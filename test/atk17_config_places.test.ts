/**
 * Red team (atk17) on config error positions (lib/config/toml_places.ts, ops17): a crafted
 * config file with a long dotted key (`a.a.a.… = 1`), a long table header (`[a.a.…]`) or a
 * long dotted key holding a long array made `dstm server --check` (and any start) hang: every
 * depth of the path was recorded under a JSON string of the whole path so far, time quadratic
 * in the file (a 16,000-part key 1.6 s, 100,000 parts over a minute, a 1 MB file hours). Now
 * paths deeper than 16 (no setting is deeper than 4) get their ancestor's place. Odd files
 * that already held: nesting beyond smol-toml's limit (refused at its place), a 50 MB file
 * (its error found in 0.3 s), unicode and control characters in keys (refused or placed),
 * 200,000 unknown keys (the first named).
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { placeOf, tomlPlaces } from "../lib/config/toml_places.ts";
import { runDstm } from "./helpers/process.ts";

describe("tomlPlaces on crafted key paths", () => {
  test("a 2,000-part dotted key: places up to depth 16, deeper paths at their ancestor", () => {
    const places = tomlPlaces(`x = 1\n  a${".a".repeat(1999)} = 1\n`);
    expect(places.size).toBeLessThanOrEqual(17); // main: 2,001
    expect(placeOf(places, ["a"])).toEqual({ line: 2, column: 3 });
    const deep = Array.from({ length: 1000 }, () => "a");
    expect(placeOf(places, deep)).toEqual({ line: 2, column: 3 + 2 * 15 });
    expect(placeOf(places, ["x"])).toEqual({ line: 1, column: 1 });
  });

  test("settings still placed where written ([[pool]] keys, array elements)", () => {
    const places = tomlPlaces('[[pool]]\nprefixes = ["198.51.100.0/24"]\n[[pool]]\n  share = 4\n');
    expect(placeOf(places, ["pool", 1, "share"])).toEqual({ line: 4, column: 3 });
    expect(placeOf(places, ["pool", 0, "prefixes", 0])).toEqual({ line: 2, column: 13 });
  });
});

describe("dstm server --check on crafted config files (1 MB each)", () => {
  const shapes: [string, string][] = [
    ["a 500,000-part dotted key", `a${".a".repeat(500_000)} = 1\n`],
    ["a 200,000-part table header", `[${Array(200_000).fill("a").join(".")}]\nx = 1\n`],
    [
      "a 30,000-part dotted key holding 100,000 numbers",
      `a${".a".repeat(30_000)} = [${"1,".repeat(100_000)}]\n`,
    ],
  ];
  for (const [name, text] of shapes)
    test(`${name}: refused with its place, not a hang`, async () => {
      const dir = mkdtempSync(join(tmpdir(), "atk17-config-"));
      try {
        const path = join(dir, "dstm.toml");
        writeFileSync(path, text);
        // main: still working when the test's time runs out (hours of work).
        const r = await runDstm(["server", "--config", path, "--check"]);
        expect(r.code).toBe(2);
        expect(r.stderr).toMatch(/dstm\.toml:1:\d+: unknown setting "a"/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }, 60_000);
});
