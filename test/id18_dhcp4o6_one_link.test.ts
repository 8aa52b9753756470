/**
 * One link-local DHCPv4-over-DHCPv6 client, one lease, however its queries reach the server
 * (lib/server/dhcp4o6_identity.ts linkLocalHolder, lib/server/dhcp4o6_link_names.ts): real
 * `dstm server --dhcp4o6` and ISC `dhcrelay -6`, as root in namespaces made for this run.
 *
 * ```
 *          link 2001:db8:4::/64 (a bridge)
 *  client fe80::10 ─┬─ eth0 dstm server (2001:db8:4::547; u1 2001:db8:71::547, u2 2001:db8:72::547)
 *                   ├─ l0 relay 1 (2001:db8:4::1) up0 ── u1
 *                   └─ l1 relay 2 (2001:db8:4::2) up0 ── u2
 * ```
 *
 * - (a) The server joins ff02::1:2 on eth0 and relay 1 (`-l l0`, no Interface-ID) relays the
 *   same multicast: each query arrives twice. Before, the direct copy was keyed by the
 *   receiving interface (`ll:fe80::10%IFINDEX`) and the relayed one by the link-address's
 *   /64: two OFFERs of two addresses, the REQUEST ACKed by one and NAKed by the other. Now
 *   the interface's link is named by its global /64, as the relay's link-address is.
 * - (b) The server hears the link only through relays 1 and 2, both sending an Interface-ID
 *   (`-I`; relay 2 also serves another link, so their numbers of their l0 and l1 differ), with `--dhcp4o6-link-prefix 2001:db8:4::/64`. Before (no such flag,
 *   and the key held the Interface-ID), two OFFERs of two addresses and ACK + NAK; without
 *   the flag that is still so (a relay's Interface-ID may be all that tells its links apart:
 *   the key stays relay-specific), which the third test pins.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { vethPair } from "../lib/sys/netns.ts";
import { hubLink } from "./helpers/hub.ts";
import { stopProcess } from "./helpers/kea.ts";
import { e2eJson } from "./helpers/netns.ts";
import {
  DHCRELAY,
  dhcp4o6ServerArgv,
  dhcrelayMissing,
  netnsRoles,
  onlyLinkLocal,
} from "./helpers/netns_roles.ts";

const { skip, ns, dir, procs, start } = netnsRoles("id18_dhcp4o6_one_link", {
  roles: ["c", "hub", "r1", "r2", "srv"],
  nsPrefix: "i18",
  dirPrefix: "dstm-i18-",
  needs: dhcrelayMissing(),
  setup({ ns }) {
    // ISC dhcrelay's Interface-ID is its own number of the receiving interface (4 bytes, 1 for
    // the only one): relay 2 also serves pad0, so that its l1 gets another number than relay
    // 1's l0, as two relays serving more than one link each have.
    ns.r2.ip("link", "add", "pad0", "type", "veth", "peer", "name", "pad1");
    ns.r2.up("pad0");
    ns.r2.up("pad1");
    ns.r2.addAddress("pad0", "2001:db8:73::2/64"); // dhcrelay wants a global address on each -l
    hubLink(ns.hub, [
      ["c", ns.c, "eth0", "2001:db8:4::10"],
      ["s", ns.srv, "eth0", "2001:db8:4::547"],
      ["r1", ns.r1, "l0", "2001:db8:4::1"],
      ["r2", ns.r2, "l1", "2001:db8:4::2"],
    ]);
    onlyLinkLocal(ns.c, "eth0");
    vethPair(ns.r1, "up0", ns.srv, "u1");
    vethPair(ns.r2, "up0", ns.srv, "u2");
    ns.r1.addAddress("up0", "2001:db8:71::1/64");
    ns.srv.addAddress("u1", "2001:db8:71::547/64");
    ns.r2.addAddress("up0", "2001:db8:72::2/64");
    ns.srv.addAddress("u2", "2001:db8:72::547/64");
  },
});

/**
 * Starts the server (`extra` flags) and the relays `relays` ([name, argv]), their logs named
 * after `run` (each run its own files: a log of an earlier run would look ready); stops them
 * after `body` and resolves to the server's log.
 */
