/**
 * Red team: `dstm client --kernel-encap` (lib/client/kernel_encap.ts) attacked by a hostile
 * TEP (or an on-link neighbour that spoofs the TEP's address: the same packets) and by a local
 * unprivileged process, as root in namespaces. For the kernel to take the Worker's checked
 * packets back from the DTI, the DTI gets `accept_local=1`, `rp_filter=0` and IPv4 forwarding;
 * the decapsulated packets the inbound Worker writes into the same DTI get them too:
 *
 * - inner source a local address of the host (the leased address itself, or the host's
 *   address on another IPv4 LAN), inner destination the leased address: with accept_local the
 *   kernel no longer drops them as martians, so an application on the host would receive a
 *   datagram "from the host itself" (an ACL that trusts the host's own addresses). Likewise
 *   the broadcast address of the host's LAN as source: an echo request "from" it made the
 *   host broadcast its echo reply onto the LAN. The inbound Worker must drop them
 *   (`client-decap-drop-local-source`);
 * - inner destination anything but the leased address (the host's LAN neighbour, the host's
 *   other address, the limited broadcast, loopback): with forwarding on, one that got into the
 *   DTI would be routed — they stay refused (`client-decap-drop-wrong-destination`), nothing
 *   reaches the LAN;
 * - a local unprivileged process bound to the DTI (SO_BINDTODEVICE) sends to the host's LAN
 *   neighbour and its broadcast address: what comes back out of the Worker goes to the TEP
 *   (or is delivered locally), never onto the LAN.
 *
 * - the seg6 route of table 4608 missing (the DTI set down and up removes it until the
 *   client puts it back; deleted by hand it stays deleted; the rule stays): what the Worker
 *   hands back must not fall through to the main table and be forwarded, in clear with the
 *   leased source, onto the host's LAN (the fence rule `iif DTI unreachable`); a killed
 *   client's fence is removed by the next one.
 *
 * The TEP's genuine datagrams reach the host all along (the positive control). Without root:
 * the inbound check itself; a foreign source (a LAN host a forwarding host routes into the
 * DTI) takes no port of a shared lease and gets no RST written into the DTI (the kernel
 * would forward it to the TEP); a DF-clear super-packet of a shared lease reaches the wire
 * with identifications from the port set (RFC 7597 §8.3.3), not the kernel's GSO numbering.
 *
 *   host ns: 2001:db8:7::10 (c0), 203.0.113.1/24 (l0) ──veth── lan ns: 203.0.113.7 (l1)
 *   host ns ──veth── core ns: server 2001:db8:7::53, TEP 2001:db8:7::1 ──veth── web ns 192.0.2.80
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ClientKernelEncapOut } from "../lib/dataplane/client_kernel_encap.ts";
import { parseIPv4, parseIPv6 } from "../lib/net/addr.ts";
import { tcpSegmentAt, tcpSegmentCount } from "../lib/net/gso.ts";
import { portInSet } from "../lib/net/portset.ts";
import { localIPv4Addresses } from "../lib/sys/ipv4_addresses.ts";
import { createNetns, type Netns, vethPair } from "../lib/sys/netns.ts";
import { ClientState } from "../lib/tunnel/client_state.ts";
import { COUNTER_NAMES, Counter } from "../lib/tunnel/counters.ts";
import { LocalSources } from "../lib/tunnel/local_sources.ts";
import { NaptTable } from "../lib/tunnel/napt.ts";
import { ClientContext, clientDecap, Verdict } from "../lib/tunnel/pipeline.ts";
import { PathMtuTable } from "../lib/tunnel/pmtu.ts";
import { clientCounters } from "./helpers/daemon.ts";
import {
  createDtiLab,
  dtiSuite,
  labClientArgv,
  startLabCore,
  tearDownLab,
} from "./helpers/dti_lab.ts";
import { FakeFrameTun } from "./helpers/fake_devices.ts";
import { AS_NOBODY } from "./helpers/nobody.ts";
import { udpPacket } from "./helpers/packets.ts";
import { type DstmProcess, ROOT, spawnDstm } from "./helpers/process.ts";
import { ACK, SYN, tcp, tcpChecksumOf } from "./helpers/tcp_packets.ts";
import { waitUntil } from "./helpers/wait.ts";

const { skip, dir, made } = dtiSuite("redteam_kernel_encap", "dstmrk-");
let host: Netns;
let core: Netns;
let web: Netns;
let lan: Netns;
const procs: DstmProcess[] = [];
const listeners: Bun.Subprocess[] = [];
const DTI = "dtirk0";
const HOST_PORT = 9999;
const LAN_PORT = 9997;
const HOST_LAN = "203.0.113.1";
const NEIGHBOUR = "203.0.113.7";
const clientSocket = join(dir, "client.sock");

/** A UDP listener on `bind`:`port` in `ns` that appends "source payload" lines to `file`. */
function listen(ns: Netns, bind: string, port: number, file: string): void {
  const code = `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.bind((${JSON.stringify(bind)}, ${port}))
with open(${JSON.stringify(file)}, "a") as f:
    while True:
        data, src = s.recvfrom(65535)
        f.write(src[0] + " " + data.decode(errors="replace") + "\\n")
        f.flush()
`;
  listeners.push(ns.spawn(["python3", "-c", code], { timeoutMs: 300_000 }));
}

