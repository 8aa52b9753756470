import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseIPv4 } from "../lib/net/addr.ts";
import {
  BindingFileError,
  bindingTableSize,
  DEFAULT_MAX_BINDINGS,
  loadStaticBindings,
  parseBindingFile,
  parseBindingFlag,
  parseBindingLine,
  SERVER_ROOM,
  StaticBindings,
} from "../lib/tep/binding_file.ts";
import { MAX_BINDINGS } from "../lib/tunnel/binding.ts";
import { runDstm } from "./helpers/process.ts";
import { tepArgv } from "./helpers/tep_argv.ts";

const ip = (text: string) => parseIPv4(text)!;
const WHOLE = { offset: 0, psidLength: 0, psid: 0 };

/** The BindingFileError message of parsing `text` as "b.txt". */
function problem(text: string, into?: StaticBindings): string {
  try {
    parseBindingFile(text, "b.txt", into);
  } catch (error) {
    expect(error).toBeInstanceOf(BindingFileError);
    return (error as Error).message;
  }
  throw new Error("parsed without an error");
}

describe("parseBindingLine()", () => {
  test("reads a whole address and a port set, canonicalising the IPv6 address", () => {
    expect(parseBindingLine("198.51.100.9 2001:DB8:1:0::99")).toEqual({
      host4: ip("198.51.100.9"),
      host6: "2001:db8:1::99",
      portSet: WHOLE,
    });
    expect(parseBindingLine("\t198.51.100.10\t 2001:db8:1::a0   6/2/3  # node A\r")).toEqual({
      host4: ip("198.51.100.10"),
      host6: "2001:db8:1::a0",
      portSet: { offset: 6, psidLength: 2, psid: 3 },
    });
  });

  test("returns null for blank and comment lines", () => {
    for (const line of ["", "   ", "# a comment", "  # indented", "\r"])
      expect(parseBindingLine(line)).toBeNull();
  });

  test('"all" and PSID length 0 mean the whole address', () => {
    expect(parseBindingLine("192.0.2.1 2001:db8::1 all")).toMatchObject({ portSet: WHOLE });
    expect(parseBindingLine("192.0.2.1 2001:db8::1 6/0/0")).toMatchObject({ portSet: WHOLE });
  });

  test("says what is wrong with a bad line", () => {
    expect(parseBindingLine("192.0.2.1")).toMatch(/not 1 field/);
    expect(parseBindingLine("192.0.2.1 2001:db8::1 6/2/1 extra")).toMatch(/not 4 fields/);
    expect(parseBindingLine("192.0.2.300 2001:db8::1")).toBe(
      '"192.0.2.300" is not an IPv4 address',
    );
    expect(parseBindingLine("192.0.2.1 2001:db8::zz")).toBe(
      '"2001:db8::zz" is not an IPv6 address',
    );
    expect(parseBindingLine("192.0.2.1 2001:db8::1 6-2-1")).toMatch(/not OFFSET\/PSIDLEN\/PSID/);
    expect(parseBindingLine("192.0.2.1 2001:db8::1 6/2/4")).toBe(
      'port set "6/2/4": psid 4 does not fit in 2 bits',
    );
    expect(parseBindingLine("192.0.2.1 2001:db8::1 8/9/0")).toMatch(/more than 16/);
  });
});

