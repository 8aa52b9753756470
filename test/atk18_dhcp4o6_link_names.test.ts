/**
 * Red team (atk18) on how a DHCPv4-over-DHCPv6 server names a link-local client's link
 * (lib/server/dhcp4o6_link_names.ts, lib/server/dhcp4o6_identity.ts linkLocalHolder): real
 * `dstm server --dhcp4o6` in namespaces made for this run, the client fe80::10 sending as a
 * standard one (ff02::1:2), attackers sending ICMPv6 Router Advertisements
 * (test/e2e_scripts/atk18_ra.py) or RELAY-FORWs of their own (test/e2e_scripts/atk18_4o6.ts).
 *
 * ```
 *            link A 2001:db8:4::/64 (a hub)
 *  client fe80::10 ─┬─ eth0 dstm server (2001:db8:4::547) eth1 ── eth0 attacker B
 *  attacker A ──────┘                    2001:db8:6::547   link B   2001:db8:6::66
 *  (2001:db8:4::66)
 * ```
 *
 * The server's interfaces accept Router Advertisements, as a host's do by default
 * (accept_ra 1, autoconf 1, forwarding 0; RFC 4862 §5.5.3).
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type Netns, vethPair } from "../lib/sys/netns.ts";
import { hubLink } from "./helpers/hub.ts";
import { stopProcess } from "./helpers/kea.ts";
import { e2eJson } from "./helpers/netns.ts";
import {
  dhcp4o6ServerArgv,
  netnsRoles,
  onlyLinkLocal,
  DHCP4O6_SERVER_ID as SERVER_ID,
} from "./helpers/netns_roles.ts";
import { ROOT } from "./helpers/process.ts";
import { waitUntil } from "./helpers/wait.ts";

const { skip, ns, dir, procs, start } = netnsRoles("atk18_dhcp4o6_link_names", {
  roles: ["c", "a", "b", "hub", "srv"],
  nsPrefix: "a18",
  dirPrefix: "dstm-a18-",
  needs: Bun.which("python3") ? null : "needs python3 (the Router Advertisements)",
  setup({ ns }) {
    hubLink(ns.hub, [
      ["c", ns.c, "eth0", "2001:db8:4::10"],
      ["a", ns.a, "eth0", "2001:db8:4::66"],
      ["s", ns.srv, "eth0", "2001:db8:4::547"],
    ]);
    onlyLinkLocal(ns.c, "eth0");
    vethPair(ns.b, "eth0", ns.srv, "eth1");
    ns.b.addAddress("eth0", "2001:db8:6::66/64");
    // Link B's host is fe80::10 too (a machine there, or the attacker).
    onlyLinkLocal(ns.b, "eth0");
    ns.srv.addAddress("eth1", "2001:db8:6::547/64");
    // A host's defaults, said out loud: SLAAC from any Router Advertisement heard.
    for (const key of ["forwarding=0", "eth0.accept_ra=1", "eth0.autoconf=1"])
      ns.srv.exec(["sysctl", "-qw", `net.ipv6.conf.${key}`]);
    for (const key of ["eth1.accept_ra=1", "eth1.autoconf=1"])
      ns.srv.exec(["sysctl", "-qw", `net.ipv6.conf.${key}`]);
  },
});

/**
 * Runs `body` with a dstm server (4o6 on eth0, pool 198.51.100.200/29, `extra` flags) in
 * ns.srv; stops it after.
 */
async function withServer(
  run: string,
  body: () => Promise<void>,
  extra: string[] = [],
): Promise<void> {
  try {
    await start(
      `dstm-${run}`,
      ns.srv,
      dhcp4o6ServerArgv({
        listen6: "2001:db8:4::547",
        tep6: "2001:db8:4::99",
        extra: ["--dhcp4o6-interface", "eth0", "--log-level", "debug", ...extra],
      }),
      / dhcp4o6 /,
    );
    await body();
  } finally {
    await stopProcess(procs, `dstm-${run}`);
  }
}

interface Answer {
  readonly type: string;
  readonly yiaddr: string;
}

/** test/e2e_scripts/atk18_4o6.ts in `where`: its JSON line. */
function ask<T = Answer | null>(where: Netns, spec: object, ...args: string[]): T {
  return e2eJson<T>(where, "atk18_4o6.ts", [JSON.stringify(spec), ...args]);
}

const DIRECT = { direct: "eth0" };

/** The client's lease, heard directly: its address. */
function directLease(last: string): string {
  const got = ask<{ offer: Answer; ack: Answer | null }>(ns.c, DIRECT, "lease", last);
  expect(got.ack?.type).toBe("ACK");
  return got.ack?.yiaddr as string;
}

/** The server's global addresses on `ifname` in `prefix64` (its first 4 groups, `2001:db8::`). */
function serverAddresses(ifname: string, prefix: string): string[] {
  const [link] = ns.srv.ipJson<{ addr_info: { local: string }[] }[]>(
    "-6",
    "addr",
    "show",
    "dev",
    ifname,
  );
  return (link?.addr_info ?? []).map((a) => a.local).filter((a) => a.startsWith(prefix));
}

