/**
 * Kernel peers with checksum offload left on (issue 9 item 6), as root in namespaces:
 *
 * 1. a host whose own kernel does 4over6 (seg6 `encap.red` out, End.DX4 in) on a veth, as the
 *    peer of `dstm tep`: TCP (a 300 KB file over HTTP) in both directions;
 * 2. `dstm client` towards a kernel TEP (End.DX4 in, seg6 `encap.red` back): the same.
 *
 * Over a veth the kernel sender leaves the inner TCP checksum to the hardware
 * (CHECKSUM_PARTIAL); without lib/net/csum_partial.ts the IPv4 peer drops every segment.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Netns, vethPair } from "../lib/sys/netns.ts";
import { clientCounters } from "./helpers/daemon.ts";
import { clientBehindKernelTep } from "./helpers/kernel_tep.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { processScope } from "./helpers/process_scope.ts";
import { kernelHostBehindTep } from "./helpers/seg6_host.ts";
import { tepArgv, tepCounters } from "./helpers/tep_argv.ts";
import { waitUntil } from "./helpers/wait.ts";

const skip =
  netnsSkipReason({ tun: true }) ??
  (Bun.which("curl") && Bun.which("python3") ? null : "needs curl and python3");
announceSkip("kernel_peers", skip);

const scope = processScope("dstm-kpeers-", "dstmk-");
const { dir, ns, spawnIn: spawnDstmIn } = scope;

const FILE_BYTES = 300_000;

/** Starts python's web server serving `dir` on `address`:8080 inside `where`. */
async function webServer(where: Netns, address: string): Promise<void> {
  const proc = where.spawn(
    ["python3", "-m", "http.server", "8080", "--bind", address, "--directory", dir],
    { timeoutMs: 120_000 },
  );
  scope.track(proc);
  await waitUntil(
    () =>
      where.exec(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", `http://${address}:8080/`])
        .stdout === "200",
    { timeoutMs: 15_000, intervalMs: 100, what: `python3 http.server on ${address}` },
  );
}

/** curl of the test file from `where`: the bytes received (0 when it failed). */
function fetchFile(where: Netns, url: string): { bytes: number; stderr: string } {
  const r = where.exec(
    ["curl", "-s", "-S", "--max-time", "20", "-o", "/dev/null", "-w", "%{size_download}", url],
    { timeoutMs: 30_000 },
  );
  return { bytes: r.code === 0 ? Number(r.stdout) : 0, stderr: r.stderr };
}

/** A field of the `Ip:` line of /proc/net/snmp inside `where` (per namespace). */
function ipv4Snmp(where: Netns, field: string): number {
  const lines = where
    .exec(["cat", "/proc/net/snmp"])
    .stdout.split("\n")
    .filter((l) => l.startsWith("Ip:"));
  const names = lines[0]!.split(/\s+/);
  const values = lines[1]!.split(/\s+/);
  return Number(values[names.indexOf(field)]);
}

function offloadsOn(where: Netns, ifname: string): void {
  // Offloads are on by default on a veth; say so explicitly where ethtool exists.
  if (Bun.which("ethtool")) where.exec(["ethtool", "-K", ifname, "tx", "on"]);
}

/**
 * host ──veth── tep ──veth── web: three namespaces of this run. The first link is IPv6
 * (`host6`/64 on the host's `ifs[0]`, `tep6`/64 on the TEP's `ifs[1]`), the second IPv4 (the
 * TEP's `ifs[2]` 192.0.2.1/24, the web server's w0 192.0.2.80/24 routing through it, offloads
 * on). The callers add the tunnel routes.
 */
function tepBetween(ifs: readonly [string, string, string], host6: string, tep6: string) {
  const [hostIf, tepIn, tepOut] = ifs;
  const host = ns();
  const tep = ns();
  const web = ns();
  vethPair(host, hostIf, tep, tepIn);
  vethPair(tep, tepOut, web, "w0");
  offloadsOn(web, "w0");
  host.addAddress(hostIf, `${host6}/64`);
  tep.addAddress(tepIn, `${tep6}/64`);
  tep.addAddress(tepOut, "192.0.2.1/24");
  web.addAddress("w0", "192.0.2.80/24");
  web.addRoute("default", "via", "192.0.2.1");
  return { host, tep, web };
}

beforeAll(() => {
  // Random bytes (getRandomValues fills at most 64 KiB at a time).
  const data = new Uint8Array(FILE_BYTES);
  for (let at = 0; at < FILE_BYTES; at += 65536)
    crypto.getRandomValues(data.subarray(at, Math.min(FILE_BYTES, at + 65536)));
  writeFileSync(join(dir, "big.bin"), data);
});

describe.skipIf(skip !== null)("kernel 4over6 peers with checksum offload on", () => {
  // Plain, and with the TEP's AF_PACKET receive ring (lib/sys/packet_ring.ts): the host's 64 KiB
  // TSO packets come through its socket queue in ring order, everything else through frames.
  test.each([[[] as string[]], [["--rx-ring"]]])(
    "a seg6 encap.red host behind dstm tep %p: TCP both ways",
    async (extra) => {
      // host (kernel 4over6) ──veth── tep (dstm tep) ──veth── web (IPv4)
      const { host, tep, web } = tepBetween(["h0", "t0", "t1"], "2001:db8:1::11", "2001:db8:1::1");
      offloadsOn(host, "h0");
      // The host: IPv4 198.51.100.10, tunnel address 2001:db8:1::10 (the End.DX4 SID).
      const binding = kernelHostBehindTep(host, tep, "198.51.100.10");
      const socket = join(dir, `tep${extra.length}.sock`);
      // The server is on another host of the link; the channel is not under test here.
      const tepProc = spawnDstmIn(tep, [
        ...tepArgv({ staticBinding: { binding, stats: socket } }),
        ...extra,
      ]);
      const start = await tepProc.waitFor(/tep-start/, 20_000);
      expect(start).toContain(extra.length > 0 ? "rx-ring=on" : "rx-ring=off");
      await webServer(web, "192.0.2.80");
      await webServer(host, "198.51.100.10");

      // host → web: the host's ACKs and request are CHECKSUM_PARTIAL.
      const down = fetchFile(host, "http://192.0.2.80:8080/big.bin");
      expect(down.stderr).toBe("");
      expect(down.bytes).toBe(FILE_BYTES);
      // web → host: the host sends the 300 KB, every segment CHECKSUM_PARTIAL.
      const up = fetchFile(web, "http://198.51.100.10:8080/big.bin");
      if (up.stderr) {
        console.log(JSON.stringify(tepCounters(tep, socket)));
        console.log(
          tep
            .exec(["nstat", "-az"])
            .stdout.split("\n")
            .filter((l) => !/ 0 /.test(l) && /Ip|Icmp/.test(l))
            .join("\n"),
        );
        console.log(tep.exec(["ip", "-s", "link"]).stdout);
      }
      expect(up.stderr).toBe("");
      expect(up.bytes).toBe(FILE_BYTES);
      const counters = tepCounters(tep, socket);
      expect(counters["decap-csum-completed"]).toBeGreaterThan(0);
      // No decapsulated packet was too big for the IPv4 side (TSO packets are cut first).
      expect(ipv4Snmp(tep, "FragFails")).toBe(0);
      if (extra.length > 0) {
        // Everything came through the ring, the host's TSO packets through its queue, none lost.
        expect(counters["decap-ring"]).toBe(counters["decap-forward"]);
        expect(counters["decap-ring-long"]).toBeGreaterThan(0);
        expect(counters["decap-ring-lost"]).toBe(0);
      } else expect(counters["decap-ring"]).toBe(0);
    },
    90_000,
  );

  test("dstm client towards a kernel TEP (End.DX4 in, seg6 encap.red back): TCP both ways", async () => {
    // host (dstm client) ──veth── ktep (kernel TEP + dstm server) ──veth── web (IPv4)
    const {
      host,
      tep: ktep,
      web,
    } = tepBetween(["c0", "k0", "k1"], "2001:db8:2::10", "2001:db8:2::2");
    const leased = await clientBehindKernelTep(host, ktep, spawnDstmIn, join(dir, "client.sock"));
    await webServer(web, "192.0.2.80");
    await webServer(host, leased);

    // host → web: the web server's 300 KB reach the client CHECKSUM_PARTIAL.
    const down = fetchFile(host, "http://192.0.2.80:8080/big.bin");
    expect(down.stderr).toBe("");
    expect(down.bytes).toBe(FILE_BYTES);
    // web → host: the web server's ACKs and request reach the client CHECKSUM_PARTIAL.
    const up = fetchFile(web, `http://${leased}:8080/big.bin`);
    expect(up.stderr).toBe("");
    expect(up.bytes).toBe(FILE_BYTES);
    const counters = clientCounters(host, join(dir, "client.sock"));
    expect(counters["client-decap-csum-completed"]).toBeGreaterThan(0);
  }, 90_000);
});
