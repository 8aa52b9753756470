/**
 * Red team: the client's kernel DTI (`dstm client --dti kernel`, lib/client/tunnel_dti.ts)
 * attacked by a neighbour of the host, as root in namespaces. The userspace DTI drops
 * IPv4-in-IPv6 whose outer source is not the TEP (client-decap-drop-wrong-tep); the kernel
 * DTI must not be the weaker door:
 *
 * - a spoofer sends IPv4-in-IPv6 (next header 4) to the host's address from its own IPv6
 *   address, the inner source forged to be the IPv4 web server: an application on the host
 *   must not receive it (seg6: End.DX4 checks no outer source; the decapsulating rule is
 *   pinned to the TEP. ip6tnl: the kernel matches the tunnel by its remote address);
 * - on a host that forwards IPv4 (a container host), the same spoofer sends a datagram whose
 *   inner source is the leased address and whose destination is beyond the TEP: decapsulated
 *   and routed back into the DTI, it would reach the IPv4 network as the host's own traffic
 *   (the TEP sees the right outer and inner sources).
 *
 * The TEP's own datagrams reach the host all along (the positive control).
 *
 *   atk ns: 2001:db8:66::66 ──veth── host ns: 2001:db8:66::10 (a0), 2001:db8:7::10 (c0)
 *   host ns ──veth── core ns: server 2001:db8:7::53, TEP 2001:db8:7::1 ──veth── web ns 192.0.2.80
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createNetns, type Netns, vethPair } from "../lib/sys/netns.ts";
import { clientCounters } from "./helpers/daemon.ts";
import {
  createDtiLab,
  dtiSuite,
  labClientArgv,
  startLabCore,
  tearDownLab,
} from "./helpers/dti_lab.ts";
import { BUN, type DstmProcess, ROOT, spawnDstm } from "./helpers/process.ts";
import { waitUntil } from "./helpers/wait.ts";

const { skip, dir, made } = dtiSuite("redteam_kernel_dti", "dstm-rtk-");
let host: Netns;
let core: Netns;
let web: Netns;
let atk: Netns;
const procs: DstmProcess[] = [];
const listeners: Bun.Subprocess[] = [];
const HOST_PORT = 9999;
const WEB_PORT = 9998;

/** A UDP listener on `bind`:`port` in `ns` that appends "source payload" lines to `file`. */
function listen(ns: Netns, bind: string, port: number, file: string): void {
  const code = `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((${JSON.stringify(bind)}, ${port}))
with open(${JSON.stringify(file)}, "a") as f:
    while True:
        data, src = s.recvfrom(65535)
        f.write(src[0] + " " + data.decode(errors="replace") + "\\n")
        f.flush()
`;
  listeners.push(ns.spawn(["python3", "-c", code], { timeoutMs: 300_000 }));
}

/** Sends one UDP datagram `payload` from `src` (bound) to `dst`:`port` in `ns`. */
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

const lines = (file: string): string[] => {
  try {
    return readFileSync(file, "utf8").split("\n").filter(Boolean);
  } catch {
    return [];
  }
};

/**
 * Routes `dst`/32 in the spoofer's namespace through seg6 encap.red to the host's 2001:db8:7::10
 * with the inner source `src`: the spoofer's kernel builds the IPv4-in-IPv6.
 */
function spoofRoute(dst: string, src: string): void {
  const encap = ["encap", "seg6", "mode", "encap.red", "segs", "2001:db8:7::10"];
  atk.ip("route", "add", `${dst}/32`, ...encap, "dev", "a1", "src", src);
}

/**
 * Sends `src` → `dst`:`port` datagrams from the spoofer (payload `spoofed`-N) and from `genuine`
 * (`own`-N) in turn, until three of the genuine ones are in `file` (30,000 ms at most), then one
 * last of each until the last genuine one is there (10,000 ms at most); the lines of `file`.
 */
