/**
 * `dstm client --dti kernel` (lib/client/tunnel_dti.ts), as root in namespaces: a real
 * `dstm server` and `dstm tep`, and the client whose DTI is the kernel's IPv4-in-IPv6 (an
 * ip6tnl device where the kernel has one; seg6 encap.red + End.DX4 routes where it has not,
 * as on the machines this runs on). The kernel carries the packets: the TEP decapsulates them
 * and the client's Workers never see one. Ping and a TCP transfer to an IPv4 host beyond the
 * TEP, renumbering, a TEP change, a SIGKILLed client's leftovers replaced, release on SIGTERM
 * (device, routes, rule and lease gone), a shared lease
 * (port set) on the userspace DTI instead. The refusals at startup: client_dti_refusals.test.ts.
 *
 *   host ns: 2001:db8:7::10 ──veth── core ns: server 2001:db8:7::53, TEP 2001:db8:7::1 (later ::2)
 *                                                 ──veth── web ns: 192.0.2.80 (iperf3 -s)
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Netns } from "../lib/sys/netns.ts";
import { clientStatusJson, leaseList } from "./helpers/daemon.ts";
import {
  createDtiLab,
  dtiSuite,
  LAB_SERVER6,
  labClientArgv,
  labServerArgv,
  labTepArgv,
} from "./helpers/dti_lab.ts";
import { BUN, type DstmProcess, ROOT, spawnDstm } from "./helpers/process.ts";
import { eventually } from "./helpers/wait.ts";

const { skip, dir, made } = dtiSuite("client_kernel_dti", "dstm-kdti-");
let host: Netns;
let core: Netns;
let web: Netns;
let server: DstmProcess | undefined;
let tep: DstmProcess | undefined;
let client: DstmProcess | undefined;
let iperf: Bun.Subprocess | undefined;
let httpd: Bun.Subprocess | undefined;
const serverSocket = join(dir, "server.sock");
const clientSocket = join(dir, "client.sock");
const DTI = "dtik0";

beforeAll(async () => {
  if (skip) return;
  ({ host, core, web } = createDtiLab("dstmk-", [
    "2001:db8:7::1/64",
    "2001:db8:7::2/64",
    "2001:db8:7::53/64",
  ]));
  made.push(host, core, web);
  iperf = web.spawn(["iperf3", "-s", "-B", "192.0.2.80"], { timeoutMs: 300_000 });
  mkdirSync(join(dir, "www"));
  writeFileSync(join(dir, "www", "blob.bin"), randomBytes(6 << 20));
  httpd = web.spawn(["python3", "-m", "http.server", "8080", "--bind", "192.0.2.80"], {
    cwd: join(dir, "www"),
    timeoutMs: 300_000,
  });
  await startCore([]);
}, 60_000);

afterAll(async () => {
  await stopAll();
  for (const p of [iperf, httpd]) p?.kill("SIGTERM");
  await Promise.all([iperf?.exited, httpd?.exited]);
  for (const ns of made) ns.delete();
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

/** Starts the server (with `extra` flags) and the TEP in the core namespace. */
async function startCore(extra: string[], tep6 = "2001:db8:7::1"): Promise<void> {
  server = spawnDstm(
    labServerArgv({ leaseTime: 10, tep6, extra, control: serverSocket }),
    {},
    core.name,
  );
  await server.waitFor(/ start /, 20_000);
  tep = spawnDstm(labTepArgv(tep6, ["--stats", join(dir, "tep.sock")]), {}, core.name);
  await tep.waitFor(/tep-start/, 20_000);
  await server.waitFor(/tep-connected/, 20_000);
}

function startClient(): DstmProcess {
  client = spawnDstm(labClientArgv("kernel", DTI, ["--control", clientSocket]), {}, host.name);
  return client;
}

/** A client on the host with `flags`, the DTI named DTI and its control socket (no --route). */
function spawnOnHost(flags: readonly string[]): DstmProcess {
  return spawnDstm(
    ["client", "--server", LAB_SERVER6, ...flags, "--ifname", DTI, "--control", clientSocket],
    {},
    host.name,
  );
}

async function stopAll(): Promise<void> {
  for (const p of [client, tep, server]) p?.proc.kill("SIGTERM");
  await Promise.all([client, tep, server].map((p) => p?.exited));
  client = tep = server = undefined;
}

const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");
const ping = () => host.exec(["ping", "-c", "1", "-W", "1", "192.0.2.80"]).code === 0;
const within = (check: () => boolean, ms: number) =>
  eventually(check, { timeoutMs: ms, intervalMs: 250 });

