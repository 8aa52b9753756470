import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveServerConfig } from "../cli/server.ts";
import { DstmClient, DstmRefusedError, DstmTransport } from "../lib/client/protocol.ts";
import type { ServerFlags } from "../lib/config/server_resolve.ts";
import { type LeaseJson, renderLeaseTable } from "../lib/control/lease_view.ts";
import { Logger } from "../lib/control/log.ts";
import { formatIPv4, parseIPv4 } from "../lib/net/addr.ts";
import { portInSet } from "../lib/net/portset.ts";
import { DstmServer, type ServerConfig } from "../lib/server/server.ts";
import { Status } from "../lib/wire/dstm_types.ts";
import { sharedPool30Stats } from "./helpers/engine.ts";
import { listenPort, runDstm, spawnDstm } from "./helpers/process.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-share-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const running: { stop(): unknown }[] = [];
afterEach(async () => {
  for (const r of running.splice(0)) await r.stop();
});

/** A real server whose pool 198.51.100.0/30 is shared by 4 (what `--share 4` configures). */
async function startServer(overrides: Partial<ServerConfig> = {}) {
  const server = await DstmServer.start({
    pools: [
      {
        prefixes: ["198.51.100.0/30"],
        share: 4,
        tep6: "2001:db8::1",
        tep4: parseIPv4("192.0.2.1") as number,
      },
    ],
    leaseTime: 600,
    listen: { address: "::1", port: 0 },
    sourceCheck: false,
    log: new Logger({ sink: () => {} }),
    ...overrides,
  });
  running.push(server);
  return { server, port: server.listening.port };
}

async function client(port: number, host6: string): Promise<DstmClient> {
  const transport = await DstmTransport.open({
    server: "::1",
    port,
    retry: { initialMs: 100, tries: 3 },
  });
  running.push({ stop: () => transport.close() });
  return new DstmClient(transport, host6);
}

describe("dstm server with a shared pool (--share 4)", () => {
  test("four clients get one IPv4 address with four different PSIDs in DISCOVER_ACK; a fifth gets the next address", async () => {
    const { server, port } = await startServer();
    const clients = await Promise.all([1, 2, 3, 4, 5].map((n) => client(port, `2001:db8:a::${n}`)));
    const leases = [];
    for (const c of clients) leases.push(await c.discover());
    expect(leases.slice(0, 4).map((l) => formatIPv4(l.ipv4))).toEqual(
      Array(4).fill("198.51.100.1"),
    );
    expect(leases.slice(0, 4).map((l) => l.portSet)).toEqual(
      [0, 1, 2, 3].map((psid) => ({
        offset: 6,
        psidLength: 2,
        psid,
      })),
    );
    expect([formatIPv4(leases[4]!.ipv4), leases[4]!.portSet?.psid]).toEqual(["198.51.100.2", 0]);
    expect(leases.every((l) => l.tep6 === "2001:db8::1" && l.leaseTime === 600)).toBe(true);
    // port 1280 is PSID 1's (offset 6, k 2: 1024 + 1·256 …)
    expect(portInSet(1280, leases[1]!.portSet!)).toBe(true);
    expect(portInSet(1280, leases[0]!.portSet!)).toBe(false);
    // a renewal keeps the port set; the TEP learns every (address, PSID) binding
    const renewed = await clients[2]!.request(leases[2]!.ipv4);
    expect(renewed.portSet).toEqual(leases[2]!.portSet);
    expect(server.engine.stats()).toEqual([sharedPool30Stats(5)]);
  });

  test("release frees one PSID, which the next host gets; a full pool answers POOL_EXHAUSTED", async () => {
    const { port } = await startServer();
    const clients = await Promise.all(
      Array.from({ length: 9 }, (_, i) => client(port, `2001:db8:b::${i + 1}`)),
    );
    const leases = [];
    for (const c of clients.slice(0, 8)) leases.push(await c.discover());
    const error = await clients[8]!.discover().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DstmRefusedError);
    expect((error as DstmRefusedError).status).toBe(Status.POOL_EXHAUSTED);
    await clients[5]!.release(leases[5]!.ipv4); // 198.51.100.2, PSID 1
    const next = await clients[8]!.discover();
    expect([formatIPv4(next.ipv4), next.portSet]).toEqual([
      "198.51.100.2",
      { offset: 6, psidLength: 2, psid: 1 },
    ]);
  });

  test("the control API shows port sets readably and as ranges", async () => {
    const control = join(dir, "share.sock");
    const { port } = await startServer({ control });
    await (await client(port, "2001:db8:c::1")).discover();
    await (await client(port, "2001:db8:c::2")).discover();
    const { leases } = (await (
      await fetch("http://localhost/v1/leases", { unix: control })
    ).json()) as { leases: LeaseJson[] };
    expect(leases.map((l) => [l.hostIPv4, l.ports, l.portSet])).toEqual([
      ["198.51.100.1", "1024-1279+62 (psid 0/4, a=6)", "6/2/0"],
      ["198.51.100.1", "1280-1535+62 (psid 1/4, a=6)", "6/2/1"],
    ]);
    expect(leases[1]!.portRanges).toHaveLength(63);
    expect(leases[1]!.portRanges.slice(0, 2)).toEqual([
      [1280, 1535],
      [2304, 2559],
    ]);
    expect(leases[1]!.portRanges.at(-1)).toEqual([64768, 65023]);
    const table = renderLeaseTable(leases, Date.now());
    expect(table.split("\n")[0]).toMatch(/^HOST IPv4 +HOST IPv6 +TEP IPv4 +TEP IPv6 +PORTS +STATE/);
    expect(table).toContain("1280-1535+62 (psid 1/4, a=6)  active");
    const stats = (await (await fetch("http://localhost/v1/stats", { unix: control })).json()) as {
      pools: unknown[];
    };
    expect(stats.pools).toEqual([sharedPool30Stats(2)]);
  });
});

