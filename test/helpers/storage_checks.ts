/**
 * Checks shared by the storage red-team tests (test/redteam_storage*.test.ts): the lease
 * database read with `sqlite3` inside the test's mount namespace, the server's own view
 * through its control socket, and the server's metrics.
 */

import { DstmTransport } from "../../lib/client/protocol.ts";
import { formatIPv4 } from "../../lib/net/addr.ts";
import type { PrivateTmpfs } from "./private_tmpfs.ts";
import { type DstmProcess, listenPort, runDstm } from "./process.ts";

/**
 * The active rows of the lease table: holder → IPv4 (dotted). The holder is the host's IPv6
 * address, followed by ` ` and the 4o6 client identity in the keyed modes (several clients
 * of one IPv6 address).
 */
export type ActiveRows = Map<string, string>;

/**
 * The active leases the database holds (read by `sqlite3`, a WAL reader, inside the
 * namespace); throws when an address or a host is held twice.
 */
export async function activeInDb(fs: PrivateTmpfs, db: string): Promise<ActiveRows> {
  const r = await fs.run([
    "sqlite3",
    "-cmd",
    ".timeout 2000",
    db,
    "SELECT host6, ipv4, psid, identity FROM leases WHERE state = 'active' ORDER BY key",
  ]);
  if (r.code !== 0) throw new Error(`sqlite3 ${db}: ${r.stderr}`);
  const rows: ActiveRows = new Map();
  const slots = new Set<string>();
  for (const line of r.stdout.split("\n")) {
    if (line === "") continue;
    const [host6, ipv4, psid, identity] = line.split("|");
    const holder = identity ? `${host6} ${identity}` : (host6 as string);
    const slot = `${ipv4}/${psid}`;
    if (slots.has(slot)) throw new Error(`address ${slot} held twice in ${db}`);
    if (rows.has(holder)) throw new Error(`${holder} holds two active leases`);
    slots.add(slot);
    rows.set(holder, formatIPv4(Number(ipv4)));
  }
  return rows;
}

/** The active leases as the running server holds them in memory (`dstm lease ls --json`). */
export async function activeInServer(control: string): Promise<ActiveRows> {
  const r = await runDstm(["lease", "ls", "--json", "--control", control]);
  if (r.code !== 0) throw new Error(`lease ls: ${r.stderr}`);
  type Row = { hostIPv4: string; hostIPv6: string; identity: string | null };
  const leases = (JSON.parse(r.stdout) as { leases: Row[] }).leases;
  return new Map(
    leases.map((l) => [l.identity ? `${l.hostIPv6} ${l.identity}` : l.hostIPv6, l.hostIPv4]),
  );
}

/** The value of the series `name{labels}` in Prometheus text, 0 when absent. */
export async function metric(
  where: string,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const text = await (await fetch(`http://${where}/metrics`)).text();
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (want.every((w) => line.includes(w))) return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return 0;
}

/** `metrics=[::1]:PORT` of the server's start line. */
export function metricsWhere(startLine: string): string {
  const m = / metrics=(\S+)/.exec(startLine);
  if (!m) throw new Error(`no metrics= in ${startLine}`);
  return m[1] as string;
}

/**
 * Waits for `server`'s start line (20 s) and opens a native-protocol transport to it (retry
 * 500 ms × 4); with the line's `metrics=` address. The caller closes the transport.
 */
export async function serverReady(
  server: DstmProcess,
): Promise<{ start: string; metrics: string; transport: DstmTransport }> {
  const start = await server.waitFor(/ start /, 20_000);
  const transport = await DstmTransport.open({
    server: "::1",
    port: listenPort(start),
    retry: { initialMs: 500, tries: 4 },
  });
  return { start, metrics: metricsWhere(start), transport };
}
