/**
 * A problem inside a `[[pool]]` table (or an inline table, or a list) is said at the line and
 * column of the key or value it comes from, with the key path (`pool[1].share`): before, every
 * check of a pool (host bits, an exclusion outside it, a bad link, its TEP, its sharing, two
 * pools overlapping) named the table's `[[pool]]` header or no place at all, and a value in an
 * inline table or a multi-line list was put at the `pool` key (a line scanner; now the syntax
 * tree of toml-eslint-parser, lib/config/toml_places.ts).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveServerConfig } from "../cli/server.ts";
import { keyPathText, placeOf, tomlPlaces } from "../lib/config/toml_places.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-places-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The error `dstm server --config FILE` gives for `lines`, FILE for the path, or "ok". */
function serverError(...lines: string[]): string {
  const file = join(dir, "server.toml");
  writeFileSync(file, `${lines.join("\n")}\n`);
  try {
    resolveServerConfig({ config: file }, () => {});
    return "ok";
  } catch (error) {
    return (error as Error).message.replaceAll(file, "FILE");
  }
}

const top = ['tep = "2001:db8::1"', 'db = "memory"', "control = false"];

describe("a problem in the second [[pool]] is said at its key or value", () => {
  const first = ["[[pool]]", 'prefixes = ["192.0.2.0/24"]', ""];
  test("a prefix with host bits, in a list over several lines: at that element", () => {
    expect(
      serverError(
        ...top,
        ...first,
        "[[pool]]",
        "prefixes = [",
        '  "198.51.100.0/25",',
        '  "198.51.100.129/25",',
        "]",
      ),
    ).toBe(
      "FILE:10:3: pool[1].prefixes[1]: pool 198.51.100.129/25 has host bits set; did you mean 198.51.100.128/25?",
    );
  });

  test("an exclusion outside the pool: at that exclusion", () => {
    expect(
      serverError(
        ...top,
        ...first,
        "[[pool]]",
        'prefixes = ["198.51.100.0/24"]',
        'exclude = ["198.51.100.7", "203.0.113.9"]',
      ),
    ).toMatch(
      /^FILE:9:28: pool\[1\]\.exclude\[1\]: pool 198\.51\.100\.0\/24: excluded 203\.0\.113\.9 is not inside the pool/,
    );
  });

  test("a wrong type: at the key, with the key path", () => {
    expect(
      serverError(...top, ...first, "[[pool]]", 'prefixes = ["198.51.100.0/24"]', '  share = "4"'),
    ).toBe('FILE:9:3: pool[1].share must be an integer, not "4"');
  });

  test("a sharing the engine refuses: at share or psid-offset, whichever it is about", () => {
    expect(
      serverError(...top, ...first, "[[pool]]", 'prefixes = ["198.51.100.0/24"]', "share = 3"),
    ).toMatch(/^FILE:9:1: pool\[1\]\.share: share 3 is not a power of two/);
    expect(
      serverError(
        ...top,
        ...first,
        "[[pool]]",
        'prefixes = ["198.51.100.0/24"]',
        "share = 4",
        "psid-offset = 16",
      ),
    ).toMatch(/^FILE:10:1: pool\[1\]\.psid-offset: psid-offset 16 is not 0–15/);
  });

  test("its own TEP: at tep", () => {
    expect(
      serverError(
        ...top,
        ...first,
        "[[pool]]",
        'prefixes = ["198.51.100.0/24"]',
        'tep = "nonsense"',
      ),
    ).toBe('FILE:9:1: pool[1].tep: "nonsense" is not IPV6 or IPV6,IPV4');
  });

  test("a bad link: at that link", () => {
    expect(
      serverError(
        ...top,
        ...first,
        "[[pool]]",
        'prefixes = ["198.51.100.0/24"]',
        'links = ["%eth0", "2001:db8::/200"]',
      ),
    ).toMatch(/^FILE:9:19: pool\[1\]\.links\[1\]: "2001:db8::\/200" is not an IPv6 prefix/);
  });

  test("a special-purpose range: at that prefix", () => {
    expect(
      serverError(...top, ...first, "[[pool]]", 'prefixes = ["198.51.100.0/24", "127.0.0.0/24"]'),
    ).toMatch(/^FILE:8:32: pool\[1\]\.prefixes\[1\]: 127\.0\.0\.0\/24 reaches into/);
  });

  test("overlapping the first pool: at the prefix that overlaps", () => {
    expect(
      serverError(...top, ...first, "[[pool]]", 'prefixes = ["198.51.100.0/24", "192.0.2.128/25"]'),
    ).toMatch(/^FILE:8:32: pool\[1\]\.prefixes\[1\]: pools .* overlap/);
  });

  test("the TEP's own IPv4 address in it: at that prefix", () => {
    expect(
      serverError(
        'tep = "2001:db8::1,198.51.100.1"',
        ...top.slice(1),
        ...first,
        "[[pool]]",
        'prefixes = ["203.0.113.0/24", "198.51.100.0/24"]',
      ),
    ).toMatch(
      /^FILE:8:31: pool\[1\]\.prefixes\[1\]: pool 198\.51\.100\.0\/24: it holds the IPv4 address 198\.51\.100\.1/,
    );
  });

  test("no prefixes: at the table's header (the key is missing)", () => {
    expect(serverError(...top, ...first, "[[pool]]", 'tep = "2001:db8::2"')).toBe(
      'FILE:7:3: pool[1]: give prefixes = ["CIDR", …]',
    );
  });
});