/** The hostile TEP's crafter (test/fixtures/redteam/hostile_tep_udp.py): src → dst:port, payload. */
const CRAFT = join(ROOT, "test", "fixtures", "redteam", "hostile_tep_udp.py");

/** Sends one UDP datagram `payload` from `src` (bound; "" any) to `dst`:`port` in `ns`. */
function send(ns: Netns, src: string, dst: string, port: number, payload: string): void {
  const code = `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((${JSON.stringify(src)}, 0))
s.sendto(${JSON.stringify(payload)}.encode(), (${JSON.stringify(dst)}, ${port}))
`;
  const r = ns.exec(["python3", "-c", code]);
  if (r.code !== 0) throw new Error(`send in ${ns.name}: ${r.stderr}`);
}

/** The hostile TEP sends src → dst:port with `payload` (see {@link CRAFT}). */
function craft(src: string, dst: string, port: number, payload: string): void {
  const r = core.exec(["python3", CRAFT, src, dst, String(port), payload]);
  if (r.code !== 0) throw new Error(`craft: ${r.stderr}`);
}

const lines = (file: string): string[] => {
  try {
    return readFileSync(file, "utf8").split("\n").filter(Boolean);
  } catch {
    return [];
  }
};

/**
 * Runs `attack(n)` and then sends the genuine datagram `own`-N from the web server to
 * `leased`:HOST_PORT, until three genuine ones are in `file`; then once more each, until the
 * last genuine one is there. Whatever the attacks got through is in the files by then
 * (same path, sent before).
 */
async function inTurn(
  leased: string,
  file: string,
  own: string,
  attack: (n: number) => void,
): Promise<void> {
  let n = 0;
  await waitUntil(
    () => {
      n++;
      attack(n);
      send(web, "192.0.2.80", leased, HOST_PORT, `${own}-${n}`);
      return lines(file).filter((l) => l.includes(`${own}-`)).length >= 3;
    },
    { timeoutMs: 40_000, intervalMs: 200, what: "three genuine datagrams" },
  );
  attack(0);
  send(web, "192.0.2.80", leased, HOST_PORT, `${own}-last`);
  await waitUntil(() => lines(file).some((l) => l.includes(`${own}-last`)), {
    timeoutMs: 10_000,
    what: "the last genuine datagram",
  });
}

beforeAll(async () => {
  if (skip) return;
  ({ host, core, web } = createDtiLab("dstmrk-", ["2001:db8:7::1/64", "2001:db8:7::53/64"]));
  made.push(host, core, web);
  lan = createNetns("dstmrk-");
  made.push(lan);
  // The host's second IPv4 network: a LAN the DTI's traffic must never reach.
  vethPair(host, "l0", lan, "l1");
  host.addAddress("l0", `${HOST_LAN}/24`);
  lan.addAddress("l1", `${NEIGHBOUR}/24`);
  procs.push(...(await startLabCore(core, { leaseTime: 60 })));
}, 60_000);

afterAll(() => tearDownLab({ procs, others: listeners, made, dir }), 30_000);

