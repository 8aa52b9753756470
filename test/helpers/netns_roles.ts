/**
 * The set-up of a test file whose processes run in namespaces named after their roles (client,
 * relay, server …), made once for the file: shared by the real-server DHCPv4-over-DHCPv6 link
 * tests (test/atk18_dhcp4o6_link_names, test/id18_dhcp4o6_one_link,
 * test/ver17_relay_link_local). The skip reason, one namespace a role without IPv6 DAD
 * (./kea.ts createNoDadNetns), a temporary directory for the processes' logs, a starter
 * (./kea.ts netnsStarter), and the teardown (processes stopped by PID, namespaces and
 * directory deleted) in `afterAll`, also when a test failed; and the `dstm server --dhcp4o6`
 * command line they start ({@link dhcp4o6ServerArgv}). Each file keeps its topology.
 */
import { afterAll, beforeAll } from "bun:test";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Netns } from "../../lib/sys/netns.ts";
import { createNoDadNetns, netnsStarter, tearDown } from "./kea.ts";
import { announceSkip, netnsSkipReason } from "./netns.ts";
import { BUN, ROOT } from "./process.ts";

/** ISC `dhcrelay` (Debian isc-dhcp-relay). */
export const DHCRELAY = "/usr/sbin/dhcrelay";

/** Why ISC dhcrelay cannot run here, or null. */
export function dhcrelayMissing(): string | null {
  return existsSync(DHCRELAY) ? null : "needs ISC dhcrelay (apt-get install isc-dhcp-relay)";
}

export interface NetnsRoles<R extends string> {
  /** Why the file's tests cannot run here (root, namespaces, `needs`), or null. */
  readonly skip: string | null;
  /** A namespace a role, filled in `beforeAll`. */
  readonly ns: Record<R, Netns>;
  /** The temporary directory ("" before `beforeAll`): a started process's log is DIR/NAME.out. */
  dir(): string;
  /** Every process `start` started, by name (stopped in `afterAll`). */
  readonly procs: Map<string, Bun.Subprocess>;
  /** ./kea.ts netnsStarter over `procs` and `dir()`. */
  readonly start: ReturnType<typeof netnsStarter>;
}

/**
 * Registers, for the suite `name` (its skip announced), a `beforeAll` (60 s) that makes the
 * directory (`dirPrefix`…) and a namespace a role (`nsPrefix` + role + `-`…), then runs
 * `setup` (links, addresses, long-lived processes), and an `afterAll` (60 s) that tears it all
 * down. `needs` is a further skip reason (a missing program), checked after the namespaces'.
 */
export function netnsRoles<R extends string>(
  name: string,
  o: {
    roles: readonly R[];
    nsPrefix: string;
    dirPrefix: string;
    needs?: string | null;
    setup(suite: NetnsRoles<R>): unknown;
  },
): NetnsRoles<R> {
  const skip = netnsSkipReason() ?? o.needs ?? null;
  announceSkip(name, skip);
  let dir = "";
  const procs = new Map<string, Bun.Subprocess>();
  const suite: NetnsRoles<R> = {
    skip,
    ns: {} as Record<R, Netns>,
    dir: () => dir,
    procs,
    start: netnsStarter(procs, () => dir),
  };
  beforeAll(async () => {
    if (skip) return;
    dir = mkdtempSync(join(tmpdir(), o.dirPrefix));
    for (const role of o.roles) suite.ns[role] = createNoDadNetns(`${o.nsPrefix}${role}-`);
    await o.setup(suite);
  }, 60_000);
  afterAll(async () => {
    if (!skip) await tearDown(procs, Object.values<Netns>(suite.ns), dir);
  }, 60_000);
  return suite;
}

/**
 * Makes `address` (default fe80::10/64) the only link-local address of `dev` in `host`: a
 * host with a static link-local address, as two hosts on two links may share (RFC 4291
 * §2.5.6).
 */
export function onlyLinkLocal(host: Netns, dev: string, address = "fe80::10/64"): void {
  host.ip("addr", "flush", "dev", dev, "scope", "link");
  host.addAddress(dev, address);
}

/** The 4o6 server identifier of {@link dhcp4o6ServerArgv} (DHCPv4 option 54, RFC 2132 §9.7). */
export const DHCP4O6_SERVER_ID = "203.0.113.53";

/**
 * `bun mod.ts server` serving DHCPv4-over-DHCPv6 (RFC 7341) as the real-server link suites run
 * it: pool 198.51.100.200/29, TEP `tep6` / 192.0.2.1, listening on [`listen6`]:4607, leases
 * in memory, no control socket, server identifier {@link DHCP4O6_SERVER_ID}, then `extra`.
 */
export function dhcp4o6ServerArgv(o: {
  listen6: string;
  tep6: string;
  extra?: readonly string[];
}): string[] {
  return [
    BUN,
    join(ROOT, "mod.ts"),
    "server",
    ...["--pool", "198.51.100.200/29", "--tep", `${o.tep6},192.0.2.1`],
    ...["--listen", `[${o.listen6}]:4607`, "--db", "memory", "--no-control"],
    ...["--dhcp4o6", "--dhcp4o6-server-id", DHCP4O6_SERVER_ID, ...(o.extra ?? [])],
  ];
}
