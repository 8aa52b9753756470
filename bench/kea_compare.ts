/**
 * dstm vs ISC Kea side by side, each on its two kinds of lease store (issue 12, item 5):
 *
 *   dstm SQLite · dstm PostgreSQL · Kea memfile · Kea PostgreSQL
 *
 * in one run, each round running all four on fresh servers and empty stores, the order
 * reversed every other round, with the same load generator and the same request count
 * (bench/dhcp4o6_load.ts: full DHCPv4-over-DHCPv6 DORAs, RFC 7341, each simulated host its
 * own IPv6 source address; namespaces made for the run, bench/dhcp4o6_bench.ts). Kea runs with
 * `multi-threading` enabled and a thread pool of as many threads as CPUs, both sides log at
 * warn. PostgreSQL is a throwaway server on a Unix socket (test/helpers/postgres.ts): a fresh
 * database per round; Kea's schema by `kea-admin db-init pgsql`. Pool 198.18.0.0/15 (RFC 2544
 * benchmarking range; nothing is sent to it). Not a test. docs/benchmarks.md has the command
 * and why 4o6 is the like-for-like comparison.
 *
 *   node_modules/.bin/bun bench/kea_compare.ts [--rounds 5] [--hosts 20000] [--concurrency 64]
 *       [--duration 60] [--pg-hosts N] [--stores embedded|postgres|both] [--dstm-base EXE] [--json]
 *
 * Five rounds by default, issue 12's own protocol ("5 alternating rounds"): the median of
 * three moved with one round disturbed by the shared machine (a 1.93× run among 2.14–2.42×,
 * docs/benchmarks.md session 14).
 *
 * `--pg-hosts`: hosts of the PostgreSQL variants (default --hosts; Kea on PostgreSQL takes
 * 70 s for 100,000). `--stores`: which pair(s) to run. `--dstm-base EXE`: one more variant,
 * `dstm-sqlite-base`, the same as dstm-sqlite with another dstm executable (an A/B of two
 * builds beside Kea in one run; its ratio to Kea memfile is printed too).
 *
 * Prints a line per round and variant, then the medians and the ratios dstm/Kea of
 * allocations (DORAs) per second and of p50 and p99 DORA latency, store by store (SQLite vs
 * memfile, PostgreSQL vs PostgreSQL).
 *
 * @module
 */
import { availableParallelism } from "node:os";
import { SQL } from "bun";
import { startPostgres } from "../test/helpers/postgres.ts";
import { parseBenchArgs } from "./bench_args.ts";
import {
  type Dhcp4o6BenchOptions,
  type Dhcp4o6Row,
  formatRow,
  runDhcp4o6Bench,
  summarize,
  type Target,
} from "./dhcp4o6_bench.ts";

const { values } = parseBenchArgs(import.meta.path, {
  options: {
    rounds: { type: "string", default: "5" },
    hosts: { type: "string", default: "20000" },
    concurrency: { type: "string", default: "64" },
    duration: { type: "string", default: "60" },
    timeout: { type: "string", default: "2000" },
    "pg-hosts": { type: "string" },
    stores: { type: "string", default: "both" },
    "dstm-base": { type: "string" },
    json: { type: "boolean", default: false },
  },
});
const KEA_ADMIN = "/usr/sbin/kea-admin";

interface Variant {
  readonly name: "dstm-sqlite" | "dstm-sqlite-base" | "dstm-pg" | "kea-memfile" | "kea-pg";
  readonly target: Target;
  readonly options: Partial<Dhcp4o6BenchOptions>;
}

if (!(await Bun.file(KEA_ADMIN).exists()))
  throw new Error(`${KEA_ADMIN} is missing: apt-get install kea-admin`);
