/**
 * TEPs of servers sharing one PostgreSQL database (issue 12, item 3; docs/scale-out.md):
 *
 * 1. two real `dstm server` processes and one real `dstm tep --server A --server B`, in
 *    namespaces: a lease is BIND-ed by the server that granted it and UNBIND-ed by the one
 *    that released or reclaimed it, never by the other (the TEP's per-server counters and the
 *    servers' own); a restarted TEP gets a full snapshot from each server; each expiry is
 *    UNBIND-ed once;
 * 2. a 200,000-binding snapshot goes out in bounded chunks: DISCOVERs are answered while it
 *    is being sent, a TEP that restarts in the middle of it ends with exactly the server's
 *    set, and so does the one that received it.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { SQL } from "bun";
import { DstmClient, DstmTransport } from "../lib/client/protocol.ts";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { type Lease, WHOLE_ADDRESS } from "../lib/lease/lease.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { canonicalIPv6 } from "../lib/net/addr.ts";
import { DstmServer } from "../lib/server/server.ts";
import { bindUdp } from "../lib/sys/udp.ts";
import { TepControl } from "../lib/tep/control.ts";
import { FLAP_LIMIT } from "../lib/tep/snapshot_flaps.ts";
import { AA, metric } from "./helpers/aa_lab.ts";
import { aaSuite } from "./helpers/aa_suite.ts";
import { RecordingTable } from "./helpers/recording_table.ts";
import { waitUntil } from "./helpers/wait.ts";

const { skip, dir, defer, twoServers } = aaSuite("active_active_tep", {
  dirPrefix: "dstm-aatep-",
});

describe.skipIf(skip !== null)("two servers, one PostgreSQL, one dstm tep (namespaces)", () => {
  test("BIND/UNBIND from the server that granted or freed each lease only; a full snapshot from any", async () => {
    const { lab, a, b, url, serverMetric, plan } = await twoServers({
      nsPrefix: "dstma-",
      serverArgs: ["--lease-time", "25", "--max-lease-time", "25"],
    });

    // 20 hosts lease through A, 10 through B; 4 of A's hosts release through B, 2 of B's
    // through A.
    const { leases } = await plan([
      { op: "discover", server: 0, from: 1, to: 21 },
      { op: "discover", server: 1, from: 21, to: 31 },
      { op: "release", server: 1, from: 1, to: 5 },
      { op: "release", server: 0, from: 21, to: 23 },
    ]);
    expect(Object.keys(leases).length).toBe(24);

    const sent = async (s: typeof a, kind: string) =>
      serverMetric(s, "dstm_tep_messages_total", { kind });
    await waitUntil(async () => (await sent(a, "unbind")) + (await sent(b, "unbind")) >= 6, {
      timeoutMs: 10_000,
      what: "6 UNBINDs acknowledged",
    });
    // Both servers have seen every row by now (each holds 24 active leases): had they
    // BIND-ed what they heard of, it would have been sent.
    const active = async (s: typeof a) => serverMetric(s, "dstm_leases_active");
    await waitUntil(async () => (await active(a)) === 24 && (await active(b)) === 24, {
      timeoutMs: 10_000,
      what: "both servers holding the 24 leases",
    });
    // Each exchange the servers completed, counted once (retransmissions not counted).
    expect([await sent(a, "bind"), await sent(b, "bind")]).toEqual([20, 10]);
    expect([await sent(a, "unbind"), await sent(b, "unbind")]).toEqual([2, 4]);
    // What the TEP received, by sender (a retransmission would count twice: hence ≥ and a
    // ceiling far below the 60 BINDs of both servers binding everything).
    const tep = await lab.tepMetrics();
    const got = (server: number, kind: string) =>
      metric(tep, "dstm_tep_control_by_server_total", { server: AA.server6(server), kind });
    expect(got(0, "bind")).toBeGreaterThanOrEqual(20);
    expect(got(1, "bind")).toBeGreaterThanOrEqual(10);
    expect(got(0, "bind") + got(1, "bind")).toBeLessThan(40);
    expect(got(0, "unbind") + got(1, "unbind")).toBeLessThan(12);
    expect(got(1, "unbind")).toBeGreaterThanOrEqual(4);
    expect(metric(tep, "dstm_tep_bindings", { origin: "server" })).toBe(24);

    // The database holds what the TEP holds.
    const sql = new SQL(url);
    defer(() => sql.close());
    const rows = (await sql`SELECT count(*)::int AS n FROM dstm_leases WHERE state = 'active'`) as {
      n: number;
    }[];
    expect(rows[0]?.n).toBe(24);

    // A restarted TEP (count 0 in its SYNC) gets the whole table from each server, and no
    // BIND for what it already has.
    await lab.stop(lab.tep);
    await lab.startTep();
    const bindings = async () =>
      metric(await lab.tepMetrics(), "dstm_tep_bindings", { origin: "server" });
    await waitUntil(async () => (await bindings()) === 24, {
      timeoutMs: 20_000,
      what: "24 bindings at the restarted TEP",
    });
    const again = await lab.tepMetrics();
    for (const server of [0, 1]) {
      expect(
        metric(again, "dstm_tep_control_by_server_total", {
          server: AA.server6(server),
          kind: "snapshot",
        }),
      ).toBeGreaterThanOrEqual(1);
      expect(
        metric(again, "dstm_tep_control_by_server_total", {
          server: AA.server6(server),
          kind: "bind",
        }),
      ).toBe(0);
    }

    // Every lease expires: each reclaimed (and UNBIND-ed) by exactly one server.
    await waitUntil(async () => (await bindings()) === 0, {
      timeoutMs: 60_000,
      intervalMs: 250,
      what: "every binding gone after the leases expired",
    });
    const expired = async (s: typeof a) => serverMetric(s, "dstm_leases_expired_total");
    await waitUntil(async () => (await expired(a)) + (await expired(b)) === 24, {
      timeoutMs: 10_000,
      what: "24 expiries",
    });
    expect((await sent(a, "unbind")) + (await sent(b, "unbind"))).toBe(6 + 24);
    // Servers on one database never replace each other's bindings in turn (the restarted
    // TEP's two catch-up SNAPSHOTs are one flap at most): no servers-disagree.
    const end = await lab.tepMetrics();
    expect(metric(end, "dstm_tep_servers_disagree")).toBe(0);
    expect(metric(end, "dstm_tep_snapshot_flaps_total")).toBeLessThan(FLAP_LIMIT);
    expect(lab.tep!.lines.some((l) => l.includes("servers-disagree"))).toBe(false);
  }, 180_000);
});

describe("a 200,000-binding snapshot", () => {
  const N = 200_000;
  const BASE = 0xc6100000; // 198.16.0.0/14: 262,144 addresses, in-process only (no packet leaves)
  const host = (i: number) => `2001:db8:${(i >>> 16).toString(16)}::${(i & 0xffff).toString(16)}`;

  test("goes out in bounded chunks while DISCOVERs are answered; the TEP ends with the server's set, also when it restarts mid-snapshot", async () => {
    const db = join(dir, "big.db");
    const store = SqliteLeaseStore.open(db);
    const now = Date.now();
    for (let i = 0; i < N; i += 50_000) {
      const rows: Lease[] = [];
      for (let j = i; j < i + 50_000; j++)
        rows.push({
          ipv4: BASE + 1 + j,
          portSet: WHOLE_ADDRESS,
          host6: host(j),
          tep4: 0,
          tep6: "::1",
          pool: "198.16.0.0/14",
          state: "active",
          grantedAt: now,
          expiresAt: now + 86_400_000,
        });
      await store.write(rows.map((lease) => ({ op: "put" as const, lease })));
    }
    await store.close();

    const probe = await bindUdp("::1", 0, () => {});
    const tepPort = probe.port;
    probe.close();
    const snapshots: Record<string, unknown>[] = [];
    const server = await DstmServer.start({
      pools: [{ prefixes: ["198.16.0.0/14"], tep6: "::1" }],
      leaseTime: 3600,
      listen: { address: "::1", port: 0 },
      sourceCheck: false,
      db,
      tepPort,
      admission: { maxLeasesPerPrefix: 0, ratePerSecond: 0 },
      log: new Logger({
        sink: (text) => {
          for (const line of text.split("\n"))
            if (line.includes("tep-snapshot")) snapshots.push(JSON.parse(line));
        },
        format: "json",
      }),
    });
    defer(() => server.stop());
    const transport = await DstmTransport.open({
      server: "::1",
      port: server.listening.port,
      retry: { initialMs: 500, tries: 6 },
    });
    defer(() => transport.close());
    const sent = (kind: string) => server.metrics.get("dstm_tep_messages_total", { kind }) ?? 0;
    const startTep = (table: RecordingTable) =>
      TepControl.start({
        listen: { address: "::1", port: tepPort },
        server: { address: "::1", port: server.listening.port },
        tep6: "::1",
        table,
        syncIntervalMs: 500,
        log: new Logger({ sink: () => {} }),
        metrics: new Metrics(),
      });

    // First TEP: restarted once the snapshot is under way.
    const first = await startTep(new RecordingTable());
    await waitUntil(() => sent("snapshot_part") >= 200, {
      timeoutMs: 30_000,
      what: "the snapshot under way",
    });
    first.close();
    // The restarted TEP, starting empty, while the first snapshot is still going out.
    const table = new RecordingTable();
    const second = await startTep(table);
    defer(() => second.close());
    // DISCOVERs while a snapshot is being sent: answered between chunks.
    let answeredDuring = 0;
    const fresh: { ipv4: number; host6: string }[] = [];
    for (let i = 0; i < 400 && sent("snapshot_chunk") === 0; i++) {
      const lease = await new DstmClient(transport, host(N + i)).discover();
      fresh.push(lease);
      if (sent("snapshot_chunk") === 0) answeredDuring++;
    }
    expect(answeredDuring).toBeGreaterThan(0);

    const view = () => server.tepSync!.view("::1");
    await waitUntil(() => second.count === view().count && second.digest === view().digest, {
      timeoutMs: 60_000,
      intervalMs: 100,
      what: "the restarted TEP in step with the server",
    });
    expect(view().count).toBe(N + fresh.length);
    // Exactly the server's set: every lease, and nothing else.
    expect(table.map.size).toBe(N + fresh.length);
    for (let j = 0; j < N; j += 997)
      expect(table.map.get(BASE + 1 + j)).toBe(canonicalIPv6(host(j)) as string);
    for (const lease of fresh) expect(table.map.get(lease.ipv4)).toBe(lease.host6);

    // Bounded chunks: ≥ 4,546 parts of ≤ 44 bindings, ≤ 16 parts a chunk. The snapshot the
    // first TEP asked for goes out to its end; the restarted TEP, which got its tail, asks for
    // the parts it lacks (SNAPSHOT_MISSING): they are sent again, in chunks too (or, had it got
    // none of that snapshot, it gets a second one).
    const whole = () =>
      snapshots.filter(
        (s) => s.event === "tep-snapshot" && Number(s.bindings) >= N && !s.cancelled,
      );
    const resent = () => snapshots.filter((s) => s.event === "tep-snapshot-resend");
    await waitUntil(() => whole().length + resent().length >= 2, {
      what: "two tep-snapshot or tep-snapshot-resend log lines",
    });
    for (const s of whole()) {
      expect(Number(s.parts)).toBe(Math.ceil(Number(s.bindings) / 44));
      expect(Number(s.chunks)).toBeGreaterThanOrEqual(Math.ceil(Number(s.parts) / 16));
    }
    for (const s of resent()) {
      expect(Number(s.parts)).toBeLessThan(Math.ceil(Number(s.bindings) / 44));
      if (s.chunks !== undefined)
        expect(Number(s.chunks)).toBeGreaterThanOrEqual(Math.ceil(Number(s.parts) / 16));
    }
  }, 180_000);
});
