/**
 * Lease administration end to end (issue 13 item 5, issue 12's paged `lease ls`), as root with
 * real `dstm server` and `dstm tep` processes in network namespaces on one IPv6 link, hosts
 * speaking the native protocol from their own namespace, and the operator's `dstm lease …`
 * on the server's control socket:
 *
 * - add → show → ls with filters → del → the TEP logs UNBIND → the host's renewal (REQUEST)
 *   is refused with NO_SUCH_LEASE; the live SQLite file read by the `sqlite3` shell;
 * - reserve → no other host gets the address, even with the pool exhausted; the reserved host
 *   gets it, again after its lease was deleted and after a restart of the server;
 * - wipe a pool; bad input gets 400 (exit 2) and a count, never a crash;
 * - 2,500 leases paged while allocations continue: every lease present before the first page
 *   is listed exactly once; an export streamed while allocations continue.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { LeaseJson } from "../lib/control/lease_view.ts";
import { leaseKey } from "../lib/lease/lease.ts";
import { canonicalIPv6, parseIPv4 } from "../lib/net/addr.ts";
import type { Netns } from "../lib/sys/netns.ts";
import { type Daemon, daemonScope, metric, until } from "./helpers/daemon.ts";
import { hubLink } from "./helpers/hub.ts";
import { announceSkip, netnsSkipReason, startScript } from "./helpers/netns.ts";
import { BUN, ROOT, runDstm } from "./helpers/process.ts";

const skip =
  netnsSkipReason({ tun: true }) ??
  (Bun.which("sqlite3") ? null : "needs the sqlite3 shell (scripts/test-deps.sh installs it)");
announceSkip("lease_admin", skip);

const NET = {
  server6: "2001:db8:1::53",
  tep6: "2001:db8:1::1",
  a6: "2001:db8:1::a",
  b6: "2001:db8:1::b",
  tep4: "192.0.2.1",
  pool: "198.51.100.0/28",
} as const;

const { dir, netns, daemon } = daemonScope("dstm-lease-admin-", {
  timeoutMs: 300_000,
  stderrOnFailure: true,
});

const control = join(dir, "server.sock");
const db = join(dir, "leases.db");
/** `dstm lease …` against the server's control socket. */
const lease = (...args: string[]) => runDstm(["lease", ...args, "--control", control]);
const metrics = async () => (await fetch("http://localhost/metrics", { unix: control })).text();

/** Native exchanges from a host namespace (test/e2e_scripts/dstm_hosts.ts): one JSON line each. */
function host(
  ns: Netns,
  ops: object[],
): { ok: boolean; ipv4?: string; status?: string; text?: string }[] {
  const run = ns.exec(
    [
      BUN,
      join(ROOT, "test", "e2e_scripts", "dstm_hosts.ts"),
      NET.server6,
      "4607",
      JSON.stringify({ ops }),
    ],
    { cwd: ROOT, timeoutMs: 60_000 },
  );
  if (run.code !== 0) throw new Error(`dstm_hosts.ts: ${run.stderr}`);
  return run.stdout
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line));
}

function serverArgv(pool: string, dbPath: string, socket: string): string[] {
  return [
    BUN,
    join(ROOT, "mod.ts"),
    "server",
    "--pool",
    pool,
    "--tep",
    `${NET.tep6},${NET.tep4}`,
    "--listen",
    `[${NET.server6}]:4607`,
    "--db",
    dbPath,
    "--control",
    socket,
    // One namespace speaks for many hosts; the admission limits are not under test here.
    "--no-source-check",
    "--max-leases-per-prefix",
    "0",
    "--max-leases-per-site",
    "0",
    "--prefix-rate",
    "0",
  ];
}

