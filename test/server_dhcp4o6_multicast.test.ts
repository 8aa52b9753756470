/**
 * dstm's DHCPv4-over-DHCPv6 client and server over a real IPv6 link, as root: the client finds
 * the server with an INFORMATION-REQUEST for option 88 and leases over ff02::1:2, the way a
 * host that knows no server address would. Two namespaces of this run, removed afterwards.
 */
import { afterAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { Netns } from "../lib/sys/netns.ts";
import { createDhcp4o6Link, waitLinkLocal } from "./helpers/dhcp4o6_link.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { BUN, ROOT } from "./helpers/process.ts";
import { waitForLine } from "./helpers/wait.ts";

const skip = netnsSkipReason();
announceSkip("server_dhcp4o6_multicast", skip);
const made: Netns[] = [];
let server: ReturnType<Netns["spawn"]> | undefined;
afterAll(async () => {
  server?.kill("SIGTERM");
  await server?.exited;
  for (const ns of made) ns.delete();
});

test.skipIf(skip !== null)(
  "DHCPv4-over-DHCPv6 to dstm's server over ff02::1:2, with option 88 discovery",
  async () => {
    const link = createDhcp4o6Link(made);
    const { host, srv } = link;
    server = srv.spawn(
      [
        BUN,
        join(ROOT, "mod.ts"),
        "server",
        "--pool",
        "203.0.113.0/28",
        "--tep",
        "2001:db8:4::1,192.0.2.1",
        "--listen",
        "[2001:db8:4::53]:4607",
        "--db",
        "memory",
        "--no-control",
        "--dhcp4o6",
        "--dhcp4o6-interface",
        "eth0",
      ],
      { timeoutMs: 60_000 },
    );
    // Both ends' link-local addresses past DAD, and the server's 4o6 service.
    await waitLinkLocal(link);
    await waitForLine(server.stdout, / dhcp4o6 /, { what: "the server's 4o6 service" });
    const run = host.exec(
      [
        BUN,
        join(ROOT, "test", "e2e_scripts", "dhcp4o6_session.ts"),
        "multicast",
        "eth0",
        "2001:db8:4::10",
        "2001:db8:4::1",
      ],
      {
        cwd: ROOT,
        timeoutMs: 45_000,
      },
    );
    if (run.code !== 0) console.log(run.stdout, run.stderr);
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout.trim().split("\n").at(-1)!) as {
      servers: string[];
      sent: { message: string; u: boolean; to: string }[];
      leases?: { ipv4: string }[];
    } & Record<string, unknown>;
    // dstm listens on any address, so its option 88 is the empty list: "use ff02::1:2".
    expect(out.servers).toEqual([]);
    const first = out.sent.find((s) => s.message === "DISCOVER");
    expect(first?.to).toMatch(/^ff02::1:2/);
    expect(JSON.stringify(out)).toContain("203.0.113.1");
  },
  60_000,
);
