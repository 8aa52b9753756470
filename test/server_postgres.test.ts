/**
 * Active-active (issue 12, item 3): two real `dstm server` processes share one throwaway
 * PostgreSQL database and the same pool. Many hosts lease from both at once; the database,
 * not luck, keeps every address with one host; a host freed on one server gets its address
 * back from the other; each expiry is reclaimed by exactly one of them.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SQL } from "bun";
import { resolveServerConfig } from "../cli/server.ts";
import { type ClientLease, DstmClient, DstmTransport } from "../lib/client/protocol.ts";
import { Logger } from "../lib/control/log.ts";
import { formatIPv4 } from "../lib/net/addr.ts";
import { DstmServer } from "../lib/server/server.ts";
import { type PgServer, postgresBin, startPostgres } from "./helpers/postgres.ts";
import { type DstmProcess, runDstm, spawnDstm } from "./helpers/process.ts";
import { eventually } from "./helpers/wait.ts";

const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const fn of cleanup.reverse()) await fn();
});
let pg: Promise<PgServer> | undefined;
const pgServer = () => {
  if (!pg) {
    pg = startPostgres();
    cleanup.unshift(async () => (await (pg as Promise<PgServer>)).stop());
  }
  return pg;
};
let tempDir: string | undefined;
const dir = () => {
  if (!tempDir) {
    tempDir = mkdtempSync(join(tmpdir(), "dstm-aa-"));
    const made = tempDir;
    cleanup.push(() => rmSync(made, { recursive: true, force: true }));
  }
  return tempDir;
};

interface Server {
  readonly proc: DstmProcess;
  readonly port: number;
  readonly control: string;
}

async function startServer(name: string, url: string, extra: string[] = []): Promise<Server> {
  const control = join(dir(), `${name}.sock`);
  const proc = spawnDstm([
    "server",
    "--pool",
    "198.18.0.0/24",
    "--tep",
    "2001:db8::1",
    "--db",
    url,
    "--listen",
    "[::1]:0",
    "--control",
    control,
    "--no-source-check",
    "--max-leases-per-prefix",
    "0",
    "--prefix-rate",
    "0",
    ...extra,
  ]);
  cleanup.push(async () => {
    proc.proc.kill("SIGTERM");
    await proc.exited;
  });
  const line = await proc.waitFor(/ start listen=\[::1\]:(\d+)/, 30_000);
  const port = Number(/listen=\[::1\]:(\d+)/.exec(line)?.[1]);
  return { proc, port, control };
}

async function transport(port: number): Promise<DstmTransport> {
  const t = await DstmTransport.open({ server: "::1", port, retry: { initialMs: 300, tries: 8 } });
  cleanup.push(() => t.close());
  return t;
}

/** A counter of a server's /metrics (0 when absent). */
async function counter(server: Server, name: string): Promise<number> {
  const text = await (await fetch("http://localhost/metrics", { unix: server.control })).text();
  const match = new RegExp(`^${name}(?:\\{\\})? (\\d+)$`, "m").exec(text);
  return match ? Number(match[1]) : 0;
}

/** The leases a server knows (all states), by host. */
async function known(server: Server): Promise<{ hostIPv6: string; state: string }[]> {
  const response = await fetch("http://localhost/v1/leases?all=1", { unix: server.control });
  return ((await response.json()) as { leases: { hostIPv6: string; state: string }[] }).leases;
}

const host = (n: number) => `2001:db8:1::${n.toString(16)}`;

