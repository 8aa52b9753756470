/**
 * The server's warm-up (lib/server/warm_up.ts): before listening, `dstm server` runs its
 * request paths on synthetic exchanges (native DISCOVER, and DHCPv4-over-DHCPv6 DISCOVER +
 * REQUEST when on) through twins of itself on scratch stores and sockets of none, bounded in
 * count and time, so that the first real hosts are not answered at the speed of a cold JIT.
 * Every synthetic exchange gets its lease there, and none of it reaches the network, the
 * server's lease store or its answers' counters.
 */
import { afterAll, describe, expect, test } from "bun:test";
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statfsSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { DstmClient, DstmTransport } from "../lib/client/protocol.ts";
import { Logger } from "../lib/control/log.ts";
import { DstmServer } from "../lib/server/server.ts";
import type { ServerConfig } from "../lib/server/server_config.ts";
import { isRoomyMemoryFilesystem, type StartTwin, warmUp } from "../lib/server/warm_up.ts";
import { jitCompilerTicks, niceJitCompilerThreads } from "../lib/sys/jit_threads.ts";
import { listenPort, loopbackServerArgs, runDstm, spawnDstm } from "./helpers/process.ts";
import { waitUntil } from "./helpers/wait.ts";

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

/** The warm-up's scratch directories left in the temporary directory or /dev/shm. */
function scratchDirs(): string[] {
  const dirs = (parent: string) => {
    try {
      return readdirSync(parent)
        .filter((name) => name.startsWith("dstm-warm-up-"))
        .map((name) => join(parent, name));
    } catch {
      return [];
    }
  };
  return [...dirs(tmpdir()), ...dirs("/dev/shm")];
}

/** A memory filesystem with room for the twins' SQLite stores is there ($TMPDIR or /dev/shm). */
const MEMORY_FS = isRoomyMemoryFilesystem(tmpdir()) || isRoomyMemoryFilesystem("/dev/shm");

/** statfs(2) f_type of tmpfs and ramfs (linux/magic.h). */
const MEMORY_FS_TYPES = [0x01021994, 0x858458f6];

