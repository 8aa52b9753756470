/**
 * `dstm client --kernel-encap` (lib/client/kernel_encap.ts, lib/dataplane/client_kernel_encap.ts),
 * as root in namespaces: a real `dstm server` and `dstm tep`, and a client whose Workers check
 * what the host sends and hand it back through the TUN DTI to the kernel, which encapsulates
 * it (seg6 encap.red, table 4608, rule `iif DTI`). The kernel did the encapsulation: the TEP
 * receives IPv4-in-IPv6 from the host's address while the Workers' own send counter stays at
 * zero; the bytes arrive intact; the TTL at the IPv4 server is the one the userspace
 * encapsulation gives; a shared lease keeps its NAPT; a spoofed source is dropped and counted,
 * never encapsulated; an IPv6 FORWARD policy of DROP must accept `iif DTI`; a lost lease and a
 * new TEP take the DTI down and up in one process with the route to the new TEP; SIGKILL + restart and SIGTERM leave no rule, route or sysctl behind; the
 * refusals.
 *
 *   host ns: 2001:db8:7::10 ──veth── core ns: server 2001:db8:7::53, TEP 2001:db8:7::1 (later ::2)
 *                                                 ──veth── web ns: 192.0.2.80
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Netns } from "../lib/sys/netns.ts";
import { clientStatusJson } from "./helpers/daemon.ts";
import {
  createDtiLab,
  dtiSuite,
  labClientArgv,
  startLabCore,
  stopAll as stopProcs,
} from "./helpers/dti_lab.ts";
import { BUN, type DstmProcess, ROOT, spawnDstm } from "./helpers/process.ts";
import { eventually } from "./helpers/wait.ts";

const { skip, dir, made } = dtiSuite("client_kernel_encap", "dstmhy-");
const noTshark = Bun.which("tshark") ? null : "needs tshark (scripts/test-deps.sh)";
let host: Netns;
let core: Netns;
let web: Netns;
let server: DstmProcess | undefined;
let tep: DstmProcess | undefined;
let client: DstmProcess | undefined;
const serverSocket = join(dir, "server.sock");
const clientSocket = join(dir, "client.sock");
const DTI = "dtihy0";
const TABLE = "4608";

/** A TCP sink on 192.0.2.80:9000: prints "BYTES SHA256 PEER-ADDRESS PEER-PORT" per connection. */
const SINK = `
import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("192.0.2.80", 9000)); s.listen(4)
while True:
    c, a = s.accept(); h = hashlib.sha256(); n = 0
    while True:
        d = c.recv(65536)
        if not d: break
        h.update(d); n += len(d)
    print(n, h.hexdigest(), a[0], a[1], flush=True); c.close()
`;
/** Sends the file argv[1] to the sink. */
const SEND = `
import socket, sys
s = socket.create_connection(("192.0.2.80", 9000), timeout=30)
s.sendall(open(sys.argv[1], "rb").read()); s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
`;
/** Sends argv[2] UDP datagrams from the foreign source argv[1] to 192.0.2.80:9999 (IP_HDRINCL). */
const SPOOF = `
import socket, struct, sys
src = socket.inet_aton(sys.argv[1]); dst = socket.inet_aton("192.0.2.80")
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for i in range(int(sys.argv[2])):
    udp = struct.pack("!HHHH", 40000 + i, 9999, 8 + 4, 0) + b"spuf"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0, src, dst)
    s.sendto(ip + udp, ("192.0.2.80", 0))
`;
let sink: Bun.Subprocess<"ignore", "pipe", "pipe"> | undefined;
const sinkLines: string[] = [];

