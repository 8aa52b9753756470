/**
 * `--listen 4607` / `--metrics 9604` (a port without an address) says how to write it, where
 * it said only that it was not ADDRESS:PORT (lib/config/endpoints.ts parseHostPort).
 */
import { expect, test } from "bun:test";
import { parseHostPort } from "../lib/config/endpoints.ts";
import { UsageError } from "../lib/config/errors.ts";

test("a port alone: give [::]:PORT or ADDRESS:PORT", () => {
  expect(() => parseHostPort("9604", "--metrics", 0)).toThrow(
    new UsageError(
      '--metrics: "9604" is a port alone; give [::]:9604 (every address) or ADDRESS:9604',
    ),
  );
  expect(parseHostPort("[::]:9604", "--metrics", 0)).toEqual({ address: "::", port: 9604 });
  expect(parseHostPort(":4607", "--listen", 4607)).toEqual({ address: "::", port: 4607 });
  expect(() => parseHostPort("nowhere", "--listen", 4607)).toThrow(
    new UsageError('--listen: "nowhere" is not ADDRESS:PORT or [IPv6]:PORT'),
  );
});
