/**
 * `dstm client --check` refuses (exit 2), read-only, what a start would refuse: another
 * dstm client holding the DTI name — its control socket answers, or a process holds the TUN
 * of that name open. Before, --check said "configuration OK" and the start exited 2.
 * Run in a namespace made here (dstmt-nc9b-…) whose loopback holds 2001:db8:1::1; the TUN
 * holder is a small process in that namespace, killed by its PID.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serveUnix } from "../lib/sys/http.ts";
import type { Netns } from "../lib/sys/netns.ts";
import { addressNetns, announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { BUN, ROOT, runDstm } from "./helpers/process.ts";
import { waitUntil } from "./helpers/wait.ts";

const skip = netnsSkipReason({ tun: true });
announceSkip("client --check: DTI in use", skip);

describe.skipIf(skip !== null)("client --check: another client's DTI", () => {
  let ns: Netns;
  let run: string;
  beforeAll(() => {
    ns = addressNetns("dstmt-nc9b-", ["2001:db8:1::1"]);
    run = mkdtempSync(join(tmpdir(), "dstm-nc9b-check-"));
  });
  afterAll(() => {
    ns?.delete();
    if (run) rmSync(run, { recursive: true, force: true });
  });
  const check = (more: string[] = []) =>
    runDstm(
      ["client", "--check", "--server", "2001:db8:1::53", "--host6", "2001:db8:1::1", ...more],
      { DSTM_RUNTIME_DIR: run },
      ns.name,
    );

  test("nothing holds it: OK", async () => {
    const r = await check();
    expect([r.code, r.stderr]).toEqual([0, ""]);
  });

  test("a client answers on the control socket: exit 2, naming it", async () => {
    const socket = join(run, "client-dti0.sock");
    const other = await serveUnix(socket, () => new Response("ok"));
    try {
      const r = await check();
      expect([r.code, r.stdout]).toEqual([2, ""]);
      expect(r.stderr).toBe(
        `dstm: DTI dti0: another dstm client runs with it (its control socket ${socket} answers); a start would exit 2: stop that client, or give this one another --ifname\n`,
      );
    } finally {
      other.close();
    }
  });

  test("a process holds the TUN open: exit 2, naming its PID; the TUN is left as it was", async () => {
    const holder = ns.spawn([
      BUN,
      "-e",
      // Holds dti7 open until killed: a listening Unix socket keeps it alive (no timer).
      `const { openTun } = await import(${JSON.stringify(join(ROOT, "lib/sys/tun_linux.ts"))}); openTun("dti7"); Bun.serve({ unix: ${JSON.stringify(join(run, "holder.sock"))}, fetch: () => new Response("") });`,
    ]);
    try {
      await waitUntil(() => ns.exec(["ip", "link", "show", "dti7"]).code === 0, {
        timeoutMs: 20_000,
        what: "the holder's TUN dti7",
      });
      const r = await check(["--ifname", "dti7"]);
      expect([r.code, r.stdout]).toEqual([2, ""]);
      expect(r.stderr).toMatch(/^dstm: DTI dti7: process \d+ holds the TUN dti7 open/);
      expect(ns.exec(["ip", "link", "show", "dti7"]).code).toBe(0);
    } finally {
      holder.kill();
      await holder.exited;
    }
  }, 60_000);
});