async function inTurn(
  genuine: Netns,
  [src, dst, port]: [string, string, number],
  file: string,
  spoofed: string,
  own: string,
): Promise<string[]> {
  let n = 0;
  await waitUntil(
    () => {
      n++;
      send(atk, src, dst, port, `${spoofed}-${n}`);
      send(genuine, src, dst, port, `${own}-${n}`);
      return lines(file).filter((l) => l.includes(own)).length >= 3;
    },
    { timeoutMs: 30_000, intervalMs: 200, what: `three "${own}" datagrams` },
  );
  send(atk, src, dst, port, `${spoofed}-last`);
  send(genuine, src, dst, port, `${own}-last`);
  await waitUntil(() => lines(file).some((l) => l.includes(`${own}-last`)), {
    timeoutMs: 10_000,
    what: `the last "${own}" datagram`,
  });
  return lines(file);
}

beforeAll(async () => {
  if (skip) return;
  ({ host, core, web } = createDtiLab("dstmrt-", ["2001:db8:7::1/64", "2001:db8:7::53/64"]));
  made.push(host, core, web);
  atk = createNetns("dstmrt-");
  made.push(atk);
  vethPair(atk, "a1", host, "a0");
  host.addAddress("a0", "2001:db8:66::10/64");
  atk.addAddress("a1", "2001:db8:66::66/64");
  atk.up("lo");
  // The spoofer's inner source: the web server's address (or, later, the leased one).
  atk.addAddress("lo", "192.0.2.80/32");
  atk.ip("-6", "route", "add", "2001:db8:7::10/128", "via", "2001:db8:66::10", "dev", "a1");
  atk.ip("sr", "tunsrc", "set", "2001:db8:66::66");
  procs.push(...(await startLabCore(core, { leaseTime: 30 })));
}, 60_000);

afterAll(() => tearDownLab({ procs, others: listeners, made, dir }), 30_000);

