/**
 * The lease database under a running server: deleted or replaced, it stops the server (no
 * ACK after that), and a restart refuses to start empty over it unless told (--new-db).
 * The files are private (0600). Real `dstm server` processes.
 */
import { afterAll, expect, test } from "bun:test";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  renameSync,
  rmSync,
  statSync,
  truncateSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DstmClient, DstmTransport } from "../lib/client/protocol.ts";
import { createdMarkerPath } from "../lib/lease/sqlite.ts";
import { lockFilePath } from "../lib/lease/sqlite_lock.ts";
import {
  BUN,
  listenPort,
  loopbackServerArgs,
  ROOT,
  runDstm,
  spawnDstm,
} from "./helpers/process.ts";
import { eventually } from "./helpers/wait.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-dbguard-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const serverArgs = (db: string, ...more: string[]) => loopbackServerArgs(db, more);

/** Leases for `count` hosts numbered from `first`; returns host6 → IPv4. */
async function lease(port: number, first: number, count: number): Promise<Map<string, number>> {
  const transport = await DstmTransport.open({
    server: "::1",
    port,
    retry: { initialMs: 1000, tries: 2 },
  });
  try {
    const hosts = Array.from(
      { length: count },
      (_, i) => `2001:db8:7::${(first + i).toString(16)}`,
    );
    const leases = await Promise.all(hosts.map((h) => new DstmClient(transport, h).discover()));
    return new Map(leases.map((l) => [l.host6, l.ipv4]));
  } finally {
    transport.close();
  }
}

const mode = (path: string) => statSync(path).mode & 0o777;

test("the database, its WAL and its marker are created 0600", async () => {
  const db = join(dir, "modes", "leases.db");
  const server = spawnDstm(serverArgs(db));
  try {
    const port = listenPort(await server.waitFor(/ start /));
    expect((await lease(port, 1, 3)).size).toBe(3);
    expect(mode(db)).toBe(0o600);
    expect(mode(`${db}-wal`)).toBe(0o600);
    expect(mode(`${db}-shm`)).toBe(0o600);
    expect(mode(lockFilePath(db))).toBe(0o600);
    expect(mode(createdMarkerPath(db))).toBe(0o600);
    expect(mode(join(dir, "modes"))).toBe(0o700);
  } finally {
    server.proc.kill("SIGTERM");
    expect(await server.exited).toBe(0);
  }
});

test("a database deleted under the server stops it; a restart refuses to start empty", async () => {
  const db = join(dir, "deleted", "leases.db");
  const first = spawnDstm(serverArgs(db));
  const port = listenPort(await first.waitFor(/ start /));
  expect((await lease(port, 1, 50)).size).toBe(50);
  rmSync(db);
  rmSync(`${db}-wal`);
  // Whether the next DISCOVER or the idle check notices first, no lease is acknowledged.
  const after = await lease(port, 100, 10).then(
    (m) => `acknowledged ${m.size}`,
    (error: Error) => error.name,
  );
  expect(["DstmRefusedError", "DstmTimeoutError"]).toContain(after);
  expect(await first.exited).toBe(1);
  const stderr = await first.stderr();
  expect(stderr.trim().split("\n")).toHaveLength(1);
  expect(stderr).toMatch(/^dstm: lease database .*leases\.db was deleted while the server ran/);
  expect(
    first.lines.some((l) => / ERROR store-failed reason=gone detail=.*was deleted/.test(l)),
  ).toBe(true);

  // Restart: the database is gone, the marker remembers it.
  const again = await runDstm(serverArgs(db));
  expect(again.code).toBe(1);
  expect(again.stderr.trim().split("\n")).toHaveLength(1);
  expect(again.stderr).toMatch(/leases\.db is missing, but dstm created it there .*--new-db/);
  expect(existsSync(db)).toBe(false);

  // Told so, it starts empty.
  const fresh = spawnDstm(serverArgs(db, "--new-db"));
  try {
    const start = await fresh.waitFor(/ start /);
    expect(start).toMatch(/ active=0 /);
  } finally {
    fresh.proc.kill("SIGTERM");
    expect(await fresh.exited).toBe(0);
  }
}, 60_000);

