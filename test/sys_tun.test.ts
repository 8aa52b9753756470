/**
 * TUN devices and their configuration over netlink, in a fresh network namespace (root only).
 * The work happens in test/sys_scripts/tun_*.ts, run with `ip netns exec`.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { cleanupNetns } from "../lib/sys/netns.ts";
import { announceSkip, netnsSkipReason, runScript, SCRIPTS, withNetns } from "./helpers/netns.ts";
import { AS_NOBODY, type NobodyKit, nobodyKit } from "./helpers/nobody.ts";

const skip = netnsSkipReason({ tun: true });
announceSkip("sys_tun", skip);

afterAll(() => cleanupNetns());

/** Bun and a bundle of the script nobody runs, in a 0755 directory (see helpers/nobody.ts). */
const nobody: NobodyKit | string = skip ?? nobodyKit();
afterAll(() => {
  if (typeof nobody !== "string") nobody.remove();
});
/** Why the unprivileged run cannot happen here. */
function nobodySkipReason(): string | null {
  return typeof nobody === "string" ? nobody : null;
}
const nobodySkip = nobodySkipReason();
announceSkip("sys_tun (as nobody)", nobodySkip === skip ? null : nobodySkip);

interface TunPing {
  name: string;
  link: { ifname: string; mtu: number; txqlen: number; flags: string[] }[];
  addr: { addr_info: { local: string; prefixlen: number }[] }[];
  routes: { dst: string; dev: string }[];
  seen: { length: number; src: string; dst: string; proto: number }[];
  request: string;
  wrote: number;
  pingResult: { ok: boolean; rttMs: number; from: string };
  idle: number;
  idleMs: number;
}

interface Attempt {
  ok: boolean;
  value?: unknown;
  isSysError?: boolean;
  code?: string;
  message?: string;
}

describe.skipIf(skip !== null)("TUN (namespace)", () => {
  test("openTun + netlink config: a ping via the default route is read from the TUN and answered", async () => {
    await withNetns(async (ns) => {
      const r = await runScript<TunPing>(ns, "tun_ping.ts");
      expect(r.name).toBe("dti0");
      const link = r.link[0]!;
      expect(link.mtu).toBe(1460);
      expect(link.txqlen).toBe(5000);
      expect(link.flags).toContain("UP");
      expect(r.addr[0]!.addr_info).toContainEqual(
        expect.objectContaining({ local: "192.0.2.2", prefixlen: 32 }),
      );
      expect(r.routes).toContainEqual(expect.objectContaining({ dst: "default", dev: "dti0" }));
      // The echo request left through the TUN, from the TUN's address.
      expect(r.seen).toContainEqual({ length: 60, src: "192.0.2.2", dst: "192.0.2.99", proto: 1 });
      expect(r.request.slice(0, 2)).toBe("45");
      expect(r.wrote).toBe(60);
      // The crafted reply written into the TUN reached the pinger.
      expect(r.pingResult.ok).toBe(true);
      expect(r.pingResult.from).toBe("192.0.2.99");
      // With nothing queued, read() returns 0 after the poll timeout (100 ms here), not
      // before; a read that blocked for good would hang the script past its time limit.
      expect(r.idle).toBe(0);
      expect(r.idleMs).toBeGreaterThanOrEqual(90);
    });
  });

  test("openTun on a name in use and netlink on a missing interface give clear SysErrors", async () => {
    await withNetns(
      async (ns) => {
        const r = await runScript<Record<string, Attempt>>(ns, "tun_errors.ts");
        expect(r.vethName).toMatchObject({ ok: false, isSysError: true });
        expect(r.vethName!.message).toContain("interface v0 already exists");
        expect(r.tunInUse).toMatchObject({ ok: false, isSysError: true, code: "EBUSY" });
        expect(r.tunInUse!.message).toContain("interface dti0 already exists");
        expect(r.badName).toMatchObject({ ok: false, code: "EINVAL" });
        expect(r.mtuMissing).toMatchObject({ ok: false, isSysError: true, code: "ENODEV" });
        expect(r.mtuMissing!.message).toContain("no interface nosuch0");
        expect(r.upMissing).toMatchObject({ ok: false, code: "ENODEV" });
        expect(r.mtuTooSmall).toMatchObject({ ok: false, code: "EINVAL" });
        expect(r.pattern).toMatchObject({ ok: true, value: "dti1" });
        // Closing the last fd deletes a non-persistent TUN, so its name is free again.
        expect(r.reopened).toMatchObject({ ok: true });
      },
      { veth: true },
    );
  });

  test.skipIf(nobodySkip !== null)("without privileges every call says what it needs", async () => {
    await withNetns(async (ns) => {
      const kit = nobody as NobodyKit;
      const script = kit.bundle(join(SCRIPTS, "unprivileged.ts"));
      const r = ns.exec([...AS_NOBODY, kit.bun, script], { timeoutMs: 20_000, cwd: kit.dir });
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as Record<string, Attempt>;
      expect(out.tun).toMatchObject({ ok: false, isSysError: true });
      expect(out.tun!.message).toContain("creating a TUN device needs root or CAP_NET_ADMIN");
      expect(out.raw6).toMatchObject({ ok: false, code: "EPERM" });
      expect(out.raw6!.message).toContain("needs root or CAP_NET_RAW");
      expect(out.mtu).toMatchObject({ ok: false, code: "EPERM" });
      expect(out.mtu!.message).toContain("needs root or CAP_NET_ADMIN");
      expect(out.sysctl).toMatchObject({ ok: false, isSysError: true });
      expect(out.sysctl!.message).toContain("needs root");
    });
  });
});
