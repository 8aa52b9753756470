/**
 * lib/config/key_file.ts readKeys: a file that is no key file (`--key /etc/passwd`, a
 * directory) is refused as such, never with advice to chmod it; a real key file with a loose
 * mode is still refused with chmod 600; a device others may open is never read.
 */
import { afterAll, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UsageError } from "../lib/config/errors.ts";
import { readKeys } from "../lib/config/key_file.ts";
import { generateKeyFileText } from "../lib/wire/auth.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-keyfile-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("a readable file that is no key file: what is wrong with it, and dstm keygen", () => {
  const passwd = join(dir, "passwd");
  writeFileSync(passwd, "root:x:0:0:root:/root:/bin/bash\n", { mode: 0o644 });
  chmodSync(passwd, 0o644);
  expect(() => readKeys(passwd)).toThrow(
    new UsageError(
      `key file ${passwd}: line 1: secret is not hex with an even number of digits (or base64:...); is it a key file? (make one with dstm keygen FILE)`,
    ),
  );
});

test("a directory: said so", () => {
  const sub = join(dir, "keys");
  mkdirSync(sub, { mode: 0o755 });
  expect(() => readKeys(sub)).toThrow(
    new UsageError(`key file ${sub} is a directory; make one with dstm keygen FILE`),
  );
});

test("a key file with a loose mode: chmod 600, as before; with 0600 it is read", () => {
  const key = join(dir, "key");
  writeFileSync(key, generateKeyFileText(7), { mode: 0o600 });
  expect(readKeys(key).map((k) => k.id)).toEqual([7]);
  chmodSync(key, 0o640);
  expect(() => readKeys(key)).toThrow(
    new UsageError(`key file ${key} is accessible by others (mode 0640); run chmod 600 ${key}`),
  );
});

test("a device others may open is refused unread", () => {
  expect(() => readKeys("/dev/zero")).toThrow(/^key file \/dev\/zero is accessible by others/);
});
