/**
 * Two DHCPv4 clients behind one IPv6 address (`--dhcp4o6-identity client-id`, issue 11): each
 * gets its own lease from a real `dstm server`, both bindings reach a real `dstm tep`, whose
 * decapsulation check then forwards packets from each client's inner IPv4 source and drops a
 * third, spoofed one (counted); the RELEASE of one leaves the other's binding; a server
 * restart (same SQLite file) still knows both identities. ISC Kea 2.2, given the same inputs,
 * gives two leases too (the reference). As root, in namespaces made for this run and removed
 * afterwards, also on failure:
 *
 * ```
 *   2001:db8:1::/64 (a bridge in sw)                              192.0.2.0/24
 *  ┌──────────┐  ┌──────────────┐  ┌──────────────────┐ eth4  eth0 ┌────────────┐
 *  │ srv ::53 │  │ h ::a        │  │ tep ::1          │────────────│ web .80    │
 *  └──────────┘  │ two clients  │  │ 192.0.2.1        │            └────────────┘
 *                │ 2001:db8:2::a│  └──────────────────┘
 *                └──────┬───────┘
 *                 ┌─────┴─────┐
 *                 │ kea ::547 │ 2001:db8:2::/64
 *                 └───────────┘
 * ```
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stopPid } from "../lib/lab/services.ts";
import { type Netns, vethPair } from "../lib/sys/netns.ts";
import { generateKeyFileText } from "../lib/wire/auth.ts";
import { metric } from "./helpers/daemon.ts";
import { hubLink } from "./helpers/hub.ts";
import { createNoDadNetns, haveKea, netnsStarter, startKea4o6, tearDown } from "./helpers/kea.ts";
import { announceSkip, netnsSkipReason, runScript } from "./helpers/netns.ts";
import { BUN, ROOT } from "./helpers/process.ts";
import { waitUntil } from "./helpers/wait.ts";

const skip = netnsSkipReason() ?? (haveKea() ? null : "needs ISC Kea (scripts/test-deps.sh)");
announceSkip("identity_dhcp4o6_tep", skip);

const NET = {
  server6: "2001:db8:1::53",
  tep6: "2001:db8:1::1",
  host6: "2001:db8:1::a",
  /** Another host on the link: its lease is what a spoofing client behind ::a would use. */
  other6: "2001:db8:1::b",
  tep4: "192.0.2.1",
  web4: "192.0.2.80",
  pool: "198.51.100.0/28",
  kea6: "2001:db8:2::547",
  hostKea6: "2001:db8:2::a",
} as const;
const SCRIPT = "../e2e_scripts/dhcp4o6_links.ts";

let dir = "";
const ns = {} as Record<"sw" | "srv" | "tep" | "h" | "web" | "kea", Netns>;
const procs = new Map<string, Bun.Subprocess>();
const start = netnsStarter(procs, () => dir);
const sock = (name: string) => join(dir, `${name}.sock`);

function startServer(): Promise<Bun.Subprocess> {
  return start(
    `server-${procs.size}`,
    ns.srv,
    [
      ...[BUN, join(ROOT, "mod.ts"), "server", `--pool=${NET.pool}`],
      ...[`--tep=${NET.tep6},${NET.tep4}`, `--listen=[${NET.server6}]:4607`],
      ...["--db", join(dir, "leases.db")],
      ...["--control", sock("server"), "--dhcp4o6", "--dhcp4o6-listen", `[${NET.server6}]:547`],
      ...["--dhcp4o6-identity", "client-id", "--tep-key", join(dir, "tep.key")],
    ],
    / dhcp4o6 /,
  );
}

async function serverMetrics(): Promise<string> {
  return (await fetch("http://localhost/metrics", { unix: sock("server") })).text();
}

async function tepCounters(): Promise<Record<string, number>> {
  const r = ns.tep.exec([
    BUN,
    join(ROOT, "mod.ts"),
    "tep",
    "stats",
    "--json",
    "--stats",
    sock("tep"),
  ]);
  return (JSON.parse(r.stdout) as { counters: Record<string, number> }).counters;
}

/**
 * Sends 3 echo requests with inner source `src4` from the host's IPv6 address to the TEP; the
 * deltas of the TEP's counters: forwarded, dropped as spoofed (the source is bound to another
 * host), dropped as bound to nobody.
 */
async function sendFrom(
  src4: string,
): Promise<{ forwarded: number; spoofed: number; unbound: number }> {
  const before = await tepCounters();
  const r = ns.h.exec([
    ...[BUN, join(ROOT, "test", "e2e_scripts", "send_spoofed.ts"), NET.host6, NET.tep6],
    ...[src4, NET.web4, "3"],
  ]);
  expect(r.code).toBe(0);
  const delta = (now: Record<string, number>, name: string) =>
    (now[name] ?? 0) - (before[name] ?? 0);
  let after = before;
  await waitUntil(
    async () => {
      after = await tepCounters();
      const counted = ["decap-drop-spoofed-source", "decap-forward", "decap-drop-no-binding"];
      return counted.reduce((n, name) => n + delta(after, name), 0) >= 3;
    },
    { timeoutMs: 10_000, intervalMs: 100, what: "the TEP to count the three packets" },
  );
  return {
    forwarded: delta(after, "decap-forward"),
    spoofed: delta(after, "decap-drop-spoofed-source"),
    unbound: delta(after, "decap-drop-no-binding"),
  };
}

type Seen = Record<string, { offer: string | null; ack: string | null }>;
const dora = (server: string, source: string, clients: number[]) =>
  runScript<Seen>(
    ns.h,
    SCRIPT,
    [
      server,
      JSON.stringify(clients.map((client) => ({ name: `c${client}`, source, client, relays: [] }))),
    ],
    60_000,
  );