describe.skipIf(skip !== null)("red team: the kernel DTI and a spoofing neighbour", () => {
  let leased = "";

  test("IPv4-in-IPv6 from a source other than the TEP reaches no application", async () => {
    const client = spawnDstm(
      labClientArgv("kernel", "rt.dti0"),
      { DSTM_RUNTIME_DIR: dir },
      host.name,
    );
    procs.push(client);
    const bound = await client.waitFor(/ bound /, 20_000);
    leased = /ipv4=(\S+)/.exec(bound)![1]!;
    const got = join(dir, "host.log");
    listen(host, "0.0.0.0", HOST_PORT, got);
    // The spoofer's kernel builds the packets: encap.red to the host's address from its own.
    spoofRoute(leased, "192.0.2.80");
    // Spoofed and genuine datagrams in turn, until three genuine ones came through the TEP.
    const seen = await inTurn(web, ["192.0.2.80", leased, HOST_PORT], got, "spoofed", "genuine");
    expect(seen.filter((l) => l.includes("spoofed"))).toEqual([]);
  }, 90_000);

  test("a forwarding host is no relay: a spoofed leased source does not reach the IPv4 network", async () => {
    expect(leased).not.toBe("");
    host.exec(["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    const got = join(dir, "web.log");
    listen(web, "192.0.2.80", WEB_PORT, got);
    // Inner: from the leased address to the web server; outer: the spoofer to the host.
    atk.addAddress("lo", `${leased}/32`);
    spoofRoute("192.0.2.80", leased);
    // The host's own datagrams go through (control); the relayed ones must not.
    const seen = await inTurn(host, [leased, "192.0.2.80", WEB_PORT], got, "relayed", "own");
    expect(seen.filter((l) => l.includes("relayed"))).toEqual([]);
  }, 90_000);

  for (const control of ["default", "own"] as const)
    test(`a second client with the same --ifname (${control} control socket) leaves the first one's DTI and lease alone`, async () => {
      expect(leased).not.toBe("");
      const got = join(dir, "host.log");
      const second = spawnDstm(
        labClientArgv(
          "kernel",
          "rt.dti0",
          control === "own" ? ["--control", join(dir, "second.sock")] : [],
        ),
        { DSTM_RUNTIME_DIR: dir },
        host.name,
      );
      procs.push(second);
      const code = await Promise.race([
        second.exited,
        second.waitFor(/dti-failed|control|in use|bound/, 20_000).then(() => -1),
      ]);
      second.proc.kill("SIGTERM");
      await second.exited;
      console.log(`second client: exit ${code}\n${second.lines.join("\n")}`);
      // The first still has its DTI: datagrams from the web server reach it.
      const before = lines(got).length;
      let n = 0;
      await waitUntil(
        () => {
          send(web, "192.0.2.80", leased, HOST_PORT, `after-second-${n++}`);
          return lines(got).length > before;
        },
        {
          timeoutMs: 15_000,
          intervalMs: 250,
          what: "a datagram to the first client after the second",
        },
      );
    }, 60_000);

  test("after a seg6 client is killed (SIGKILL), a --dti tun client gets the TEP's packets, not End.DX4", async () => {
    const first = procs.find((p) => p.lines.some((l) => / bound /.test(l)));
    expect(first).toBeDefined();
    first!.proc.kill("SIGKILL");
    await first!.exited;
    // What the killed client left: its decapsulating rule (the TUN went with the process).
    expect(host.ip("-6", "rule", "show")).toContain("lookup 4607");
    const tun = spawnDstm(
      labClientArgv("tun", "rt.dti0", ["--control", join(dir, "tun.sock")]),
      { DSTM_RUNTIME_DIR: dir },
      host.name,
    );
    procs.push(tun);
    const bound = await tun.waitFor(/ bound /, 20_000);
    const ipv4 = /ipv4=(\S+)/.exec(bound)![1]!;
    const got = join(dir, "host.log");
    const before = lines(got).length;
    let n = 0;
    await waitUntil(
      () => {
        send(web, "192.0.2.80", ipv4, HOST_PORT, `via-tun-${n++}`);
        return lines(got).length > before;
      },
      { timeoutMs: 15_000, intervalMs: 250, what: "a datagram through the TUN DTI" },
    );
    // Through the userspace DTI (its counters), not decapsulated by a leftover End.DX4 route.
    const counters = clientCounters(host, join(dir, "tun.sock"));
    expect(counters["client-decap-forward"] ?? 0).toBeGreaterThan(0);
    expect(host.ip("-6", "rule", "show")).not.toContain("lookup 4607");
    expect(tun.lines.some((l) => /WARN kernel-dti-stale .*removed a seg6 DTI's rule/.test(l))).toBe(
      true,
    );
  }, 60_000);
});

describe("red team: odd --ifname values (no root)", () => {
  test("a name the kernel would refuse is refused at start-up (exit 2), for every DTI", () => {
    for (const dti of ["tun", "kernel", "seg6"])
      for (const name of ["a/b", "dti 0", "dti:0", "abcdefghijklmnop", "..", ""]) {
        const r = Bun.spawnSync(
          [
            BUN,
            join(ROOT, "mod.ts"),
            "client",
            "--server",
            "2001:db8::1",
            "--dti",
            dti,
            "--ifname",
            name,
            "--check",
          ],
          { cwd: ROOT, stdout: "pipe", stderr: "pipe" },
        );
        expect([dti, name, r.exitCode, r.stderr.toString()]).toEqual([
          dti,
          name,
          2,
          `dstm: --ifname: "${name}" is not an interface name (1 to 15 bytes, no '/', ':' or spaces)\n`,
        ]);
      }
    // A dot is a valid name character (and the sysctl keys take it, see above).
    const ok = Bun.spawnSync(
      [
        BUN,
        join(ROOT, "mod.ts"),
        "client",
        "--server",
        "2001:db8::1",
        "--ifname",
        "rt.dti0",
        "--check",
      ],
      { cwd: ROOT, stdout: "pipe", stderr: "pipe" },
    );
    expect(ok.exitCode).toBe(0);
  }, 60_000);
});
