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
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Netns } from "../lib/sys/netns.ts";
import {
  createDtiLab,
  dtiSuite,
  labServerArgv,
  labTepArgv,
  tearDownLab,
} from "./helpers/dti_lab.ts";
import { type DstmProcess, spawnDstm } from "./helpers/process.ts";

const { skip, dir, made } = dtiSuite("redteam_source_policy", "dstm-red10-sp-");
const procs: DstmProcess[] = [];
afterAll(async () => {
  await tearDownLab({ procs: [...procs].reverse(), made, dir });
}, 30_000);

const TEP6 = "2001:db8:7::1";
/**
 * The attacker's probe: sends `n` IPv4-in-IPv6 packets (UDP 203.0.113.5 → 192.0.2.80, an
 * unbound source) to `dst` (on `ifname` when multicast), then counts for 1.5 s the ICMPv6 1/5
 * it receives from the TEP. Prints {"errors": count}.
 */
const PROBE = `
import json, select, socket, struct, sys, time
dst, ifname, n, tep = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF); s += s >> 16
    return (~s) & 0xFFFF
src4, dst4 = socket.inet_aton("203.0.113.5"), socket.inet_aton("192.0.2.80")
hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 1, 0, 64, 17, 0, src4, dst4)
hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
pkt = hdr + struct.pack("!HHHH", 40000, 9, 8, 0)
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 4)
r = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
scope = socket.if_nametoindex(ifname) if dst.startswith("ff") else 0
for _ in range(n):
    s.sendto(pkt, (dst, 0, 0, scope))
got, end = 0, time.time() + 1.5
while time.time() < end:
    if not select.select([r], [], [], 0.1)[0]:
        continue
    data, addr = r.recvfrom(2048)
    if data[0] == 1 and data[1] == 5 and addr[0] == tep:
        got += 1
print(json.dumps({"errors": got}))
`;

async function tepCounters(socket: string): Promise<Record<string, number>> {
  const r = await fetch("http://localhost/v1/stats", { unix: socket });
  const all = ((await r.json()) as { counters: Record<string, number> }).counters;
  return all;
}

/**
 * The same packet as {@link PROBE}, to the TEP's unicast address but in an Ethernet frame to
 * the link's broadcast address (AF_PACKET): `n` of them, then counts for 1.5 s.
 */
const PROBE_L2 = `
import json, select, socket, struct, sys, time
ifname, n, tep = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF); s += s >> 16
    return (~s) & 0xFFFF
src4, dst4 = socket.inet_aton("203.0.113.5"), socket.inet_aton("192.0.2.80")
hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 1, 0, 64, 17, 0, src4, dst4)
hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
inner = hdr + struct.pack("!HHHH", 40000, 9, 8, 0)
src6 = socket.inet_pton(socket.AF_INET6, "2001:db8:7::10")
ip6 = struct.pack("!IHBB", 0x60000000, len(inner), 4, 64) + src6 + socket.inet_pton(socket.AF_INET6, tep)
mac = open("/sys/class/net/%s/address" % ifname).read().strip().replace(":", "")
frame = b"\\xff" * 6 + bytes.fromhex(mac) + b"\\x86\\xdd" + ip6 + inner
p = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
p.bind((ifname, 0))
r = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
for _ in range(n):
    p.send(frame)
got, end = 0, time.time() + 1.5
while time.time() < end:
    if not select.select([r], [], [], 0.1)[0]:
        continue
    data, addr = r.recvfrom(2048)
    if data[0] == 1 and data[1] == 5 and addr[0] == tep:
        got += 1
print(json.dumps({"errors": got}))
`;

function probeL2(host: Netns, n: number): number {
  const script = join(dir, "probe_l2.py");
  writeFileSync(script, PROBE_L2);
  const r = host.exec(["python3", script, "c0", String(n), TEP6]);
  if (r.code !== 0) throw new Error(`probe: ${r.stderr}`);
  return (JSON.parse(r.stdout.trim()) as { errors: number }).errors;
}

function probe(host: Netns, dst: string, n: number): number {
  const script = join(dir, "probe.py");
  writeFileSync(script, PROBE);
  const r = host.exec(["python3", script, dst, "c0", String(n), TEP6]);
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
