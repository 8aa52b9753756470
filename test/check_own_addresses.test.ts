/**
 * `dstm tep --check` asks the host whether `--ipv6` is one of its addresses, and `dstm client
 * --check` the same for `--host6`, as their starts do (lib/config/listen_address.ts
 * tepBoundAddresses, clientBoundAddresses): exit 2 and one line saying what is wrong and what
 * to do. Before, `--check` said "configuration OK" and the start then refused (the TEP) or
 * failed at bind with exit 1 (the client). The check only reads: the namespace's links,
 * addresses, routes and forwarding sysctls are the same after it.
 *
 * Run in a namespace made here (dstmt-nc8-…) whose loopback holds 2001:db8:1::1 only.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Netns } from "../lib/sys/netns.ts";
import { addressNetns, announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { runDstm } from "./helpers/process.ts";

const skip = netnsSkipReason();
announceSkip("--check asks for --ipv6 / --host6", skip);

describe.skipIf(skip !== null)("--check asks the host for the address it sends from", () => {
  let ns: Netns;
  let dir: string;
  beforeAll(() => {
    ns = addressNetns("dstmt-nc8-", ["2001:db8:1::1"]);
    dir = mkdtempSync(join(tmpdir(), "dstm-nc8-"));
  });
  afterAll(() => {
    ns?.delete();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const run = (args: readonly string[]) => runDstm(args, {}, ns.name);
  const tep = (ipv6: string) => [
    ...["tep", "--check", "--ipv6", ipv6, "--ipv4", "192.0.2.1"],
    ...["--server", "2001:db8:1::53", "--route", "198.51.100.0/24", "--insecure-control"],
  ];
  /** What a check must leave as it found it: links, addresses, routes, forwarding. */
  const state = () => [
    ns.ip("-d", "link", "show"),
    ns.ip("addr", "show"),
    ns.ip("-6", "route", "show", "table", "all"),
    ns.ip("-4", "route", "show", "table", "all"),
    ns.exec(["sysctl", "-n", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]).stdout,
  ];

  test("tep --check: an --ipv6 this host lacks is refused, exit 2, saying what to do; its own passes", async () => {
    const before = state();
    const foreign = await run(tep("2001:db8:1::2"));
    expect(foreign.stdout).not.toContain("configuration OK");
    expect([foreign.code, foreign.stderr]).toEqual([
      2,
      "dstm: --ipv6 2001:db8:1::2: no interface has this address: 2001:db8:1::2 is not one of this host's (see ip address); give one of them, or add it to the interface towards the hosts first (ip address add 2001:db8:1::2 dev IFNAME)\n",
    ]);
    const own = await run(tep("2001:db8:1::1"));
    expect(own.code).toBe(0);
    expect(own.stdout).toStartWith("dstm tep: configuration OK (2001:db8:1::1 / 192.0.2.1");
    expect(state()).toEqual(before);
  });

  test("tep --check --config: the refusal names the file's line", async () => {
    const file = join(dir, "tep.toml");
    writeFileSync(
      file,
      'ipv4 = "192.0.2.1"\nipv6 = "2001:db8:1::2"\nserver = ["2001:db8:1::53"]\nroute = ["198.51.100.0/24"]\ninsecure-control = true\n',
    );
    const r = await run(["tep", "--check", "--config", file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toStartWith(`dstm: ${file}:2:1: ipv6 2001:db8:1::2: no interface has this`);
  });

  test("client --check: a --host6 this host lacks is refused, exit 2, saying what to do; its own, or none, passes", async () => {
    const before = state();
    const client = ["client", "--check", "--server", "2001:db8:1::53"];
    const foreign = await run([...client, "--host6", "2001:db8:1::2"]);
    expect([foreign.code, foreign.stdout, foreign.stderr]).toEqual([
      2,
      "",
      "dstm: --host6 2001:db8:1::2: no interface has this address: 2001:db8:1::2 is not one of this host's (see ip address); give one of them, or leave --host6 out to send from the source address towards the server\n",
    ]);
    // The deprecated name reaches the same check.
    const old = await run([...client, "--source", "2001:db8:1::2"]);
    expect(old.code).toBe(2);
    expect(old.stderr).toContain("dstm: --host6 2001:db8:1::2: no interface has this address");
    for (const more of [["--host6", "2001:db8:1::1"], []]) {
      const ok = await run([...client, ...more]);
      expect([more, ok.code, ok.stderr]).toEqual([more, 0, ""]);
      expect(ok.stdout).toStartWith("dstm client: configuration OK");
    }
    expect(state()).toEqual(before);
  });
});
