import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DstmClient, DstmTransport } from "../lib/client/protocol.ts";
import type { LeaseJson } from "../lib/control/lease_view.ts";
import { formatIPv4 } from "../lib/net/addr.ts";
import { getUnix } from "../lib/sys/http.ts";
import { listenPort, loopbackServerArgs, runDstm, spawnDstm } from "./helpers/process.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-crash-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** 1,000 hosts of one /64, all sent from ::1 (helpers/process.ts). */
const serverArgs = (db: string, control: string) =>
  loopbackServerArgs(db, ["--control", control], "198.51.100.0/22");

test("a server killed with SIGKILL right after acknowledging 1,000 leases restarts with all 1,000", async () => {
  const db = join(dir, "leases.db");
  const control = join(dir, "control.sock");
  const first = spawnDstm(serverArgs(db, control));
  const port = listenPort(await first.waitFor(/ start /));
  const transport = await DstmTransport.open({
    server: "::1",
    port,
    retry: { initialMs: 2000, tries: 3 },
  });
  const acked = new Map<string, number>();
  const hosts = Array.from({ length: 1000 }, (_, i) => `2001:db8:100::${(i + 1).toString(16)}`);
  // 100 hosts in flight at a time, like a burst of clients booting.
  for (let i = 0; i < hosts.length; i += 100) {
    const leases = await Promise.all(
      hosts.slice(i, i + 100).map((h) => new DstmClient(transport, h).discover()),
    );
    for (const lease of leases) acked.set(lease.host6, lease.ipv4);
  }
  // The last ACK has been received: kill at once, with no chance to flush anything.
  first.proc.kill("SIGKILL");
  await first.exited;
  transport.close();
  expect(acked.size).toBe(1000);
  expect(new Set(acked.values()).size).toBe(1000);

  const second = spawnDstm(serverArgs(db, control));
  try {
    await second.waitFor(/ start /);
    const response = await getUnix(control, "/v1/leases");
    const { leases } = (await response.json()) as { leases: LeaseJson[] };
    expect(leases.length).toBe(1000);
    for (const lease of leases) expect(lease.hostIPv4).toBe(formatIPv4(acked.get(lease.hostIPv6)!));
  } finally {
    second.proc.kill("SIGTERM");
    expect(await second.exited).toBe(0);
  }
  // Offline, the database says the same.
  const offline = await runDstm(["lease", "ls", "--db", db, "--json"]);
  expect(offline.code).toBe(0);
  expect((JSON.parse(offline.stdout) as { leases: LeaseJson[] }).leases.length).toBe(1000);
}, 60_000);