const leases = () => leaseList(core, serverSocket);

/** `dstm client status` as text. */
function clientStatusText(): string {
  return host.exec([BUN, join(ROOT, "mod.ts"), "client", "status", "--control", clientSocket])
    .stdout;
}

function clientStatus(): {
  state: string;
  host6: string;
  dti: Record<string, unknown>;
  counters: Record<string, number>;
} {
  return clientStatusJson(host, clientSocket);
}

/** What the kernel of the host namespace says: the DTI link, the IPv6 rules, the IPv4 routes. */
function kernelView() {
  const link = host.exec(["ip", "-d", "-j", "link", "show", DTI]);
  const rules = host.ip("-6", "rule", "show");
  const routes = JSON.parse(host.ip("-j", "route", "show", "192.0.2.0/24")) as {
    encap?: string;
    segs?: string[];
    metrics?: { mtu?: number; advmss?: number }[];
    dev?: string;
    prefsrc?: string;
  }[];
  const addrs = host.exec(["ip", "-4", "-j", "addr", "show", "dev", DTI]);
  return {
    link: link.code === 0 ? (JSON.parse(link.stdout) as Record<string, unknown>[])[0] : undefined,
    rules,
    routes,
    ipv4: addrs.code === 0 ? addrs.stdout : "",
  };
}