beforeAll(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), "dstm-ident-"));
  for (const role of ["sw", "srv", "tep", "h", "web", "kea"] as const)
    ns[role] = createNoDadNetns(`dstmt-i${role[0]}-`);
  hubLink(ns.sw, [
    ["srv", ns.srv, "eth0", NET.server6],
    ["tep", ns.tep, "eth6", NET.tep6],
    ["h", ns.h, "eth0", NET.host6],
  ]);
  ns.h.addAddress("eth0", `${NET.other6}/64`);
  vethPair(ns.tep, "eth4", ns.web, "eth0");
  ns.tep.addAddress("eth4", `${NET.tep4}/24`);
  ns.web.addAddress("eth0", `${NET.web4}/24`);
  ns.web.addRoute(NET.pool, "via", NET.tep4);
  vethPair(ns.h, "tok", ns.kea, "eth0");
  ns.h.addAddress("tok", `${NET.hostKea6}/64`);
  ns.kea.addAddress("eth0", `${NET.kea6}/64`);
  ns.kea.addAddress("eth0", "203.0.113.67/24");
  writeFileSync(join(dir, "tep.key"), generateKeyFileText(1), { mode: 0o600 });
  await startServer();
  await start(
    "tep",
    ns.tep,
    [
      ...[BUN, join(ROOT, "mod.ts"), "tep", "--ipv6", NET.tep6, "--ipv4", NET.tep4],
      ...[
        "--server",
        NET.server6,
        "--route",
        NET.pool,
        "--control",
        sock("tep"),
        "--key",
        join(dir, "tep.key"),
      ],
    ],
    / tep-start /,
  );
  await waitUntil(
    async () => metric(await serverMetrics(), "dstm_tep_connected", { tep: NET.tep6 }) === 1,
    { timeoutMs: 20_000, intervalMs: 100, what: "the TEP to sync with the server" },
  );
  await startKea4o6(start, ns.kea, dir, NET.kea6, [
    {
      id: 1,
      subnet: "198.51.100.0/24",
      "4o6-interface": "eth0",
      pools: [{ pool: "198.51.100.1-198.51.100.14" }],
    },
  ]);
}, 120_000);

afterAll(async () => {
  if (!skip) await tearDown(procs, Object.values(ns), dir);
}, 60_000);

describe.skipIf(skip !== null)(
  "two DHCPv4 clients behind one IPv6 address (client-id identity)",
  () => {
    let first = "";
    let second = "";

    test("each gets its own lease from dstm, as from Kea (the reference)", async () => {
      const kea = await dora(NET.kea6, NET.hostKea6, [1, 2]);
      expect(kea.c1?.ack).toMatch(/^198\.51\.100\./);
      expect(kea.c2?.ack).toMatch(/^198\.51\.100\./);
      expect(kea.c1?.ack).not.toBe(kea.c2?.ack);
      const dstm = await dora(NET.server6, NET.host6, [1, 2]);
      first = dstm.c1?.ack ?? "";
      second = dstm.c2?.ack ?? "";
      expect(first).toMatch(/^198\.51\.100\./);
      expect(second).toMatch(/^198\.51\.100\./);
      expect(first).not.toBe(second);
      expect(
        metric(await serverMetrics(), "dstm_dhcp4o6_messages_total", {
          type: "request",
          result: "ack",
        }),
      ).toBe(2);
    }, 150_000);

    test("the TEP forwards packets from each client's inner source and drops a third, spoofed one (counted)", async () => {
      // A third address, leased to another host (::b): a spoofing client behind ::a uses it.
      const other = (await dora(NET.server6, NET.other6, [3])).c3?.ack ?? "";
      expect(other).toMatch(/^198\.51\.100\./);
      expect(await sendFrom(first)).toEqual({ forwarded: 3, spoofed: 0, unbound: 0 });
      expect(await sendFrom(second)).toEqual({ forwarded: 3, spoofed: 0, unbound: 0 });
      expect(await sendFrom(other)).toEqual({ forwarded: 0, spoofed: 3, unbound: 0 });
    }, 60_000);

    test("the RELEASE of one client leaves the other's lease and binding", async () => {
      await runScript(
        ns.h,
        SCRIPT,
        [
          NET.server6,
          JSON.stringify([
            { name: "r1", source: NET.host6, client: 1, relays: [], release: first },
          ]),
        ],
        30_000,
      );
      await waitUntil(
        async () =>
          metric(await serverMetrics(), "dstm_dhcp4o6_messages_total", {
            type: "release",
            result: "released",
          }) === 1,
        { timeoutMs: 10_000, intervalMs: 100, what: "the server to release client 1's lease" },
      );
      // The UNBIND is sent without waiting: wait until the TEP drops the released source.
      await waitUntil(async () => (await sendFrom(first)).unbound === 3, {
        timeoutMs: 15_000,
        intervalMs: 200,
        what: "the TEP to unbind the released address",
      });
      expect(await sendFrom(second)).toEqual({ forwarded: 3, spoofed: 0, unbound: 0 });
    }, 60_000);

    test("after a server restart (same database) client 2 is known: offered and renewed its own lease", async () => {
      const server = [...procs].find(([name]) => name.startsWith("server-"))!;
      procs.delete(server[0]);
      await stopPid(server[1].pid, 5000);
      await server[1].exited;
      await startServer();
      const again = await dora(NET.server6, NET.host6, [2]);
      expect(again.c2).toEqual({ offer: second, ack: second });
      expect(await sendFrom(second)).toEqual({ forwarded: 3, spoofed: 0, unbound: 0 });
    }, 90_000);
  },
);
