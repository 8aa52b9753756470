/**
 * Power-loss durability of the SQLite store, read from the system calls of a real
 * `dstm server` (strace, what we did not write): for every lease a client got an ACK for, the
 * WAL frames of the commit that stored it were written, and then an fsync or fdatasync of
 * the WAL *began* after the last frame of that commit and *returned* before the client had
 * the ACK. That is FULL's guarantee (https://sqlite.org/pragma.html#pragma_synchronous: the
 * WAL synced after each commit), which lib/lease/wal_sync.ts claims to keep with
 * `synchronous=NORMAL` and its own fdatasync on the thread pool: a frame on disk before its
 * ACK survives a power cut, one only in the page cache may not. SIGKILL tests
 * (test/server_crash_load.test.ts) cannot see this: the page cache outlives the process.
 *
 * The lease is found in the WAL by its host's address (stored as text in its row); a commit
 * ends with the frame whose header holds the database size (https://sqlite.org/fileformat2.html#walformat:
 * bytes 4–7 of a frame header, non-zero only for a commit frame). SQLite writes a frame as two
 * pwrite64 calls, the 24-byte header then the page.
 */
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DstmClient, DstmTransport } from "../lib/client/protocol.ts";
import { listenPort, loopbackServerArgs, spawnDstm } from "./helpers/process.ts";
import { eventually, waitForLine, waitUntil } from "./helpers/wait.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-walorder-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** One system call from the trace: start and end in s (wall clock), its file, its data (hex). */
interface Call {
  /** The thread that made the call (strace -f's first column). */
  readonly tid: number;
  readonly name: string;
  readonly start: number;
  readonly end: number;
  readonly file: string;
  readonly data: string;
  readonly size: number;
}

const unhex = (text: string) =>
  text.replace(/\\x([0-9a-f]{2})/g, (_, h: string) => String.fromCharCode(Number.parseInt(h, 16)));

/** Parses `strace -f -ttt -T -y -xx` output, joining `<unfinished ...>` with `resumed>` lines. */
function parseTrace(text: string): Call[] {
  const calls: Call[] = [];
  const open = new Map<string, { name: string; start: number; args: string }>();
  const finish = (tid: string, name: string, start: number, args: string, tail: string) => {
    const duration = /<(\d+\.\d+)>\s*$/.exec(tail);
    const fd = /^\d+<([^>]*)>/.exec(args);
    if (!duration || !fd) return;
    const data = /"((?:\\x[0-9a-f]{2})*)"/.exec(args)?.[1] ?? "";
    const size = Number(/, (\d+), \d+$/.exec(args)?.[1] ?? /\) += (\d+)/.exec(tail)?.[1] ?? -1);
    calls.push({
      tid: Number(tid),
      name,
      start,
      end: start + Number(duration[1]),
      file: unhex(fd[1] as string),
      data: data.replaceAll("\\x", ""),
      size,
    });
  };
  for (const line of text.split("\n")) {
    let m = /^(\d+)\s+(\d+\.\d+) (\w+)\((.*) <unfinished \.\.\.>$/.exec(line);
    if (m) {
      open.set(m[1] as string, { name: m[3] as string, start: Number(m[2]), args: m[4] as string });
      continue;
    }
    m = /^(\d+)\s+\d+\.\d+ <\.\.\. (\w+) resumed>(.*)$/.exec(line);
    if (m) {
      const begun = open.get(m[1] as string);
      open.delete(m[1] as string);
      if (begun)
        finish(
          m[1] as string,
          begun.name,
          begun.start,
          begun.args + (m[3] as string).replace(/\) += .*$/, ""),
          m[3] as string,
        );
      continue;
    }
    m = /^(\d+)\s+(\d+\.\d+) (\w+)\((.*)\) += (.*)$/.exec(line);
    if (m) finish(m[1] as string, m[3] as string, Number(m[2]), m[4] as string, `) = ${m[5]}`);
  }
  return calls;
}

/**
 * Attaches strace to every thread of `pid` (`-f -ttt -T -y -xx`), tracing `syscalls` into
 * `file` with `bytes` of each buffer; resolves once strace says it attached.
 */
async function traceThreads(
  pid: number,
  file: string,
  syscalls: string,
  bytes: number,
): Promise<ReturnType<typeof Bun.spawn>> {
  const strace = Bun.spawn(
    [
      "strace",
      "-f",
      "-p",
      String(pid),
      "-ttt",
      "-T",
      "-y",
      "-xx",
      "-s",
      String(bytes),
      "-e",
      `trace=${syscalls}`,
      "-o",
      file,
    ],
    { stdout: "ignore", stderr: "pipe" },
  );
  // "Process N attached with M threads": every thread is traced from here on.
  await waitForLine(strace.stderr as ReadableStream<Uint8Array>, /attached/, {
    timeoutMs: 10_000,
    what: "strace attached",
  });
  return strace;
}

