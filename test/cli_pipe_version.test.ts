/**
 * `dstm --version` names the version, commit and runtime; `dstm … | head -1` ends quietly
 * (status 141, nothing on stderr) instead of an EPIPE stack trace: `lease ls` on a real pipe
 * and on one whose reader is already gone, and (as root, in a namespace) `ping4`.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EXIT_PIPE_CLOSED } from "../cli/stdout_pipe.ts";
import { VERSION } from "../cli/version.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { createNetns, type Netns } from "../lib/sys/netns.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { BUN, ROOT } from "./helpers/process.ts";
import { eventually } from "./helpers/wait.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-pipe-"));
const cleanup: (() => void)[] = [];
afterAll(() => {
  for (const c of cleanup.reverse()) c();
  rmSync(dir, { recursive: true, force: true });
});
const DSTM = [BUN, join(ROOT, "mod.ts")];

test("dstm --version: version, commit and runtime", () => {
  const run = Bun.spawnSync([...DSTM, "--version"], { cwd: ROOT });
  expect(run.exitCode).toBe(0);
  // A source tree outside git (an unpacked archive) says "unknown".
  const commit =
    Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"], { cwd: ROOT })
      .stdout.toString()
      .trim() || "unknown";
  expect(run.stdout.toString()).toMatch(
    new RegExp(
      `^dstm ${VERSION.replaceAll(".", "\\.")} \\(commit ${commit}(-dirty)?, bun ${Bun.version}, ${process.platform} ${process.arch}\\)\\n$`,
    ),
  );
  expect(Bun.spawnSync([...DSTM, "-V"], { cwd: ROOT }).stdout.toString()).toBe(
    run.stdout.toString(),
  );
});

/** A lease database whose `lease ls --all` output is far larger than a pipe buffer (64 KiB). */
async function bigLeaseDb(): Promise<string> {
  const path = join(dir, "leases.db");
  const store = SqliteLeaseStore.open(path);
  const now = Date.now();
  await store.write(
    Array.from({ length: 3000 }, (_, i) => ({
      op: "put" as const,
      lease: {
        // 198.51.100.0/24 shared 16 ways: address i % 256, PSID i / 256.
        ipv4: 0xc6336400 + (i % 256),
        portSet: { offset: 6, psidLength: 4, psid: Math.floor(i / 256) },
        host6: `2001:db8:1::${(i + 1).toString(16)}`,
        tep4: 0xc0000201,
        tep6: "2001:db8::1",
        pool: "198.51.100.0/24",
        state: "active" as const,
        grantedAt: now,
        expiresAt: now + 3_600_000,
      },
    })),
  );
  await store.close();
  return path;
}

test("dstm lease ls | head -1 ends quietly with status 141", async () => {
  const db = await bigLeaseDb();
  const full = Bun.spawnSync([...DSTM, "lease", "ls", "--db", db], { cwd: ROOT });
  expect(full.exitCode).toBe(0);
  expect(full.stdout.length).toBeGreaterThan(128 * 1024);
  // Real pipe: head reads one line and exits; dstm's write of the rest then fails (EPIPE).
  const script = `"$@" lease ls --db "${db}" | head -1; echo "status \${PIPESTATUS[0]} \${PIPESTATUS[1]}"`;
  const piped = Bun.spawnSync(["bash", "-c", script, "bash", ...DSTM], { cwd: ROOT });
  const lines = piped.stdout.toString().trim().split("\n");
  expect(lines.length).toBe(2);
  expect(lines[0]).toBe(full.stdout.toString().split("\n")[0]!);
  expect(lines[1]).toBe(`status ${EXIT_PIPE_CLOSED} 0`);
  expect(piped.stderr.toString()).toBe("");
  // A pipe whose reader is gone before dstm writes at all (python3 closes its read end).
  if (Bun.which("python3")) {
    const closed = Bun.spawnSync(
      [
        "python3",
        "-c",
        "import os,subprocess,sys\nr,w=os.pipe()\nos.close(r)\np=subprocess.run(sys.argv[1:],stdout=w,stderr=subprocess.PIPE)\nsys.stdout.write(f'{p.returncode}\\n'+p.stderr.decode())",
        ...DSTM,
        ...["lease", "ls", "--db", db],
      ],
      { cwd: ROOT },
    );
    expect(closed.stdout.toString()).toBe(`${EXIT_PIPE_CLOSED}\n`);
  }
});