describe("parseBindingFile()", () => {
  test("collects every binding in file order, skipping comments, with CRLF line ends", () => {
    const text = [
      "# static bindings",
      "198.51.100.9  2001:db8:1::99",
      "",
      "198.51.100.10 2001:db8:1::a0 6/2/0",
      "198.51.100.10 2001:db8:1::a1 6/2/1   # same address, another PSID",
    ].join("\r\n");
    const set = parseBindingFile(text, "b.txt");
    expect(set.size).toBe(3);
    expect(set.bindings.map((b) => [b.host6, b.portSet.psid])).toEqual([
      ["2001:db8:1::99", 0],
      ["2001:db8:1::a0", 0],
      ["2001:db8:1::a1", 1],
    ]);
  });

  test("an empty file or one of comments holds no binding", () => {
    expect(parseBindingFile("", "b.txt").size).toBe(0);
    expect(parseBindingFile("# nothing yet\n\n", "b.txt").size).toBe(0);
  });

  test("a bad line names the file and its line number", () => {
    expect(problem("# header\n198.51.100.9 2001:db8:1::99\n198.51.100.999 2001:db8::1\n")).toBe(
      'b.txt:3: "198.51.100.999" is not an IPv4 address',
    );
  });

  test("the same address twice names both lines", () => {
    expect(problem("198.51.100.9 2001:db8:1::99\n\n198.51.100.9 2001:db8:1::98\n")).toBe(
      "b.txt:3: 198.51.100.9 is already bound at b.txt:1",
    );
  });

  test("the same (address, PSID) twice is an error, other PSIDs of the address are not", () => {
    const text = "192.0.2.7 2001:db8::1 6/2/0\n192.0.2.7 2001:db8::2 6/2/1\n";
    expect(parseBindingFile(text, "b.txt").size).toBe(2);
    expect(problem(`${text}192.0.2.7 2001:db8::3 6/2/1\n`)).toBe(
      "b.txt:3: 192.0.2.7 PSID 1 is already bound at b.txt:2",
    );
  });

  test("two sharing rules for one address are an error", () => {
    expect(problem("192.0.2.7 2001:db8::1 6/2/0\n192.0.2.7 2001:db8::2 4/4/1\n")).toBe(
      "b.txt:2: 192.0.2.7 is bound with port sets of offset 6, PSID length 2 at b.txt:1, not port sets of offset 4, PSID length 4: one sharing rule per address",
    );
    expect(problem("192.0.2.7 2001:db8::1\n192.0.2.7 2001:db8::2 6/2/1\n")).toMatch(
      /^b\.txt:2: 192\.0\.2\.7 is bound with the whole address at b\.txt:1, not port sets/,
    );
    expect(problem("192.0.2.7 2001:db8::1 6/2/1\n192.0.2.7 2001:db8::2\n")).toMatch(
      /not the whole address: one sharing rule per address$/,
    );
  });

  test("checks a file against --binding flags and earlier files", () => {
    const set = new StaticBindings();
    set.add(parseBindingFlag("198.51.100.9=2001:db8:1::99")!, "--binding", 1);
    parseBindingFile("192.0.2.1 2001:db8::1\n", "first.txt", set);
    expect(problem("192.0.2.2 2001:db8::2\n198.51.100.9 2001:db8::9\n", set)).toBe(
      "b.txt:2: 198.51.100.9 is already bound at --binding #1",
    );
    expect(problem("192.0.2.1 2001:db8::1 6/2/1\n", set)).toMatch(/ at first\.txt:1, not /);
  });

  // How fast: bench/binding_file.ts (a wall-clock bound here would only fail on a busy machine).
  test("loads 262,144 lines (65,536 addresses shared by 4)", () => {
    const lines = ["# 198.18.0.0/16 × 4 PSIDs (RFC 2544 benchmarking range)"];
    for (let i = 0; i < 262_144; i++) {
      const a = i >>> 2;
      lines.push(
        `198.${18 + (a >>> 16)}.${(a >>> 8) & 255}.${a & 255} 2001:db8:2::${(i >>> 16).toString(16)}:${(i & 0xffff).toString(16)} 6/2/${i & 3}`,
      );
    }
    const text = `${lines.join("\n")}\n`;
    const set = parseBindingFile(text, "big.txt");
    expect(set.size).toBe(262_144);
    expect(set.bindings[5]).toEqual({
      host4: ip("198.18.0.1"),
      host6: "2001:db8:2::5",
      portSet: { offset: 6, psidLength: 2, psid: 1 },
    });
  });
});

describe("parseBindingFlag()", () => {
  test("reads V4=V6 and rejects anything else", () => {
    expect(parseBindingFlag("198.51.100.9=2001:db8:1::99")).toEqual({
      host4: ip("198.51.100.9"),
      host6: "2001:db8:1::99",
      portSet: WHOLE,
    });
    for (const bad of ["198.51.100.9", "198.51.100.9=", "x=2001:db8::1", "1.2.3.4=::1=::2"])
      expect(parseBindingFlag(bad)).toBeNull();
  });
});

describe("bindingTableSize()", () => {
  test("keeps the default while the static bindings leave the server its room", () => {
    expect(bindingTableSize(0)).toEqual({ size: DEFAULT_MAX_BINDINGS });
    expect(bindingTableSize(DEFAULT_MAX_BINDINGS - SERVER_ROOM)).toEqual({
      size: DEFAULT_MAX_BINDINGS,
    });
  });

  test("grows past the default to the static bindings plus room for the server's", () => {
    expect(bindingTableSize(262_144)).toEqual({ size: 262_144 + SERVER_ROOM });
    expect(bindingTableSize(MAX_BINDINGS - 10)).toEqual({ size: MAX_BINDINGS });
    expect(bindingTableSize(MAX_BINDINGS + 1)).toMatch(/at most/);
  });

  test("an explicit --max-bindings is kept, and must hold the static bindings", () => {
    expect(bindingTableSize(10, 1000)).toEqual({ size: 1000 });
    expect(bindingTableSize(262_144, 1 << 19)).toEqual({ size: 1 << 19 });
    expect(bindingTableSize(10, 5)).toBe(
      "--max-bindings 5 is less than the 10 static bindings; raise it or leave it out",
    );
  });
});

