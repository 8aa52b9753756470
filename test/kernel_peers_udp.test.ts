/**
 * UDP through a real `dstm tep` between kernel peers (the UDP twin of kernel_peers.test.ts),
 * as root in namespaces: a host whose own kernel does 4over6 (seg6 `encap.red` out, End.DX4
 * in, checksum offload on) ── dstm tep ── an IPv4 server. The datagrams are sent and checked
 * by the kernel's sockets (test/fixtures/udp/datagrams.py): numbered, of mixed sizes, two
 * flows interleaved in bursts.
 *
 * - host → server: the TEP coalesces each flow's runs (lib/tunnel/gro_udp.ts) and writes
 *   UDP_L4 super-datagrams to its TUN: every datagram arrives intact, in order, once, and is
 *   counted in `decap-forward`; the TUN took fewer packets than there were datagrams.
 * - server → host: a UDP_SEGMENT sender's super-datagrams reach the TEP's TUN whole (USO),
 *   are cut (lib/net/udp_segment.ts) and every datagram is encapsulated on its own: all arrive.
 *
 * And the client's side, with the kernel as the TEP (End.DX4 in, seg6 `encap.red` back) and
 * `dstm client` on the host (userspace DTI):
 * - web → host (`--udp-gro`): the client coalesces each flow's runs into UDP_L4
 *   super-datagrams written to its DTI (ClientInBatch, gro_udp.ts): every datagram reaches the
 *   host's socket intact, in order, once; the DTI took fewer writes than there were datagrams.
 * - host → web: a UDP_SEGMENT sender on the host hands the DTI super-datagrams, the client
 *   cuts them and encapsulates each datagram: all arrive at the web server.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { type Netns, vethPair } from "../lib/sys/netns.ts";
import { clientCounters } from "./helpers/daemon.ts";
import { clientBehindKernelTep } from "./helpers/kernel_tep.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { type DstmProcess, ROOT, spawnDstm } from "./helpers/process.ts";
import { processScope } from "./helpers/process_scope.ts";
import { kernelHostTepWeb } from "./helpers/seg6_host.ts";
import { tepArgv, tepCounters } from "./helpers/tep_argv.ts";
import { kernelHasTunUso } from "./helpers/udp_packets.ts";
import { waitUntil } from "./helpers/wait.ts";

const skip = netnsSkipReason({ tun: true }) ?? (Bun.which("python3") ? null : "needs python3");
announceSkip("kernel_peers_udp", skip);

const scope = processScope("dstm-kpeers-udp-", "dstmu-");
const { dir, ns, spawnIn } = scope;

const SCRIPT = join(ROOT, "test", "fixtures", "udp", "datagrams.py");
const PER_FLOW = 600;
const GSO_SENDS = 30; // × 10 datagrams

interface Received {
  count: number;
  bad: number;
  inOrder: boolean;
  flows: Record<string, number>;
}

/**
 * Starts the receiver in `where` and waits until it is bound; `report` resolves once it has
 * `expected` datagrams or heard nothing for 10 s.
 */
async function receiver(
  where: Netns,
  address: string,
  port: number,
  expected: number,
): Promise<{ report: Promise<Received> }> {
  const proc = where.spawn(["python3", SCRIPT, "recv", address, String(port), String(expected)], {
    timeoutMs: 60_000,
  });
  scope.track(proc);
  const reader = proc.stdout.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const readUntil = async (done: () => boolean) => {
    while (!done()) {
      const chunk = await reader.read();
      if (chunk.done) return;
      text += decoder.decode(chunk.value, { stream: true });
    }
  };
  // The receiver is bound once it says "ready" (it exits after 10 s without a datagram).
  await readUntil(() => text.includes("ready\n"));
  if (!text.includes("ready\n"))
    throw new Error(`UDP receiver: ${await new Response(proc.stderr).text()}`);
  const report = (async () => {
    await readUntil(() => false);
    await proc.exited;
    return JSON.parse(text.trim().split("\n").at(-1)!) as Received;
  })();
  return { report };
}

/**
 * Sends two flows of PER_FLOW numbered datagrams from `from` (`src`) to `to` (`dst`:7000) and
 * checks that all arrive intact, in order, once.
 */
