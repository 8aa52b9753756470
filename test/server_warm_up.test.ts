/**
 * The server's warm-up (lib/server/warm_up.ts): before listening, `dstm server` runs its
 * request paths on synthetic exchanges (native DISCOVER, and DHCPv4-over-DHCPv6 DISCOVER +
 * REQUEST when on) through twins of itself on scratch stores and sockets of none, bounded in
 * count and time, so that the first real hosts are not answered at the speed of a cold JIT.
 * Every synthetic exchange gets its lease there, and none of it reaches the network, the
 * server's lease store or its answers' counters.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DstmClient, DstmTransport } from "../lib/client/protocol.ts";
import { Logger } from "../lib/control/log.ts";
import { DstmServer } from "../lib/server/server.ts";
import type { ServerConfig } from "../lib/server/server_config.ts";
import { type StartTwin, warmUp } from "../lib/server/warm_up.ts";
import { jitCompilerTicks, niceJitCompilerThreads } from "../lib/sys/jit_threads.ts";
import { listenPort, loopbackServerArgs, runDstm, spawnDstm } from "./helpers/process.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-warmup-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const POOLS = [{ name: "p", prefixes: ["198.51.100.0/24"], tep6: "2001:db8::1", tep4: 0xc0000201 }];

/** A server's configuration, on loopback, logging nowhere. */
function config(extra: Partial<ServerConfig> = {}): ServerConfig {
  return {
    pools: POOLS,
    leaseTime: 3600,
    maxLeaseTime: 3600,
    listen: { address: "::1", port: 0 },
    sourceCheck: true,
    log: new Logger({ sink: () => {}, level: "warn" }),
    ...extra,
  };
}

const DHCP4O6 = { address: "::1", port: 0, interfaces: [], serverId: 0xc0000201 };
const start: StartTwin = (c) => DstmServer.start(c);
const LOTS = { exchanges: 300, maxMs: 60_000, settleMs: 0 };