describe.skipIf(skip !== null)("lease administration on a running server", () => {
  const ns = {} as Record<"sw" | "srv" | "tep" | "a", Netns>;
  let server: Daemon;
  let tep: Daemon;

  test("add → show → ls → del: stored, TEP UNBIND, the host's renewal refused; sqlite3 reads the live file", async () => {
    for (const role of ["sw", "srv", "tep", "a"] as const) ns[role] = netns("dstmt-la-");
    hubLink(ns.sw, [
      ["srv", ns.srv, "eth0", NET.server6],
      ["tep", ns.tep, "eth6", NET.tep6],
      ["a", ns.a, "eth0", NET.a6],
    ]);
    ns.tep.addAddress("lo", `${NET.tep4}/32`);
    server = daemon(ns.srv, serverArgv(NET.pool, db, control));
    await server.waitFor(/ start listen=/);
    tep = daemon(ns.tep, [
      BUN,
      join(ROOT, "mod.ts"),
      "tep",
      "--ipv6",
      NET.tep6,
      "--ipv4",
      NET.tep4,
      "--server",
      NET.server6,
      "--route",
      NET.pool,
      "--control",
      join(dir, "tep.sock"),
      // An unsigned server ⇄ TEP channel on the test's own link (signing is not under test).
      "--insecure-control",
    ]);
    await tep.waitFor(/ tep-start /);
    expect(
      await until(
        async () => metric(await metrics(), "dstm_tep_connected", { tep: NET.tep6 }) === 1,
      ),
    ).toBe(true);

    const added = await lease(
      "add",
      "--host6",
      NET.a6,
      "--ipv4",
      "198.51.100.5",
      "--lease-time",
      "2h",
    );
    expect(added.stderr).toBe("");
    expect(added.code).toBe(0);
    expect(added.stdout).toContain(`leased 198.51.100.5 to ${NET.a6}`);
    // The TEP holds the binding before the answer (as for a host's own lease). Its `bind` line
    // may come later: the TEP sends BIND_ACK first and writes its log at the next turn of its
    // event loop, through a pipe to this process. Waited for, not read at once.
    expect(await tep.waitFor(/ bind .*ipv4=198\.51\.100\.5/, 5_000)).toBeDefined();

    const shown = await lease("show", "198.51.100.5", "--json");
    expect(shown.code).toBe(0);
    const body = JSON.parse(shown.stdout) as { leases: LeaseJson[] };
    expect(body.leases.map((l) => [l.hostIPv6, l.state])).toEqual([[NET.a6, "active"]]);
    const expires = Date.parse(body.leases[0]!.expiresAt) - Date.parse(body.leases[0]!.grantedAt);
    expect(expires).toBe(7_200_000);

    // The host's own renewal works while the lease stands.
    expect(host(ns.a, [{ op: "request", host6: NET.a6, ipv4: "198.51.100.5" }])[0]?.ok).toBe(true);
    const byHost = JSON.parse((await lease("ls", "--host", NET.a6, "--json")).stdout);
    expect(byHost.leases.map((l: LeaseJson) => l.hostIPv4)).toEqual(["198.51.100.5"]);
    const outside = JSON.parse((await lease("ls", "--prefix", "198.51.100.8/29", "--json")).stdout);
    expect(outside.leases).toEqual([]);
    // The live database, read by the sqlite3 shell and by `lease ls --db` while the server runs.
    const count = Bun.spawnSync([
      "sqlite3",
      db,
      "select count(*) from leases where state = 'active'",
    ]);
    expect(count.stderr.toString()).toBe("");
    expect(count.stdout.toString().trim()).toBe("1");
    const offline = await runDstm(["lease", "ls", "--db", db, "--json"]);
    expect(offline.code).toBe(0);
    expect(JSON.parse(offline.stdout).leases.map((l: LeaseJson) => l.hostIPv6)).toEqual([NET.a6]);

    const deleted = await lease("del", "198.51.100.5");
    expect(deleted.code).toBe(0);
    expect(deleted.stdout).toContain(`ended 198.51.100.5 of ${NET.a6}`);
    expect(await tep.waitFor(/ unbind .*ipv4=198\.51\.100\.5/)).toBeDefined();
    const stored = Bun.spawnSync([
      "sqlite3",
      db,
      "select state from leases where ipv4 = 3325256709",
    ]);
    expect(stored.stdout.toString().trim()).toBe("released");
    // The host's next renewal: NO_SUCH_LEASE (a NAK); it starts over with DISCOVER.
    const renew = host(ns.a, [{ op: "request", host6: NET.a6, ipv4: "198.51.100.5" }])[0];
    expect(renew?.ok).toBe(false);
    expect(renew?.status).toBe("NO_SUCH_LEASE");
    expect(renew?.text).toContain("ended by an administrator");
    const page = await metrics();
    expect(metric(page, "dstm_lease_admin_total", { action: "add" })).toBe(1);
    expect(metric(page, "dstm_lease_admin_total", { action: "delete" })).toBe(1);
    // The server writes the line after its answer (log lines go out at the next turn of its
    // event loop, then through a pipe): waited for.
    expect(
      await server.waitFor(/ lease-admin action=delete ipv4=198\.51\.100\.5 /, 5_000),
    ).toBeDefined();
  }, 120_000);

  test("a reservation: no other host gets it, its host does, after a delete and after a restart", async () => {
    const reserved = await lease("add", "--host6", NET.b6, "--ipv4", "198.51.100.9", "--reserve");
    expect(reserved.code).toBe(0);
    // The pool does not share addresses: no PSID is named (it would read as a port set).
    expect(reserved.stdout).toBe(`reserved 198.51.100.9 for ${NET.b6}\n`);
    const shown = await lease("show", "198.51.100.9");
    expect(shown.stdout).toContain(`reserved: 198.51.100.9 for ${NET.b6}\n`);
    // Another host on the reserved address: 409, exit 1, with the reason.
    const clash = await lease("add", "--host6", "2001:db8:1::c", "--ipv4", "198.51.100.9");
    expect(clash.code).toBe(1);
    expect(clash.stderr).toContain(`is reserved for ${NET.b6}`);
    // 14 usable addresses, one reserved: 13 other hosts take the rest, the 14th finds none.
    const others = Array.from({ length: 14 }, (_, i) => ({
      op: "discover",
      host6: `2001:db8:2::${i + 1}`,
    }));
    const got = host(ns.a, others);
    expect(got.filter((r) => r.ok).map((r) => r.ipv4)).not.toContain("198.51.100.9");
    expect(got.filter((r) => r.ok)).toHaveLength(13);
    expect(got[13]?.status).toBe("POOL_EXHAUSTED");
    expect(host(ns.a, [{ op: "discover", host6: NET.b6 }])[0]?.ipv4).toBe("198.51.100.9");
    // Deleted: the reserved host gets it again (nobody else could take it meanwhile).
    expect((await lease("del", "198.51.100.9")).code).toBe(0);
    expect(host(ns.a, [{ op: "discover", host6: "2001:db8:2::99" }])[0]?.status).toBe(
      "POOL_EXHAUSTED",
    );
    expect(host(ns.a, [{ op: "discover", host6: NET.b6 }])[0]?.ipv4).toBe("198.51.100.9");

    // Restart the server on the same database: the reservation is stored.
    server.proc.kill("SIGTERM");
    expect(await server.proc.exited).toBe(0);
    server = daemon(ns.srv, serverArgv(NET.pool, db, control));
    await server.waitFor(/ start listen=/);
    // The TEP syncs with the restarted server (it gets a snapshot); UNBINDs go to it from then on.
    expect(
      await until(
        async () => metric(await metrics(), "dstm_tep_connected", { tep: NET.tep6 }) === 1,
      ),
    ).toBe(true);
    expect((await lease("del", "198.51.100.9")).code).toBe(0);
    expect(host(ns.a, [{ op: "discover", host6: "2001:db8:2::98" }])[0]?.status).toBe(
      "POOL_EXHAUSTED",
    );
    expect(host(ns.a, [{ op: "discover", host6: NET.b6 }])[0]?.ipv4).toBe("198.51.100.9");
  }, 120_000);

  test("wipe a pool: every lease ended and unbound; bad input is a 400, counted, never a crash", async () => {
    const refused = await lease("wipe", "--pool", NET.pool);
    expect(refused.code).toBe(2); // no --yes
    const unbinds = tep.lines.filter((l) => / unbind /.test(l)).length;
    const wiped = await lease("wipe", "--pool", NET.pool, "--yes");
    expect(wiped.code).toBe(0);
    expect(wiped.stdout).toBe(`ended 14 lease(s) of pool ${NET.pool}\n`);
    const unbound = await until(
      () => tep.lines.filter((l) => / unbind /.test(l)).length === unbinds + 14,
    );
    expect(unbound ? "" : tep.lines.slice(-40).join("\n")).toBe("");
    expect((await lease("ls")).stdout).toBe("no leases\n");

    const bad: [string, string, string][] = [
      ["GET", "/v1/leases/198.51.100.300", "bad-address"],
      ["GET", "/v1/leases?pool=nope", "unknown-pool"],
      ["DELETE", "/v1/leases/198.51.100.3?psid=1", "bad-psid"],
      ["GET", "/v1/leases?after=garbage", "bad-cursor"],
      ["GET", "/v1/leases?limit=100000000", "bad-limit"],
      ["GET", "/v1/leases?prefix=2001:db8::/999", "bad-prefix"],
      ["POST", "/v1/leases", "bad-json"],
    ];
    for (const [method, path, reason] of bad) {
      const response = await fetch(`http://localhost${path}`, {
        method,
        unix: control,
        body: method === "POST" ? "{" : undefined,
      });
      expect([path, response.status]).toEqual([path, 400]);
      expect(((await response.json()) as { error: string }).error.length).toBeGreaterThan(10);
      expect(
        metric(await metrics(), "dstm_lease_admin_refused_total", { reason }),
      ).toBeGreaterThanOrEqual(1);
    }
    // The CLI: a bad value is exit 2, a refusal exit 1; the server still answers.
    expect((await lease("del", "999.1.1.1")).code).toBe(2);
    expect((await lease("ls", "--pool", "nope")).code).toBe(2);
    expect((await lease("del", "198.51.100.3")).code).toBe(1);
    expect((await lease("add", "--host6", NET.a6, "--ipv4", "203.0.113.9")).stderr).toContain(
      "is in no pool",
    );
    expect((await fetch("http://localhost/v1/ping", { unix: control })).status).toBe(200);
  }, 120_000);

  test("2,500 leases: paged with allocations going on, each lease once; an export streams meanwhile", async () => {
    // The TEP routes only the small pool: stop it, so the big pool's leases need no binding.
    tep.proc.kill("SIGTERM");
    await tep.proc.exited;
    server.proc.kill("SIGTERM");
    expect(await server.proc.exited).toBe(0);
    const bigDb = join(dir, "big.db");
    const bigControl = join(dir, "big.sock");
    // 254 addresses × 32 port sets: room for the 4,000 leases below.
    server = daemon(ns.srv, [...serverArgv("198.51.100.0/24", bigDb, bigControl), "--share", "32"]);
    await server.waitFor(/ start listen=/);
    const spray = (first: number, count: number) =>
      startScript<{ leased: number; refused: number }>(
        ns.a,
        "../e2e_scripts/dstm_hosts.ts",
        [NET.server6, "4607", JSON.stringify({ spray: { base: "2001:db8:100", first, count } })],
        240_000,
      );
    expect(await spray(0, 2500).result).toEqual({ leased: 2500, refused: 0 });
    const initial = Array.from({ length: 2500 }, (_, i) =>
      String(canonicalIPv6(`2001:db8:100:${i.toString(16)}::1`)),
    );
    const get = async (path: string) =>
      (await fetch(`http://localhost${path}`, { unix: bigControl })).json();

    // Allocations go on while the operator pages through the table and exports it.
    const more = spray(2500, 1500);
    await more.waitFor(/^leased \d+$/, 120_000);
    const seen: LeaseJson[] = [];
    let next: string | null = null;
    do {
      const page = (await get(`/v1/leases?limit=97${next ? `&after=${next}` : ""}`)) as {
        leases: LeaseJson[];
        next: string | null;
      };
      seen.push(...page.leases);
      next = page.next;
    } while (next !== null);
    const exported = await fetch("http://localhost/v1/leases/export?format=ndjson", {
      unix: bigControl,
    });
    expect(exported.headers.get("content-type")).toBe("application/x-ndjson");
    const lines = (await exported.text())
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as LeaseJson);
    expect(await more.result).toEqual({ leased: 1500, refused: 0 });

    // Paged: no lease twice, in (address, PSID) order, every lease held since before listed.
    const order = (l: LeaseJson) =>
      leaseKey(parseIPv4(l.hostIPv4)!, l.portSet === "all" ? 0 : Number(l.portSet.split("/")[2]));
    const keys = seen.map(order);
    expect(new Set(keys).size).toBe(keys.length);
    expect(keys).toEqual([...keys].sort((x, y) => x - y));
    const listed = new Set(seen.map((l) => l.hostIPv6));
    expect(initial.filter((h) => !listed.has(h))).toEqual([]);
    // Exported: no lease twice, every lease held since before present.
    expect(new Set(lines.map(order)).size).toBe(lines.length);
    const inExport = new Set(lines.map((l) => l.hostIPv6));
    expect(initial.filter((h) => !inExport.has(h))).toEqual([]);
    // The live file, by the sqlite3 shell and by `lease ls --db` (paged, filtered).
    const inDb = Bun.spawnSync(["sqlite3", bigDb, "select count(*) from leases"]);
    expect(inDb.stdout.toString().trim()).toBe("4000");
    const one = await runDstm(["lease", "ls", "--db", bigDb, "--json", "--host", initial[0]!]);
    expect(JSON.parse(one.stdout).leases).toHaveLength(1);
    // The table view, page by page: --limit stops early and says where to go on.
    const limited = await runDstm(["lease", "ls", "--control", bigControl, "--limit", "1500"]);
    expect(limited.code).toBe(0);
    expect(limited.stdout.trimEnd().split("\n")).toHaveLength(1501);
    expect(limited.stderr).toMatch(/^more: --after 198\.51\.100\.\d+:\d+\n$/);
    // `lease export | head -1` and `lease ls | head -1` end quietly.
    for (const command of ["export", "ls"]) {
      const piped = Bun.spawnSync(
        [
          "sh",
          "-c",
          `${BUN} ${join(ROOT, "mod.ts")} lease ${command} --control ${bigControl} | head -1`,
        ],
        { cwd: ROOT },
      );
      expect(piped.stderr.toString()).toBe("");
      expect(piped.stdout.toString().split("\n")).toHaveLength(2);
    }
  }, 300_000);
});
