/**
 * The kernel DTIs behind a narrow IPv6 path (verification round 17), as root in namespaces:
 *
 *   host (dstm client) c0 ── r1 ══ r2 ── core (server 2001:db8:7::53, TEP 2001:db8:7::1) ── web
 *   2001:db8:17:1::10/64        ║                k1 192.0.2.1/24            192.0.2.80
 *                        the r1 ⇄ r2 link: MTU 1400, Packet Too Big from the routers intact
 *
 * The TUN DTI passes every case below (its Workers learn the path MTU from Packet Too Big and
 * let the kernel fragment the outer packet). Found broken:
 *
 * 1. `--dti kernel` where the kernel has no ip6tnl (the seg6 DTI, lib/client/seg6_dti.ts):
 *    nothing on the host takes the routers' Packet Too Big for next header 4 (no ip6_tunnel
 *    module, no raw socket), so the kernel never records the path MTU towards the TEP
 *    (`ip -6 route get TEP` shows no `mtu`). Every outer packet above 1400 bytes is lost for
 *    ever: a 1478-byte IPv4 datagram without DF (ping -M dont -s 1450) never arrives, 0 of
 *    10; a 1428-byte DF one is dropped without "fragmentation needed".
 * 2. `--dti tun --kernel-encap`: the Workers learn 1400, but they hand the host's IPv4 packets
 *    (fragmented at the DTI's 1460) back to the kernel, whose seg6 encapsulation of a
 *    forwarded packet never fragments the outer header (Ip6FragFails, a Packet Too Big sent
 *    to itself): every IPv4 packet between 1361 and 1460 bytes without DF is lost for ever.
 *
 * Each test asks for the ping to get through within 15 s (time to learn the path MTU), so it
 * fails on the code before the fix however slow the machine.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import type { Netns } from "../lib/sys/netns.ts";
import { dtiSuite, labClientArgv, startLabCore, tearDownLab } from "./helpers/dti_lab.ts";
import { narrowLab } from "./helpers/narrow_lab.ts";
import { type DstmProcess, spawnDstm } from "./helpers/process.ts";
import { eventually } from "./helpers/wait.ts";

const { skip, dir, made } = dtiSuite("ver17 narrow path, kernel DTIs", "dstm-v17n-");
const procs: DstmProcess[] = [];
afterAll(() => tearDownLab({ procs, made, dir }));

const NARROW = 1400;

/** One ping of `size` payload bytes (IPv4 total size + 28) from `host` to the web server. */
function ping(host: Netns, size: number, df: boolean): { ok: boolean; text: string } {
  const r = host.exec([
    "ping",
    "-c",
    "1",
    "-W",
    "1",
    "-M",
    df ? "do" : "dont",
    "-s",
    String(size),
    "192.0.2.80",
  ]);
  return { ok: r.code === 0, text: r.stdout + r.stderr };
}

async function clientBehindNarrowPath(
  dti: readonly string[],
  ifname: string,
  onWeb?: (web: Netns) => void,
) {
  process.env.DSTM_RUNTIME_DIR = mkdtempSync(join(dir, "rt-"));
  const { host, core, web } = narrowLab(made, NARROW);
  onWeb?.(web);
  procs.push(...(await startLabCore(core, { leaseTime: 600 })));
  const client = spawnDstm(
    labClientArgv(dti[0]!, ifname, [...dti.slice(1), "--control", join(dir, `${ifname}.sock`)]),
    {},
    host.name,
  );
  procs.push(client);
  await client.waitFor(/ bound /, 30_000);
  // Neighbours on every link, the lease at the TEP: a small ping gets through first (small:
  // nothing on the path learns its MTU from it).
  expect(
    await eventually(() => ping(host, 56, false).ok, { timeoutMs: 20_000, intervalMs: 200 }),
  ).toBe(true);
  return host;
}

describe.skipIf(skip !== null)("kernel DTIs behind a 1400-byte IPv6 link", () => {
  test.each([
    ["--dti tun", ["tun"], "v17t0"],
    ["--dti tun --kernel-encap", ["tun", "--kernel-encap"], "v17e0"],
    ["--dti kernel", ["kernel"], "v17k0"],
  ])(
    "%s: a 1478-byte IPv4 datagram without DF gets through once the path MTU is known; a DF one gets 'fragmentation needed'",
    async (_name, dti, ifname) => {
      const host = await clientBehindNarrowPath(dti, ifname);
      // Without DF: fragmented somewhere (inner or outer) so that it fits the 1400-byte link.
      const through = await eventually(() => ping(host, 1450, false).ok, {
        timeoutMs: 15_000,
        intervalMs: 100,
      });
      const route = host.ip("-6", "route", "get", "2001:db8:7::1").trim();
      expect({ through, route }).toEqual({
        through: true,
        route: expect.stringMatching(/mtu 1400/),
      });
      // With DF (1428 bytes, under the DTI's 1460): refused with the tunnel's MTU (1400 − 40),
      // not lost in silence.
      const df = ping(host, 1400, true);
      expect(df.ok).toBe(false);
      expect(df.text).toMatch(/mtu ?= ?1360/);
    },
    90_000,
  );

  test.each([
    ["--dti tun --kernel-encap", ["tun", "--kernel-encap"], "v17f0"],
    ["--dti kernel", ["kernel"], "v17l0"],
  ])(
    "%s: a 1 MB TCP upload, the first thing the host sends through the narrow link, completes",
    async (_name, dti, ifname) => {
      const host = await clientBehindNarrowPath(dti, ifname, (web) => {
        // A sink on the web server: one connection, prints the bytes it read.
        sink = web.spawn(
          [
            "python3",
            "-c",
            [
              "import socket",
              "s = socket.create_server(('192.0.2.80', 9000))",
              "c, _ = s.accept()",
              "n = 0",
              "while (b := c.recv(65536)):",
              "    n += len(b)",
              "print(n, flush=True)",
            ].join("\n"),
          ],
          { timeoutMs: 60_000 },
        );
      });
      const s = sink!;
      const upload = host.exec(
        [
          "python3",
          "-c",
          [
            "import socket, time",
            "deadline = time.monotonic() + 10",
            "while True:  # until the sink listens",
            "    try:",
            "        c = socket.create_connection(('192.0.2.80', 9000), timeout=5)",
            "        break",
            "    except ConnectionRefusedError:",
            "        if time.monotonic() > deadline: raise",
            "        time.sleep(0.05)",
            "c.settimeout(15)",
            "c.sendall(b'x' * 1_000_000)",
            "c.close()",
          ].join("\n"),
        ],
        { timeoutMs: 30_000 },
      );
      // close() returns once the bytes are queued, not delivered: the sink counts what it read
      // and exits at end of stream. Wait for that (with a deadline), never kill it first.
      const ended = await eventually(() => s.exitCode !== null, {
        timeoutMs: 20_000,
        intervalMs: 50,
      });
      if (!ended) s.kill("SIGTERM");
      const [out, sinkErr] = await Promise.all([
        new Response(s.stdout).text(),
        new Response(s.stderr).text(),
      ]);
      expect({
        code: upload.code,
        err: upload.stderr,
        ended,
        sinkErr,
        received: out.trim().split("\n").at(-1),
      }).toEqual({
        code: 0,
        err: "",
        ended: true,
        sinkErr: "",
        received: "1000000",
      });
    },
    90_000,
  );
});

let sink: Bun.Subprocess<"ignore", "pipe", "pipe"> | undefined;
afterAll(() => sink?.kill("SIGKILL"));
