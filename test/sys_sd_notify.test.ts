/**
 * systemd integration without systemd: sd_notify readiness (lib/sys/sd_notify.ts) received by
 * a unix datagram socket that python3 binds, as the service manager does (path and abstract
 * socket); `dstm server` notifying READY=1 once it answers; and journald priority prefixes
 * written only when $JOURNAL_STREAM names stdout (lib/sys/journal.ts, lib/control/log.ts).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, openSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Logger } from "../lib/control/log.ts";
import { stdoutIsJournal } from "../lib/sys/journal.ts";
import { notifySocketAddress, sdNotify } from "../lib/sys/sd_notify.ts";
import { BUN, ROOT } from "./helpers/process.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-notify-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const python = Bun.which("python3");

/** A unix datagram socket bound by python3 at `address` ("@name": abstract); resolves to what it receives. */
async function listen(address: string): Promise<{ received: Promise<string>; kill: () => void }> {
  const script = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
a = sys.argv[1]
s.bind("\\0" + a[1:] if a.startswith("@") else a)
print("bound", flush=True)
s.settimeout(20)
print(s.recv(4096).decode(), end="", flush=True)
`;
  const proc = Bun.spawn([python!, "-c", script, address], { stdout: "pipe", stderr: "pipe" });
  const reader = proc.stdout.getReader();
  let text = "";
  const decoder = new TextDecoder();
  while (!text.includes("bound\n")) {
    const { value, done } = await reader.read();
    if (done)
      throw new Error(`python3 did not bind ${address}: ${await new Response(proc.stderr).text()}`);
    text += decoder.decode(value, { stream: true });
  }
  const received = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return text.slice(text.indexOf("bound\n") + 6);
      text += decoder.decode(value, { stream: true });
    }
  })();
  return { received, kill: () => proc.kill() };
}

describe("sd_notify", () => {
  test("notifySocketAddress(): path with NUL, abstract without, relative and overlong refused", () => {
    const path = notifySocketAddress("/run/systemd/notify");
    expect("addr" in path && path.length).toBe(2 + 19 + 1);
    const abstract = notifySocketAddress("@x/y");
    expect("addr" in abstract && [abstract.length, abstract.addr[2], abstract.addr[3]]).toEqual([
      6, 0, 0x78,
    ]);
    expect(notifySocketAddress("run/notify")).toHaveProperty("error");
    expect(notifySocketAddress(`/${"a".repeat(107)}`)).toHaveProperty("error");
    expect(notifySocketAddress(`/${"a".repeat(106)}`)).toHaveProperty("addr");
  });

  test("without $NOTIFY_SOCKET nothing is sent; a missing socket is a reason, not an exception", () => {
    expect(sdNotify("READY=1", {})).toBe(false);
    expect(sdNotify("READY=1", { NOTIFY_SOCKET: join(dir, "absent.sock") })).toMatch(/ENOENT/);
  });

  test.skipIf(!python)("READY=1 reaches a socket bound at a path and an abstract one", async () => {
    const path = join(dir, "notify.sock");
    const atPath = await listen(path);
    expect(sdNotify("READY=1\nSTATUS=ok", { NOTIFY_SOCKET: path })).toBe(true);
    expect(await atPath.received).toBe("READY=1\nSTATUS=ok");
    const name = `@dstm-test-${process.pid}-${Date.now()}`;
    const abstract = await listen(name);
    expect(sdNotify("READY=1", { NOTIFY_SOCKET: name })).toBe(true);
    expect(await abstract.received).toBe("READY=1");
  });

  test.skipIf(!python)(
    "dstm server notifies READY=1 once it answers, and prefixes journald priorities only on the journal stream",
    async () => {
      const socket = join(dir, "server-notify.sock");
      const listener = await listen(socket);
      const out = join(dir, "server.out");
      const fd = openSync(out, "w");
      const { dev, ino } = statSync(out);
      const proc = Bun.spawn(
        [
          ...[
            BUN,
            join(ROOT, "mod.ts"),
            "server",
            "--pool",
            "192.0.2.0/29",
            "--tep",
            "2001:db8::1",
          ],
          ...["--listen", "[::1]:0", "--db", "memory", "--no-control"],
        ],
        {
          stdout: fd,
          stderr: "pipe",
          env: {
            ...process.env,
            NOTIFY_SOCKET: socket,
            JOURNAL_STREAM: `${dev}:${ino}`,
          },
          cwd: ROOT,
        },
      );
      // A server that cannot start would never notify: fail fast on its exit.
      const ready = await Promise.race([
        listener.received,
        proc.exited.then((code) => `exit ${code}`),
      ]);
      if (!ready.startsWith("READY=1")) console.error(await new Response(proc.stderr).text());
      expect(ready).toStartWith("READY=1");
      proc.kill("SIGTERM");
      await proc.exited;
      listener.kill();
      const lines = (await Bun.file(out).text()).trim().split("\n");
      expect(lines.find((line) => line.includes(" start listen="))).toMatch(/^<6>\S+ start /);
      for (const line of lines) {
        const level = / (WARN|ERROR|DEBUG) /.exec(line)?.[1];
        const want = { WARN: "<4>", ERROR: "<3>", DEBUG: "<7>" }[level ?? ""] ?? "<6>";
        expect({ line, prefix: line.slice(0, 3) }).toEqual({ line, prefix: want });
      }
    },
    30_000,
  );
});

describe("journald priorities", () => {
  test("Logger with priorityPrefix: <7> debug, <6> info, <4> warn, <3> error, text and JSON", () => {
    let text = "";
    for (const format of ["text", "json"] as const) {
      const log = new Logger({
        format,
        level: "debug",
        sink: (t) => (text += t),
        priorityPrefix: true,
        now: () => 0,
      });
      log.debug("a");
      log.info("b");
      log.warn("c");
      log.error("d");
      log.flush();
    }
    const lines = text.trim().split("\n");
    expect(lines.map((l) => l.slice(0, 3))).toEqual([
      "<7>",
      "<6>",
      "<4>",
      "<3>",
      "<7>",
      "<6>",
      "<4>",
      "<3>",
    ]);
    expect(lines[2]).toBe("<4>1970-01-01T00:00:00.000Z WARN c");
    expect(JSON.parse(lines[7]!.slice(3))).toMatchObject({ level: "error", event: "d" });
  });

  test("stdoutIsJournal(): only when $JOURNAL_STREAM is the device and inode of that descriptor", () => {
    const path = join(dir, "stream");
    const fd = openSync(path, "w");
    const { dev, ino } = statSync(path);
    expect(stdoutIsJournal({ JOURNAL_STREAM: `${dev}:${ino}` }, fd)).toBe(true);
    expect(stdoutIsJournal({ JOURNAL_STREAM: `${dev}:${ino + 1}` }, fd)).toBe(false);
    expect(stdoutIsJournal({}, fd)).toBe(false);
    expect(stdoutIsJournal({ JOURNAL_STREAM: "garbage" }, fd)).toBe(false);
  });
});
