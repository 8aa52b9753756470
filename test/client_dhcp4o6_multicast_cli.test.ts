/**
 * `dstm client --protocol dhcp4o6 --server ff02::1:2%eth0` (README, docs/dhcp4o6.md) against
 * `dstm server --dhcp4o6 --dhcp4o6-interface eth0`, both the real CLI, as root in two
 * namespaces of this run. The host has a global address, as every DSTM host does. Before, the
 * client sent its INFORMATION-REQUEST from that global address (its socket's), and the server
 * refused the REPLY, longer than the request, to an off-link source (`answer-too-long`): the
 * copy-pasted example never got a lease. RFC 8415 §14.1: a client sends to ff02::1:2 from its
 * link-local address.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Netns } from "../lib/sys/netns.ts";
import { createDhcp4o6Link, waitLinkLocal } from "./helpers/dhcp4o6_link.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { BUN, ROOT } from "./helpers/process.ts";
import { waitForLine } from "./helpers/wait.ts";

const skip = netnsSkipReason();
announceSkip("client_dhcp4o6_multicast_cli", skip);
const made: Netns[] = [];
const dir = mkdtempSync(join(tmpdir(), "dstm-4o6-cli-"));
const procs: ReturnType<Netns["spawn"]>[] = [];
afterAll(async () => {
  for (const p of procs.reverse()) {
    p.kill("SIGTERM");
    await p.exited;
  }
  for (const ns of made) ns.delete();
  rmSync(dir, { recursive: true, force: true });
});

test.skipIf(skip !== null)(
  "the dhcp4o6 client over ff02::1:2 gets a lease from dstm's own server",
  async () => {
    const link = createDhcp4o6Link(made);
    const { host, srv } = link;
    const server = srv.spawn(
      [BUN, join(ROOT, "mod.ts"), "server", "--pool", "203.0.113.0/28", "--tep"]
        .concat(["2001:db8:4::1,192.0.2.1", "--listen", "[2001:db8:4::53]:4607", "--db"])
        .concat(["memory", "--no-control", "--dhcp4o6", "--dhcp4o6-interface", "eth0"]),
      { timeoutMs: 60_000 },
    );
    procs.push(server);
    await waitLinkLocal(link);
    await waitForLine(server.stdout, / dhcp4o6 /, { what: "the server's 4o6 service" });
    const client = host.spawn(
      [BUN, join(ROOT, "mod.ts"), "client", "--protocol", "dhcp4o6", "--server"]
        .concat(["ff02::1:2%eth0", "--tep", "2001:db8:4::1", "--control", join(dir, "c.sock")])
        .concat(["--host6", "2001:db8:4::10"]),
      { timeoutMs: 60_000 },
    );
    procs.push(client);
    const bound = await waitForLine(client.stdout, / bound ipv4=/, {
      timeoutMs: 30_000,
      what: "the client's lease",
    });
    expect(bound).toContain("ipv4=203.0.113.");
  },
  60_000,
);
