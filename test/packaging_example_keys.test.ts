/**
 * The packaged examples agree on the server ⇄ TEP key: packaging/examples/tep.env starts the
 * TEP with `--key F`, so packaging/examples/server.toml must set `tep-key = F` (before, it was
 * commented out: a server and TEP started from the examples never bound a host, the server
 * saying only `tep-unreachable`). Both say that the two must match.
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./helpers/process.ts";

const examples = join(ROOT, "packaging", "examples");

test("tep.env's --key is server.toml's tep-key, and both say they must match", () => {
  const env = readFileSync(join(examples, "tep.env"), "utf8");
  const toml = readFileSync(join(examples, "server.toml"), "utf8");
  const args = /^DSTM_TEP_ARGS="([^"]*)"/m.exec(env)?.[1] ?? "";
  const key = /--key (\S+)/.exec(args)?.[1];
  expect(key).toBeDefined();
  const server = Bun.TOML.parse(toml) as Record<string, unknown>;
  expect(server["tep-key"]).toBe(key);
  expect(env).toMatch(/MUST match/);
  expect(toml).toMatch(/MUST match/);
});