/** [command name, niceness] of each thread of process `pid` (proc_pid_stat(5), field 19), main thread first. */
function threadNices(pid: number): [string, number][] {
  return readdirSync(`/proc/${pid}/task`)
    .sort((a, b) => Number(a) - Number(b))
    .map((task) => {
      const stat = readFileSync(`/proc/${pid}/task/${task}/stat`, "latin1");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return [stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")), Number(fields[16])];
    });
}

/** The warm-up's scratch directories left in the temporary directory. */
function scratchDirs(): string[] {
  return readdirSync(tmpdir()).filter((name) => name.startsWith("dstm-warm-up-"));
}

describe("warmUp", () => {
  test("twins of the server lease every native and 4o6 exchange", async () => {
    const r = await warmUp(config({ dhcp4o6: DHCP4O6 }), start, LOTS);
    expect(r.exchanges).toBe(300);
    expect(r.leased).toBeGreaterThan(100);
    expect(r.leased4o6).toBeGreaterThan(100);
    expect(r.leased + r.leased4o6).toBe(300);
    expect(r.store).toBe("memory");
  });

  test("a SQLite server's twins run on scratch SQLite stores, removed afterwards", async () => {
    const before = scratchDirs();
    const db = join(dir, "real.db");
    const r = await warmUp(config({ db, newDb: true, dhcp4o6: DHCP4O6 }), start, LOTS);
    expect(r.store).toBe("sqlite");
    expect(r.leased + r.leased4o6).toBe(300);
    expect(scratchDirs()).toEqual(before);
    // The server's own database is never created by its warm-up.
    expect(existsSync(db)).toBe(false);
  });

  test("with no temporary directory to be had, a SQLite server's twins run on memory", async () => {
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = join(dir, "no-such-directory");
    try {
      const r = await warmUp(config({ db: join(dir, "real2.db"), newDb: true }), start, LOTS);
      expect(r.store).toBe("memory");
      expect(r.leased).toBe(300);
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
    }
  });

  test("a shared pool's layout is warmed too (port sets)", async () => {
    const r = await warmUp(config({ pools: [{ ...POOLS[0]!, share: 4 }], leaseTime: 600 }), start, {
      ...LOTS,
      exchanges: 100,
    });
    expect(r.leased).toBe(100);
  });

  test("with host keys, the native queries are signed and leased", async () => {
    const key = { id: 7, secret: new Uint8Array(32).fill(9) };
    const r = await warmUp(config({ keys: [key] }), start, { ...LOTS, exchanges: 100 });
    expect(r.leased).toBe(100);
  });

  test("4o6 hosts come from the first allowed prefix", async () => {
    const allowed = { ...DHCP4O6, allow: ["2001:db8:77::/48"] };
    const r = await warmUp(config({ dhcp4o6: allowed }), start, { ...LOTS, exchanges: 100 });
    // Half the hosts are 4o6 hosts (the first two of every four): none refused by the allow list.
    expect(r.leased + r.leased4o6).toBe(100);
    expect(r.leased4o6).toBeGreaterThan(30);
  });

  test("the twins open no socket: nothing they say reaches the network", async () => {
    const sockets = () =>
      readdirSync("/proc/self/fd").filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`).startsWith("socket:");
        } catch {
          return false;
        }
      }).length;
    const before = sockets();
    const during: number[] = [];
    const counting: StartTwin = async (c) => {
      const twin = await DstmServer.start(c);
      during.push(sockets());
      return twin;
    };
    const pools = [{ ...POOLS[0]!, tep6: "::1" }];
    const r = await warmUp(config({ pools, dhcp4o6: DHCP4O6 }), counting, {
      ...LOTS,
      exchanges: 200,
    });
    expect(r.leased + r.leased4o6).toBe(200);
    expect(during).toEqual([before, before]);
  });

  test("after its exchanges it waits for the compiler threads, three quiet polls at least", async () => {
    expect(Number.isInteger(jitCompilerTicks())).toBe(true);
    // JavaScriptCore's compiler threads are named JITWorker: they exist once anything compiled.
    const threads = readdirSync("/proc/self/task").map((t) =>
      readFileSync(`/proc/self/task/${t}/comm`, "latin1").trim(),
    );
    expect(threads).toContain("JITWorker");
    const r = await warmUp(config(), start, { exchanges: 50, maxMs: 60_000, settleMs: 60_000 });
    expect(r.exchanges).toBe(50);
    expect(r.settleMs).toBeGreaterThanOrEqual(60);
  });

  test("niceJitCompilerThreads lowers the compiler threads' priority, once", () => {
    expect(niceJitCompilerThreads(10)).toBeGreaterThan(0);
    const jit = threadNices(process.pid).filter(([comm]) => comm === "JITWorker");
    expect(jit.length).toBeGreaterThan(0);
    expect(jit.every(([, nice]) => nice === 10)).toBe(true);
    expect(niceJitCompilerThreads(10)).toBe(0);
    // Back to normal for the other tests (as root; otherwise they stay at 10).
    niceJitCompilerThreads(0);
  });

  test("bounded in time: no time, no exchange, no twin", async () => {
    const r = await warmUp(config(), start, { exchanges: 1000, maxMs: 0, settleMs: 0 });
    expect(r.exchanges).toBe(0);
    expect(r.settleMs).toBe(0);
  });

  test("a twin that cannot start ends the warm-up without an error", async () => {
    const failing: StartTwin = () => Promise.reject(new Error("no"));
    const r = await warmUp(config(), failing, LOTS);
    expect(r.exchanges).toBe(0);
  });
});

test("dstm server warms up before it listens, and the warm-up leaves no lease behind", async () => {
  const control = join(dir, "server.sock");
  const server = spawnDstm(loopbackServerArgs("memory", ["--control", control]));
  try {
    const warm = await server.waitFor(/ warm-up /, 20_000);
    expect(warm).toMatch(
      / warm-up exchanges=\d+ scratch-leases=\d+ ms=\d+ settle-ms=\d+ store=.*not your pools/,
    );
    const [, exchanges, leased] = / exchanges=(\d+) scratch-leases=(\d+)/.exec(warm)!;
    expect(Number(exchanges)).toBeGreaterThan(0);
    expect(leased).toBe(exchanges);
    const start = await server.waitFor(/ start /, 20_000);
    expect(server.lines.indexOf(warm)).toBeLessThan(server.lines.indexOf(start));
    // Its JIT compiler threads yield the CPU to answering (nice 10); its own thread does not.
    const jit = threadNices(server.proc.pid).filter(([comm]) => comm === "JITWorker");
    expect(jit.length).toBeGreaterThan(0);
    expect(jit.filter(([, nice]) => nice !== 10)).toEqual([]);
    expect(threadNices(server.proc.pid)[0]?.[1]).toBe(0);
    // None of the synthetic leases is the server's; a real host gets the pool's first address.
    const ls = await runDstm(["lease", "ls", "--control", control, "--json"]);
    expect(JSON.parse(ls.stdout)).toEqual({ leases: [], next: null });
    const transport = await DstmTransport.open({ server: "::1", port: listenPort(start) });
    try {
      const lease = await new DstmClient(transport, "2001:db8:1::10").discover();
      expect(lease.ipv4).toBe(0xc6336401);
    } finally {
      transport.close();
    }
    const after = JSON.parse(
      (await runDstm(["lease", "ls", "--control", control, "--json"])).stdout,
    );
    expect(after.leases.map((l: { hostIPv6: string }) => l.hostIPv6)).toEqual(["2001:db8:1::10"]);
  } finally {
    server.proc.kill("SIGTERM");
    await server.exited;
  }
}, 60_000);
