/**
 * Each setting is documented once (issue 13 items 3 and 9): the README's tables are
 * generated from the schemas that also make the flags and check the TOML files.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { program } from "../cli/main.ts";
import { updateReadme } from "../lib/config/readme.ts";
import { camel } from "../lib/config/setting.ts";
import { SCHEMAS } from "../scripts/readme_tables.ts";
import { ROOT } from "./helpers/process.ts";

describe("README settings tables", () => {
  test("are up to date with lib/config/*_schema.ts (run bun scripts/readme_tables.ts)", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    expect(updateReadme(readme, SCHEMAS)).toBe(readme);
  });

  test("every option of dstm server, tep and client comes from its schema, and prints its default one way", () => {
    const root = program();
    for (const [name, schema] of Object.entries(SCHEMAS)) {
      const command = root.commands.find((c) => c.name() === name)!;
      const names = new Set(schema.settings.map((s) => camel(s.name)));
      for (const s of schema.settings) for (const d of s.deprecated ?? []) names.add(camel(d));
      for (const option of command.options) expect(names).toContain(option.attributeName());
      const help = command.helpInformation({ error: false });
      expect(help).not.toMatch(/\(default [^:]/); // only "(default: X)"
      for (const s of schema.settings) {
        if (s.default !== undefined)
          expect(help.replace(/\s+/g, " ")).toContain(`(default: ${s.default})`);
      }
    }
  });

  test("the README keeps the quick start at two commands", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const quick = readme.slice(readme.indexOf("## Quick start"), readme.indexOf("## Commands"));
    const block = /```sh\n([\s\S]*?)```/.exec(quick)?.[1] ?? "";
    expect(block.trim().split("\n")).toHaveLength(2);
  });
});