/**
 * After `attack` made the server autoconfigure an address in `prefix` on `ifname`, the
 * client's lease `ipv4` must stay its own: every RENEW from 0 to 2.5 s after the address
 * appeared (the server reads its addresses at most once a second) is ACKed with it, and a
 * DISCOVER then offers it again.
 */
async function expectKept(ipv4: string, last: string, ifname: string, prefix: string) {
  await waitUntil(() => serverAddresses(ifname, prefix).length > 0, {
    timeoutMs: 10_000,
    intervalMs: 50,
    what: `the server's SLAAC address in ${prefix}/64 on ${ifname}`,
  });
  const seen = performance.now();
  const renewals: (Answer | null)[] = [];
  while (performance.now() - seen < 2500) {
    const r = ask(ns.c, DIRECT, "renew", last, ipv4);
    renewals.push(r);
    if (r?.type !== "ACK") break; // before: NAK, the lease held under another key
  }
  expect(renewals.map((r) => r?.type)).toEqual(renewals.map(() => "ACK"));
  expect(ask(ns.c, DIRECT, "discover", last)?.yiaddr).toBe(ipv4); // before: another address
}

/** A relay list (of no relay these tests use): with it, direct clients are keyed by their link's name. */
const NAMED_RELAYS = ["--dhcp4o6-relay", "2001:db8:71::/64"];

/**
 * One ICMPv6 Router Advertisement (RFC 4861 §4.2) of `prefix`/64, on-link and autonomous,
 * from `from`'s eth0 (test/e2e_scripts/atk18_ra.py); expects it sent.
 */
function advertise(from: Netns, prefix: string): void {
  const ra = from.exec([
    "python3",
    join(ROOT, "test", "e2e_scripts", "atk18_ra.py"),
    "eth0",
    prefix,
  ]);
  expect(ra.stdout.trim()).toBe("sent");
}

/** Removes what SLAAC gave the server (no second test sees it). */
function flushDynamic(): void {
  for (const ifname of ["eth0", "eth1"]) ns.srv.ip("-6", "addr", "flush", "dev", ifname, "dynamic");
}