describe.skipIf(skip !== null)("dstm client --dti kernel", () => {
  let mode: "ip6tnl" | "seg6";

  test("binds, and the kernel carries ping and TCP to the IPv4 host beyond the TEP", async () => {
    startClient();
    const bound = await client!.waitFor(/ bound /, 20_000);
    mode = client!.lines.some((l) => /kernel-dti-seg6/.test(l)) ? "seg6" : "ip6tnl";
    const ipv4 = /ipv4=(\S+)/.exec(bound)![1]!;
    expect(leases()).toEqual([
      expect.objectContaining({ hostIPv4: ipv4, hostIPv6: "2001:db8:7::10" }),
    ]);
    const k = kernelView();
    expect(k.ipv4).toContain(`"local":"${ipv4}"`);
    if (mode === "ip6tnl") {
      const info = k.link!.linkinfo as { info_kind: string; info_data: Record<string, unknown> };
      expect(info.info_kind).toBe("ip6tnl");
      // As iproute2 prints what the kernel holds (ip/link_ip6tnl.c ip6tunnel_print_opt).
      expect(info.info_data).toMatchObject({
        proto: "ipip6",
        local: "2001:db8:7::10",
        remote: "2001:db8:7::1",
        ttl: 64,
        ip6_tnl_f_ign_encap_limit: true,
        ip6_tnl_f_use_orig_tclass: true,
      });
      expect(k.link!.mtu).toBe(1460);
    } else {
      expect(k.routes[0]).toMatchObject({
        encap: "seg6",
        segs: ["2001:db8:7::1"],
        dev: DTI,
        prefsrc: ipv4,
      });
      expect(k.rules).toMatch(
        /^0:\s+from 2001:db8:7::1 to 2001:db8:7::10 ipproto ipencap lookup 4607/m,
      );
      expect(k.rules).toMatch(/^1:\s+from all lookup local/m);
    }
    expect(await within(ping, 10_000)).toBe(true);
    // The tunnel MTU (the veth's 1500 − 40) is what IPv4 sees: a 1460-byte packet with DF
    // leaves, one byte more is refused locally with the MTU (the kernel's arithmetic, not ours).
    if (mode === "seg6") expect(k.routes[0]?.metrics).toEqual([{ mtu: 1460 + 64, advmss: 1420 }]);
    expect(
      host.exec(["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1432", "192.0.2.80"]).code,
    ).toBe(0);
    const tooBig = host.exec([
      "ping",
      "-c",
      "1",
      "-W",
      "2",
      "-M",
      "do",
      "-s",
      "1433",
      "192.0.2.80",
    ]);
    expect(tooBig.code).not.toBe(0);
    expect(tooBig.stdout + tooBig.stderr).toContain("mtu=1460");
    // A few MB of TCP each way: up with iperf3 (which fails on a broken connection), down a
    // file from a web server, compared by hash.
    const run = host.exec(["iperf3", "-c", "192.0.2.80", "-n", "8M", "-J"], { timeoutMs: 60_000 });
    expect(run.code).toBe(0);
    const result = JSON.parse(run.stdout) as { end: { sum_sent: { bytes: number } } };
    expect(result.end.sum_sent.bytes).toBeGreaterThanOrEqual(8 << 20);
    const got = host.exec([
      "curl",
      "-sS",
      "--retry",
      "5",
      "--retry-connrefused",
      "--max-time",
      "30",
      "-o",
      join(dir, "got.bin"),
      "http://192.0.2.80:8080/blob.bin",
    ]);
    expect(got.code).toBe(0);
    expect(sha256(join(dir, "got.bin"))).toBe(sha256(join(dir, "www", "blob.bin")));
    // The kernel did it: the client's Workers (whose counters these are) saw nothing.
    const status = clientStatus();
    expect(status.state).toBe("bound");
    expect(Object.values(status.counters).reduce((a, b) => a + b, 0)).toBe(0);
    // The status says which DTI carries the traffic, and why its counters are zero.
    expect(status.dti).toEqual({
      requested: "kernel",
      mode,
      fallback: mode === "seg6" ? "the kernel has no ip6tnl" : null,
      counters: "kernel",
    });
    expect(clientStatusText()).toMatch(
      new RegExp(
        `^dti       ${DTI} \\(mtu \\d+, kernel: ${mode}.*; counters are the kernel's: ip -s link.*\\)$`,
        "m",
      ),
    );
    // A renewal (at half the 10 s lease) keeps the DTI.
    const seen = client!.lines.length;
    expect(
      await within(() => client!.lines.slice(seen).some((l) => / renewed /.test(l)), 15_000),
    ).toBe(true);
    expect(ping()).toBe(true);
  }, 120_000);

  test("renumbering: the DTI follows the host's new address", async () => {
    host.addAddress("c0", "2001:db8:7::20/64");
    host.ip("addr", "del", "2001:db8:7::10/64", "dev", "c0");
    await client!.waitFor(/address-gone host6=2001:db8:7::10 next=2001:db8:7::20/, 10_000);
    expect(
      await within(() => client!.lines.filter((l) => / bound /.test(l)).length >= 2, 20_000),
    ).toBe(true);
    expect(await within(ping, 20_000)).toBe(true);
    const k = kernelView();
    if (mode === "ip6tnl") {
      const info = (k.link!.linkinfo as { info_data: Record<string, unknown> }).info_data;
      expect(info.local).toBe("2001:db8:7::20");
    } else {
      expect(k.rules).toContain("to 2001:db8:7::20 ipproto ipencap lookup 4607");
      expect(k.rules).not.toContain("2001:db8:7::10");
    }
    expect(clientStatus().host6).toBe("2001:db8:7::20");
  }, 60_000);

  test("a client killed with SIGKILL leaves its kernel DTI behind; the next one replaces it", async () => {
    client!.proc.kill("SIGKILL");
    await client!.exited;
    if (mode === "ip6tnl") expect(kernelView().link).toBeDefined();
    else expect(kernelView().rules).toContain("ipproto ipencap lookup 4607");
    startClient();
    await client!.waitFor(/ bound /, 20_000);
    expect(await within(ping, 10_000)).toBe(true);
    expect(kernelView().rules.match(/ipproto ipencap/g)?.length ?? 0).toBe(mode === "seg6" ? 1 : 0);
  }, 60_000);

  test("the TEP changes (the server restarted naming another): the DTI is re-made towards it", async () => {
    const before = client!.lines.filter((l) => / bound /.test(l)).length;
    for (const p of [tep, server]) p?.proc.kill("SIGTERM");
    await Promise.all([tep?.exited, server?.exited]);
    await startCore([], "2001:db8:7::2");
    // The renewal meets a server that names TEP ::2 (or knows no lease): the lease is lost
    // and a new one taken, with the DTI towards the new TEP.
    await client!.waitFor(/lease-lost/, 20_000);
    expect(
      await within(() => client!.lines.filter((l) => / bound /.test(l)).length > before, 20_000),
    ).toBe(true);
    expect(client!.lines.filter((l) => / bound /.test(l)).at(-1)).toContain("tep6=2001:db8:7::2");
    const k = kernelView();
    if (mode === "ip6tnl")
      expect((k.link!.linkinfo as { info_data: { remote: string } }).info_data.remote).toBe(
        "2001:db8:7::2",
      );
    else expect(k.routes[0]?.segs).toEqual(["2001:db8:7::2"]);
    expect(await within(ping, 10_000)).toBe(true);
  }, 60_000);

  test("SIGTERM releases the lease and removes the device, routes and rule", async () => {
    client!.proc.kill("SIGTERM");
    expect(await client!.exited).toBe(0);
    client = undefined;
    const k = kernelView();
    expect(k.link).toBeUndefined();
    expect(k.routes).toEqual([]);
    expect(k.rules).not.toContain("ipencap");
    expect(k.rules).toMatch(/^0:\s+from all lookup local/m);
    expect(k.rules).not.toMatch(/^1:/m);
    expect(await within(() => leases().length === 0, 25_000)).toBe(true);
  }, 45_000);

  test.each([
    [
      ["--dti", "ip6tnl"],
      /this kernel has no ip6tnl \(CONFIG_IPV6_TUNNEL\); use --dti seg6 or kernel/,
    ],
    [["--dti", "kernel", "--dscp", "10"], /--dscp N needs --dti ip6tnl or tun: seg6/],
    // Not seg6, which cannot write --dscp (found by a newcomer: it was suggested).
    [
      ["--dti", "ip6tnl", "--dscp", "10"],
      /this kernel has no ip6tnl \(CONFIG_IPV6_TUNNEL\); use --dti tun \(seg6 cannot write --dscp\)/,
    ],
  ])(
    "%p on a kernel without ip6tnl: the lease is released and the client exits 2 with the reason",
    async (flags, reason) => {
      if (mode === "ip6tnl") return; // this kernel has ip6tnl: nothing to refuse
      const c = spawnOnHost(flags);
      try {
        // No retry for ever: a DTI that can never be made ends the client (exit 2).
        expect(await c.exited).toBe(2);
        expect((await c.stderr()).trim()).toMatch(
          new RegExp(`^dstm: DTI ${DTI}: .*${reason.source}`),
        );
        expect(c.lines.some((l) => / dti-failed /.test(l))).toBe(false);
        expect(c.lines.some((l) => / bound /.test(l))).toBe(false);
        // It had a lease, and gave it back before exiting: the server holds none.
        expect(await c.waitFor(/ release ipv4=198\.51\.100\./, 5_000)).toBeDefined();
        expect(await within(() => leases().length === 0, 10_000)).toBe(true);
        expect(kernelView().link).toBeUndefined();
        expect(kernelView().rules).not.toContain("ipencap");
      } finally {
        c.proc.kill("SIGTERM");
        await c.exited;
      }
    },
    30_000,
  );

  test("seg6: a --host6 the kernel would not send from is refused with a clear message", async () => {
    if (mode === "ip6tnl") return; // ip6tnl names its source itself
    // ::20 is the host's address now; ::30 is added deprecated (preferred_lft 0), so the
    // kernel never picks it as a source, yet the lease would bind it.
    host.ip("addr", "add", "2001:db8:7::30/64", "dev", "c0", "nodad", "preferred_lft", "0");
    const c = spawnOnHost(["--dti", "seg6", "--host6", "2001:db8:7::30"]);
    try {
      await c.waitFor(
        /WARN dti-failed .*the kernel sends to the TEP 2001:db8:7::[12] from 2001:db8:7::20, not from the leased host address 2001:db8:7::30/,
        20_000,
      );
      expect(kernelView().link).toBeUndefined();
      expect(kernelView().rules).not.toContain("ipencap");
    } finally {
      c.proc.kill("SIGTERM");
      await c.exited;
      host.ip("addr", "del", "2001:db8:7::30/64", "dev", "c0");
    }
  }, 30_000);

  test("a shared lease (port set) runs on the userspace DTI, with a warning", async () => {
    await stopAll();
    await startCore(["--share", "4"]);
    startClient();
    await client!.waitFor(/kernel-dti-fallback/, 20_000);
    const bound = await client!.waitFor(/ bound /, 20_000);
    expect(bound).toMatch(/ports=/);
    expect(await within(ping, 10_000)).toBe(true);
    // A TUN (the Workers' DTI), not the kernel's: its counters move.
    expect(kernelView().link?.linkinfo).toMatchObject({ info_kind: "tun" });
    const { counters, dti } = clientStatus();
    expect(Object.values(counters).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    expect(dti).toMatchObject({ requested: "kernel", mode: "tun", counters: "workers" });
    expect(dti.fallback).toMatch(/shared lease/);
    client!.proc.kill("SIGTERM");
    expect(await client!.exited).toBe(0);
    client = undefined;
    expect(kernelView().link).toBeUndefined();
  }, 90_000);
});