test("a database replaced under the server stops it at the next write", async () => {
  const db = join(dir, "replaced", "leases.db");
  const first = spawnDstm(serverArgs(db));
  const port = listenPort(await first.waitFor(/ start /));
  expect((await lease(port, 1, 5)).size).toBe(5);
  // Another file at the path (an old copy moved in): the server's open file is no longer it.
  copyFileSync(db, `${db}.copy`);
  renameSync(`${db}.copy`, db);
  const after = await lease(port, 100, 1).then(
    (m) => `acknowledged ${m.size}`,
    (error: Error) => error.name,
  );
  expect(["DstmRefusedError", "DstmTimeoutError"]).toContain(after);
  expect(await first.exited).toBe(1);
  expect(await first.stderr()).toMatch(/was replaced by another file while the server ran/);
}, 60_000);

test("an emptied database is refused at start", async () => {
  const db = join(dir, "emptied", "leases.db");
  const first = spawnDstm(serverArgs(db));
  const port = listenPort(await first.waitFor(/ start /));
  expect((await lease(port, 1, 5)).size).toBe(5);
  first.proc.kill("SIGTERM");
  expect(await first.exited).toBe(0);
  truncateSync(db, 0);
  const again = await runDstm(serverArgs(db));
  expect(again.code).toBe(1);
  expect(again.stderr.trim().split("\n")).toHaveLength(1);
  expect(again.stderr).toMatch(/leases\.db is empty, but dstm created it there/);
}, 60_000);

test.skipIf(process.getuid?.() !== 0 || Bun.which("unshare") === null)(
  "a full disk fails writes with SERVER_ERROR and logs the cause at warn (reason=disk-full, ENOSPC)",
  async () => {
    // A 128 KiB tmpfs in a mount namespace of the server's own (private: nothing leaves it):
    // room for the database, its lock file and its 32 KiB WAL index (-shm), then a few commits.
    const mnt = join(dir, "full");
    mkdirSync(mnt);
    const db = join(mnt, "leases.db");
    const argv = serverArgs(db)
      .map((a) => `'${a}'`)
      .join(" ");
    const server = Bun.spawn(
      [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        `mount -t tmpfs -o size=128k dstm-full '${mnt}' && exec '${BUN}' '${join(ROOT, "mod.ts")}' ${argv}`,
      ],
      { cwd: ROOT, stdout: "pipe", stderr: "pipe" },
    );
    const lines = readLines(server.stdout);
    try {
      const port = listenPort(await lines.waitFor(/ start /));
      let refused = 0;
      for (let i = 0; i < 40 && refused === 0; i++) {
        await lease(port, 1000 + i * 10, 10).catch((error: Error) => {
          if (error.name === "DstmRefusedError") refused++;
          else throw error;
        });
      }
      expect(refused).toBe(1);
      expect(await lines.waitFor(/ WARN store-failed /)).toMatch(
        /reason=disk-full detail=.*full.* hint=.*ENOSPC/i,
      );
    } finally {
      server.kill("SIGTERM");
      await server.exited;
    }
  },
  60_000,
);

/** The lines of a process's stdout as they come, and a wait for the first one matching. */
function readLines(stream: ReadableStream<Uint8Array>) {
  const lines: string[] = [];
  (async () => {
    const decoder = new TextDecoder();
    let rest = "";
    for await (const chunk of stream) {
      rest += decoder.decode(chunk, { stream: true });
      for (let nl = rest.indexOf("\n"); nl >= 0; nl = rest.indexOf("\n")) {
        lines.push(rest.slice(0, nl));
        rest = rest.slice(nl + 1);
      }
    }
  })();
  return {
    async waitFor(pattern: RegExp, timeoutMs = 15_000): Promise<string> {
      const match = () => lines.find((l) => pattern.test(l));
      if (!(await eventually(() => match() !== undefined, { timeoutMs })))
        throw new Error(`no line matching ${pattern}; stdout:\n${lines.join("\n")}`);
      return match()!;
    },
  };
}