async function twoFlows(from: Netns, src: string, to: Netns, dst: string): Promise<void> {
  const up = await receiver(to, dst, 7000, 2 * PER_FLOW);
  const send = from.exec(
    ["python3", SCRIPT, "send", src, dst, "7000", String(PER_FLOW), "41000", "41001"],
    { timeoutMs: 30_000 },
  );
  expect(send.stderr).toBe("");
  expect(await up.report).toEqual({
    count: 2 * PER_FLOW,
    bad: 0,
    inOrder: true,
    flows: { "0": PER_FLOW, "1": PER_FLOW },
  });
}

/**
 * Sends GSO_SENDS UDP_SEGMENT super-datagrams of 10 × 200 bytes from `from` (`src`) to `to`
 * (`dst`:7001) and checks that all 10 × GSO_SENDS datagrams arrive intact, in order, once.
 */
async function segmented(from: Netns, src: string, to: Netns, dst: string): Promise<void> {
  const down = await receiver(to, dst, 7001, 10 * GSO_SENDS);
  const gso = from.exec(["python3", SCRIPT, "gso", src, dst, "7001", String(GSO_SENDS)], {
    timeoutMs: 30_000,
  });
  expect(gso.stderr).toBe("");
  expect(await down.report).toEqual({
    count: 10 * GSO_SENDS,
    bad: 0,
    inOrder: true,
    flows: { "0": 10 * GSO_SENDS },
  });
}

function linkStats(where: Netns, ifname: string): { rx: number; tx: number } {
  const j = where.ipJson<{ stats64: { rx: { packets: number }; tx: { packets: number } } }[]>(
    "-s",
    "link",
    "show",
    ifname,
  );
  return { rx: j[0]!.stats64.rx.packets, tx: j[0]!.stats64.tx.packets };
}

