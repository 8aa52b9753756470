/**
 * `dstm tep --ipv4 A --route P` with A inside P (cli/tep.ts): the TEP routes its `--route`
 * prefixes through the tunnel to the hosts, so its own address would be routed away from it
 * (and the server's pool behind that route would lease it to a host). Refused at start with
 * exit 2 and one line naming both; before, `--check` said "configuration OK". Run with
 * `--check` only: nothing is opened, whatever the outcome.
 */
import { describe, expect, test } from "bun:test";
import { ownAddressesNetns } from "./helpers/netns.ts";
import { runDstm } from "./helpers/process.ts";

const BASE = ["tep", "--ipv6", "2001:db8:1::1", "--server", "2001:db8:1::53", "--insecure-control"];

// --check asks the host whether --ipv6 is its own: run in a namespace of our own whose
// loopback holds 2001:db8:1::1 (without root, only the refusals run, where they are).
const own = ownAddressesNetns("tep --check with this host's --ipv6", ["2001:db8:1::1"]);
const skip = own.skip;

/** `dstm tep … --check` with `ipv4` and `routes`. */
const check = (ipv4: string, routes: string[]) =>
  runDstm(
    [...BASE, "--ipv4", ipv4, ...routes.flatMap((r) => ["--route", r]), "--check"],
    {},
    own.ns()?.name,
  );

describe("dstm tep: its own IPv4 address inside one of its routes", () => {
  test("is refused at start, naming the address and the route", async () => {
    const r = await check("198.51.100.7", ["203.0.113.0/24", "198.51.100.0/24"]);
    expect(r.code).toBe(2);
    expect(r.stdout).not.toContain("configuration OK");
    const lines = r.stderr.trim().split("\n");
    expect(lines.length).toBe(1);
    expect(lines[0]).toContain("--ipv4 198.51.100.7 is inside --route 198.51.100.0/24");
  });

  test("at either end of the route too", async () => {
    for (const ipv4 of ["198.51.100.0", "198.51.100.255"]) {
      const r = await check(ipv4, ["198.51.100.0/24"]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`--ipv4 ${ipv4} is inside --route 198.51.100.0/24`);
    }
  });

  test.skipIf(skip !== null)("an address just outside every route is fine", async () => {
    const r = await check("198.51.100.128", ["198.51.100.0/25", "203.0.113.0/24"]);
    expect(r.stderr).not.toContain("is inside --route");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("configuration OK (2001:db8:1::1 / 198.51.100.128");
  });
});