describe("dstm server --share: configuration", () => {
  const base = ["--tep", "2001:db8::1", "--db", "memory", "--no-control", "--listen", "[::1]:0"];
  const resolve = (flags: ServerFlags) => resolveServerConfig(flags, () => {}).pools;

  test("--share, --psid-offset and --allow-well-known-ports apply to every --pool", () => {
    expect(
      resolve({ pool: ["198.51.100.0/30", "203.0.113.0/28"], share: "4", tep: "2001:db8::1" }),
    ).toMatchObject([
      { prefixes: ["198.51.100.0/30"], share: 4, psidOffset: undefined },
      { prefixes: ["203.0.113.0/28"], share: 4 },
    ]);
    expect(
      resolve({
        pool: ["198.51.100.0/30"],
        share: "16",
        psidOffset: "0",
        allowWellKnownPorts: true,
        tep: "2001:db8::1",
      }),
    ).toMatchObject([{ share: 16, psidOffset: 0, allowWellKnownPorts: true }]);
    expect(resolve({ pool: ["198.51.100.0/30"], tep: "2001:db8::1" })).toMatchObject([
      { share: undefined, allowWellKnownPorts: false },
    ]);
  });

  test("TOML: share per [[pool]], top-level defaults; shared and whole pools side by side", () => {
    const file = join(dir, "share.toml");
    writeFileSync(
      file,
      `tep = "2001:db8::1"\nshare = 2\n\n[[pool]]\nprefixes = ["198.51.100.0/30"]\nshare = 4\npsid-offset = 0\nallow-well-known-ports = true\n\n[[pool]]\nprefixes = ["203.0.113.0/28"]\nshare = 1\n\n[[pool]]\nprefixes = ["192.0.2.0/29"]\n`,
    );
    expect(resolve({ config: file })).toMatchObject([
      { prefixes: ["198.51.100.0/30"], share: 4, psidOffset: 0, allowWellKnownPorts: true },
      { prefixes: ["203.0.113.0/28"], share: 1 },
      { prefixes: ["192.0.2.0/29"], share: 2, allowWellKnownPorts: false },
    ]);
    // a pool's own setting wins over the flag, which wins over the top-level setting
    expect(resolve({ config: file, share: "8" }).map((p) => p.share)).toEqual([4, 1, 8]);
    writeFileSync(
      file,
      `tep = "2001:db8::1"\n[[pool]]\nprefixes = ["198.51.100.0/30"]\nshare = "four"\n`,
    );
    // strict TOML types, with the key's line and column (issue 13 item 3)
    expect(() => resolve({ config: file })).toThrow(
      `${file}:4:1: pool[0].share must be an integer, not "four"`,
    );
    writeFileSync(
      file,
      `tep = "2001:db8::1"\n[[pool]]\nprefixes = ["198.51.100.0/30"]\nallow-well-known-ports = "yes"\n`,
    );
    expect(() => resolve({ config: file })).toThrow(
      `${file}:4:1: pool[0].allow-well-known-ports must be true or false, not "yes"`,
    );
    writeFileSync(
      file,
      `tep = "2001:db8::1"\n[[pool]]\nprefixes = ["198.51.100.0/30"]\nshare = 6\n`,
    );
    // the engine's refusal, at the pool's share (not at its [[pool]] header)
    expect(() => resolve({ config: file })).toThrow(
      `${file}:4:1: pool[0].share: share 6 is not a power of two from 1 to 65536`,
    );
  });

  test("`dstm server --pool 198.51.100.0/30 --share 4` starts, logs the sharing and hands out port sets", async () => {
    const server = spawnDstm(["server", "--pool", "198.51.100.0/30", "--share", "4", ...base]);
    try {
      const port = listenPort(await server.waitFor(/ start /));
      const line = await server.waitFor(/ share /);
      expect(line).toMatch(
        / share pool=198\.51\.100\.0\/30 addresses=2 share=4 psid-offset=6 psids=4\/4 ports=16128 leases=8$/,
      );
      const lease = await (await client(port, "::1")).discover(); // the source check is on
      expect([formatIPv4(lease.ipv4), lease.portSet]).toEqual([
        "198.51.100.1",
        { offset: 6, psidLength: 2, psid: 0 },
      ]);
    } finally {
      server.proc.kill("SIGTERM");
      expect(await server.exited).toBe(0);
    }
  });

  test("with --psid-offset 0 the start log says which PSIDs hold well-known ports", async () => {
    const args = ["server", "--pool", "198.51.100.0/30", "--share", "4", "--psid-offset", "0"];
    const server = spawnDstm([...args, ...base]);
    try {
      const line = await server.waitFor(/ share /);
      expect(line).toContain("psids=3/4 ports=16384 leases=6");
      expect(line).toContain("PSID 0 holds ports below 1024: not assigned");
    } finally {
      server.proc.kill("SIGTERM");
      expect(await server.exited).toBe(0);
    }
  });

  const bad: [string[], RegExp][] = [
    [["--share", "3"], /share 3 is not a power of two from 1 to 65536/],
    [["--share", "0"], /share 0 is not a power of two/],
    [["--share", "131072"], /share 131072 is not a power of two/],
    [["--share", "four"], /--share: "four" is not a whole number/],
    [["--share", "1024"], /leaves 63 ports per host, fewer than 64/],
    [["--share", "4", "--psid-offset", "16"], /psid-offset 16 is not 0–15/],
    [["--share", "4", "--psid-offset", "15"], /is 17, more than 16/],
    [["--share", "2", "--psid-offset", "8"], /every port set holds well-known ports/],
  ];
  for (const [flags, message] of bad) {
    test(`bad sharing (${flags.join(" ")}) is one line on stderr and exit 2`, async () => {
      const { code, stderr } = await runDstm([
        "server",
        "--pool",
        "198.51.100.0/30",
        ...flags,
        ...base,
      ]);
      expect(code).toBe(2);
      expect(stderr).toMatch(message);
      expect(stderr).toStartWith("dstm: ");
      expect(stderr.trim().split("\n")).toHaveLength(1);
    });
  }
});
