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
 * With `--dti seg6` the kernel encapsulates and no socket of the client's would see the
 * error: the client's raw ICMPv6 watch takes it the same way (that variant fails without it).
 * With `--kernel-encap` the kernel encapsulates too, but the inbound Worker's raw socket for
 * next header 4 gets the error about the kernel's packets as about its own.
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
afterAll(async () => {
  await tearDownLab({ procs: [...procs].reverse(), made, dir });
}, 30_000);

/** One lab (host, core with server + TEP `tepExtra`, web) per TEP data path, torn down after the file. */
function lab(name: string, tepExtra: readonly string[], clientExtra: readonly string[]) {
  const l = {
    host: undefined as unknown as Netns,
    core: undefined as unknown as Netns,
    client: undefined as unknown as DstmProcess,
    server: undefined as unknown as DstmProcess,
    serverSocket: join(dir, `${name}-server.sock`),
    clientSocket: join(dir, `${name}-client.sock`),
    tepSocket: join(dir, `${name}-tep.sock`),
  };
  beforeAll(async () => {
    if (skip) return;
    const made3 = createDtiLab("dstmt-nc9a-", [
      "2001:db8:7::1/64",
      "2001:db8:7::53/64",
      "2001:db8:7::66/64",
    ]);
    l.host = made3.host;
    l.core = made3.core;
    made.push(made3.host, made3.core, made3.web);
    const server = spawnDstm(
      labServerArgv({ leaseTime: 600, control: l.serverSocket }),
      {},
      l.core.name,
    );
    l.server = server;
    procs.push(server);
    await server.waitFor(/ start /, 20_000);
    const tep = spawnDstm(
      labTepArgv(undefined, ["--stats", l.tepSocket, ...tepExtra]),
      {},
      l.core.name,
    );
    procs.push(tep);
    await tep.waitFor(/tep-start/, 20_000);
    await server.waitFor(/tep-connected/, 20_000);
    l.client = spawnDstm(
      [
        "client",
        "--server",
        "2001:db8:7::53",
        "--route",
        "192.0.2.0/24",
        "--control",
        l.clientSocket,
        ...clientExtra,
      ],
      {},
      l.host.name,
    );
    procs.push(l.client);
    await l.client.waitFor(/ bound /, 20_000);
  }, 60_000);
  return l;
}

const within = (check: () => boolean, ms: number) =>
  eventually(check, { timeoutMs: ms, intervalMs: 250 });

async function tepCounters(socket: string): Promise<Record<string, number>> {
  const r = await fetch("http://localhost/v1/stats", { unix: socket });
  return ((await r.json()) as { counters: Record<string, number> }).counters;
}

/**
 * Sends, from `from6` in namespace `core`, an ICMPv6 1/5 to the client quoting a 4over6
 * packet from the client to the TEP with inner source `ipv4` (a raw ICMPv6 socket: the kernel
 * adds the IPv6 header and the checksum).
 */
