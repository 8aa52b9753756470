/**
 * rtnetlink (lib/sys/netlink.ts) and sysctl (lib/sys/sysctl.ts) round trips in a fresh
 * namespace, checked against `ip -j` (root only). The calls run in
 * test/sys_scripts/netlink_ops.ts inside the namespace.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { cleanupNetns, createdNetns } from "../lib/sys/netns.ts";
import { announceSkip, netnsSkipReason, runScript, withNetns } from "./helpers/netns.ts";

const skip = netnsSkipReason();
announceSkip("sys_netlink", skip);

afterAll(() => cleanupNetns());

interface Attempt {
  ok: boolean;
  value?: unknown;
  isSysError?: boolean;
  code?: string;
  message?: string;
}
interface Route {
  dst: string;
  dev?: string;
  gateway?: string;
  table?: string;
  prefsrc?: string;
  metric?: number;
  scope?: string;
  protocol?: string;
  type?: string;
}
interface Snapshot {
  link: { ifname: string; mtu: number; txqlen: number; flags: string[] };
  addr: { family: string; local: string; prefixlen: number; tentative?: boolean }[];
  routes4: Route[];
  routes6: Route[];
}
interface NetlinkOps {
  index: number;
  applied: Snapshot;
  errors: Record<string, Attempt>;
  removed: Snapshot;
  sysctl: Record<string, string | Attempt>;
  deleted: { v0: string[] };
}

/** Routes we added: not kernel-made (protocol static), in any table. */
const ours = (routes: Route[]) => routes.filter((r) => r.protocol === "static");

describe.skipIf(skip !== null)("netlink and sysctl (namespace)", () => {
  test("link, address and route changes show up in ip -j, and go away again", async () => {
    const hostForward = readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8");
    await withNetns(
      async (ns) => {
        const r = await runScript<NetlinkOps>(ns, "netlink_ops.ts");
        expect(r.index).toBeGreaterThan(1);

        const a = r.applied;
        expect(a.link).toMatchObject({ ifname: "v0", mtu: 1400, txqlen: 5000 });
        expect(a.link.flags).toContain("UP");
        expect(a.addr).toContainEqual(
          expect.objectContaining({ family: "inet", local: "192.0.2.1", prefixlen: 24 }),
        );
        const v6 = a.addr.find((x) => x.local === "2001:db8:1::1");
        expect(v6).toMatchObject({ family: "inet6", prefixlen: 64 });
        expect(v6?.tentative).toBeUndefined(); // noDad: usable at once
        expect(a.addr.find((x) => x.local === "2001:db8:1::5")?.tentative).toBe(true);

        expect(ours(a.routes4)).toEqual(
          expect.arrayContaining([
            expect.objectContaining({ dst: "198.51.100.0/24", gateway: "192.0.2.254", dev: "v0" }),
            expect.objectContaining({
              dst: "203.0.113.0/24",
              dev: "v0",
              prefsrc: "192.0.2.1",
              metric: 50,
              scope: "link",
            }),
            expect.objectContaining({ dst: "default", dev: "v0", table: "100", scope: "link" }),
            expect.objectContaining({ dst: "default", dev: "v0", table: "1000" }),
          ]),
        );
        expect(ours(a.routes4)).toHaveLength(4);
        expect(ours(a.routes6)).toEqual(
          expect.arrayContaining([
            expect.objectContaining({ dst: "2001:db8:2::/48", dev: "v0" }),
            expect.objectContaining({ dst: "default", gateway: "2001:db8:1::fe", table: "100" }),
          ]),
        );
        expect(ours(a.routes6)).toHaveLength(2);

        const removed = r.removed;
        expect(removed.link.flags).not.toContain("UP");
        // Deleted by addressDel, and 2001:db8:1::5 went with linkSetDown (IPv6 addresses are
        // flushed when a link goes down unless keep_addr_on_down is set).
        expect(removed.addr).toEqual([]);
        expect(ours(removed.routes4)).toEqual([]);
        expect(ours(removed.routes6)).toEqual([]);
        expect(r.deleted.v0).toEqual(["lo"]); // linkDelete took v0 and its peer v1

        // The namespace's sysctls changed, the machine's did not.
        expect(r.sysctl.forwardBefore).toBe("0");
        expect(r.sysctl.forwardAfter).toBe("1");
        expect(r.sysctl.rpFilter).toBe("2");
        expect(readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8")).toBe(hostForward);
      },
      { veth: true },
    );
  });

  test("refusals are SysErrors with the errno name and a clear reason", async () => {
    await withNetns(
      async (ns) => {
        const { errors: e, sysctl } = await runScript<NetlinkOps>(ns, "netlink_ops.ts");
        expect(e.addrTwice).toMatchObject({ ok: false, isSysError: true, code: "EEXIST" });
        expect(e.addrTwice!.message).toStartWith("addr add 192.0.2.1/24 dev v0: EEXIST: ");
        expect(e.routeTwice).toMatchObject({ code: "EEXIST" });
        expect(e.routeTwice!.message).toContain("already exists");
        expect(e.routeMissing).toMatchObject({ code: "ESRCH" });
        expect(e.viaOffLink).toMatchObject({ ok: false, isSysError: true, code: "EHOSTUNREACH" });
        expect(e.viaOffLink!.message).toContain("next hop is not on a directly connected network");
        expect(e.mtuMissing).toMatchObject({ code: "ENODEV" });
        expect(e.mtuMissing!.message).toBe(
          "link set nosuch0 mtu 1400: ENODEV: no interface nosuch0",
        );
        expect(e.badCidr).toMatchObject({ code: "EINVAL" });
        expect(e.mixedFamilies).toMatchObject({ code: "EINVAL" });
        expect(e.noDevNoVia).toMatchObject({ code: "EINVAL" });
        expect(e.addrMissing).toMatchObject({ code: "EADDRNOTAVAIL" });
        expect(sysctl.missing).toMatchObject({ ok: false, code: "ENOENT" });
        expect(sysctl.badValue).toMatchObject({ ok: false, code: "EINVAL" });
        expect(sysctl.badKey).toMatchObject({ ok: false, code: "EINVAL" });
      },
      { veth: true },
    );
    expect(createdNetns()).toEqual([]);
  });
});