describe.skipIf(skip !== null)("UDP between kernel 4over6 peers through dstm tep", () => {
  // Plain, and with the TEP's AF_PACKET receive ring (lib/sys/packet_ring.ts).
  test.each([[[] as string[]], [["--rx-ring"]]])(
    "datagrams arrive intact, in order, counted; the TEP %p coalesced and cut them",
    async (extra) => {
      const { host, tep, web, binding } = kernelHostTepWeb(ns);
      for (const [where, ifname] of [
        [host, "h0"],
        [web, "w0"],
      ] as const)
        if (Bun.which("ethtool")) where.exec(["ethtool", "-K", ifname, "tx", "on"]);
      const socket = join(dir, `tep${extra.length}.sock`);
      const tepProc: DstmProcess = spawnDstm(
        [...tepArgv({ staticBinding: { binding, stats: socket } }), ...extra],
        {},
        tep.name,
      );
      scope.track({ kill: (s) => tepProc.proc.kill(s), exited: tepProc.exited });
      const start = await tepProc.waitFor(/tep-start/, 20_000);
      // UDP segmentation offload on the TUN needs Linux ≥ 6.2; without it the TEP says so and
      // writes every datagram on its own (TCP offloads only): delivery must hold either way.
      const uso = /offload=tcp,udp/.test(start);
      expect(uso).toBe(kernelHasTunUso());
      if (!uso) {
        expect(start).toMatch(/offload=tcp\b/);
        console.log("kernel_peers_udp: the kernel refused TUN_F_USO4/6: no UDP coalescing to see");
      }

      // Neighbours resolved on every link first (UDP has no retransmission for what waits on ARP).
      await waitUntil(() => host.exec(["ping", "-c", "1", "-W", "1", "192.0.2.80"]).code === 0, {
        timeoutMs: 20_000,
        intervalMs: 200,
        what: "ping host → web through the TEP",
      });
      // host → web: two flows of PER_FLOW datagrams each.
      const before = linkStats(tep, "tep0");
      const forwarded = tepCounters(tep, socket)["decap-forward"]!;
      await twoFlows(host, "198.51.100.10", web, "192.0.2.80");
      const c = tepCounters(tep, socket);
      expect(c["decap-forward"]! - forwarded).toBe(2 * PER_FLOW);
      // With the ring, every datagram came through it (ping's echo requests too), none lost.
      if (extra.length > 0) {
        expect(c["decap-ring"]).toBe(c["decap-forward"]);
        expect(c["decap-ring-lost"]).toBe(0);
      }
      // The TUN took super-datagrams: fewer writes than datagrams.
      const written = linkStats(tep, "tep0").rx - before.rx;
      console.log(`kernel_peers_udp: ${2 * PER_FLOW} datagrams in ${written} TUN writes`);
      if (uso) expect(written).toBeLessThan(2 * PER_FLOW);
      else expect(written).toBe(2 * PER_FLOW);

      // web → host: UDP_SEGMENT super-datagrams of 10 × 200 bytes.
      const encapsulated = c["encap-forward"]!;
      const handed = linkStats(tep, "tep0").tx;
      await segmented(web, "192.0.2.80", host, "198.51.100.10");
      const after = tepCounters(tep, socket);
      expect(after["encap-forward"]! - encapsulated).toBe(10 * GSO_SENDS);
      // The kernel handed the super-datagrams to the TUN whole (USO): one read for ten.
      const reads = linkStats(tep, "tep0").tx - handed;
      console.log(`kernel_peers_udp: ${10 * GSO_SENDS} datagrams in ${reads} TUN reads`);
      if (uso) expect(reads).toBeLessThan(10 * GSO_SENDS);
    },
    120_000,
  );

  test("dstm client towards a kernel TEP: UDP both ways, coalesced into the DTI and cut out of it", async () => {
    // host (dstm client) ──veth── ktep (kernel TEP + dstm server) ──veth── web (IPv4)
    const host = ns();
    const ktep = ns();
    const web = ns();
    vethPair(host, "c0", ktep, "k0");
    vethPair(ktep, "k1", web, "w0");
    host.addAddress("c0", "2001:db8:2::10/64");
    ktep.addAddress("k0", "2001:db8:2::2/64");
    ktep.addAddress("k1", "192.0.2.1/24");
    web.addAddress("w0", "192.0.2.80/24");
    web.addRoute("default", "via", "192.0.2.1");
    if (Bun.which("ethtool")) web.exec(["ethtool", "-K", "w0", "tx", "on"]);
    const control = join(dir, "client.sock");
    const leased = await clientBehindKernelTep(host, ktep, spawnIn, control, ["--udp-gro"]);
    await waitUntil(() => web.exec(["ping", "-c", "1", "-W", "1", leased]).code === 0, {
      timeoutMs: 20_000,
      intervalMs: 200,
      what: "ping web → host through the kernel TEP",
    });

    // web → host: two flows of PER_FLOW datagrams each, into the DTI.
    const before = linkStats(host, "dti0");
    const forwarded = clientCounters(host, control)["client-decap-forward"]!;
    await twoFlows(web, "192.0.2.80", host, leased);
    expect(clientCounters(host, control)["client-decap-forward"]! - forwarded).toBe(2 * PER_FLOW);
    const written = linkStats(host, "dti0").rx - before.rx;
    console.log(`kernel_peers_udp: client DTI took ${2 * PER_FLOW} datagrams in ${written} writes`);
    if (kernelHasTunUso()) expect(written).toBeLessThan(2 * PER_FLOW);
    else expect(written).toBe(2 * PER_FLOW);

    // host → web: UDP_SEGMENT super-datagrams of 10 × 200 bytes out of the DTI.
    const encapsulated = clientCounters(host, control)["client-encap-forward"]!;
    const handed = linkStats(host, "dti0").tx;
    await segmented(host, leased, web, "192.0.2.80");
    expect(clientCounters(host, control)["client-encap-forward"]! - encapsulated).toBe(
      10 * GSO_SENDS,
    );
    const reads = linkStats(host, "dti0").tx - handed;
    console.log(
      `kernel_peers_udp: client DTI handed ${10 * GSO_SENDS} datagrams in ${reads} reads`,
    );
    if (kernelHasTunUso()) expect(reads).toBeLessThan(10 * GSO_SENDS);
  }, 120_000);
});
