/**
 * Red team, with the kernel: what the host's own checks see of the datagrams `dstm client`
 * coalesces into its DTI. host (dstm client) ── ktep (kernel TEP: seg6 End.DX4 / encap.red,
 * dstm server) ── web (IPv4 sender). The host has an nftables input rule of the kind a host
 * firewall carries (drop UDP to a port above a size; count what is accepted); the same
 * datagrams from web go through `dstm client`, `dstm client --no-offload` and `dstm client
 * --udp-gro`. The first two must give the host's socket and the rule's counters the same.
 *
 * Found: with UDP coalescing on (it was the default), the host's nftables input hook sees a
 * run of datagrams as one super-datagram (the kernel cuts it only at the socket): a rule that
 * drops UDP above 1,000 bytes dropped 287 of 300 datagrams of 228 bytes (11 packets; one run), a
 * packet counter counted 10 for 13, and a rule against small datagrams or a rate limit would
 * let through up to 64 times what it should. UDP coalescing into the DTI is now opt-in
 * (`--udp-gro`), as the kernel's own UDP GRO is (UDP_GRO sockets, rx-udp-gro-forwarding).
 *
 * And with `--udp-gro`, an on-link host spoofing the TEP's IPv6 source (crafted byte by byte,
 * test/fixtures/udp/spoof_train.py) sends interleaved trains with mixed TOS / ECN (an outer CE
 * mark), TTL, DF and no DF, the reserved flag bit, IPv4 options, datagrams at the DTI MTU and
 * repeated ids: the host's socket gets, flow by flow, the same datagrams, sizes, TOS and TTL
 * as with `--no-offload`, from fewer DTI writes (the kernel's own cut, not our model of it).
 */
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Netns, vethPair } from "../lib/sys/netns.ts";
import { kernelTepWithServer } from "./helpers/kernel_tep.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { ROOT } from "./helpers/process.ts";
import { processScope } from "./helpers/process_scope.ts";
import { kernelHasTunUso } from "./helpers/udp_packets.ts";
import { waitUntil } from "./helpers/wait.ts";

const skip =
  netnsSkipReason({ tun: true }) ??
  (Bun.which("python3") ? null : "needs python3") ??
  (Bun.which("nft") ? null : "needs nft");
announceSkip("redteam_client_udp_gro_kernel", skip);

const scope = processScope("dstm-rt-cgro-", "dstmr-");
const { dir, ns, spawnIn } = scope;
/** Clients started so far (each gets its own control socket). */
let clients = 0;

const COUNT = 300;
const SPOOF = join(ROOT, "test", "fixtures", "udp", "spoof_train.py");

/** Receives on `address:port` until `expected` datagrams or 3 s of silence; prints the count. */
const RECV = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
s.settimeout(3)
n = 0
try:
    while n < int(sys.argv[3]):
        s.recvfrom(65535)
        n += 1
except socket.timeout:
    pass
print(n, flush=True)
`;
/** Sends `count` datagrams of 200 bytes from one socket, back to back. */
const SEND = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 41000))
for i in range(int(sys.argv[4])):
    s.sendto(bytes([i & 255]) * 200, (sys.argv[2], int(sys.argv[3])))
`;

async function receive(
  where: Netns,
  address: string,
  port: number,
): Promise<{ count: Promise<number> }> {
  const proc = where.spawn(["python3", "-c", RECV, address, String(port), String(COUNT)], {
    timeoutMs: 60_000,
  });
  scope.track(proc);
  const reader = proc.stdout.getReader();
  let text = "";
  while (!text.includes("ready\n")) {
    const chunk = await reader.read();
    if (chunk.done) throw new Error(`receiver: ${await new Response(proc.stderr).text()}`);
    text += new TextDecoder().decode(chunk.value);
  }
  const count = (async () => {
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) break;
      text += new TextDecoder().decode(chunk.value);
    }
    return Number(text.trim().split("\n").at(-1));
  })();
  return { count };
}

/** Packets the named nft counter saw. */
function nftPackets(where: Netns, name: string): number {
  const out = where.exec(["nft", "-j", "list", "counter", "inet", "dstmrt", name]).stdout;
  const j = JSON.parse(out) as { nftables: { counter?: { packets: number } }[] };
  return j.nftables.find((e) => e.counter)!.counter!.packets;
}

/**
 * host (dstm client, 2001:db8:2::10) ── ktep (seg6 End.DX4 for 2001:db8:2::1, encap.red for
 * 198.51.100.0/28; dstm server) ── web (192.0.2.80).
 */
async function topology(): Promise<{ host: Netns; ktep: Netns; web: Netns }> {
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
  await kernelTepWithServer(host, ktep, spawnIn);
  return { host, ktep, web };
}

type Mode = "offload" | "no-offload" | "udp-gro";

/** Starts `dstm client` in `mode` on `host`; resolves once web can ping its lease. */
async function startClient(host: Netns, web: Netns, mode: Mode) {
  const client = spawnIn(host, [
    "client",
    "--server",
    "2001:db8:2::53",
    "--route",
    "192.0.2.0/24",
    "--control",
    join(dir, `${mode}-${++clients}.sock`),
    ...(mode === "no-offload" ? ["--no-offload"] : mode === "udp-gro" ? ["--udp-gro"] : []),
  ]);
  const bound = await client.waitFor(/ bound /, 20_000);
  const leased = /ipv4=([\d.]+)/.exec(bound)![1]!;
  await waitUntil(() => web.exec(["ping", "-c", "1", "-W", "1", leased]).code === 0, {
    timeoutMs: 20_000,
    intervalMs: 200,
    what: `ping web → host (${mode})`,
  });
  return { client, leased };
}