describe("loadStaticBindings()", () => {
  const dir = mkdtempSync(join(tmpdir(), "dstm-load-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const thrown = (load: () => unknown): string => {
    try {
      load();
    } catch (error) {
      expect(error).toBeInstanceOf(BindingFileError);
      return (error as Error).message;
    }
    throw new Error("loaded without an error");
  };

  test("loads the --binding flags first, then each file, as one table", () => {
    const file = join(dir, "two.txt");
    writeFileSync(file, "198.51.100.10 2001:db8:1::a0 6/2/0\n198.51.100.10 2001:db8:1::a1 6/2/1\n");
    const statics = loadStaticBindings(["198.51.100.9=2001:db8:1::99"], [file]);
    expect(statics.bindings.map((b) => [b.host6, b.portSet.psid])).toEqual([
      ["2001:db8:1::99", 0],
      ["2001:db8:1::a0", 0],
      ["2001:db8:1::a1", 1],
    ]);
  });

  test("a bad flag, a clash between flag and file, an unreadable file: BindingFileError", () => {
    expect(thrown(() => loadStaticBindings(["198.51.100.9"], []))).toBe(
      '--binding: "198.51.100.9" is not IPV4=IPV6',
    );
    const file = join(dir, "clash.txt");
    writeFileSync(file, "198.51.100.9 2001:db8:1::98\n");
    expect(thrown(() => loadStaticBindings(["198.51.100.9=2001:db8:1::99"], [file]))).toBe(
      `${file}:1: 198.51.100.9 is already bound at --binding #1`,
    );
    expect(thrown(() => loadStaticBindings([], [join(dir, "none.txt")]))).toMatch(
      /^--binding-file: cannot read .*none\.txt: ENOENT$/,
    );
  });
});

describe("dstm tep --binding-file", () => {
  const dir = mkdtempSync(join(tmpdir(), "dstm-bindings-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  // Everything that is checked before the TEP touches the system (no root needed).
  const tep = tepArgv();

  test("a bad line is one line on stderr naming file and line, exit 2", async () => {
    const file = join(dir, "bad.txt");
    writeFileSync(file, "198.51.100.9 2001:db8:1::99\n198.51.100.9 2001:db8:1::98\n");
    const { code, stderr } = await runDstm([...tep, "--binding-file", file]);
    expect(code).toBe(2);
    expect(stderr).toBe(`dstm: ${file}:2: 198.51.100.9 is already bound at ${file}:1\n`);
  });

  test("a binding flag and the file are checked together", async () => {
    const file = join(dir, "dup.txt");
    writeFileSync(file, "# one\n198.51.100.9 2001:db8:1::99 6/2/1\n");
    const { code, stderr } = await runDstm([
      ...tep,
      "--binding",
      "198.51.100.9=2001:db8:1::98",
      "--binding-file",
      file,
    ]);
    expect(code).toBe(2);
    expect(stderr).toMatch(
      /dup\.txt:2: 198\.51\.100\.9 is bound with the whole address at --binding #1/,
    );
  });

  test("a file that cannot be read, and a --max-bindings too small for it, exit 2", async () => {
    const missing = await runDstm([...tep, "--binding-file", join(dir, "none.txt")]);
    expect(missing.code).toBe(2);
    // Said in words, as the other unreadable files (a newcomer saw ENOENT).
    expect(missing.stderr).toMatch(/--binding-file: cannot read .*none\.txt: no such file\n$/);
    const folder = await runDstm([...tep, "--binding-file", dir]);
    expect(folder.code).toBe(2);
    expect(folder.stderr).toContain(`--binding-file: cannot read ${dir}: it is a directory`);
    const file = join(dir, "three.txt");
    writeFileSync(
      file,
      "198.51.100.5 2001:db8::5\n198.51.100.6 2001:db8::6\n198.51.100.7 2001:db8::7\n",
    );
    const small = await runDstm([...tep, "--binding-file", file, "--max-bindings", "2"]);
    expect(small.code).toBe(2);
    expect(small.stderr).toBe(
      "dstm: --max-bindings 2 is less than the 3 static bindings; raise it or leave it out\n",
    );
  });
});