function forgeSourcePolicyError(core: Netns, from6: string, ipv4: string): void {
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

// The data paths: batched (the defaults) and one by one, at the TEP and at the client alike;
// and the client's DTIs whose packets the kernel encapsulates, where a raw ICMPv6 socket
// watches for the error (lib/client/kernel_binding_watch.ts).
for (const [name, label, tepExtra, clientExtra] of [
  ["batched TEP and client (offloads)", "batched", [], []],
  ["one-by-one TEP and client (--no-offload)", "plain", ["--no-offload"], ["--no-offload"]],
  ["the kernel DTI (--dti seg6)", "seg6", [], ["--dti", "seg6"]],
  ["userspace checks, kernel encapsulation (--kernel-encap)", "kencap", [], ["--kernel-encap"]],
] as const) {
  describe.skipIf(skip !== null)(`binding lost while the client holds the lease: ${name}`, () => {
    const l = lab(label, tepExtra, clientExtra);
    const ping = () => l.host.exec(["ping", "-c", "1", "-W", "1", "192.0.2.80"]).code === 0;
    const leases = () => leaseList(l.core, l.serverSocket);
    const counters = () => clientCounters(l.host, l.clientSocket);

    test("a forged ICMPv6 1/5 from another address than the TEP is counted and ignored", async () => {
      expect(await within(ping, 10_000)).toBe(true);
      const ipv4 = leases()[0]!.hostIPv4;
      const held = JSON.stringify(leases());
      const before = l.client.lines.length;
      forgeSourcePolicyError(l.core, "2001:db8:7::66", ipv4);
      expect(
        await within(() => (counters()["tunnel-error-source-policy-not-tep"] ?? 0) >= 5, 10_000),
      ).toBe(true);
      expect(counters()["tunnel-error-source-policy"]).toBe(0);
      expect(
        l.client.lines.slice(before).some((x) => /binding-lost|renewed|lease-lost/.test(x)),
      ).toBe(false);
      // Not renewed either (a renewal would move expiresAt).
      expect(JSON.stringify(leases())).toBe(held);
      expect(ping()).toBe(true);
    }, 60_000);

    test("lease del: the TEP says ICMPv6 1/5, the client renews at once and traffic flows again", async () => {
      expect(await within(ping, 10_000)).toBe(true);
      const ipv4 = leases()[0]!.hostIPv4;
      const del = l.core.exec([
        BUN,
        join(ROOT, "mod.ts"),
        "lease",
        "del",
        ipv4,
        "--control",
        l.serverSocket,
      ]);
      expect(del.code).toBe(0);
      expect(await within(() => leases().length === 0, 10_000)).toBe(true);
      const seen = l.client.lines.length;
      // Host traffic: dropped at the TEP (no binding), answered with ICMPv6 1/5. The server
      // sends its UNBIND without waiting for the TEP's answer (lib/server/lease_admin.ts): a
      // packet just after `lease del` may still pass, so the host pings until the client says
      // so (the log is flushed in batches: polled).
      expect(
        await within(() => {
          ping();
          return l.client.lines.slice(seen).some((x) => /binding-lost/.test(x));
        }, 15_000),
      ).toBe(true);
      // The server refused the renewal of the deleted lease: DISCOVER, a new lease, bound again.
      expect(
        await within(() => l.client.lines.slice(seen).some((x) => / bound /.test(x)), 20_000),
      ).toBe(true);
      expect(await within(ping, 20_000)).toBe(true);
      expect(leases().length).toBe(1);
      const tc = await tepCounters(l.tepSocket);
      expect(tc["decap-drop-no-binding"]).toBeGreaterThan(0);
      expect(tc["decap-icmp-source-policy"]).toBeGreaterThan(0);
      expect(counters()["tunnel-error-source-policy"]).toBeGreaterThan(0);
      const warn = l.client.lines.find((x) => /binding-lost/.test(x))!;
      expect(warn).toContain(`ipv4=${ipv4}`);
      expect(warn).toContain("tep6=2001:db8:7::1");
    }, 90_000);

    test("server database lost (restarted with --db memory): the TEP unbinds all, the client gets a lease again", async () => {
      expect(await within(ping, 10_000)).toBe(true);
      l.server.proc.kill("SIGTERM");
      await l.server.exited;
      const seen = l.client.lines.length;
      const server = spawnDstm(
        labServerArgv({ leaseTime: 600, control: l.serverSocket }),
        {},
        l.core.name,
      );
      l.server = server;
      procs.push(server);
      await server.waitFor(/ start /, 20_000);
      expect(leases().length).toBe(0);
      // The TEP syncs, gets the (empty) snapshot; the host's next packets get ICMPv6 1/5.
      const pingThenLeased = () => {
        ping();
        return leases().length === 1;
      };
      expect(await within(pingThenLeased, 40_000)).toBe(true);
      expect(await within(ping, 20_000)).toBe(true);
      // Said at warn (the log is flushed in batches: polled). The first notice may fall in
      // the 10 s after the previous test's renewal and wait for it: the client's rate limit.
      expect(
        await within(() => l.client.lines.slice(seen).some((x) => /binding-lost/.test(x)), 15_000),
      ).toBe(true);
    }, 90_000);
  });
}