describe.skipIf(skip !== null)("atk18: naming a link-local 4o6 client's link", () => {
  test("an attacker on link A advertises a lower /64: the direct client keeps its lease", async () => {
    // Relays named: only then are direct clients keyed by their link's name (LinkNames).
    await withServer(
      "ra-lower",
      async () => {
        try {
          const ipv4 = directLease("1");
          advertise(ns.a, "2001:db8::");
          await expectKept(ipv4, "1", "eth0", "2001:db8::");
        } finally {
          flushDynamic();
        }
      },
      NAMED_RELAYS,
    );
  }, 90_000);

  test("an attacker on link B advertises link A's /64: link A's direct client keeps its lease", async () => {
    // Relays named: only then are direct clients keyed by their link's name (LinkNames).
    await withServer(
      "ra-shared",
      async () => {
        try {
          const ipv4 = directLease("2");
          advertise(ns.b, "2001:db8:4::");
          await expectKept(ipv4, "2", "eth1", "2001:db8:4:");
        } finally {
          flushDynamic();
        }
      },
      NAMED_RELAYS,
    );
  }, 90_000);
  test("a /64 on two of the server's interfaces: relays of the two links that put it in link-address never share a key", async () => {
    // 2001:db8:5::/64 is on both links (one /64 over two links, as an ND proxy makes).
    ns.srv.addAddress("eth0", "2001:db8:5::1/64");
    ns.srv.addAddress("eth1", "2001:db8:5::2/64");
    try {
      await withServer("shared64", async () => {
        // Two machines, both fe80::10, one on each link, each relayed (no Interface-ID).
        const onA = { server: "2001:db8:4::547", link: "2001:db8:5::11", peer: "fe80::10" };
        const onB = { server: "2001:db8:6::547", link: "2001:db8:5::12", peer: "fe80::10" };
        const a = ask<{ ack: Answer | null }>(ns.a, onA, "lease", "11");
        expect(a.ack?.type).toBe("ACK");
        const b = ask<{ ack: Answer | null }>(ns.b, onB, "lease", "12");
        expect(b.ack?.type).toBe("ACK");
        expect(b.ack?.yiaddr).not.toBe(a.ack?.yiaddr); // before: one key, one address
        // Nor can the machine on link B end the lease of the one on link A.
        ask(ns.b, onB, "release", "12", a.ack?.yiaddr as string, SERVER_ID);
        expect(ask(ns.a, onA, "renew", "11", a.ack?.yiaddr as string)?.type).toBe("ACK");
      });
    } finally {
      ns.srv.ip("addr", "del", "2001:db8:5::1/64", "dev", "eth0");
      ns.srv.ip("addr", "del", "2001:db8:5::2/64", "dev", "eth1");
    }
  }, 90_000);
  test("a host on link B posing as a relay of link A cannot release a direct client's lease: without --dhcp4o6-relay direct clients keep their interface key; with it, the forger is refused", async () => {
    // Link A's /64 in link-address, no Interface-ID, the victim's address and hardware address:
    // the key of the client heard directly on link A (one link, one name), sent from link B.
    const forged = { server: "2001:db8:6::547", link: "2001:db8:4::1", peer: "fe80::10" };
    /** The victim's lease, the forged RELEASE; resolves to the server's line of it (debug). */
    const attack = async (run: string, last: string): Promise<string | null> => {
      const ipv4 = directLease(last);
      ask(ns.b, forged, "release", last, ipv4, SERVER_ID);
      // The server's answer to a RELEASE is none: the victim's next query comes after it.
      expect(ask(ns.c, DIRECT, "discover", last)?.yiaddr).toBe(ipv4);
      const log = readFileSync(join(dir(), `dstm-${run}.out`), "utf8");
      return log.match(/ dhcp4-type=RELEASE .* peer=2001:db8:6::66 result=\S+/)?.[0] ?? null;
    };
    // Without a relay list any source may relay (docs/dhcp4o6.md "Relays"), so a direct
    // client's key is its interface's, which no RELAY-FORW names: the forged RELEASE finds
    // no lease of that holder (before: result=released).
    await withServer("forge-open", async () => {
      const line = await attack("forge-open", "3");
      expect(line).not.toBeNull();
      expect(line).not.toContain("result=released");
    });
    await withServer(
      "forge-relays",
      async () => expect(await attack("forge-relays", "4")).toContain("result=refused"),
      ["--dhcp4o6-relay", "2001:db8:71::/64"],
    );
  }, 90_000);
  test("a declared link prefix holding the /64s of two of the server's interfaces: their direct clients keep two keys", async () => {
    // 2001:db8::/40 holds link A's 2001:db8:4::/64 and link B's 2001:db8:6::/64: an operator's
    // aggregate (or typo) the server can see is two links.
    const flags = ["--dhcp4o6-interface", "eth1", "--dhcp4o6-link-prefix", "2001:db8::/40"];
    await withServer(
      "declared-two",
      async () => {
        const onA = directLease("5");
        const onB = ask<{ ack: Answer | null }>(ns.b, DIRECT, "lease", "6");
        expect(onB.ack?.type).toBe("ACK");
        expect(onB.ack?.yiaddr).not.toBe(onA); // before: one key, one address for both
      },
      flags,
    );
  }, 90_000);
  test("an attacker on an unaddressed server link advertises a relayed link's /64: it cannot take that link's client's key", async () => {
    // Link C (remote, 2001:db8:c::/64) is heard only through a relay on link A (ns a, the only
    // relay --dhcp4o6-relay admits; link-address 2001:db8:c::1, no Interface-ID). The server's
    // eth1 (link B) has no global address: its direct clients are keyed %IFINDEX.
    ns.srv.ip("addr", "del", "2001:db8:6::547/64", "dev", "eth1");
    try {
      const relayC = { server: "2001:db8:4::547", link: "2001:db8:c::1", peer: "fe80::10" };
      const flags = ["--dhcp4o6-interface", "eth1", "--dhcp4o6-relay", "2001:db8:4::66/128"];
      await withServer(
        "ra-unaddressed",
        async () => {
          const victim = ask<{ ack: Answer | null }>(ns.a, relayC, "lease", "7");
          expect(victim.ack?.type).toBe("ACK");
          // The attacker on link B is fe80::10 too (any host may take any link-local address).
          advertise(ns.b, "2001:db8:c::");
          await waitUntil(() => serverAddresses("eth1", "2001:db8:c:").length > 0, {
            timeoutMs: 10_000,
            intervalMs: 50,
            what: "the server's SLAAC address in 2001:db8:c::/64 on eth1",
          });
          const seen = performance.now();
          const offers: (string | undefined)[] = [];
          while (performance.now() - seen < 2500) {
            offers.push(ask(ns.b, DIRECT, "discover", "7")?.yiaddr);
            if (offers.at(-1) === victim.ack?.yiaddr) break; // before: the victim's key
          }
          expect(offers).not.toContain(victim.ack?.yiaddr);
          ask(ns.b, DIRECT, "release", "7", victim.ack?.yiaddr as string, SERVER_ID);
          expect(ask(ns.a, relayC, "renew", "7", victim.ack?.yiaddr as string)?.type).toBe("ACK");
          const log = readFileSync(join(dir(), "dstm-ra-unaddressed.out"), "utf8");
          expect(log).not.toMatch(/dhcp4-type=RELEASE .* result=released/);
        },
        flags,
      );
    } finally {
      flushDynamic();
      ns.srv.addAddress("eth1", "2001:db8:6::547/64");
    }
  }, 90_000);
});