/** A DISCOVER for each of `hosts`, `inFlight` at a time; `acked(host)` as each ACK comes. */
async function discoverAll(
  transport: DstmTransport,
  hosts: readonly string[],
  inFlight: number,
  acked: (host: string) => void = () => {},
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < hosts.length) {
      const host = hosts[next++] as string;
      await new DstmClient(transport, host).discover();
      acked(host);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
}

type Server = ReturnType<typeof spawnDstm>;

/** SIGTERM to the server, which must exit 0; strace ends with it. */
async function stopTraced(server: Server, strace: ReturnType<typeof Bun.spawn>): Promise<void> {
  server.proc.kill("SIGTERM");
  expect(await server.exited).toBe(0);
  await strace.exited;
}

/** Both killed, whatever happened (nothing when they are gone already). */
async function killTraced(server: Server, strace?: ReturnType<typeof Bun.spawn>): Promise<void> {
  server.proc.kill("SIGKILL");
  await server.exited;
  strace?.kill("SIGKILL");
  await strace?.exited;
}

test("every ACKed lease: its commit's WAL frames were written, then an fsync of the WAL began after them and returned before the ACK", async () => {
  const db = join(dir, "leases.db");
  const wal = `${db}-wal`;
  const server = spawnDstm(loopbackServerArgs(db));
  const traceFile = join(dir, "trace");
  let strace: ReturnType<typeof Bun.spawn> | undefined;
  /** host6 → wall-clock time (s) the client had its ACK. */
  const ackedAt = new Map<string, number>();
  let restarted = false;
  try {
    const port = listenPort(await server.waitFor(/ start /));
    strace = await traceThreads(server.proc.pid, traceFile, "pwrite64,fsync,fdatasync", 4200);
    const transport = await DstmTransport.open({
      server: "::1",
      port,
      retry: { initialMs: 2000, tries: 3 },
    });
    const hosts = Array.from({ length: 120 }, (_, i) => `2001:db8:4ac::${(i + 1).toString(16)}`);
    /** Allocates `batch` with 30 at a time, recording when each ACK came. */
    const allocate = (batch: readonly string[]) =>
      discoverAll(transport, batch, 30, (host) =>
        ackedAt.set(host, (performance.timeOrigin + performance.now()) / 1000),
      );
    await allocate(hosts.slice(0, 60));
    // Then an operator checkpoints with TRUNCATE: the WAL is cut to zero and the server's
    // next commit (the second half, started only now) writes it again from its header (a WAL
    // restart, same inode).
    // It is tried until it is not busy: the server's own checkpointer (a Worker) may hold
    // the checkpoint lock, and then SQLite answers SQLITE_BUSY at once, whatever the
    // busy_timeout (https://sqlite.org/c3ref/wal_checkpoint_v2.html).
    restarted = await eventually(
      () => {
        const checkpoint = Bun.spawnSync([
          "sqlite3",
          db,
          "PRAGMA busy_timeout = 1000; PRAGMA wal_checkpoint(TRUNCATE);",
        ]);
        return /^0\|/m.test(checkpoint.stdout.toString());
      },
      { timeoutMs: 20_000, intervalMs: 50, what: "a TRUNCATE checkpoint that was not busy" },
    );
    await allocate(hosts.slice(60));
    transport.close();
    await stopTraced(server, strace);
  } finally {
    await killTraced(server, strace);
  }
  expect(ackedAt.size).toBe(120);
  expect(restarted).toBe(true);

  const calls = parseTrace(readFileSync(traceFile, "utf8"));
  const writes = calls.filter((c) => c.name === "pwrite64" && c.file === wal);
  const syncs = calls.filter(
    (c) => (c.name === "fsync" || c.name === "fdatasync") && c.file === wal,
  );
  expect(writes.length).toBeGreaterThan(0);
  // The WAL was restarted while traced: a new 32-byte WAL header was written.
  expect(writes.some((w) => w.size === 32)).toBe(true);
  /** For the page write at index i, when its commit's last frame had been written. */
  const commitEnd = (i: number): number | undefined => {
    for (let j = i; j < writes.length; j++) {
      const header = writes[j - 1];
      const page = writes[j] as Call;
      // A commit frame: its 24-byte header says the database size (bytes 4–7) ≠ 0.
      if (page.size > 24 && header?.size === 24 && header.data.slice(8, 16) !== "00000000")
        return page.end;
    }
    return undefined;
  };
  const late: string[] = [];
  // 1 ms: the client's clock reading may lag the kernel's by less than that; an ACK sent
  // before its sync returned would have to be received within 1 ms after it to pass.
  const slack = 0.001;
  for (const [host, acked] of ackedAt) {
    const text = Buffer.from(host).toString("hex");
    const first = writes.findIndex((w) => w.size > 24 && w.data.includes(text));
    const committed = first < 0 ? undefined : commitEnd(first);
    if (committed === undefined) {
      late.push(`${host}: not found in a WAL commit`);
      continue;
    }
    const covered = syncs.some((s) => s.start >= committed && s.end <= acked + slack);
    if (!covered)
      late.push(`${host}: no WAL sync between its commit (${committed}) and its ACK (${acked})`);
  }
  expect(late).toEqual([]);
}, 90_000);

