/**
 * Red team (rt20) of the SQLite holder guard (lib/lease/sqlite_holders.ts) on the full server
 * path: `dstm server --db FILE` with port-set sharing (--share 4: four hosts per IPv4),
 * native DSTM clients that DISCOVER, renew, release and come back (moving between slots),
 * among them hosts whose holder hashes collide in this process (the server, another process,
 * hashes under its own key: there they are plain hosts, as any a client could pick); the
 * server is stopped mid-load (SIGKILL,
 * SIGTERM, SIGKILL), restarted on the same file, and after each stop `dstm lease ls --db FILE
 * --json` (read-only) must show no holder with two active leases and no slot leased twice.
 * Each restart must come up (a file with a holder twice is refused at load since rt20).
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DstmClient, DstmTransport } from "../lib/client/protocol.ts";
import { listenPort, loopbackServerArgs, spawnDstm } from "./helpers/process.ts";
import { HOST_PAIRS, IDENTITY_PAIRS, random } from "./helpers/rt20_guard_fuzz.ts";
import { waitUntil } from "./helpers/wait.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-rt20-server-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const HOSTS = [
  ...HOST_PAIRS.flat(),
  ...IDENTITY_PAIRS.map(([, host]) => host),
  ...Array.from({ length: 50 }, (_, i) => `2001:db8:77::${(i + 1).toString(16)}`),
];
const ROUNDS = ["SIGKILL", "SIGTERM", "SIGKILL"] as const;
const IN_FLIGHT = 24;
const OPS_BEFORE_STOP = 300;

interface LsRow {
  readonly [field: string]: unknown;
}

/** `dstm lease ls --db FILE --json` (active leases), parsed. */
async function leaseLs(db: string): Promise<LsRow[]> {
  const ls = spawnDstm(["lease", "ls", "--db", db, "--json"]);
  const code = await ls.exited;
  const text = ls.lines.join("\n");
  if (code !== 0) throw new Error(`lease ls exited ${code}: ${await ls.stderr()}`);
  return (JSON.parse(text) as { leases: LsRow[] }).leases;
}

test("a restarted server under churn with shared addresses and many holders: one active lease per host, no slot twice", async () => {
  const db = join(dir, "leases.db");
  const next = random(0x20);
  let ops = 0;
  let ok = 0;
  for (const [round, signal] of ROUNDS.entries()) {
    const server = spawnDstm(loopbackServerArgs(db, ["--share", "4"], "198.51.100.0/28"));
    let stopped = false;
    try {
      const port = listenPort(await server.waitFor(/ start /));
      const transport = await DstmTransport.open({
        server: "::1",
        port,
        retry: { initialMs: 300, tries: 2 },
      });
      /** host → the IPv4 it was last given (this round). */
      const held = new Map<string, number>();
      let inRound = 0;
      const worker = async () => {
        while (!stopped && inRound < 20_000) {
          const host = HOSTS[Math.floor(next() * HOSTS.length)] as string;
          const client = new DstmClient(transport, host);
          const r = next();
          inRound++;
          ops++;
          try {
            const ipv4 = held.get(host);
            if (ipv4 !== undefined && r < 0.3) {
              await client.release(ipv4);
              held.delete(host);
            } else if (ipv4 !== undefined && r < 0.6) {
              held.set(host, (await client.request(ipv4)).ipv4);
            } else {
              held.set(host, (await client.discover()).ipv4);
            }
            ok++;
          } catch {
            // refused (pool full), or no answer once the server stops
          }
        }
      };
      const workers = Array.from({ length: IN_FLIGHT }, worker);
      await waitUntil(() => inRound >= OPS_BEFORE_STOP, {
        timeoutMs: 60_000,
        what: `${OPS_BEFORE_STOP} operations in round ${round}`,
      });
      server.proc.kill(signal);
      stopped = true;
      const code = await server.exited;
      if (signal === "SIGTERM") expect(code).toBe(0);
      await Promise.all(workers);
      transport.close();
      expect(server.lines.filter((l) => / ERROR /.test(l))).toEqual([]);
    } finally {
      if (!stopped) {
        server.proc.kill("SIGKILL");
        await server.exited;
      }
    }
    const active = await leaseLs(db);
    const holders = active.map((l) => String(l.identity ?? l.hostIPv6));
    const slots = active.map((l) => `${l.hostIPv4} ${l.portSet}`);
    expect({ round, twice: holders.filter((h, i) => holders.indexOf(h) !== i) }).toEqual({
      round,
      twice: [],
    });
    expect({ round, twice: slots.filter((s, i) => slots.indexOf(s) !== i) }).toEqual({
      round,
      twice: [],
    });
    expect(active.length).toBeGreaterThan(0);
    expect(
      active.every(
        (l) =>
          l.state === "active" && typeof l.hostIPv4 === "string" && typeof l.portSet === "string",
      ),
    ).toBe(true);
  }
  console.log({ ops, ok });
  expect(ok).toBeGreaterThan(ROUNDS.length * 100);
}, 240_000);