beforeAll(async () => {
  if (skip) return;
  ({ host, core, web } = createDtiLab("dstmhy-", [
    "2001:db8:7::1/64",
    "2001:db8:7::2/64",
    "2001:db8:7::53/64",
  ]));
  made.push(host, core, web);
  for (const [name, text] of [
    ["sink.py", SINK],
    ["send.py", SEND],
    ["spoof.py", SPOOF],
  ] as const)
    writeFileSync(join(dir, name), text);
  writeFileSync(join(dir, "blob.bin"), randomBytes(8 << 20));
  sink = web.spawn(["python3", join(dir, "sink.py")], { timeoutMs: 300_000 });
  void (async () => {
    const decoder = new TextDecoder();
    let rest = "";
    for await (const chunk of sink!.stdout) {
      rest += decoder.decode(chunk);
      const lines = rest.split("\n");
      rest = lines.pop()!;
      sinkLines.push(...lines);
    }
  })();
  await startCore([]);
}, 60_000);

afterAll(async () => {
  await stopAll();
  sink?.kill("SIGTERM");
  await sink?.exited;
  for (const ns of made) ns.delete();
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

async function startCore(extra: string[], tep6 = "2001:db8:7::1"): Promise<void> {
  [server, tep] = await startLabCore(core, { leaseTime: 30, extra, control: serverSocket, tep6 });
}

async function stopAll(): Promise<void> {
  await stopProcs([client, tep, server]);
  client = tep = server = undefined;
}

async function startClient(extra: readonly string[]): Promise<DstmProcess> {
  client = spawnDstm(
    labClientArgv("tun", DTI, ["--control", clientSocket, ...extra]),
    {},
    host.name,
  );
  await client.waitFor(/ bound /, 20_000);
  return client;
}

async function stopClient(signal: "SIGTERM" | "SIGKILL" = "SIGTERM"): Promise<void> {
  client?.proc.kill(signal);
  await client?.exited;
  client = undefined;
}

const counters = () =>
  clientStatusJson<{ counters: Record<string, number> }>(host, clientSocket).counters;
const ping = () => host.exec(["ping", "-c", "1", "-W", "1", "192.0.2.80"]).code === 0;
const within = (check: () => boolean, ms: number) =>
  eventually(check, { timeoutMs: ms, intervalMs: 250 });

/** Sends the 8 MiB blob over TCP; resolves with the sink's line about it. */
async function upload(): Promise<{ bytes: number; sha: string; peer: string; port: number }> {
  const before = sinkLines.length;
  const r = host.exec(["python3", join(dir, "send.py"), join(dir, "blob.bin")], {
    timeoutMs: 60_000,
  });
  expect(r.code).toBe(0);
  expect(await within(() => sinkLines.length > before, 20_000)).toBe(true);
  const [bytes, sha, peer, port] = sinkLines[before]!.split(" ");
  return { bytes: Number(bytes), sha: sha!, peer: peer!, port: Number(port) };
}

const blobSha = () =>
  new Bun.CryptoHasher("sha256").update(readFileSync(join(dir, "blob.bin"))).digest("hex");

/** The IPv4 TTL of one echo request from the host, as the web server sees it. */
async function ttlAtWeb(): Promise<number> {
  const capture = web.spawn(
    ["tshark", "-i", "w0", "-c", "1", "-f", "icmp[icmptype] == 8", "-T", "fields", "-e", "ip.ttl"],
    { timeoutMs: 30_000 },
  );
  // tshark starts capturing after a moment: ping until it has seen one.
  let ttl = "";
  const reader = (async () => {
    ttl = (await new Response(capture.stdout).text()).trim();
  })();
  await eventually(
    async () => {
      ping();
      return capture.exitCode !== null;
    },
    { timeoutMs: 20_000, intervalMs: 200 },
  );
  await reader;
  return Number(ttl);
}

/** The host's kernel state kernel-encap makes. */
function kernelState() {
  const conf = `/proc/sys/net/ipv4/conf/${DTI}`;
  const read = (name: string) => host.exec(["cat", `${conf}/${name}`]).stdout.trim() || undefined;
  return {
    rules: host
      .ip("-4", "rule", "show")
      .split("\n")
      .filter((l) => l.includes(`lookup ${TABLE}`)),
    table: host.ip("-4", "route", "show", "table", TABLE).trim(),
    forwarding: read("forwarding"),
    acceptLocal: read("accept_local"),
    rpFilter: read("rp_filter"),
    forceForwarding6:
      host.exec(["cat", `/proc/sys/net/ipv6/conf/${DTI}/force_forwarding`]).stdout.trim() ||
      undefined,
    device: host.exec(["ip", "link", "show", DTI]).code === 0,
  };
}

describe.skipIf(skip !== null || noTshark !== null)("dstm client --kernel-encap", () => {
  let ttlUserspace = 0;

  test("without --kernel-encap (the reference): TTL at the IPv4 server", async () => {
    await startClient([]);
    expect(await within(ping, 10_000)).toBe(true);
    ttlUserspace = await ttlAtWeb();
    expect(ttlUserspace).toBeGreaterThan(0);
    await stopClient();
  }, 60_000);

  test("the kernel encapsulates: TCP intact, ping, IPv4-in-IPv6 from the host at the TEP, the same TTL", async () => {
    await startClient(["--kernel-encap"]);
    const k = kernelState();
    expect(k.rules).toEqual([expect.stringMatching(new RegExp(`iif ${DTI} lookup ${TABLE}`))]);
    expect(k.table).toMatch(
      /^default\s+encap seg6 mode encap.red segs 1 \[ 2001:db8:7::1 \] dev dtihy0 .*mtu 1524/,
    );
    expect([k.forwarding, k.acceptLocal, k.rpFilter, k.forceForwarding6]).toEqual([
      "1",
      "1",
      "0",
      "1",
    ]);
    // IPv4-in-IPv6 (next header 4) from the host's address arrives at the TEP.
    const capture = core.spawn(
      ["tshark", "-i", "k0", "-c", "3", "-f", "ip6 proto 4", "-T", "fields", "-e", "ipv6.src"],
      { timeoutMs: 30_000 },
    );
    await eventually(
      async () => {
        ping();
        return capture.exitCode !== null;
      },
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    expect((await new Response(capture.stdout).text()).trim().split("\n")).toContain(
      "2001:db8:7::10",
    );
    const got = await upload();
    expect(got.bytes).toBe(8 << 20);
    expect(got.sha).toBe(blobSha());
    expect(got.peer).toMatch(/^198\.51\.100\./);
    const c = counters();
    // The Workers checked and handed everything back; they sent nothing to the TEP themselves.
    expect(c["client-encap-forward"]).toBe(0);
    expect(c["client-kernel-encap-bytes"]).toBeGreaterThan(8 << 20);
    // Super-packets went whole: fewer writes than segments on the wire.
    expect(c["client-kernel-encap-segments"]!).toBeGreaterThan(c["client-kernel-encap"]!);
    expect(c["client-decap-forward"]).toBeGreaterThan(0); // the replies: the userspace in path
    expect(await ttlAtWeb()).toBe(ttlUserspace);
    expect(await within(ping, 5_000)).toBe(true);
    const text = host.exec([
      BUN,
      join(ROOT, "mod.ts"),
      "client",
      "status",
      "--control",
      clientSocket,
    ]);
    expect(text.stdout).toMatch(
      /^kernel +\d+ packets \(\d+ on the wire\), \d+ bytes checked and handed to the kernel to encapsulate/m,
    );
    expect(text.stdout).toMatch(
      /^dti +dtihy0 \(mtu 1460, tun; encapsulation by the kernel \(--kernel-encap\)\)$/m,
    );
    expect(clientStatusJson<{ dti: unknown }>(host, clientSocket).dti).toEqual({
      requested: "tun",
      mode: "tun",
      fallback: null,
      counters: "workers",
      kernelEncap: true,
    });
  }, 90_000);

  test("a foreign IPv4 source written into the DTI is dropped and counted, not encapsulated", async () => {
    const before = counters();
    const pcap = join(dir, "spoof.pcap");
    const capture = web.spawn(["tshark", "-i", "w0", "-w", pcap, "-f", "udp port 9999 or icmp"], {
      timeoutMs: 60_000,
    });
    // The sources of the IPv4 packets captured so far: dumpcap writes each frame as it comes.
    const sources = () =>
      existsSync(pcap)
        ? web
            .exec(["tshark", "-r", pcap, "-T", "fields", "-e", "ip.src"])
            .stdout.split("\n")
            .filter((line) => line !== "")
        : [];
    // The capture runs once a ping is in its file.
    expect(
      await within(() => ping() && sources().some((s) => s.startsWith("198.51.100.")), 20_000),
    ).toBe(true);
    expect(host.exec(["python3", join(dir, "spoof.py"), "203.0.113.9", "20"]).code).toBe(0);
    expect(
      await within(
        () =>
          counters()["client-encap-drop-wrong-source"]! >=
          before["client-encap-drop-wrong-source"]! + 20,
        10_000,
      ),
    ).toBe(true);
    // A ping after them, in the file: once it is through, any of them that got past would
    // have been captured before it.
    const captured = sources().length;
    expect(ping()).toBe(true);
    expect(await within(() => sources().length > captured, 10_000)).toBe(true);
    capture.kill("SIGINT");
    await capture.exited;
    const seen = sources();
    expect(seen.some((s) => s.startsWith("198.51.100."))).toBe(true); // the pings
    expect(seen).not.toContain("203.0.113.9");
    const after = counters();
    expect(after["client-encap-forward"]).toBe(0);
  }, 60_000);

  test("the host's IPv6 FORWARD policy of DROP stops it (counted as handed over) until it accepts iif DTI; IPv4's does not", async () => {
    const nft = (...args: string[]) => {
      const r = host.exec(["nft", ...args]);
      if (r.code !== 0) throw new Error(`nft ${args.join(" ")}: ${r.stderr}`);
    };
    const drop = "{ type filter hook forward priority 0; policy drop; }";
    nft("add", "table", "ip", "dstmhy4");
    nft("add", "chain", "ip", "dstmhy4", "fchain", drop);
    try {
      // The seg6 route's input redirect replaces ip_forward: IPv4's FORWARD hook is not crossed.
      expect(await within(ping, 5_000)).toBe(true);
    } finally {
      nft("delete", "table", "ip", "dstmhy4");
    }
    nft("add", "table", "ip6", "dstmhy6");
    nft("add", "chain", "ip6", "dstmhy6", "fchain", drop);
    try {
      const before = counters()["client-kernel-encap"]!;
      expect(ping()).toBe(false);
      // The black hole shows: the Worker handed the echo request to the kernel.
      expect(counters()["client-kernel-encap"]).toBeGreaterThan(before);
      nft("add", "rule", "ip6", "dstmhy6", "fchain", "iifname", DTI, "accept");
      expect(await within(ping, 5_000)).toBe(true);
    } finally {
      nft("delete", "table", "ip6", "dstmhy6");
    }
  }, 30_000);

  test("SIGKILL leaves the rule; the restarted client removes it, works, and SIGTERM leaves nothing", async () => {
    await stopClient("SIGKILL");
    // The TUN went with the process (its route and sysctls with it); the rule stays.
    expect(await within(() => !kernelState().device, 10_000)).toBe(true);
    expect(kernelState().rules.length).toBe(1);
    await startClient(["--kernel-encap"]);
    await client!.waitFor(/kernel-dti-stale .*iif dtihy0 lookup 4608/, 5_000);
    expect(kernelState().rules.length).toBe(1);
    expect(await within(ping, 10_000)).toBe(true);
    expect(counters()["client-kernel-encap"]).toBeGreaterThan(0);
    await stopClient();
    const k = kernelState();
    expect(k).toMatchObject({ rules: [], table: "", device: false });
    expect(k.forwarding).toBeUndefined();
  }, 60_000);

  test("a restart without --kernel-encap after a SIGKILL removes the rule too", async () => {
    await startClient(["--kernel-encap"]);
    await stopClient("SIGKILL");
    expect(await within(() => !kernelState().device, 10_000)).toBe(true);
    expect(kernelState().rules.length).toBe(1);
    await startClient([]);
    expect(kernelState().rules).toEqual([]);
    expect(kernelState().forwarding).toBe("0");
    expect(kernelState().forceForwarding6).toBe("0");
    expect(await within(ping, 10_000)).toBe(true);
    await stopClient();
  }, 60_000);

  test("the lease lost and bound again to a new TEP: down and up in one process, the route to the new TEP", async () => {
    const c = await startClient(["--kernel-encap"]);
    for (const p of [tep, server]) p?.proc.kill("SIGTERM");
    await Promise.all([tep?.exited, server?.exited]);
    // A server that forgot the lease (in memory) and names another TEP: the renewal is refused.
    await startCore([], "2001:db8:7::2");
    await c.waitFor(/ lease-lost /, 45_000);
    await c.waitFor(/ bound .*tep6=2001:db8:7::2/, 45_000);
    const k = kernelState();
    expect(k.rules.length).toBe(1);
    expect(k.table).toMatch(/segs 1 \[ 2001:db8:7::2 \]/);
    expect([k.forwarding, k.acceptLocal, k.rpFilter, k.forceForwarding6]).toEqual([
      "1",
      "1",
      "0",
      "1",
    ]);
    expect(await within(ping, 10_000)).toBe(true);
    await stopClient();
    expect(kernelState()).toMatchObject({ rules: [], table: "", device: false });
  }, 120_000);

  test("a shared lease (port set): NAPT still applies, the kernel encapsulates", async () => {
    await stopAll();
    await startCore(["--share", "4"]);
    await startClient(["--kernel-encap"]);
    const status = clientStatusJson<{ ports: string; napt: unknown }>(host, clientSocket);
    const [offset, psidLength, psid] = status.ports.split("/").map(Number);
    expect(psidLength).toBeGreaterThan(0);
    const got = await upload();
    expect(got.sha).toBe(blobSha());
    // The source port the IPv4 server sees is in the lease's port set (RFC 7597 §5.1).
    const a = 16 - offset! - psidLength!;
    expect((got.port >>> a) & ((1 << psidLength!) - 1)).toBe(psid!);
    expect(got.port >>> (16 - offset!)).toBeGreaterThan(0);
    const c = counters();
    expect(c["client-encap-forward"]).toBe(0);
    expect(c["client-kernel-encap-segments"]!).toBeGreaterThan(c["client-kernel-encap"]!);
    expect(await within(ping, 10_000)).toBe(true);
    await stopClient();
    expect(kernelState()).toMatchObject({ rules: [], table: "", device: false });
  }, 90_000);

  test.each([["kernel"], ["seg6"], ["ip6tnl"]])(
    "--kernel-encap with --dti %s is refused with the reason (exit 2)",
    async (mode) => {
      const c = spawnDstm(
        ["client", "--server", "2001:db8:7::53", "--dti", mode, "--kernel-encap", "--ifname", DTI],
        {},
        host.name,
      );
      expect(await c.exited).toBe(2);
      expect((await c.stderr()).trim()).toBe(
        `dstm: --kernel-encap applies to the userspace DTI (--dti tun) only: --dti ${mode} encapsulates in the kernel already`,
      );
    },
    20_000,
  );

  test("--kernel-encap with --no-offload or --on-demand is refused (exit 2)", async () => {
    for (const [flag, reason] of [
      ["--no-offload", /needs the DTI offloads/],
      ["--on-demand", /cannot go with --on-demand/],
    ] as const) {
      const c = spawnDstm(
        ["client", "--server", "2001:db8:7::53", "--kernel-encap", flag, "--ifname", DTI],
        {},
        host.name,
      );
      expect(await c.exited).toBe(2);
      expect(await c.stderr()).toMatch(reason);
    }
  }, 20_000);
});