test("a restart's new WAL is in its directory for good before the first ACK: the directory is fsynced after the WAL was created", async () => {
  const home = join(dir, "restart");
  mkdirSync(home);
  const db = join(home, "leases.db");
  const args = [
    "server",
    "--pool",
    "198.51.100.0/24",
    "--tep",
    "2001:db8::1,192.0.2.1",
    "--listen",
    "[::1]:0",
    "--db",
    db,
    "--no-control",
    "--no-source-check",
  ];
  const oneLease = async (port: number, host: string): Promise<number> => {
    const transport = await DstmTransport.open({ server: "::1", port });
    try {
      await new DstmClient(transport, host).discover();
      return (performance.timeOrigin + performance.now()) / 1000;
    } finally {
      transport.close();
    }
  };
  // A first life creates the database; its clean stop checkpoints and deletes the WAL.
  const first = spawnDstm(args);
  try {
    await oneLease(listenPort(await first.waitFor(/ start /)), "2001:db8:4ad::1");
    first.proc.kill("SIGTERM");
    expect(await first.exited).toBe(0);
  } finally {
    first.proc.kill("SIGKILL");
  }
  expect(existsSync(`${db}-wal`)).toBe(false);
  // The second life's open creates a new, empty WAL (a directory entry not yet on disk).
  const second = spawnDstm(args);
  const traceFile = join(home, "trace");
  let strace: ReturnType<typeof Bun.spawn> | undefined;
  let ackedAt = 0;
  try {
    const port = listenPort(await second.waitFor(/ start /));
    expect(existsSync(`${db}-wal`)).toBe(true);
    strace = await traceThreads(second.proc.pid, traceFile, "fsync,fdatasync", 0);
    ackedAt = await oneLease(port, "2001:db8:4ad::2");
    await stopTraced(second, strace);
  } finally {
    await killTraced(second, strace);
  }
  const calls = parseTrace(readFileSync(traceFile, "utf8"));
  // SQLite opens the WAL with its DIRSYNC flag and, under synchronous=NORMAL too, syncs the
  // WAL header of the first commit (then the directory, once); then the store's fdatasync.
  const dirSynced = calls.some(
    (c) => c.name === "fsync" && c.file === home && c.end <= ackedAt + 0.001,
  );
  const walSynced = calls.some((c) => c.file === `${db}-wal` && c.end <= ackedAt + 0.001);
  expect({ dirSynced, walSynced }).toEqual({ dirSynced: true, walSynced: true });
}, 60_000);

test("under load, below WAL_PAGES of WAL, the event loop's thread writes no page of the database file: the WAL checkpoints run on their Worker (lib/lease/wal_checkpointer.ts)", async () => {
  const home = join(dir, "checkpoints");
  mkdirSync(home);
  const db = join(home, "leases.db");
  const server = spawnDstm(loopbackServerArgs(db));
  const traceFile = join(home, "trace");
  let strace: ReturnType<typeof Bun.spawn> | undefined;
  let stoppedAt = 0;
  try {
    const port = listenPort(await server.waitFor(/ start /));
    strace = await traceThreads(server.proc.pid, traceFile, "pwrite64,write,fsync,fdatasync", 0);
    const transport = await DstmTransport.open({ server: "::1", port });
    const hosts = Array.from({ length: 200 }, (_, i) => `2001:db8:4ae::${(i + 1).toString(16)}`);
    await discoverAll(transport, hosts, 40);
    // A checkpoint runs every 100 ms: poll the trace until the database file was written.
    await waitUntil(
      () =>
        parseTrace(readFileSync(traceFile, "utf8")).some(
          (c) => c.name === "pwrite64" && c.file === db,
        ),
      { what: "a checkpoint writing the database file", timeoutMs: 20_000 },
    );
    transport.close();
    stoppedAt = (performance.timeOrigin + performance.now()) / 1000;
    await stopTraced(server, strace);
  } finally {
    await killTraced(server, strace);
  }
  const calls = parseTrace(readFileSync(traceFile, "utf8")).filter((c) => c.start < stoppedAt);
  const pageWrites = calls.filter((c) => c.name === "pwrite64" && c.file === db);
  expect(pageWrites.length).toBeGreaterThan(0);
  // The main thread's id is the process id: it wrote the WAL (its commits) but no page of
  // the database file, which only a checkpoint writes.
  const pid = server.proc.pid;
  expect(calls.some((c) => c.tid === pid && c.file === `${db}-wal`)).toBe(true);
  expect(pageWrites.filter((c) => c.tid === pid).length).toBe(0);
}, 90_000);