describe("inline tables and plain lists are placed the same way", () => {
  test("pool = [{…}, {…}] over several lines: a value of the second table", () => {
    expect(
      serverError(
        ...top,
        "pool = [",
        '  { prefixes = ["192.0.2.0/24"] },',
        '  { prefixes = ["198.51.100.0/24"], share = 3 },',
        "]",
      ),
    ).toMatch(/^FILE:6:37: pool\[1\]\.share: share 3 is not a power of two/);
    expect(
      serverError(...top, "pool = [", '  { prefixes = ["192.0.2.0/24"], shar = 2 },', "]"),
    ).toBe('FILE:5:34: unknown setting "shar" in pool[0]; did you mean "share"?');
  });

  test("pool = [CIDR, …]: at the bad CIDR", () => {
    expect(serverError(...top, 'pool = ["192.0.2.0/24", "198.51.100.1/24"]')).toMatch(
      /^FILE:4:25: pool\[1\]: pool 198\.51\.100\.1\/24 has host bits set/,
    );
  });

  test("a top-level setting still at its key", () => {
    expect(serverError(...top, 'pool = "192.0.2.0/24"', 'lease-time = "90x"')).toMatch(
      /^FILE:5:1: lease-time: "90x" is not a positive duration/,
    );
  });
});

describe("tomlPlaces / placeOf / keyPathText", () => {
  const text = [
    "a = 1  # [[pool]] in a comment is no header",
    'b = """',
    "[[pool]]",
    'share = "in a string"',
    '"""',
    "[[pool]]",
    "x.y = 2",
    "[t.u]",
    '"quoted key" = [1, [2, 3]]',
  ].join("\n");
  const places = tomlPlaces(text);
  test("keys, elements, dotted and quoted keys, headers; text inside strings and comments is not TOML", () => {
    expect(placeOf(places, ["a"])).toEqual({ line: 1, column: 1 });
    expect(placeOf(places, ["pool", 0])).toEqual({ line: 6, column: 3 });
    expect(placeOf(places, ["pool", 0, "share"])).toEqual({ line: 6, column: 3 }); // missing: the header
    expect(placeOf(places, ["pool", 0, "x", "y"])).toEqual({ line: 7, column: 3 });
    expect(placeOf(places, ["t", "u", "quoted key", 1, 0])).toEqual({ line: 9, column: 21 });
    expect(placeOf(places, ["nowhere"])).toEqual({ line: 1, column: 1 });
  });
  test("key paths as text", () => {
    expect(keyPathText(["pool", 1, "prefixes", 0])).toBe("pool[1].prefixes[0]");
    expect(keyPathText(["t", "quoted key"])).toBe('t."quoted key"');
  });
});