test.skipIf(!Bun.which("python3"))(
  "a daemon whose stdout pipe is closed keeps serving (dstm server answers lease ls), then stops cleanly",
  async () => {
    const control = join(dir, "server.sock");
    // python3 starts the server with a stdout pipe whose read end it has already closed.
    const launcher = Bun.spawn(
      [
        "python3",
        "-c",
        "import os,subprocess,sys\nr,w=os.pipe()\nos.close(r)\np=subprocess.Popen(sys.argv[1:],stdout=w,stderr=subprocess.PIPE)\nos.close(w)\nprint(p.pid,flush=True)\n_,err=p.communicate()\nsys.stdout.write(f'exit {p.returncode}\\n'+err.decode())",
        ...[...DSTM, "server", "--pool", "192.0.2.0/29", "--tep", "2001:db8::1"],
        ...["--listen", "[::1]:0", "--db", "memory", "--control", control],
      ],
      { cwd: ROOT, stdout: "pipe" },
    );
    const reader = launcher.stdout.getReader();
    let text = "";
    const decoder = new TextDecoder();
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    const serverPid = Number(text.split("\n")[0]);
    expect(serverPid).toBeGreaterThan(1);
    cleanup.push(() => {
      try {
        process.kill(serverPid, "SIGKILL");
      } catch {}
    });
    const answers = () => {
      const ls = Bun.spawnSync([...DSTM, "lease", "ls", "--control", control], { cwd: ROOT });
      return ls.exitCode === 0 && ls.stdout.toString() === "no leases\n";
    };
    expect(await eventually(answers, { timeoutMs: 15_000, intervalMs: 100 })).toBe(true);
    process.kill(serverPid, "SIGTERM");
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    // The server stopped on SIGTERM with status 0 and wrote nothing on stderr (no EPIPE trace).
    expect(text.split("\n").slice(1).join("\n")).toBe("exit 0\n");
  },
  30_000,
);

const skip = netnsSkipReason();
announceSkip("cli_pipe_version ping4", skip);

test.skipIf(skip !== null)(
  "dstm ping4 … | head -1: ends quietly, gives its temporary lease back, status 141 (root, in a namespace)",
  async () => {
    const ns: Netns = createNetns("dstmt-");
    // The TEP needs a unicast address (loopback is refused): a documentation one on lo.
    ns.exec(["ip", "-6", "addr", "add", "2001:db8::1/128", "dev", "lo", "nodad"]);
    cleanup.push(() => ns.delete());
    // The IPv4 host to ping is the namespace itself (203.0.113.9 on lo), behind a real TEP.
    ns.ip("addr", "add", "203.0.113.9/32", "dev", "lo");
    let log = "";
    const daemon = async (args: string[], ready: RegExp) => {
      const proc = ns.spawn([...DSTM, ...args], { cwd: ROOT, timeoutMs: 60_000 });
      cleanup.push(() => proc.kill("SIGKILL"));
      const decoder = new TextDecoder();
      (async () => {
        for await (const chunk of proc.stdout) log += decoder.decode(chunk, { stream: true });
      })();
      await eventually(() => ready.test(log), { timeoutMs: 20_000, intervalMs: 50 });
      expect(log).toMatch(ready);
    };
    await daemon(
      [
        ...["server", "--pool", "192.0.2.0/29", "--tep", "2001:db8::1,192.0.2.254"],
        ...["--listen", "[::1]:4607", "--db", "memory", "--no-control"],
      ],
      / start /,
    );
    await daemon(
      [
        ...["tep", "--ipv6", "2001:db8::1", "--ipv4", "192.0.2.254", "--server", "::1"],
        ...["--route", "192.0.2.0/29", "--stats", join(dir, "tep.sock")],
      ],
      /tep-connected/,
    );
    // head exits after the PING line; the reply lines then meet a closed pipe.
    const script = `"$@" ping4 203.0.113.9 --server ::1 -c 3 -i 0.3 -W 1 | head -1; echo "status \${PIPESTATUS[0]}"`;
    const run = ns.exec(["bash", "-c", script, "bash", ...DSTM], { cwd: ROOT });
    const lines = run.stdout.trim().split("\n");
    expect(lines[0]).toStartWith("PING 203.0.113.9 via DSTM");
    expect(lines[1]).toBe(`status ${EXIT_PIPE_CLOSED}`);
    expect(run.stderr).toBe("");
    // ping4 went on to release its temporary lease before exiting.
    await eventually(() => / release ipv4=192\.0\.2\.1 /.test(log), { timeoutMs: 10_000 });
    expect(log).toMatch(/ release ipv4=192\.0\.2\.1 /);
    // Without replies ping4's own status (1) is kept, pipe or not.
    const silent = `"$@" ping4 203.0.113.10 --server ::1 -c 2 -i 0.2 -W 1 | head -1; echo "status \${PIPESTATUS[0]}"`;
    expect(ns.exec(["bash", "-c", silent, "bash", ...DSTM], { cwd: ROOT }).stdout).toEndWith(
      "status 1\n",
    );
    const direct = ns.exec(
      [...DSTM, "ping4", "203.0.113.10", "--server", "::1", "-c", "1", "-W", "1"],
      { cwd: ROOT },
    );
    expect(direct.code).toBe(1);
  },
  60_000,
);
