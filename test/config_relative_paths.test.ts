/**
 * Relative paths in a config file are relative to the file's directory (under systemd the
 * current directory is /), flags stay relative to the current directory; a key file named
 * in the file that cannot be read is reported at its FILE:LINE:COL, and a client or TEP is
 * told to copy the server's key, never to make a new one (it would not match).
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveClientSettings } from "../lib/config/client_resolve.ts";
import { CLIENT_SCHEMA } from "../lib/config/client_schema.ts";
import { readKeys } from "../lib/config/key_file.ts";
import { mergeSettings } from "../lib/config/merge.ts";
import { SERVER_SCHEMA } from "../lib/config/server_schema.ts";
import { TEP_SCHEMA } from "../lib/config/tep_schema.ts";
import { generateKeyFileText } from "../lib/wire/auth.ts";
import { addressNetns, announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { runDstm } from "./helpers/process.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-relpaths-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const quiet = { warn: () => {} };

test("server: key, tep-key, db and control in the file are beside the file; memory and URLs stay", () => {
  const file = join(dir, "server.toml");
  writeFileSync(
    file,
    'pool = ["192.0.2.0/24"]\nkey = "host.key"\ntep-key = "keys/tep.key"\ndb = "leases.db"\ncontrol = "run/server.sock"\n',
  );
  const v = mergeSettings(SERVER_SCHEMA, { config: file }, quiet).values;
  expect([v.key, v.tepKey, v.db, v.control]).toEqual([
    join(dir, "host.key"),
    join(dir, "keys/tep.key"),
    join(dir, "leases.db"),
    join(dir, "run/server.sock"),
  ]);
  for (const db of ["memory", "postgres://dstm@db.example/leases", "/var/lib/dstm/leases.db"]) {
    writeFileSync(file, `db = "${db}"\ncontrol = false\n`);
    const w = mergeSettings(SERVER_SCHEMA, { config: file }, quiet).values;
    expect([w.db, w.control]).toEqual([db, false]);
  }
});

test("a flag stays relative to the current directory, over the file", () => {
  const file = join(dir, "flag.toml");
  writeFileSync(file, 'key = "host.key"\n');
  const v = mergeSettings(SERVER_SCHEMA, { config: file, key: "cwd.key" }, quiet).values;
  expect(v.key).toBe("cwd.key");
});

test("tep: binding-file (a list), key and control beside the file", () => {
  const file = join(dir, "tep.toml");
  writeFileSync(
    file,
    'binding-file = ["a.txt", "/etc/b.txt"]\nkey = "tep.key"\ncontrol = "tep.sock"\n',
  );
  const v = mergeSettings(TEP_SCHEMA, { config: file }, quiet).values;
  expect([v.bindingFile, v.key, v.control]).toEqual([
    [join(dir, "a.txt"), "/etc/b.txt"],
    join(dir, "tep.key"),
    join(dir, "tep.sock"),
  ]);
});

test("client: a missing key named in the file: FILE:LINE:COL, and copy the server's key", () => {
  const file = join(dir, "client.toml");
  writeFileSync(file, 'server = "2001:db8:1::53"\n\nkey = "missing.key"\ncontrol = "c.sock"\n');
  const settings = mergeSettings(CLIENT_SCHEMA, { config: file }, quiet);
  expect(settings.values.control).toBe(join(dir, "c.sock"));
  let error: unknown;
  try {
    resolveClientSettings(settings.values as never);
  } catch (e) {
    error = settings.explain(e);
  }
  const key = join(dir, "missing.key");
  expect((error as Error).message).toBe(
    `${file}:3:1: cannot read key file ${key}: no such file (copy the server's --key file to ${key}; a new key from dstm keygen would not match the server's)`,
  );
});

test("a TEP's missing key: copy the server's --tep-key; the server's own: dstm keygen", () => {
  const key = join(dir, "none.key");
  expect(() => readKeys(key, { holder: "tep" })).toThrow(
    `cannot read key file ${key}: no such file (copy the server's --tep-key file to ${key}; a new key from dstm keygen would not match the server's)`,
  );
  expect(() => readKeys(key)).toThrow(
    `cannot read key file ${key}: no such file (create it with dstm keygen ${key})`,
  );
});

test("dstm server --check: a key beside the file is found from another directory", async () => {
  const sub = mkdtempSync(join(dir, "etc-"));
  writeFileSync(join(sub, "host.key"), generateKeyFileText(1), { mode: 0o600 });
  const file = join(sub, "server.toml");
  writeFileSync(
    file,
    'pool = ["192.0.2.0/24"]\ntep = "2001:db8:1::1"\ndb = "memory"\ncontrol = false\n\nkey = "host.key"\n',
  );
  const ok = await runDstm(["server", "--config", file, "--check"]);
  expect([ok.code, ok.stderr]).toEqual([0, ""]);
  // A missing one is reported at its line in the file (the server makes keys: dstm keygen).
  writeFileSync(
    file,
    'pool = ["192.0.2.0/24"]\ntep = "2001:db8:1::1"\ndb = "memory"\ncontrol = false\n\nkey = "gone.key"\n',
  );
  const bad = await runDstm(["server", "--config", file, "--check"]);
  const gone = join(sub, "gone.key");
  expect([bad.code, bad.stderr]).toEqual([
    2,
    `dstm: ${file}:6:1: cannot read key file ${gone}: no such file (create it with dstm keygen ${gone})\n`,
  ]);
});

const netnsSkip = netnsSkipReason();
announceSkip("config_relative_paths: dstm tep --check", netnsSkip);

test.skipIf(netnsSkip !== null)(
  "dstm tep --check (in a dstmt-nc9b- namespace): a missing key beside the file: FILE:LINE, copy the server's --tep-key",
  async () => {
    const ns = addressNetns("dstmt-nc9b-", ["2001:db8:1::2"]);
    try {
      const sub = mkdtempSync(join(dir, "tep-"));
      const file = join(sub, "tep.toml");
      writeFileSync(
        file,
        'ipv4 = "192.0.2.1"\nipv6 = "2001:db8:1::2"\nserver = ["2001:db8:1::53"]\nroute = ["198.51.100.0/24"]\nkey = "tep.key"\n',
      );
      const r = await runDstm(["tep", "--check", "--config", file], {}, ns.name);
      const key = join(sub, "tep.key");
      expect([r.code, r.stderr]).toEqual([
        2,
        `dstm: ${file}:5:1: cannot read key file ${key}: no such file (copy the server's --tep-key file to ${key}; a new key from dstm keygen would not match the server's)\n`,
      ]);
      // Made beside the file, it is found from the current directory (the repository).
      writeFileSync(key, generateKeyFileText(1), { mode: 0o600 });
      const ok = await runDstm(["tep", "--check", "--config", file], {}, ns.name);
      expect([ok.code, ok.stderr]).toEqual([0, ""]);
    } finally {
      ns.delete();
    }
  },
  60_000,
);
