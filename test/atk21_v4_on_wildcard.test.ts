/**
 * Red team of the source check on the server's wildcard listener (`--listen [::]:4607`,
 * lib/sys/udp_pktinfo.ts): the socket was dual-stack (IPV6_V6ONLY off, the kernel's default
 * net.ipv6.bindv6only=0), so an IPv4 datagram to any IPv4 address of the server's machine
 * arrived from `::ffff:a.b.c.d`; a DISCOVER whose HOST_IPV6 is that IPv4-mapped address
 * passed the source check and leased a pool address bound to `::ffff:…` — a sender on any
 * IPv4 network that reaches the server took leases of an IPv6-only service (bounded only by
 * the ::/64 prefix's rate and lease caps, which all IPv4 senders share). Both protocols on
 * that socket are IPv6-only (the native one; DHCPv4-over-DHCPv6, RFC 7341), so the socket is
 * IPv6-only now. Real `dstm server` in namespaces of this run; root only.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LeaseJson } from "../lib/control/lease_view.ts";
import { getUnix } from "../lib/sys/http.ts";
import { createNetns, vethPair } from "../lib/sys/netns.ts";
import { encodeMessage } from "../lib/wire/dstm.ts";
import { MessageType } from "../lib/wire/dstm_types.ts";
import { forgeUdp, hex } from "./helpers/attacker_link.ts";
import { BUN, ROOT } from "./helpers/process.ts";
import { eventually } from "./helpers/wait.ts";

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

describe("atk21: IPv4 senders and the server's [::] listener", () => {
  test.skipIf(process.getuid?.() !== 0)(
    "an IPv4 DISCOVER claiming its IPv4-mapped address gets no answer and no lease",
    async () => {
      const srv = createNetns("dstmatk21-");
      const evil = createNetns("dstmatk21-");
      const dir = mkdtempSync(join(tmpdir(), "atk21-v4-"));
      cleanup.push(() => {
        srv.delete();
        evil.delete();
        rmSync(dir, { recursive: true, force: true });
      });
      vethPair(evil, "eth0", srv, "eth0");
      srv.addAddress("eth0", "2001:db8:8::53/64");
      srv.addAddress("eth0", "198.51.100.53/24");
      evil.addAddress("eth0", "2001:db8:8::66/64");
      evil.addAddress("eth0", "198.51.100.66/24");
      const control = join(dir, "control.sock");
      const proc = srv.spawn(
        [
          ...[BUN, join(ROOT, "mod.ts"), "server", "--pool", "203.0.113.0/24"],
          ...["--tep", "2001:db8:8::1,192.0.2.1", "--listen", "[::]:4607", "--db", "memory"],
          ...["--control", control],
        ],
        { timeoutMs: 60_000, cwd: ROOT },
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
      const leases = async () =>
        ((await (await getUnix(control, "/v1/leases")).json()) as { leases: LeaseJson[] }).leases;
      const v4 = await forgeUdp(evil, {
        ...{ from: "198.51.100.66", fromPort: 0, to: "198.51.100.53", toPort: 4607 },
        datagrams: [
          hex(encodeMessage({ type: MessageType.DISCOVER, xid: 1, host6: "::ffff:198.51.100.66" })),
        ],
        listenMs: 800,
      });
      expect(v4.sent).toBe(1);
      // The same sender over IPv6 is answered: the listener is up and the link works.
      const v6 = await forgeUdp(evil, {
        ...{ from: "2001:db8:8::66", fromPort: 0, to: "2001:db8:8::53", toPort: 4607 },
        datagrams: [
          hex(encodeMessage({ type: MessageType.DISCOVER, xid: 2, host6: "2001:db8:8::66" })),
        ],
        listenMs: 800,
      });
      expect(v6.received).toBe(1);
      expect(v4.received).toBe(0);
      expect((await leases()).map((l) => l.hostIPv6)).toEqual(["2001:db8:8::66"]);
    },
  );
});