async function withServer(
  run: string,
  extra: string[],
  relays: [name: "r1" | "r2", argv: string[]][],
  body: () => void,
): Promise<string> {
  const names: string[] = [];
  try {
    names.push(`dstm-${run}`);
    await start(
      `dstm-${run}`,
      ns.srv,
      dhcp4o6ServerArgv({ listen6: "2001:db8:71::547", tep6: "2001:db8:71::99", extra }),
      / dhcp4o6 /,
    );
    for (const [name, argv] of relays) {
      names.push(`${name}-${run}`);
      // Ready when it sends on every downstream interface (-l).
      const down = argv.filter((_, i) => argv[i - 1] === "-l");
      await start(
        `${name}-${run}`,
        ns[name],
        [DHCRELAY, "-6", "-d", ...argv],
        new RegExp(down.map((d) => `(?=[\\s\\S]*Sending on +Socket/${d}\\b)`).join("")),
      );
    }
    body();
    return readFileSync(join(dir(), `dstm-${run}.out`), "utf8");
  } finally {
    for (const name of names.reverse()) await stopProcess(procs, name);
    if (process.env.I18_DEBUG)
      for (const name of names) console.log(name, readFileSync(join(dir(), `${name}.out`), "utf8"));
  }
}

interface Answer {
  readonly type: string;
  readonly yiaddr: string;
}

/** The client's DISCOVER and REQUEST, each heard twice: every answer (test/e2e_scripts/id18_4o6_copies.ts). */
function lease(last: number): { offers: Answer[]; acks: Answer[] } {
  return e2eJson(ns.c, "id18_4o6_copies.ts", ["eth0", String(last), "2"]);
}

/** One machine, one lease: both copies OFFER one address and both ACK it. */
function expectOneLease(got: { offers: Answer[]; acks: Answer[] }): void {
  expect(got.offers.map((o) => o.type)).toEqual(["OFFER", "OFFER"]);
  expect(new Set(got.offers.map((o) => o.yiaddr)).size).toBe(1); // before: two addresses
  expect(got.acks.map((a) => a.type)).toEqual(["ACK", "ACK"]); // before: ACK and NAK
  expect(got.acks[0]?.yiaddr).toBe(got.offers[0]?.yiaddr);
}

describe.skipIf(skip !== null)("a link-local 4o6 client heard two ways on its link", () => {
  test("(a) directly on the server's interface and through a relay of the link, the relays named: one lease", async () => {
    const log = await withServer(
      "a",
      // Named relays: only then may a direct client share its link's name with relayed ones
      // (else any host could pose as a relay of its link: atk18).
      ["--dhcp4o6-interface", "eth0", "--dhcp4o6-relay", "2001:db8:71::/64"],
      [["r1", ["-l", "l0", "-u", "2001:db8:71::547%up0"]]],
      () => expectOneLease(lease(1)),
    );
    expect(log).toMatch(/ allocate protocol=dhcp4o6 /);
  }, 90_000);

  test("(b) through two relays of the link, each with its own Interface-ID, the link declared: one lease", async () => {
    await withServer(
      "b",
      ["--dhcp4o6-link-prefix", "2001:db8:4::/64"],
      [
        ["r1", ["-I", "-l", "l0", "-u", "2001:db8:71::547%up0"]],
        ["r2", ["-I", "-l", "pad0", "-l", "l1", "-u", "2001:db8:72::547%up0"]],
      ],
      () => expectOneLease(lease(2)),
    );
  }, 90_000);

  test("(b) undeclared, two Interface-IDs stay two relays' names: two keys (never one for two links)", async () => {
    await withServer(
      "b-undeclared",
      process.env.I18_DEBUG ? ["--log-level", "debug"] : [],
      [
        ["r1", ["-I", "-l", "l0", "-u", "2001:db8:71::547%up0"]],
        ["r2", ["-I", "-l", "pad0", "-l", "l1", "-u", "2001:db8:72::547%up0"]],
      ],
      () => {
        const got = lease(3);
        expect(got.offers).toHaveLength(2);
        expect(new Set(got.offers.map((o) => o.yiaddr)).size).toBe(2);
      },
    );
  }, 90_000);
});