describe.skipIf(skip !== null)("red team: the host's kernel behind the client's DTI", () => {
  test("a size rule and a packet counter on the host see the same with and without offload", async () => {
    const { host, web } = await topology();
    // The host's firewall: UDP to port 7000 above 1,000 bytes is dropped; what passes is counted.
    const rules = [
      "table inet dstmrt {",
      "  counter big {}",
      "  counter accepted {}",
      "  chain input {",
      "    type filter hook input priority 0; policy accept;",
      "    udp dport 7000 ip length > 1000 counter name big drop",
      "    udp dport 7000 counter name accepted",
      "  }",
      "}",
    ].join("\n");
    const rulesFile = join(dir, "rules.nft");
    writeFileSync(rulesFile, rules);
    const loaded = host.exec(["nft", "-f", rulesFile]);
    expect(loaded.stderr).toBe("");

    const results: Record<string, { received: number; accepted: number; big: number }> = {};
    for (const mode of ["offload", "no-offload", "udp-gro"] as const) {
      const { client, leased } = await startClient(host, web, mode);
      const accepted = nftPackets(host, "accepted");
      const big = nftPackets(host, "big");
      const report = await receive(host, leased, 7000);
      const send = web.exec(["python3", "-c", SEND, "192.0.2.80", leased, "7000", String(COUNT)], {
        timeoutMs: 30_000,
      });
      expect(send.stderr).toBe("");
      results[mode] = {
        received: await report.count,
        accepted: nftPackets(host, "accepted") - accepted,
        big: nftPackets(host, "big") - big,
      };
      client.proc.kill("SIGTERM");
      await client.exited;
    }
    console.log(`redteam_client_udp_gro_kernel: ${JSON.stringify(results)}`);
    expect(results["no-offload"]).toEqual({ received: COUNT, accepted: COUNT, big: 0 });
    // The default (offloads on, no UDP coalescing): the firewall sees every datagram.
    expect(results.offload).toEqual(results["no-offload"]!);
    // --udp-gro (documented): runs of datagrams pass the firewall as super-datagrams, so its
    // size rule drops what it would have let through one by one.
    if (kernelHasTunUso()) {
      expect(results["udp-gro"]!.big).toBeGreaterThan(0);
      expect(results["udp-gro"]!.received).toBeLessThan(COUNT);
    }
  }, 120_000);

  test("an on-link host spoofing the TEP's address: --udp-gro gives the host's socket what --no-offload gives", async () => {
    const { host, ktep, web } = await topology();
    const rounds = 5;
    const expected = rounds * 96;
    const results: Record<string, unknown[]> = {};
    const writes: Record<string, number> = {};
    for (const mode of ["no-offload", "udp-gro"] as const) {
      const { client, leased } = await startClient(host, web, mode);
      const proc = host.spawn(["python3", SPOOF, "recv", leased, "7002", String(expected)], {
        timeoutMs: 60_000,
      });
      scope.track(proc);
      const reader = proc.stdout.getReader();
      let text = "";
      while (!text.includes("ready\n")) {
        const chunk = await reader.read();
        if (chunk.done) throw new Error(`receiver: ${await new Response(proc.stderr).text()}`);
        text += new TextDecoder().decode(chunk.value);
      }
      const before = dtiPackets(host);
      // Crafted from the TEP's link (its own namespace), as any host on that link can: the
      // client cannot tell these from the TEP's packets.
      const send = ktep.exec(
        [
          "python3",
          SPOOF,
          "send",
          "2001:db8:2::1",
          "2001:db8:2::10",
          "192.0.2.80",
          leased,
          "7002",
          String(rounds),
        ],
        { timeoutMs: 30_000 },
      );
      expect(send.stderr).toBe("");
      for (;;) {
        const chunk = await reader.read();
        if (chunk.done) break;
        text += new TextDecoder().decode(chunk.value);
      }
      await proc.exited;
      results[mode] = JSON.parse(text.trim().split("\n").at(-1)!) as unknown[];
      writes[mode] = dtiPackets(host) - before;
      client.proc.kill("SIGTERM");
      await client.exited;
    }
    console.log(
      `redteam_client_udp_gro_kernel: ${expected} crafted datagrams, DTI writes ${JSON.stringify(writes)}`,
    );
    expect(results["no-offload"]!.length).toBe(expected);
    // Flow by flow (source port), the same datagrams, sizes, TOS and TTL in the same order
    // (across flows the order may differ, as between any two flows).
    const byFlow = (rows: unknown[]) =>
      Object.groupBy(rows as [number, ...unknown[]][], (row) => String(row[0]));
    expect(byFlow(results["udp-gro"]!)).toEqual(byFlow(results["no-offload"]!));
    if (kernelHasTunUso()) expect(writes["udp-gro"]!).toBeLessThan(expected);
  }, 120_000);
});

/** Packets the host's DTI (dti0) received from the client (its writes). */
function dtiPackets(where: Netns): number {
  const j = where.ipJson<{ stats64: { rx: { packets: number } } }[]>("-s", "link", "show", "dti0");
  return j[0]!.stats64.rx.packets;
}