const pg = await startPostgres();
try {
  /** The PostgreSQL database of the round running now, to count its leases afterwards. */
  let roundDb: string | undefined;
  const dstmDatabase = async () => {
    roundDb = await pg.createDatabase();
    return roundDb;
  };
  /** A fresh database with Kea's schema; Kea's lease-database map for it. */
  const keaDatabase = async (): Promise<Record<string, unknown>> => {
    roundDb = await pg.createDatabase();
    const name = new URL(roundDb).pathname.slice(1);
    const init = Bun.spawnSync(
      [KEA_ADMIN, "db-init", "pgsql", "-h", pg.socketDir, "-P", String(pg.port)].concat([
        "-u",
        "postgres",
        "-n",
        name,
      ]),
      { stdout: "pipe", stderr: "pipe" },
    );
    if (init.exitCode !== 0)
      throw new Error(`kea-admin db-init pgsql failed: ${init.stderr}${init.stdout}`);
    // libpq takes a directory as host: the Unix socket there.
    return { type: "postgresql", name, host: pg.socketDir, port: pg.port, user: "postgres" };
  };
  const stores = values.stores;
  if (stores !== "embedded" && stores !== "postgres" && stores !== "both")
    throw new Error(`--stores ${stores}: expected embedded, postgres or both`);
  const pgHosts = Number(values["pg-hosts"] ?? values.hosts);
  const embedded = stores !== "postgres";
  const postgres = stores !== "embedded";
  const variants: Variant[] = [
    ...(embedded ? [{ name: "dstm-sqlite", target: "dstm", options: {} } as const] : []),
    ...(embedded && values["dstm-base"]
      ? [
          {
            name: "dstm-sqlite-base",
            target: "dstm",
            options: { dstmExe: values["dstm-base"] },
          } as const,
        ]
      : []),
    ...(postgres
      ? [
          {
            name: "dstm-pg",
            target: "dstm",
            options: { dstmDb: dstmDatabase, hosts: pgHosts },
          } as const,
        ]
      : []),
    ...(embedded ? [{ name: "kea-memfile", target: "kea", options: {} } as const] : []),
    ...(postgres
      ? [
          {
            name: "kea-pg",
            target: "kea",
            options: { keaLeaseDatabase: keaDatabase, hosts: pgHosts },
          } as const,
        ]
      : []),
  ];
  const rows: (Dhcp4o6Row & { variant: Variant["name"] })[] = [];
  const rounds = Number(values.rounds);
  for (let round = 1; round <= rounds; round++) {
    const order = round % 2 === 1 ? variants : [...variants].reverse();
    for (const variant of order) {
      roundDb = undefined;
      const { rows: [row] = [] } = await runDhcp4o6Bench({
        targets: [variant.target],
        rounds: 1,
        hosts: Number(values.hosts),
        concurrency: Number(values.concurrency),
        timeoutMs: Number(values.timeout),
        durationS: Number(values.duration),
        verbose: false,
        serverLogLevel: "warn",
        keaMultiThreading: {
          "enable-multi-threading": true,
          "thread-pool-size": availableParallelism(),
          "packet-queue-size": 64,
        },
        ...variant.options,
      });
      if (!row) throw new Error(`${variant.name}: no result`);
      // The leases the PostgreSQL variants stored (the others count their files).
      if (roundDb) {
        const sql = new SQL(roundDb);
        const [count] = (await (variant.target === "dstm"
          ? sql`SELECT count(*)::int AS n FROM dstm_leases WHERE state = 'active'`
          : sql`SELECT count(*)::int AS n FROM lease4`)) as { n: number }[];
        await sql.close();
        row.leasesOnDisk = count?.n ?? 0;
      }
      const labelled = { ...row, round, variant: variant.name };
      rows.push(labelled);
      if (!values.json) console.log(`${variant.name.padEnd(11)} ${formatRow(labelled)}`);
    }
  }
  const median = (name: Variant["name"]) =>
    summarize(
      rows.filter((r) => r.variant === name),
      [variants.find((v) => v.name === name)!.target],
    ).medians;
  const m = Object.fromEntries(variants.map((v) => [v.name, median(v.name)[v.target]!])) as Record<
    Variant["name"],
    NonNullable<ReturnType<typeof median>["dstm"]>
  >;
  const ratios = (dstm: Variant["name"], kea: Variant["name"]) => ({
    allocationsPerSecond: m[dstm].perSecond / m[kea].perSecond,
    p50: m[dstm].p50ms / m[kea].p50ms,
    p99: m[dstm].p99ms / m[kea].p99ms,
  });
  const result = {
    hosts: Number(values.hosts),
    pgHosts,
    concurrency: Number(values.concurrency),
    rounds,
    cpus: availableParallelism(),
    medians: m,
    ratios: {
      ...(embedded ? { "dstm-sqlite/kea-memfile": ratios("dstm-sqlite", "kea-memfile") } : {}),
      ...(embedded && values["dstm-base"]
        ? { "dstm-sqlite-base/kea-memfile": ratios("dstm-sqlite-base", "kea-memfile") }
        : {}),
      ...(postgres ? { "dstm-pg/kea-pg": ratios("dstm-pg", "kea-pg") } : {}),
    },
  };
  if (values.json) console.log(JSON.stringify({ ...result, rows }));
  else {
    for (const [name, x] of Object.entries(m))
      console.log(
        `median ${name.padEnd(11)}: ${x.perSecond}/s, loss ${x.lossPercent.toFixed(2)}%, p50 ${x.p50ms.toFixed(2)} ms, p99 ${x.p99ms.toFixed(2)} ms`,
      );
    for (const [pair, r] of Object.entries(result.ratios))
      console.log(
        `dstm/Kea ${pair}: allocations/s ${r.allocationsPerSecond.toFixed(2)}, p50 ${r.p50.toFixed(2)}, p99 ${r.p99.toFixed(2)}`,
      );
  }
} finally {
  await pg.stop();
}
