/**
 * Red team of the TEP's ICMPv6 1/5 "source address failed ingress/egress policy" (RFC 4443
 * §3.1; lib/tunnel/source_policy.ts), as root in namespaces with real `dstm server` and
 * `dstm tep` processes and an attacker on the link crafting packets (python3 raw sockets):
 *
 * - RFC 4443 §2.4 (e.3): no ICMPv6 error in response to a packet destined to a multicast
 *   address. An on-link attacker that sends an IPv4-in-IPv6 packet to ff02::1 (every node,
 *   the TEP included, is in that group) with an unbound inner source must get no 1/5 from
 *   the TEP (the outer source could be a victim's), on the batched path, the one-by-one path
 *   (--no-offload) and with --rx-ring (the ring takes only PACKET_HOST packets to the TEP's
 *   address; what is left goes to the same raw socket) alike.
 * - RFC 4443 §2.4 (e.4): nor about a packet to the TEP's unicast address that came in a
 *   link-layer broadcast frame (AF_PACKET, ff:ff:ff:ff:ff:ff).
 * A unicast packet to the TEP (the control) does get one: the TEP is ready, the probe works.
 * Both failed before the TEP's tunnel socket refused them (lib/sys/icmp6_socket.ts
 * receiveUnicastOnly): 5 of 5 answered.
 *
 *   host ns (attacker): 2001:db8:7::10 ──veth── core ns: server ::53, TEP ::1
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { Netns } from "../lib/sys/netns.ts";
import {
  createDtiLab,
  dtiSuite,
  labServerArgv,
  labTepArgv,
  tearDownLab,
} from "./helpers/dti_lab.ts";
import { type DstmProcess, ROOT, spawnDstm } from "./helpers/process.ts";

const { skip, dir, made } = dtiSuite("redteam_source_policy", "dstm-red10-sp-");
const procs: DstmProcess[] = [];
afterAll(async () => {
  await tearDownLab({ procs: [...procs].reverse(), made, dir });
}, 30_000);

const TEP6 = "2001:db8:7::1";
/**
 * The attacker's probe (test/fixtures/redteam/source_policy_probe.py): sends unbound-source
 * IPv4-in-IPv6 packets, then counts for 1.5 s the ICMPv6 1/5 it receives from the TEP.
 */
const PROBE = join(ROOT, "test", "fixtures", "redteam", "source_policy_probe.py");

async function tepCounters(socket: string): Promise<Record<string, number>> {
  const r = await fetch("http://localhost/v1/stats", { unix: socket });
  const all = ((await r.json()) as { counters: Record<string, number> }).counters;
  return all;
}

/** The same packet to the TEP's unicast address in an Ethernet broadcast frame: `n`, counted. */
function probeL2(host: Netns, n: number): number {
  return probeRun(host, ["l2", "c0", String(n), TEP6]);
}

/** `n` packets to `dst` (the TEP, or a group on c0): the 1/5 errors the TEP sent back. */
function probe(host: Netns, dst: string, n: number): number {
  return probeRun(host, ["ip", dst, "c0", String(n), TEP6]);
}

function probeRun(host: Netns, args: string[]): number {
  const r = host.exec(["python3", PROBE, ...args]);
  if (r.code !== 0) throw new Error(`probe: ${r.stderr}`);
  return (JSON.parse(r.stdout.trim()) as { errors: number }).errors;
}

for (const [name, tepExtra] of [
  ["batched", []],
  ["no-offload", ["--no-offload"]],
  ["rx-ring", ["--rx-ring"]],
] as const) {
  describe(`TEP (${name}): RFC 4443 §2.4 (e.3, e.4), no 1/5 about a packet to a group or in an L2 broadcast`, () => {
    let host: Netns;
    const tepStats = join(dir, `${name}-tep-stats.sock`);
    beforeAll(async () => {
      if (skip) return;
      const lab = createDtiLab("dstmt-red10-", [`${TEP6}/64`, "2001:db8:7::53/64"]);
      host = lab.host;
      made.push(lab.host, lab.core, lab.web);
      const server = spawnDstm(labServerArgv({ leaseTime: 600 }), {}, lab.core.name);
      procs.push(server);
      await server.waitFor(/ start /, 20_000);
      const tep = spawnDstm(
        labTepArgv(undefined, ["--stats", tepStats, ...tepExtra]),
        {},
        lab.core.name,
      );
      procs.push(tep);
      await tep.waitFor(/tep-start/, 20_000);
      await server.waitFor(/tep-connected/, 20_000);
    }, 60_000);

    test.skipIf(skip !== null)(
      "unicast to the TEP gets 1/5 (the control); to ff02::1 or in a broadcast frame none",
      async () => {
        // The TEP sends errors once its table is the server's: poll (bounded) until it does.
        let unicast = 0;
        for (let i = 0; i < 10 && unicast === 0; i++) unicast = probe(host, TEP6, 1);
        expect(unicast).toBeGreaterThan(0);
        const before = await tepCounters(tepStats);
        expect(before["decap-icmp-source-policy"]).toBeGreaterThan(0);
        expect(probe(host, "ff02::1", 5)).toBe(0);
        // The TEP's own count: it built no 1/5 about them (the old code counted 5 here).
        const after = await tepCounters(tepStats);
        expect(after["decap-icmp-source-policy"]).toBe(before["decap-icmp-source-policy"]);
        expect(after["decap-drop-no-binding"]).toBe(before["decap-drop-no-binding"]);
        // RFC 4443 §2.4 (e.4): nor about one that came in a link-layer broadcast frame.
        expect(probeL2(host, 5)).toBe(0);
        const l2 = await tepCounters(tepStats);
        expect(l2["decap-icmp-source-policy"]).toBe(before["decap-icmp-source-policy"]);
        // And the TEP still answers unicast after (the multicast ones were not just lost).
        expect(probe(host, TEP6, 1)).toBe(1);
      },
      60_000,
    );
  });
}
