/**
 * Red team, issue 12 §3–§4: the shared PostgreSQL database crashes and comes back (immediate
 * shutdown: connections cut mid-transaction, crash recovery) while two servers on it answer
 * hosts that lease and renew through both, alternately. Asserted afterwards:
 *
 * - every lease a host was last acknowledged is active for that host in the database (none
 *   lost), and no address and no host has two active rows (none duplicated);
 * - the outage was seen: failed writes counted (`dstm_store_write_failures_total`) and logged
 *   (`store-failed`), decisions refused or renewals answered unextended counted;
 * - every host is answered again after the restart (recovery, without restarting a server);
 * - each server's memory and its TEP view (what its SNAPSHOT would send) hold exactly the
 *   database's active leases.
 *
 * In-process servers on ::1 (no TEP: the view is checked directly), one throwaway PostgreSQL.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { SQL } from "bun";
import {
  type ClientLease,
  DstmClient,
  DstmRefusedError,
  DstmTimeoutError,
  DstmTransport,
} from "../lib/client/protocol.ts";
import { Logger } from "../lib/control/log.ts";
import { formatIPv4 } from "../lib/net/addr.ts";
import { DstmServer } from "../lib/server/server.ts";
import { type PgServer, postgresBin, startPostgres } from "./helpers/postgres.ts";
import { waitUntil } from "./helpers/wait.ts";

const TEP6 = "2001:db8::1";
const HOSTS = 120;
const host = (n: number) => `2001:db8:3::${n.toString(16)}`;

let pg: PgServer | undefined;
const closing: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const close of closing.reverse()) await close();
  await pg?.stop();
}, 60_000);

describe.skipIf(!postgresBin())("the shared database crashes under load", () => {
  test("no acknowledged lease lost, none held twice, refusals counted, every host answered again", async () => {
    pg = await startPostgres();
    const url = await pg.createDatabase();
    const logs: string[][] = [[], []];
    const start = (i: number) =>
      DstmServer.start({
        pools: [{ prefixes: ["198.18.2.0/24"], tep6: TEP6 }],
        leaseTime: 30,
        listen: { address: "::1", port: 0 },
        sourceCheck: false,
        db: url,
        admission: { maxLeasesPerPrefix: 0, ratePerSecond: 0 },
        log: new Logger({ sink: (text) => logs[i]!.push(...text.split("\n")) }),
      });
    const servers = [await start(0), await start(1)];
    for (const s of servers) closing.push(() => s.stop());
    const transports = await Promise.all(
      servers.map((s) =>
        DstmTransport.open({
          server: "::1",
          port: s.listening.port,
          retry: { initialMs: 200, tries: 4 },
        }),
      ),
    );
    for (const t of transports) closing.push(() => t.close());

    const acked = new Map<string, ClientLease>();
    const answeredAt = new Map<string, number>();
    let refused = 0;
    let unanswered = 0;
    let restartedAt = Number.POSITIVE_INFINITY;
    let stop = false;
    const run = async (n: number) => {
      const h = host(n);
      for (let round = 0; !stop; round++) {
        const client = new DstmClient(transports[(n + round) % 2]!, h);
        const held = acked.get(h);
        try {
          const lease = held ? await client.request(held.ipv4) : await client.discover();
          acked.set(h, lease);
          answeredAt.set(h, Date.now());
        } catch (error) {
          if (error instanceof DstmRefusedError) refused++;
          else if (error instanceof DstmTimeoutError) unanswered++;
          else throw error;
          // A refused renewal: the host starts over (RFC 2131 §4.4.5, DHCPNAK → INIT).
          if (error instanceof DstmRefusedError) acked.delete(h);
        }
        // The host's renewal pace is the load's shape, not a wait for state.
        await Bun.sleep(50);
      }
    };
    const load = Promise.all(Array.from({ length: HOSTS }, (_, i) => run(i + 1)));
    await waitUntil(() => acked.size === HOSTS, { timeoutMs: 30_000, what: "every host leased" });
    await pg.restart(1500);
    restartedAt = Date.now();
    // Recovery: every host answered after the database came back.
    await waitUntil(
      () => [...answeredAt.values()].filter((t) => t > restartedAt).length === HOSTS,
      { timeoutMs: 60_000, intervalMs: 100, what: "every host answered after the restart" },
    );
    stop = true;
    await load;

    const sql = new SQL(url);
    closing.push(() => sql.close());
    const rows = (await sql`SELECT ipv4, psid, host6 FROM dstm_leases WHERE state = 'active'`) as {
      ipv4: string;
      psid: number;
      host6: string;
    }[];
    const byHost = new Map(rows.map((r) => [r.host6, Number(r.ipv4)]));
    // None held twice: one active row per host, one per address.
    expect(byHost.size).toBe(rows.length);
    expect(new Set(rows.map((r) => r.ipv4)).size).toBe(rows.length);
    // None lost: each host's last acknowledged lease is active for it.
    const lost = [...acked].filter(([h, l]) => byHost.get(h) !== l.ipv4);
    expect(lost.map(([h, l]) => `${h} ${formatIPv4(l.ipv4)}`)).toEqual([]);
    expect(acked.size).toBe(HOSTS);

    // The outage was seen, counted and said.
    const count = (s: DstmServer, name: string) =>
      s.metrics
        .snapshot()
        .filter((m) => m.name === name)
        .reduce((sum, m) => sum + m.value, 0);
    const failures = servers.map((s) => count(s, "dstm_store_write_failures_total"));
    const refusedByStore = servers.map(
      (s) =>
        count(s, "dstm_store_refused_total") + count(s, "dstm_store_renewals_unextended_total"),
    );
    expect(failures[0]! + failures[1]!).toBeGreaterThan(0);
    expect(refusedByStore[0]! + refusedByStore[1]!).toBeGreaterThan(0);
    expect(logs.flat().some((l) => / store-failed /.test(l))).toBe(true);
    console.log(
      `refused=${refused} unanswered=${unanswered} write-failures=${failures.join("+")} store-refused=${refusedByStore.join("+")} active=${rows.length}`,
    );

    // Each server's memory and TEP view: exactly the database's active leases.
    for (const s of servers) {
      await waitUntil(
        () => {
          const mine = s.engine.leases({ state: "active" });
          return mine.length === rows.length && mine.every((l) => byHost.get(l.host6) === l.ipv4);
        },
        { timeoutMs: 10_000, intervalMs: 100, what: "the server's memory as the database" },
      );
      expect(s.tepSync!.view(TEP6).count).toBe(rows.length);
    }
  }, 180_000);
});