describe.skipIf(skip !== null)("red team: dstm client --kernel-encap", () => {
  let leased = "";
  const hostLog = join(dir, "host.log");
  const lanLog = join(dir, "lan.log");

  test("a hostile TEP's local inner sources (the leased address, the host's LAN address, its broadcast address) reach no application", async () => {
    const client = spawnDstm(
      labClientArgv("tun", DTI, ["--kernel-encap", "--control", clientSocket]),
      {},
      host.name,
    );
    procs.push(client);
    const bound = await client.waitFor(/ bound /, 20_000);
    leased = /ipv4=(\S+)/.exec(bound)![1]!;
    expect(host.exec(["cat", `/proc/sys/net/ipv4/conf/${DTI}/accept_local`]).stdout.trim()).toBe(
      "1",
    );
    listen(host, "0.0.0.0", HOST_PORT, hostLog);
    listen(lan, "0.0.0.0", LAN_PORT, lanLog);
    const before = clientCounters(host, clientSocket)["client-decap-drop-local-source"] ?? 0;
    await inTurn(leased, hostLog, "own1", (n) => {
      craft(leased, leased, HOST_PORT, `self-${n}`);
      craft(HOST_LAN, leased, HOST_PORT, `lan-${n}`);
      craft("203.0.113.255", leased, HOST_PORT, `bsrc-${n}`);
    });
    const seen = lines(hostLog);
    expect(seen.filter((l) => /self-|lan-|bsrc-/.test(l))).toEqual([]);
    const after = clientCounters(host, clientSocket)["client-decap-drop-local-source"] ?? 0;
    expect(after - before).toBeGreaterThanOrEqual(12); // three per round, at least four rounds
  }, 90_000);

  test("inner destinations other than the lease stay refused: nothing reaches the LAN or the host", async () => {
    expect(leased).not.toBe("");
    const before = clientCounters(host, clientSocket)["client-decap-drop-wrong-destination"] ?? 0;
    await inTurn(leased, hostLog, "own2", (n) => {
      craft("192.0.2.80", NEIGHBOUR, LAN_PORT, `fwd-${n}`);
      craft("192.0.2.80", "203.0.113.255", LAN_PORT, `bcast-${n}`);
      craft("192.0.2.80", "255.255.255.255", HOST_PORT, `lbcast-${n}`);
      craft("192.0.2.80", HOST_LAN, HOST_PORT, `other-${n}`);
    });
    expect(lines(lanLog)).toEqual([]);
    expect(lines(hostLog).filter((l) => /fwd-|bcast-|other-/.test(l))).toEqual([]);
    const after = clientCounters(host, clientSocket)["client-decap-drop-wrong-destination"] ?? 0;
    expect(after - before).toBeGreaterThanOrEqual(16);
  }, 90_000);

  test("an unprivileged process bound to the DTI cannot reach the host's LAN through the kernel's forwarding", async () => {
    expect(leased).not.toBe("");
    // As nobody: SO_BINDTODEVICE needs no privilege (Linux ≥ 5.7) while the socket is unbound.
    const code = `
import socket, sys
for dst in ("${NEIGHBOUR}", "203.0.113.255"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"${DTI}")
    s.sendto(("local-" + sys.argv[1]).encode(), (dst, ${LAN_PORT}))
`;
    const before = clientCounters(host, clientSocket)["client-kernel-encap"] ?? 0;
    await inTurn(leased, hostLog, "own3", (n) => {
      const r = host.exec([...AS_NOBODY, "python3", "-c", code, String(n)]);
      if (r.code !== 0) throw new Error(`as nobody: ${r.stderr}`);
    });
    expect(lines(lanLog)).toEqual([]);
    // They did go through the Worker (so the kernel routed what came back out of the DTI).
    expect(clientCounters(host, clientSocket)["client-kernel-encap"] ?? 0).toBeGreaterThan(before);
  }, 90_000);

  test("the seg6 route missing (deleted by hand: the client leaves it so; the rule stays): nothing falls through to the main table", async () => {
    expect(leased).not.toBe("");
    // What the DTI set down and up leaves until the client puts the route back
    // (test/kencap2_dti_bounce.test.ts); deleted by hand, the route stays missing.
    host.ip("-4", "route", "del", "default", "table", "4608");
    expect(host.ip("-4", "route", "show", "table", "4608")).not.toContain("seg6");
    expect(host.ip("-4", "rule", "show")).toMatch(
      new RegExp(`^4609:.* iif ${DTI} unreachable`, "m"),
    );
    // As nobody, bound to the DTI (no route needed: the kernel takes the DTI as on-link).
    const code = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"${DTI}")
s.sendto(("fenced-" + sys.argv[1]).encode(), ("${NEIGHBOUR}", ${LAN_PORT}))
`;
    const before = clientCounters(host, clientSocket)["client-kernel-encap"] ?? 0;
    let n = 0;
    // Until the Worker handed ten of them to the kernel (what the kernel did with them is
    // decided by then: the LAN is one veth away).
    await waitUntil(
      () => {
        const r = host.exec([...AS_NOBODY, "python3", "-c", code, String(n++)]);
        if (r.code !== 0) throw new Error(`as nobody: ${r.stderr}`);
        return (clientCounters(host, clientSocket)["client-kernel-encap"] ?? 0) >= before + 10;
      },
      { timeoutMs: 30_000, intervalMs: 100, what: "ten datagrams handed to the kernel" },
    );
    // A datagram of the host's own to the neighbour, after them, as the control.
    send(host, HOST_LAN, NEIGHBOUR, LAN_PORT, "direct");
    await waitUntil(() => lines(lanLog).some((l) => l.includes("direct")), {
      timeoutMs: 10_000,
      what: "the direct datagram on the LAN",
    });
    expect(lines(lanLog).filter((l) => l.includes("fenced-"))).toEqual([]);
    // Still missing: the client put back nothing deleted by hand.
    expect(host.ip("-4", "route", "show", "table", "4608")).not.toContain("seg6");
  }, 90_000);

  test("SIGKILL leaves the rule and the fence; the next client (even without --kernel-encap) removes both, and refuses a broadcast source too", async () => {
    const first = procs.find((p) => p.lines.some((l) => / bound /.test(l)));
    first!.proc.kill("SIGKILL");
    await first!.exited;
    const ours = () =>
      host
        .ip("-4", "rule", "show")
        .split("\n")
        .filter((l) => l.includes(DTI));
    expect(ours().length).toBe(2);
    const next = spawnDstm(
      labClientArgv("tun", DTI, ["--control", join(dir, "next.sock")]),
      {},
      host.name,
    );
    procs.push(next);
    const bound = await next.waitFor(/ bound /, 20_000);
    expect(ours()).toEqual([]);
    expect(next.lines.some((l) => /WARN kernel-dti-stale /.test(l))).toBe(true);
    // Without --kernel-encap (rp_filter 0 here, no policy rules left), the kernel takes a
    // broadcast source: the inbound Worker refuses it all the same.
    const ipv4 = /ipv4=(\S+)/.exec(bound)![1]!;
    await inTurn(ipv4, hostLog, "own4", (n) =>
      craft("203.0.113.255", ipv4, HOST_PORT, `plain-${n}`),
    );
    expect(lines(hostLog).filter((l) => l.includes("plain-"))).toEqual([]);
    expect(
      clientCounters(host, join(dir, "next.sock"))["client-decap-drop-local-source"],
    ).toBeGreaterThanOrEqual(4);
  }, 60_000);

  test("--no-offload (one packet at a time): a broadcast source is refused there too", async () => {
    const running = procs.filter((p) => p.lines.some((l) => / bound /.test(l)));
    for (const p of running) p.proc.kill("SIGTERM");
    await Promise.all(running.map((p) => p.exited));
    const plain = spawnDstm(
      labClientArgv("tun", DTI, ["--no-offload", "--control", join(dir, "plain.sock")]),
      {},
      host.name,
    );
    procs.push(plain);
    const bound = await plain.waitFor(/ bound /, 20_000);
    const ipv4 = /ipv4=(\S+)/.exec(bound)![1]!;
    await inTurn(ipv4, hostLog, "own5", (n) =>
      craft("203.0.113.255", ipv4, HOST_PORT, `slow-${n}`),
    );
    expect(lines(hostLog).filter((l) => l.includes("slow-"))).toEqual([]);
    expect(
      clientCounters(host, join(dir, "plain.sock"))["client-decap-drop-local-source"],
    ).toBeGreaterThanOrEqual(4);
  }, 60_000);

  test("a killed --kernel-encap client's rule and fence are removed by a --dti kernel client too", async () => {
    const running = procs.filter((p) => p.lines.some((l) => / bound /.test(l)));
    for (const p of running) p.proc.kill("SIGTERM");
    await Promise.all(running.map((p) => p.exited));
    const ours = () =>
      host
        .ip("-4", "rule", "show")
        .split("\n")
        .filter((l) => l.includes(DTI));
    const killed = spawnDstm(
      labClientArgv("tun", DTI, ["--kernel-encap"]),
      { DSTM_RUNTIME_DIR: dir },
      host.name,
    );
    procs.push(killed);
    await killed.waitFor(/ bound /, 20_000);
    killed.proc.kill("SIGKILL");
    await killed.exited;
    expect(ours().length).toBe(2);
    const kernel = spawnDstm(labClientArgv("kernel", DTI), { DSTM_RUNTIME_DIR: dir }, host.name);
    procs.push(kernel);
    await kernel.waitFor(/ bound /, 20_000);
    expect(ours()).toEqual([]);
  }, 60_000);
});

describe("red team: the inbound path refuses the host's own addresses as inner sources (no root)", () => {
  const TEP6 = new Uint8Array(16).fill(0x20);
  const u32 = (text: string) => text.split(".").reduce((a, b) => a * 256 + Number(b), 0);
  const LEASED = "198.51.100.1";
  const context = (localSources?: LocalSources) =>
    new ClientContext({
      counters: new Float64Array(COUNTER_NAMES.length),
      leasedIPv4: u32(LEASED),
      tep6: TEP6,
      localSources,
    });
  const decap = (ctx: ClientContext, src: string) => {
    const p = udpPacket(src, LEASED, 16);
    return clientDecap(ctx, p, 0, p.length, TEP6, 0);
  };

  test("the leased address as source is refused and counted, whatever the list", () => {
    const ctx = context();
    expect(decap(ctx, LEASED)).toBe(Verdict.DROP_WRONG_SOURCE);
    expect(decap(ctx, "192.0.2.80")).toBe(Verdict.FORWARD);
    expect(ctx.counters[Counter["client-decap-drop-local-source"]]).toBe(1);
    expect(ctx.counters[Counter["client-decap-forward"]]).toBe(1);
  });

  test("an address in the host's list is refused; a neighbour of it is not", () => {
    const local = new LocalSources();
    local.set([u32("203.0.113.1"), u32("10.0.0.1"), u32("203.0.113.1"), u32("255.255.255.254")]);
    expect(local.size).toBe(3);
    const ctx = context(local);
    for (const src of ["203.0.113.1", "10.0.0.1", "255.255.255.254"])
      expect(decap(ctx, src)).toBe(Verdict.DROP_WRONG_SOURCE);
    for (const src of ["203.0.113.2", "10.0.0.0", "192.0.2.80", "0.0.0.1"])
      expect(decap(ctx, src)).toBe(Verdict.FORWARD);
    expect(ctx.counters[Counter["client-decap-drop-local-source"]]).toBe(3);
    local.set([]);
    expect(decap(ctx, "203.0.113.1")).toBe(Verdict.FORWARD);
  });

  test("the kernel's list has the loopback address and its /8's broadcast address", () => {
    const list = localIPv4Addresses();
    expect(list).toContain(u32("127.0.0.1"));
    expect(list).toContain(u32("127.255.255.255"));
  });
});

describe("red team: the --kernel-encap out loop with a shared lease (no root)", () => {
  /** a = 6, k = 10, PSID 3: 63 ports. */
  const TINY = { offset: 6, psidLength: 10, psid: 3 };
  const WEB4 = [203, 0, 113, 80];
  /** A plain frame (virtio_net_hdr all zero) with a SYN from `src`:`port`. */
  /** The out loop on a fresh in-memory DTI, with a shared lease of TINY on 198.51.100.10. */
  const sharedLeaseLoop = () => {
    const counters = new Float64Array(COUNTER_NAMES.length);
    const state = ClientState.create();
    state.setLease(parseIPv4("198.51.100.10")!, TINY, parseIPv6("2001:db8:7::1")!);
    const tun = new FakeFrameTun();
    const loop = new ClientKernelEncapOut(
      {
        state,
        napt: NaptTable.create(),
        counters,
        onDemand: false,
        client: { tunnelMtu: 1460, mssClamp: false },
        pathMtu: PathMtuTable.create({ capacity: 4 }),
      },
      tun,
    );
    return { counters, tun, loop };
  };
  const syn = (src: readonly number[], port: number) => {
    const p = tcp({ payload: 0, src, dst: WEB4, flags: SYN, srcPort: port });
    const f = new Uint8Array(10 + p.length);
    f.set(p, 10);
    return f;
  };

  test("SYNs from a LAN host routed into the DTI: dropped before the NAPT; the host's own SYN still gets a port", () => {
    const { counters, tun, loop } = sharedLeaseLoop();
    // More SYNs than the set has ports, from another host's address (a forwarding host).
    for (let i = 0; i < 70; i++) tun.frames.push(syn([203, 0, 113, 7], 20000 + i));
    for (let i = 0; i < 70; i++) loop.step();
    // Nothing handed to the kernel, and no RST for the LAN host: written into the DTI, the
    // kernel (forwarding on the DTI) would send it to the TEP.
    expect(tun.back.length).toBe(0);
    expect(tun.written.map((w) => w.packet.slice(16, 20).join("."))).toEqual([]);
    expect(counters[Counter["client-encap-drop-wrong-source"]]).toBe(70);
    expect(counters[Counter["client-napt-drop-no-port"]]).toBe(0);
    // The host's own connection still gets a port of the set.
    tun.frames.push(syn([198, 51, 100, 10], 40000));
    loop.step();
    expect(tun.back.length).toBe(1);
    const out = tun.back[0]!;
    expect(portInSet((out[30]! << 8) | out[31]!, TINY)).toBe(true);
  });

  test("a DF-clear TCP super-packet of a shared lease: every segment on the wire has an identification of the set", () => {
    const { tun, loop } = sharedLeaseLoop();
    // IP_PMTUDISC_DONT (no privilege needed): TSO super-packets without DF.
    const GSO = 1400;
    const p = tcp({
      payload: 5 * GSO,
      src: [198, 51, 100, 10],
      dst: WEB4,
      flags: ACK,
      df: false,
      id: 1,
    });
    let sum = 6 + (p.length - 20);
    for (let i = 12; i < 20; i += 2) sum += (p[i]! << 8) | p[i + 1]!;
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    p[36] = sum >>> 8;
    p[37] = sum;
    const f = new Uint8Array(10 + p.length);
    f.set([1, 1, 52, 0, GSO & 0xff, GSO >>> 8, 20, 0, 16, 0]); // NEEDS_CSUM, TCPV4
    f.set(p, 10);
    tun.frames.push(f);
    loop.step();
    // What reaches the wire: a frame with gso_type TCPV4 is cut by the kernel (ids id + i).
    const wire: Uint8Array[] = [];
    for (const out of tun.back) {
      const packet = out.subarray(10);
      if (out[1] === 0) {
        wire.push(packet);
        continue;
      }
      const n = tcpSegmentCount(packet, 0, packet.length, GSO);
      for (let i = 0; i < n; i++) {
        const seg = new Uint8Array(GSO + 100);
        wire.push(seg.subarray(0, tcpSegmentAt(packet, 0, GSO, i, seg, 0)));
      }
    }
    expect(wire.length).toBe(5);
    for (const seg of wire) {
      expect(portInSet((seg[4]! << 8) | seg[5]!, TINY)).toBe(true);
      expect(portInSet((seg[20]! << 8) | seg[21]!, TINY)).toBe(true);
      expect(tcpChecksumOf(seg)).toBe(0);
    }
    // Five datagrams that may be fragmented: five identifications, none the same.
    expect(new Set(wire.map((seg) => (seg[4]! << 8) | seg[5]!)).size).toBe(5);
  });
});
