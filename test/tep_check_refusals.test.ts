/**
 * `dstm tep --check` refuses what a newcomer's typos slipped through (cli/tep.ts,
 * lib/config/tep_resolve.ts): the same `--server` twice (every SYNC would go twice, the
 * server listed twice), and a static binding whose IPv4 address is in none of the TEP's
 * `--route` prefixes (the TEP routes only those back to the hosts: the binding would be
 * silently useless). Exit 2, one line; nothing opened.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ownAddressesNetns } from "./helpers/netns.ts";
import { runDstm } from "./helpers/process.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-tepcheck-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// --check asks the host whether --ipv6 is its own: the runs happen in a namespace of their
// own whose loopback holds 2001:db8:1::1 (without root, only the refusals run, where they are).
const own = ownAddressesNetns("tep --check with this host's --ipv6", ["2001:db8:1::1"]);
const skip = own.skip;

const BASE = ["tep", "--ipv6", "2001:db8:1::1", "--ipv4", "192.0.2.1", "--insecure-control"];
const run = (args: readonly string[], env: Record<string, string> = {}) =>
  runDstm(args, env, own.ns()?.name);
const check = (...args: string[]) => run([...BASE, ...args, "--check"]);

describe("dstm tep --check", () => {
  test.skipIf(skip !== null)(
    "--rx-ring: --check says the ring, or that without nft(8) the TEP would use the raw socket alone",
    async () => {
      const args = ["--server", "2001:db8:1::53", "--route", "198.51.100.0/24", "--rx-ring"];
      const withNft = await check(...args);
      expect(withNft.code).toBe(0);
      expect(withNft.stdout).toContain("static binding(s), rx-ring)");
      // A PATH without /usr/sbin, where nft lives.
      const without = await run([...BASE, ...args, "--check"], { PATH: "/usr/bin:/bin" });
      expect(without.code).toBe(0);
      expect(without.stdout).toContain(
        "rx-ring: nft not found, the TEP would receive through the raw socket alone)",
      );
    },
  );

  test("--rx-ring with --no-offload is refused, naming both", async () => {
    const r = await check(
      "--server",
      "2001:db8:1::53",
      "--route",
      "198.51.100.0/24",
      "--rx-ring",
      "--no-offload",
    );
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(
      "dstm: --rx-ring needs the offloads (batched I/O): it cannot go with --no-offload",
    );
  });

  test("the same --server twice (in any spelling) is refused", async () => {
    const r = await check(
      "--server",
      "2001:db8:1::53",
      "--server",
      "2001:DB8:1:0::53",
      "--route",
      "198.51.100.0/24",
    );
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe("dstm: --server 2001:db8:1::53 is given twice");
  });

  test("a --binding outside every --route is refused, naming it", async () => {
    const r = await check(
      "--server",
      "2001:db8:1::53",
      "--route",
      "198.51.100.0/24",
      "--binding",
      "198.51.100.9=2001:db8:2::9",
      "--binding",
      "203.0.113.5=2001:db8:2::5",
    );
    expect(r.code).toBe(2);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(
      "--binding #2: 203.0.113.5 is outside every --route (198.51.100.0/24)",
    );
  });

  test("a binding file's line outside every route is named by file and line", async () => {
    const file = join(dir, "bindings.txt");
    writeFileSync(file, "# hosts\n198.51.100.9 2001:db8:2::9\n203.0.113.5 2001:db8:2::5\n");
    const r = await check(
      "--server",
      "2001:db8:1::53",
      "--route",
      "198.51.100.0/24",
      "--binding-file",
      file,
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${file}:3: 203.0.113.5 is outside every --route`);
  });

  test.skipIf(skip !== null)("two servers and bindings inside the routes pass", async () => {
    const r = await check(
      "--server",
      "2001:db8:1::53",
      "--server",
      "2001:db8:1::54",
      "--route",
      "198.51.100.0/24",
      "--route",
      "203.0.113.0/24",
      "--binding",
      "203.0.113.5=2001:db8:2::5",
    );
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(
      "server 2001:db8:1::53, 2001:db8:1::54, 2 route(s), 1 static binding(s)",
    );
  });
});