/** A StartTwin that notes each twin's database and the type of the filesystem it is on. */
function noting(): { start: StartTwin; dbs: { db: string | undefined; fsType?: number }[] } {
  const dbs: { db: string | undefined; fsType?: number }[] = [];
  return {
    dbs,
    start: (c) => {
      dbs.push({ db: c.db, fsType: c.db ? Number(statfsSync(dirname(c.db)).type) : undefined });
      return DstmServer.start(c);
    },
  };
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

  test.skipIf(!MEMORY_FS)(
    "a SQLite server's twins run on scratch SQLite stores, removed afterwards",
    async () => {
      const before = scratchDirs();
      const db = join(dir, "real.db");
      const twins = noting();
      const r = await warmUp(config({ db, newDb: true, dhcp4o6: DHCP4O6 }), twins.start, LOTS);
      expect(r.store).toBe("sqlite");
      // On a memory filesystem: their fsyncs wait for no disk.
      expect(twins.dbs.map((t) => MEMORY_FS_TYPES.includes(t.fsType ?? -1))).toEqual([true, true]);
      expect(r.leased + r.leased4o6).toBe(300);
      expect(scratchDirs()).toEqual(before);
      // The server's own database is never created by its warm-up.
      expect(existsSync(db)).toBe(false);
    },
  );

  /** Runs `body` with TMPDIR set to `value`. */
  async function withTmpdir<T>(value: string, body: () => Promise<T>): Promise<T> {
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = value;
    try {
      return await body();
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
    }
  }

  test("with no temporary directory to be had, a SQLite server's twins still run", async () => {
    const twins = noting();
    const r = await withTmpdir(join(dir, "no-such-directory"), () =>
      warmUp(config({ db: join(dir, "real2.db"), newDb: true }), twins.start, LOTS),
    );
    expect(r.leased).toBe(300);
    // On /dev/shm when it is a tmpfs, else on memory; never under the missing TMPDIR.
    for (const t of twins.dbs) expect(t.db === undefined || !t.db.startsWith(dir)).toBe(true);
  });

  // A twin's SQLite store fsyncs a dozen times on the event loop to open, and its WAL at each
  // write: with TMPDIR on a disk whose fsync took 100 ms, the twins alone took 2.7 s (review).
  test.skipIf(isRoomyMemoryFilesystem(dir))(
    "with TMPDIR on a disk, the twins' SQLite stores are not put there (fsyncs that wait for it)",
    async () => {
      const twins = noting();
      const r = await withTmpdir(dir, () =>
        warmUp(config({ db: join(dir, "real3.db"), newDb: true }), twins.start, LOTS),
      );
      expect(r.leased).toBe(300);
      expect(twins.dbs.length).toBe(2);
      for (const t of twins.dbs)
        expect(t.db === undefined || MEMORY_FS_TYPES.includes(t.fsType ?? -1)).toBe(true);
      expect(readdirSync(dir).filter((n) => n.startsWith("dstm-warm-up-"))).toEqual([]);
    },
  );

  test.skipIf(!MEMORY_FS)(
    "a first twin whose SQLite store cannot be opened (a full filesystem): the twins run on memory",
    async () => {
      const before = scratchDirs();
      const dbs: (string | undefined)[] = [];
      const noRoom: StartTwin = (c) => {
        dbs.push(c.db);
        if (c.db) return Promise.reject(new Error("SQLITE_FULL: database or disk is full"));
        return DstmServer.start(c);
      };
      const r = await warmUp(config({ db: join(dir, "real4.db"), newDb: true }), noRoom, LOTS);
      expect(r.store).toBe("memory");
      expect(r.leased).toBe(300);
      expect(dbs.length).toBe(3);
      expect(dbs.slice(1)).toEqual([undefined, undefined]);
      expect(scratchDirs()).toEqual(before);
    },
  );

  test("no twin and no exchange is begun once the time is over (a slow start)", async () => {
    let starts = 0;
    const maxMs = 30;
    const begun = performance.now();
    const slow: StartTwin = async (c) => {
      starts++;
      const twin = await DstmServer.start(c);
      // A start slower than the warm-up's time (a slow disk): it returns once that time is over.
      await waitUntil(() => performance.now() - begun > maxMs, { what: "the warm-up's time" });
      return twin;
    };
    const r = await warmUp(config(), slow, { exchanges: 1000, maxMs, settleMs: 0 });
    expect(starts).toBe(1);
    expect(r.exchanges).toBe(0);
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

  test("4o6 hosts come from the first allowed prefix of 96 bits or fewer; none: native hosts only", async () => {
    // A /128 first (one host allowed): its 4o6 hosts would be refused without an answer.
    const mixed = { ...DHCP4O6, allow: ["2001:db8:77::5/128", "2001:db8:78::/48"] };
    const r = await warmUp(config({ dhcp4o6: mixed }), start, { ...LOTS, exchanges: 100 });
    expect(r.leased + r.leased4o6).toBe(100);
    expect(r.leased4o6).toBeGreaterThan(30);
    const hosts = { ...DHCP4O6, allow: ["2001:db8:77::5/128", "2001:db8:77::6/127"] };
    const only = await warmUp(config({ dhcp4o6: hosts }), start, { ...LOTS, exchanges: 100 });
    expect(only.exchanges).toBe(100);
    expect(only.leased).toBe(100);
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

test.skipIf(!isRoomyMemoryFilesystem("/dev/shm"))(
  "a SIGTERM during the warm-up ends the server as before, and its scratch directory goes with it",
  async () => {
    const tmp = mkdtempSync(join("/dev/shm", "dstm-warmup-test-"));
    try {
      const server = spawnDstm(loopbackServerArgs(join(dir, "sigterm.db")), { TMPDIR: tmp });
      const warming = () => readdirSync(tmp).some((n) => n.startsWith("dstm-warm-up-"));
      await waitUntil(warming, { what: "the warm-up's scratch directory", timeoutMs: 20_000 });
      server.proc.kill("SIGTERM");
      await server.exited;
      // Ended by the signal, as before the twins (no start line after it).
      expect(server.proc.signalCode).toBe("SIGTERM");
      expect(server.lines.some((l) => / start /.test(l))).toBe(false);
      expect(readdirSync(tmp)).toEqual([]);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  },
  60_000,
);

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
