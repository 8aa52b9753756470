/**
 * `dstm client --server` at an address where no DSTM server listens (the newcomer gave the
 * TEP's): the Linux kernel answers its DISCOVER with ICMPv6 port unreachable, and the client
 * says so at once (`server-unreachable-icmp`, naming the likely mistake), counts it
 * (`dstm_client_server_icmp_unreachable_total`) and keeps retrying. Before, it logged only
 * `no-answer attempt=2/3/4` for ~15 s. Run in a namespace made here (dstmt-nc9b-…) whose
 * loopback holds the host's and the "TEP's" addresses; SIGTERM ends it (no lease: nothing
 * released), waited for by exit, not by time.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Netns } from "../lib/sys/netns.ts";
import { addressNetns, announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { spawnDstm } from "./helpers/process.ts";
import { waitUntil } from "./helpers/wait.ts";

const skip = netnsSkipReason({ tun: true });
announceSkip("client pointed at the TEP's address", skip);

describe.skipIf(skip !== null)("a client whose --server answers ICMPv6 port unreachable", () => {
  let ns: Netns;
  let run: string;
  beforeAll(() => {
    ns = addressNetns("dstmt-nc9b-", ["2001:db8:1::c", "2001:db8:1::1"]);
    run = mkdtempSync(join(tmpdir(), "dstm-nc9b-wrong-"));
  });
  afterAll(() => {
    ns?.delete();
    if (run) rmSync(run, { recursive: true, force: true });
  });

  test("says so at once, counts it, and keeps retrying", async () => {
    const client = spawnDstm(
      [
        ...["client", "--server", "2001:db8:1::1", "--host6", "2001:db8:1::c"],
        ...["--metrics", "[::1]:9690", "--control", join(run, "c.sock")],
      ],
      { DSTM_RUNTIME_DIR: run },
      ns.name,
    );
    try {
      const line = await client.waitFor(/server-unreachable-icmp/, 30_000);
      expect(line).toContain("WARN");
      expect(line).toContain("2001:db8:1::1");
      expect(line).toContain("not the TEP's");
      // The retries go on after it.
      await client.waitFor(/no-answer .*attempt=2/, 30_000);
      await waitUntil(
        () => {
          const r = ns.exec(["curl", "-s", "http://[::1]:9690/metrics"]);
          return /dstm_client_server_icmp_unreachable_total [1-9]/.test(r.stdout);
        },
        { timeoutMs: 20_000, what: "the ICMPv6 unreachable counter" },
      );
    } finally {
      client.proc.kill("SIGTERM");
      await client.exited;
    }
  }, 90_000);
});
