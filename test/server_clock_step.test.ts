/**
 * Issue 8 item 9, with a real `dstm server` process whose wall clock is stepped 2 h forward
 * while it runs: libfaketime (Debian package `faketime`, LD_PRELOAD) re-reads its offset from
 * a file at every call and leaves the monotonic clock alone. No root needed.
 */
import { afterEach, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DstmClient, DstmTransport } from "../lib/client/protocol.ts";
import type { LeaseJson } from "../lib/control/lease_view.ts";
import { getUnix } from "../lib/sys/http.ts";
import { listenPort, spawnDstm } from "./helpers/process.ts";

const LIBFAKETIME = [
  "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
  "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
].find((path) => existsSync(path));
if (!LIBFAKETIME)
  console.warn("[skip] server_clock_step: needs libfaketime (apt-get install faketime)");

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

test.skipIf(!LIBFAKETIME)(
  "a 2 h wall-clock step under a running server is logged as clock-step and expires nothing early",
  async () => {
    const dir = mkdtempSync(join(tmpdir(), "dstm-clock-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const offset = join(dir, "faketime");
    writeFileSync(offset, "+0\n");
    const control = join(dir, "control.sock");
    const server = spawnDstm(
      [
        "server",
        "--pool",
        "192.0.2.0/29",
        "--tep",
        "2001:db8::1",
        "--listen",
        "[::1]:0",
        "--db",
        "memory",
        "--control",
        control,
        "--lease-time",
        "10",
      ],
      {
        LD_PRELOAD: LIBFAKETIME!,
        FAKETIME_TIMESTAMP_FILE: offset,
        FAKETIME_NO_CACHE: "1",
        FAKETIME_DONT_FAKE_MONOTONIC: "1",
      },
    );
    cleanup.push(async () => {
      server.proc.kill("SIGTERM");
      await server.exited;
    });
    const port = listenPort(await server.waitFor(/ start /));
    const transport = await DstmTransport.open({
      server: "::1",
      port,
      retry: { initialMs: 500, tries: 3 },
    });
    cleanup.push(() => transport.close());
    const lease = await new DstmClient(transport, "::1").discover();
    expect(lease.leaseTime).toBe(10);
    const leases = async () =>
      ((await (await getUnix(control, "/v1/leases")).json()) as { leases: LeaseJson[] }).leases;
    const [bound] = await leases();

    writeFileSync(offset, "+2h\n");
    // The sweep that sees the step logs it before it looks for expired leases.
    await server.waitFor(/ WARN clock-step step-s=7[12]\d\d /);
    const after = await leases();
    expect(after.map((l) => [l.hostIPv6, l.state, l.expiresAt])).toEqual([
      ["::1", "active", bound!.expiresAt],
    ]);
    expect(server.lines.some((l) => / expire /.test(l))).toBe(false);
    // It still expires, on the monotonic clock: 10 s after it was granted.
    await server.waitFor(/ expire ipv4=192\.0\.2\.1 host6=::1 /, 30_000);
    expect(await leases()).toEqual([]);
    expect(server.lines.filter((l) => / clock-step /.test(l)).length).toBe(1);
  },
  60_000,
);
