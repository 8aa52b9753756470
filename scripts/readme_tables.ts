/**
 * Regenerates the settings tables of README.md from lib/config/*_schema.ts.
 *
 * Usage: bun scripts/readme_tables.ts [--check]   (--check: exit 1 when the README is out of date)
 *
 * @module
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CLIENT_SCHEMA } from "../lib/config/client_schema.ts";
import { updateReadme } from "../lib/config/readme.ts";
import { SERVER_SCHEMA } from "../lib/config/server_schema.ts";
import { TEP_SCHEMA } from "../lib/config/tep_schema.ts";

export const SCHEMAS = { server: SERVER_SCHEMA, tep: TEP_SCHEMA, client: CLIENT_SCHEMA };

if (import.meta.main) {
  const path = join(import.meta.dir, "..", "README.md");
  const before = readFileSync(path, "utf8");
  const after = updateReadme(before, SCHEMAS);
  if (process.argv.includes("--check")) {
    if (before !== after) {
      console.error("README.md settings tables are out of date: run bun scripts/readme_tables.ts");
      process.exit(1);
    }
  } else if (before !== after) {
    writeFileSync(path, after);
    console.log("README.md settings tables updated");
  }
}
