/**
 * A running `dstm server` whose WAL fsync fails (the kernel's answer EIO, injected with
 * strace's syscall tampering into the real process: what we did not write) stops with a
 * non-zero exit, logs why at error level and counts it, and acknowledges no lease whose
 * fsync failed; every lease acknowledged before is in the database afterwards
 * (lib/lease/wal_sync.ts: a failed fsync is fatal and sticky; lib/server/server.ts stops
 * on fatal store errors).
 *
 * SQLite's own syncs are fsync(2) (this build has no HAVE_FDATASYNC), the store's is
 * fdatasync(2): injecting into fdatasync alone fails exactly the store's WAL sync.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DstmClient, DstmTransport } from "../lib/client/protocol.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { listenPort, loopbackServerArgs, spawnDstm } from "./helpers/process.ts";
import { waitForLine } from "./helpers/wait.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-fsynceio-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Leases for `hosts`, all in flight at once; host6 → IPv4 of those ACKed. */
async function discoverAll(port: number, hosts: readonly string[]): Promise<Map<string, number>> {
  const transport = await DstmTransport.open({
    server: "::1",
    port,
    retry: { initialMs: 500, tries: 2 },
  });
  try {
    const results = await Promise.allSettled(
      hosts.map((h) => new DstmClient(transport, h).discover()),
    );
    const acked = new Map<string, number>();
    for (const r of results) if (r.status === "fulfilled") acked.set(r.value.host6, r.value.ipv4);
    return acked;
  } finally {
    transport.close();
  }
}

const hostsOf = (group: number, count: number) =>
  Array.from(
    { length: count },
    (_, i) => `2001:db8:${group.toString(16)}::${(i + 1).toString(16)}`,
  );

test("fdatasync of the WAL failing with EIO stops the server (exit ≠ 0, store-failed logged), no lease ACKed after it, every earlier one stored", async () => {
  const db = join(dir, "leases.db");
  const server = spawnDstm(loopbackServerArgs(db));
  let strace: ReturnType<typeof Bun.spawn> | undefined;
  try {
    const port = listenPort(await server.waitFor(/ start /));
    const before = await discoverAll(port, hostsOf(0x301, 20));
    expect(before.size).toBe(20);

    // From now on every fdatasync(2) of the server (any thread) fails with EIO.
    strace = Bun.spawn(
      [
        "strace",
        "-f",
        "-p",
        String(server.proc.pid),
        "-e",
        "trace=fdatasync",
        "-e",
        "inject=fdatasync:error=EIO",
        "-o",
        join(dir, "strace.out"),
      ],
      { stdout: "ignore", stderr: "pipe" },
    );
    // strace says "Process N attached" for each thread; the main thread is listed first.
    await waitForLine(strace.stderr as ReadableStream<Uint8Array>, /attached/, {
      timeoutMs: 10_000,
      what: "strace attached",
    });
    const after = await discoverAll(port, hostsOf(0x302, 20));
    expect(await server.exited).not.toBe(0);
    expect([...after.keys()]).toEqual([]);
    const failed = server.lines.find((l) => / ERROR store-failed /.test(l));
    expect(failed).toMatch(/fsync of .*leases\.db-wal failed: EIO/);
    expect(await server.stderr()).toMatch(/fsync of .*leases\.db-wal failed/);
  } finally {
    server.proc.kill("SIGKILL");
    await server.exited;
    strace?.kill("SIGKILL");
    await strace?.exited;
  }
  // Every lease ACKed before the failure is stored, active, with its host.
  const store = SqliteLeaseStore.openReadOnly(db);
  try {
    const rows = (await store.loadAll()).filter((r) => r.state === "active");
    const byHost = new Map(rows.map((r) => [r.host6, r.ipv4]));
    expect(new Set(rows.map((r) => r.ipv4)).size).toBe(rows.length);
    for (const host of hostsOf(0x301, 20)) expect(byHost.has(host)).toBe(true);
  } finally {
    await store.close();
  }
}, 60_000);