describe.skipIf(!postgresBin())("two dstm servers, one PostgreSQL", () => {
  test("hosts leasing from both at once: no address held twice; sticky through the other server", async () => {
    const url = await (await pgServer()).createDatabase();
    const [a, b] = await Promise.all([startServer("a", url), startServer("b", url)]);
    const [ta, tb] = await Promise.all([transport(a.port), transport(b.port)]);
    // 300 hosts for 254 addresses, alternating between the servers, all at once.
    const results = await Promise.allSettled(
      Array.from({ length: 300 }, (_, i) =>
        new DstmClient(i % 2 ? tb : ta, host(i + 1)).discover(),
      ),
    );
    const granted = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    const refused = results.flatMap((r) =>
      r.status === "rejected" ? [String((r.reason as Error).message)] : [],
    );
    expect(granted.length).toBe(254);
    expect(refused.length).toBe(46);
    for (const reason of refused) expect(reason).toMatch(/pool|exhausted|no free/i);
    // What the database holds is what the hosts were told: each address with one host.
    const sql = new SQL(url);
    cleanup.push(() => sql.close());
    const rows = (await sql`SELECT ipv4, host6 FROM dstm_leases WHERE state = 'active'`) as {
      ipv4: string;
      host6: string;
    }[];
    expect(rows.length).toBe(254);
    const holder = new Map(rows.map((r) => [Number(r.ipv4), r.host6]));
    for (const lease of granted) expect(holder.get(lease.ipv4)).toBe(lease.host6);
    expect(new Set(granted.map((l: ClientLease) => l.ipv4)).size).toBe(254);

    // A host leased through A gives its address back through A, then asks B: same address.
    // (Which 46 hosts are refused depends on the race, host 1 among them at times: any host
    // of A's granted, A's being the odd ones.)
    const ofA = new Set(Array.from({ length: 150 }, (_, i) => host(2 * i + 1)));
    const one = granted.find((l) => ofA.has(l.host6)) as ClientLease;
    const h = one.host6;
    await new DstmClient(ta, h).release(one.ipv4);
    const seen = async () =>
      (await known(b)).some((l) => l.hostIPv6 === h && l.state === "released");
    await eventually(seen, { timeoutMs: 5000, intervalMs: 50 });
    expect(await seen()).toBe(true);
    const back = await new DstmClient(tb, h).discover();
    expect(formatIPv4(back.ipv4)).toBe(formatIPv4(one.ipv4));
    // and B's grant renews through A
    const renewed = await new DstmClient(ta, h).request(back.ipv4);
    expect(renewed.ipv4).toBe(back.ipv4);
  }, 120_000);

  test("each expiry is reclaimed by exactly one of the two servers", async () => {
    const url = await (await pgServer()).createDatabase();
    // Long enough that every DISCOVER (and its retransmissions) is answered before any expiry.
    const short = ["--lease-time", "5", "--max-lease-time", "5"];
    const [a, b] = await Promise.all([startServer("c", url, short), startServer("d", url, short)]);
    const [ta, tb] = await Promise.all([transport(a.port), transport(b.port)]);
    const leases = await Promise.all(
      Array.from({ length: 120 }, (_, i) =>
        new DstmClient(i % 2 ? tb : ta, host(i + 1)).discover(),
      ),
    );
    expect(new Set(leases.map((l) => l.ipv4)).size).toBe(120);
    const sql = new SQL(url);
    cleanup.push(() => sql.close());
    const active = async () =>
      Number(
        (
          (await sql`SELECT count(*)::int AS n FROM dstm_leases WHERE state = 'active'`) as {
            n: number;
          }[]
        )[0]?.n,
      );
    await eventually(async () => (await active()) === 0, { timeoutMs: 20_000, intervalMs: 100 });
    expect(await active()).toBe(0);
    const total = async () =>
      (await counter(a, "dstm_leases_expired_total")) +
      (await counter(b, "dstm_leases_expired_total"));
    // Both servers' counts add up to the 120 leases: none expired twice, none missed.
    await eventually(async () => (await total()) >= 120, { timeoutMs: 5000, intervalMs: 100 });
    expect(await total()).toBe(120);
  }, 120_000);
});

describe.skipIf(!postgresBin())("TEP view of servers sharing a database", () => {
  test("each server's TEP bindings (what its snapshot sends) include the other's leases", async () => {
    const url = await (await pgServer()).createDatabase();
    const start = () =>
      DstmServer.start({
        pools: [{ prefixes: ["198.18.0.0/26"], tep6: "2001:db8::1" }],
        leaseTime: 600,
        listen: { address: "::1", port: 0 },
        sourceCheck: false,
        db: url,
        admission: { maxLeasesPerPrefix: 0, ratePerSecond: 0 },
        log: new Logger({ sink: () => {} }),
      });
    const a = await start();
    cleanup.push(() => a.stop());
    const b = await start();
    cleanup.push(() => b.stop());
    // Through each server's UDP port: its handler installs its own grants in its TEP view.
    const [ta, tb] = await Promise.all([transport(a.listening.port), transport(b.listening.port)]);
    for (let i = 0; i < 10; i++) await new DstmClient(ta, host(100 + i)).discover();
    for (let i = 0; i < 5; i++) await new DstmClient(tb, host(200 + i)).discover();
    const count = (server: DstmServer) => server.tepSync?.view("2001:db8::1").count ?? -1;
    const digest = (server: DstmServer) => server.tepSync?.view("2001:db8::1").digest;
    await eventually(() => count(a) === 15 && count(b) === 15, { timeoutMs: 5000 });
    expect([count(a), count(b)]).toEqual([15, 15]);
    expect(digest(a)).toBe(digest(b) as number);
    // A release through B leaves both views too.
    const one = a.engine.lookupHost(host(100));
    await new DstmClient(tb, host(100)).release(one?.ipv4 as number);
    await eventually(() => count(a) === 14, { timeoutMs: 5000 });
    expect([count(a), count(b)]).toEqual([14, 14]);
    expect(digest(a)).toBe(digest(b) as number);
  }, 60_000);
});

describe("--db with a postgres:// URL", () => {
  test("the flag and the TOML key keep the URL (no directory to check)", () => {
    const url = "postgres://dstm@db.invalid:5432/dstm";
    const flags = resolveServerConfig(
      { pool: ["192.0.2.0/28"], tep: "2001:db8::1", db: url, control: false },
      () => {},
    );
    expect(flags.db).toBe(url);
    const file = join(dir(), "pg.toml");
    writeFileSync(
      file,
      ['pool = "192.0.2.0/28"', 'tep = "2001:db8::1"', `db = "${url}"`].join("\n"),
    );
    expect(resolveServerConfig({ config: file, control: false }, () => {}).db).toBe(url);
  });

  test("an unreachable database: a one-line error without the password, exit 1", async () => {
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    const result = await runDstm([
      "server",
      "--pool",
      "192.0.2.0/28",
      "--tep",
      "2001:db8::1",
      "--db",
      "postgres://dstm:s3cret@127.0.0.1:1/dstm",
      "--no-control",
      "--listen",
      "[::1]:0",
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(
      "cannot open lease database postgres://dstm:***@127.0.0.1:1/dstm",
    );
    expect(result.stderr).not.toContain("s3cret");
    expect(result.stderr.trim().split("\n").length).toBe(1);
  });
});
