/**
 * Red team of the source check's shortcut (lib/server/handler.ts: a source spelled as
 * HOST_IPV6's canonical text is accepted without canonicalizing it; docs/security.md), with a
 * real `dstm server` on a bridged link and an attacker on it, in namespaces of this run. The
 * attacker claims addresses that are not its datagrams' source: the host's, the server's, an
 * IPv4-mapped one, its own link-local address without its zone (a link-local source arrives
 * as `fe80::…%IFINDEX`, never the text of a HOST_IPV6), the host's from its link-local
 * address. Each must be refused (`dstm_auth_failures_total{reason="source-mismatch"}`) and
 * lease nothing, on a listener of one address (Bun's socket names the source) and on `[::]`
 * (IPV6_PKTINFO worker, lib/sys/udp_pktinfo.ts AddressCache names it); its own global address
 * is leased (the server does answer it). Root only.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LeaseJson } from "../lib/control/lease_view.ts";
import { getUnix } from "../lib/sys/http.ts";
import { createNetns, type Netns, vethPair } from "../lib/sys/netns.ts";
import { encodeMessage } from "../lib/wire/dstm.ts";
import { MessageType } from "../lib/wire/dstm_types.ts";
import { forgeUdp, hex } from "./helpers/attacker_link.ts";
import { BUN, ROOT } from "./helpers/process.ts";
import { eventually } from "./helpers/wait.ts";

const SERVER6 = "2001:db8:8::53";
const HOST6 = "2001:db8:8::10";
const ATTACKER6 = "2001:db8:7::66";
const ATTACKER_LL = "fe80::66";

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

function link(): { srv: Netns; host: Netns; attacker: Netns; dir: string } {
  const srv = createNetns("dstmatk21-");
  const host = createNetns("dstmatk21-");
  const attacker = createNetns("dstmatk21-");
  const dir = mkdtempSync(join(tmpdir(), "atk21-src-"));
  cleanup.push(() => {
    for (const ns of [srv, host, attacker]) ns.delete();
    rmSync(dir, { recursive: true, force: true });
  });
  srv.ip("link", "add", "br0", "type", "bridge");
  srv.up("br0");
  vethPair(host, "eth0", srv, "vh");
  vethPair(attacker, "eth0", srv, "va");
  srv.ip("link", "set", "vh", "master", "br0");
  srv.ip("link", "set", "va", "master", "br0");
  srv.addAddress("br0", `${SERVER6}/64`);
  srv.addAddress("br0", "2001:db8:7::53/64");
  srv.addAddress("br0", "fe80::53/64");
  host.addAddress("eth0", `${HOST6}/64`);
  attacker.addAddress("eth0", `${ATTACKER6}/64`);
  attacker.addAddress("eth0", `${ATTACKER_LL}/64`);
  host.addRoute("2001:db8:7::/64", "dev", "eth0");
  attacker.addRoute("2001:db8:8::/64", "dev", "eth0");
  return { srv, host, attacker, dir };
}

async function server(srv: Netns, dir: string, listen: string) {
  const control = join(dir, "control.sock");
  const proc = srv.spawn(
    [
      BUN,
      join(ROOT, "mod.ts"),
      "server",
      "--pool",
      "203.0.113.0/24",
      "--tep",
      "2001:db8:8::1,192.0.2.1",
      "--listen",
      listen,
      "--db",
      "memory",
      "--control",
      control,
    ],
    { timeoutMs: 90_000, cwd: ROOT },
  );
  const stderr = new Response(proc.stderr).text();
  void new Response(proc.stdout).text();
  cleanup.push(async () => {
    proc.kill("SIGTERM");
    await proc.exited;
  });
  const up = await eventually(
    async () =>
      proc.exitCode !== null ||
      (await getUnix(control, "/v1/ping").then(
        (r) => r.ok,
        () => false,
      )),
    { timeoutMs: 10_000, intervalMs: 50 },
  );
  if (proc.exitCode !== null || !up) throw new Error(`server did not start: ${await stderr}`);
  return {
    leases: async () =>
      ((await (await getUnix(control, "/v1/leases")).json()) as { leases: LeaseJson[] }).leases,
    metric: async (name: string, labels: string) => {
      const text = await (await getUnix(control, "/metrics")).text();
      const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
      return line ? Number(line.split(" ").at(-1)) : 0;
    },
  };
}

const discover = (host6: string, xid: number) =>
  hex(encodeMessage({ type: MessageType.DISCOVER, xid, host6 }));

const root = process.getuid?.() === 0;

describe("atk21: the source check against an on-link attacker", () => {
  // `toLocal`: where the attacker's link-local datagrams go (the server's link-local address
  // reaches only the listener on [::]).
  for (const [name, listen, toLocal] of [
    ["one address", `[${SERVER6}]:4607`, SERVER6],
    ["[::] (IPV6_PKTINFO)", "[::]:4607", "fe80::53%eth0"],
  ] as const) {
    test.skipIf(!root)(`listener on ${name}: claims of other addresses are refused`, async () => {
      const l = link();
      const s = await server(l.srv, l.dir, listen);
      const global = await forgeUdp(l.attacker, {
        from: ATTACKER6,
        fromPort: 0,
        to: SERVER6,
        toPort: 4607,
        listenMs: 300,
        datagrams: [
          discover(HOST6, 1),
          discover(SERVER6, 2),
          discover("::ffff:203.0.113.9", 3),
          discover(ATTACKER6, 4),
        ],
      });
      expect(global.sent).toBe(4);
      // From its link-local address (zone eth0).
      const local = await forgeUdp(l.attacker, {
        from: `${ATTACKER_LL}%eth0`,
        fromPort: 0,
        to: toLocal,
        toPort: 4607,
        listenMs: 300,
        datagrams: [discover(ATTACKER_LL, 5), discover(HOST6, 6)],
      });
      expect(local.sent).toBe(2);
      const refused = () => s.metric("dstm_auth_failures_total", 'reason="source-mismatch"');
      expect(await eventually(async () => (await refused()) === 5, { timeoutMs: 5_000 })).toBe(
        true,
      );
      // Every answer came back (4 NAKs and 1 ACK): nothing was lost on the way.
      expect(global.received + local.received).toBe(6);
      const leases = await s.leases();
      expect(leases.map((x) => x.hostIPv6)).toEqual([ATTACKER6]);
    });
  }
});
