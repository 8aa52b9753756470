/**
 * A binding gone while the client believes it holds the lease (`dstm lease del`, a server that
 * lost its database, a TEP restarted without a snapshot), as root in namespaces with real
 * `dstm server` / `dstm tep` / `dstm client` processes and the kernel's ICMPv6:
 *
 * - the TEP answers a decapsulated packet from an unbound source with ICMPv6 Destination
 *   Unreachable code 5 "source address failed ingress/egress policy" (RFC 4443 §3.1, RFC 7597
 *   §8.2), counted `decap-icmp-source-policy`;
 * - the client, told so by its own TEP about its own leased source, renews at once (warn
 *   `binding-lost`); the server refuses the deleted lease, the client starts over with DISCOVER
 *   and traffic flows again within seconds instead of at T1 (half of a 600 s lease here);
 * - the same error forged from another address is ignored and counted
 *   (`tunnel-error-source-policy-not-tep`): no renewal, the lease kept.
 *
 *   host ns: 2001:db8:7::10 ──veth── core ns: server ::53, TEP ::1, attacker ::66
 *                                      ──veth── web ns: 192.0.2.80
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { Netns } from "../lib/sys/netns.ts";
import { clientCounters, leaseList } from "./helpers/daemon.ts";
import {
  createDtiLab,
  dtiSuite,
  labServerArgv,
  labTepArgv,
  tearDownLab,
} from "./helpers/dti_lab.ts";
import { BUN, type DstmProcess, ROOT, spawnDstm } from "./helpers/process.ts";
import { eventually } from "./helpers/wait.ts";

const { skip, dir, made } = dtiSuite("binding_lost", "dstm-nc9a-lost-");
const procs: DstmProcess[] = [];
let host: Netns;
let core: Netns;
let client: DstmProcess;
let tep: DstmProcess;
const serverSocket = join(dir, "server.sock");
const clientSocket = join(dir, "client.sock");
const tepSocket = join(dir, "tep.sock");

beforeAll(async () => {
  if (skip) return;
  const lab = createDtiLab("dstmt-nc9a-", [
    "2001:db8:7::1/64",
    "2001:db8:7::53/64",
    "2001:db8:7::66/64",
  ]);
  ({ host, core } = lab);
  made.push(host, core, lab.web);
  const server = spawnDstm(labServerArgv({ leaseTime: 600, control: serverSocket }), {}, core.name);
  procs.push(server);
  await server.waitFor(/ start /, 20_000);
  tep = spawnDstm(labTepArgv(undefined, ["--stats", tepSocket]), {}, core.name);
  procs.push(tep);
  await tep.waitFor(/tep-start/, 20_000);
  await server.waitFor(/tep-connected/, 20_000);
  client = spawnDstm(
    ["client", "--server", "2001:db8:7::53", "--route", "192.0.2.0/24", "--control", clientSocket],
    {},
    host.name,
  );
  procs.push(client);
  await client.waitFor(/ bound /, 20_000);
}, 60_000);

afterAll(async () => {
  await tearDownLab({ procs: [...procs].reverse(), made, dir });
}, 30_000);

const ping = () => host.exec(["ping", "-c", "1", "-W", "1", "192.0.2.80"]).code === 0;
const within = (check: () => boolean, ms: number) =>
  eventually(check, { timeoutMs: ms, intervalMs: 250 });
const leasedIPv4 = () => leaseList(core, serverSocket)[0]!.hostIPv4;

async function tepCounters(): Promise<Record<string, number>> {
  const r = await fetch("http://localhost/v1/stats", { unix: tepSocket });
  return ((await r.json()) as { counters: Record<string, number> }).counters;
}

/**
 * Sends, from `from6` in the core namespace, an ICMPv6 1/5 to the client quoting a 4over6
 * packet from the client to the TEP with inner source `ipv4` (a raw ICMPv6 socket: the kernel
 * adds the IPv6 header and the checksum).
 */
function forgeSourcePolicyError(from6: string, ipv4: string): void {
  const script = `
import socket, struct
ip4 = bytes(int(x) for x in "${ipv4}".split("."))
inner = bytes([0x45,0,0,28, 0,1,0,0, 64,17,0,0]) + ip4 + bytes([192,0,2,80]) + bytes([0x30,0x39,0,53,0,8,0,0])
outer = bytes([0x60,0,0,0]) + struct.pack("!HBB", len(inner), 4, 64) \\
  + socket.inet_pton(socket.AF_INET6, "2001:db8:7::10") + socket.inet_pton(socket.AF_INET6, "2001:db8:7::1")
msg = bytes([1, 5, 0, 0, 0, 0, 0, 0]) + outer + inner
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.bind(("${from6}", 0))
for _ in range(5):
    s.sendto(msg, ("2001:db8:7::10", 0))
`;
  const r = core.exec(["python3", "-c", script]);
  if (r.code !== 0) throw new Error(`forging ICMPv6: ${r.stderr}`);
}

describe.skipIf(skip !== null)("binding lost while the client holds the lease", () => {
  test("a forged ICMPv6 1/5 from another address than the TEP is counted and ignored", async () => {
    expect(await within(ping, 10_000)).toBe(true);
    const ipv4 = leasedIPv4();
    const before = client.lines.length;
    forgeSourcePolicyError("2001:db8:7::66", ipv4);
    expect(
      await within(
        () => (clientCounters(host, clientSocket)["tunnel-error-source-policy-not-tep"] ?? 0) >= 5,
        10_000,
      ),
    ).toBe(true);
    const counters = clientCounters(host, clientSocket);
    expect(counters["tunnel-error-source-policy"]).toBe(0);
    expect(client.lines.slice(before).some((l) => /binding-lost|renewed|lease-lost/.test(l))).toBe(
      false,
    );
    expect(leasedIPv4()).toBe(ipv4);
    expect(ping()).toBe(true);
  }, 60_000);

  test("lease del: the TEP says ICMPv6 1/5, the client renews at once and traffic flows again", async () => {
    expect(await within(ping, 10_000)).toBe(true);
    const ipv4 = leasedIPv4();
    const del = core.exec([
      BUN,
      join(ROOT, "mod.ts"),
      "lease",
      "del",
      ipv4,
      "--control",
      serverSocket,
    ]);
    expect(del.code).toBe(0);
    expect(await within(() => leaseList(core, serverSocket).length === 0, 10_000)).toBe(true);
    const seen = client.lines.length;
    // Host traffic: dropped at the TEP (no binding), answered with ICMPv6 1/5.
    ping();
    await client.waitFor(/binding-lost/, 15_000);
    // The server refused the renewal of the deleted lease: DISCOVER, a new lease, bound again.
    expect(
      await within(() => client.lines.slice(seen).some((l) => / bound /.test(l)), 20_000),
    ).toBe(true);
    expect(await within(ping, 20_000)).toBe(true);
    expect(leaseList(core, serverSocket).length).toBe(1);
    const tc = await tepCounters();
    expect(tc["decap-drop-no-binding"]).toBeGreaterThan(0);
    expect(tc["decap-icmp-source-policy"]).toBeGreaterThan(0);
    expect(clientCounters(host, clientSocket)["tunnel-error-source-policy"]).toBeGreaterThan(0);
    const warn = client.lines.find((l) => /binding-lost/.test(l))!;
    expect(warn).toContain(`ipv4=${ipv4}`);
    expect(warn).toContain("tep6=2001:db8:7::1");
  }, 90_000);
});
