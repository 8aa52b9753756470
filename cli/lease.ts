/**
 * `dstm lease ls`: the lease table, live from a running server's control socket (page by page,
 * printed as it comes) or read from its database (also while the server runs); the
 * administration subcommands are in ./lease_admin.ts.
 *
 * @module
 */
import { Command, Option } from "@commander-js/extra-typings";
import { DstmClient, DstmTransport } from "../lib/client/protocol.ts";
import { SERVER_CONTROL_DOC } from "../lib/config/common_schema.ts";
import { unicastIPv4, unicastIPv6 } from "../lib/config/endpoints.ts";
import { ipv4PrefixFlag } from "../lib/config/ipv4_prefix.ts";
import { readKeys } from "../lib/config/key_file.ts";
import { defaultControlSocket } from "../lib/config/paths.ts";
import { BadRequest, parseLeaseFilter } from "../lib/control/lease_admin_api.ts";
import {
  formatCursor,
  type LeaseFilter,
  matchesFilter,
  parseCursor,
} from "../lib/control/lease_query.ts";
import {
  describePorts,
  type LeaseJson,
  leaseTablePrinter,
  leaseToJson,
} from "../lib/control/lease_view.ts";
import { type Lease, leaseKey } from "../lib/lease/lease.ts";
import { isPostgresUrl } from "../lib/lease/postgres.ts";
import { LeaseStoreError, SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { formatIPv4, parseIPv4, parseIPv6 } from "../lib/net/addr.ts";
import { ipv6PrefixMeant, parseIPv4Prefix, prefixMeant } from "../lib/net/prefix.ts";
import { sourceAddressFor, UdpBindError } from "../lib/sys/udp.ts";
import { DSTM_PORT } from "../lib/wire/dstm_types.ts";
import { refuseDatabaseDirectory } from "./db_path.ts";
import { UsageError } from "./errors.ts";
import { addLeaseAdminCommands, answer, controlFetch } from "./lease_admin.ts";
import { addReservationsCommand, hintReservedState } from "./lease_reservations.ts";

export function leaseCommand(): Command {
  const lease = new Command("lease")
    .description("inspect and administer the lease table")
    .addHelpText(
      "after",
      `
Examples (each subcommand's --help has more):
  dstm lease ls                                  # the active leases, from the running server
  dstm lease ls --state all --pool 198.51.100.0/24
  dstm lease show 198.51.100.1
  dstm lease add --host6 2001:db8:1::10 --ipv4 198.51.100.10 --reserve
  dstm lease del 198.51.100.1
  dstm lease export --format csv > leases.csv
  dstm lease ls --db /var/lib/dstm/leases.db     # the database itself, also while the server runs`,
    );
  lease
    .command("ls")
    .description(
      "list leases: host IPv4, host IPv6, TEP IPv4, TEP IPv6, ports, state, 4o6 client identity, expiry (fetched and printed page by page)",
    )
    .option("--json", "print JSON (one object with a leases array)")
    .option("--all", "include released and expired leases (kept for sticky re-allocation)")
    .option("--address <ipv4>", "only leases of this IPv4 address")
    .option("--prefix <cidr>", "only leases in this IPv4 prefix, or of hosts in this IPv6 prefix")
    .option("--host <v6>", "only the leases of this host IPv6 address")
    .option(
      "--identity <id>",
      "only the leases of this DHCPv4-over-DHCPv6 client identity (id:HEX, hw:HTYPE:HEX or a link-local client's ll:ADDRESS@LINK, as the IDENTITY column shows)",
    )
    .addOption(
      new Option("--state <state>", "only active (default), released, expired, or all").choices([
        "active",
        "released",
        "expired",
        "all",
      ] as const),
    )
    .option(
      "--pool <cidr>",
      "only leases of the pool with this prefix (with --db: its first prefix, under which its leases are stored)",
    )
    .option("--limit <n>", "print at most N leases (then the cursor for --after, on stderr)")
    .option("--after <cursor>", "start after this lease (IPV4:PSID, as --limit prints it)")
    .option(
      "--control <path>",
      `control socket of the running server (default: ${SERVER_CONTROL_DOC})`,
    )
    .option(
      "--db <path>",
      "read a SQLite lease database file directly (also while the server runs; a postgres:// one is read through its servers)",
    )
    .addHelpText(
      "after",
      "\nExamples:\n  dstm lease ls\n  dstm lease ls --json --all\n  dstm lease ls --prefix 192.0.2.0/28 --state all\n  dstm lease ls --host 2001:db8:1::10\n  dstm lease ls --identity hw:1:02005e0000aa\n  dstm lease ls --limit 100 --after 192.0.2.99:0\n  dstm lease ls --db /var/lib/dstm/leases.db",
    )
    .action(async (flags) => {
      // --all is --state all: with another --state one of the two would be ignored.
      if (flags.all && flags.state !== undefined && flags.state !== "all")
        throw new UsageError(
          `--all (every state) and --state ${flags.state} contradict each other; give --state ${flags.state} alone, or --all`,
        );
      checkFilterFlags(flags);
      const params = new URLSearchParams();
      for (const key of ["address", "prefix", "host", "identity", "state", "pool"] as const) {
        const value = flags[key];
        if (value !== undefined) params.set(key, value);
      }
      if (flags.all && !params.has("state")) params.set("state", "all");
      const limit = flags.limit === undefined ? Number.POSITIVE_INFINITY : Number(flags.limit);
      if (flags.limit !== undefined && !(/^\d{1,9}$/.test(flags.limit) && limit >= 1))
        throw new UsageError(
          `--limit: "${flags.limit}" is not a whole number of leases (1 or more)`,
        );
      // Pages no larger than what is printed (the server's default page is 1,000).
      if (limit < 1000) params.set("limit", String(limit));
      const pages = flags.db
        ? pagesFromDb(flags.db, params, flags.after)
        : pagesFromServer(flags.control ?? defaultControlSocket(), params, flags.after);
      await printPages(pages, limit, flags.json === true);
    });
  addLeaseAdminCommands(lease);
  addReservationsCommand(lease);
  for (const sub of lease.commands)
    if (["ls", "export"].includes(sub.name())) hintReservedState(sub);
  addLeaseProbeCommands(lease);
  return lease;
}

type Page = { leases: LeaseJson[]; next: string | null };

/**
 * The filter flags of `lease ls` checked here, before any server is asked, so that a bad one
 * is named as the flag it is (`--prefix: 192.0.2.1/24 has host bits set; did you mean
 * 192.0.2.0/24?`) whether the leases come from the control socket or `--db`. Throws
 * {@link UsageError}.
 */
function checkFilterFlags(flags: {
  address?: string;
  prefix?: string;
  host?: string;
  after?: string;
}): void {
  if (flags.address !== undefined && parseIPv4(flags.address) === null)
    throw new UsageError(`--address: "${flags.address}" is not an IPv4 address`);
  if (flags.host !== undefined && parseIPv6(flags.host) === null)
    throw new UsageError(`--host: "${flags.host}" is not an IPv6 address (a host's address)`);
  const prefix = flags.prefix;
  if (prefix !== undefined) {
    // An IPv4 prefix with host bits gets the "did you mean" of --route and --pool.
    if (prefixMeant(prefix) !== null) ipv4PrefixFlag(prefix, "--prefix");
    const [address, length, extra] = prefix.split("/");
    const ipv6 =
      extra === undefined &&
      parseIPv6(address ?? "") !== null &&
      /^\d{1,3}$/.test(length ?? "") &&
      Number(length) <= 128;
    if (parseIPv4Prefix(prefix) === null && !ipv6)
      throw new UsageError(
        `--prefix: "${prefix}" is neither an IPv4 nor an IPv6 prefix (e.g. 192.0.2.0/28, 2001:db8:1::/48)`,
      );
    const meant6 = ipv6 ? ipv6PrefixMeant(prefix) : null;
    if (meant6 !== null)
      throw new UsageError(`--prefix: ${prefix} has host bits set; did you mean ${meant6}?`);
  }
  if (flags.after !== undefined && parseCursor(flags.after) === null)
    throw new UsageError(`--after: "${flags.after}" is not a cursor (IPV4:PSID)`);
}

/** Prints pages as they come (table or JSON), at most `limit` leases; the rest is never fetched. */
async function printPages(pages: AsyncIterable<Page>, limit: number, json: boolean): Promise<void> {
  const table = leaseTablePrinter(Date.now());
  let printed = 0;
  let next: string | null = null;
  // The JSON opens with the first page, so that a server that does not answer leaves stdout
  // empty (only the error on stderr), not a truncated document.
  let opened = false;
  const open = () => {
    if (json && !opened) process.stdout.write('{"leases":[');
    opened = true;
  };
  for await (const page of pages) {
    open();
    const take = page.leases.slice(0, limit - printed);
    if (json) {
      const text = take.map((l, i) => `${printed + i ? "," : ""}\n  ${JSON.stringify(l)}`).join("");
      process.stdout.write(text);
    } else process.stdout.write(table(take));
    printed += take.length;
    if (take.length < page.leases.length) {
      const last = take[take.length - 1] as LeaseJson;
      next = `${last.hostIPv4}:${portSetPsid(last.portSet)}`;
      break;
    }
    next = page.next;
    if (next === null || printed >= limit) break;
  }
  open();
  if (json) process.stdout.write(`\n],"next":${JSON.stringify(next)}}\n`);
  else if (printed === 0) process.stdout.write("no leases\n");
  if (next !== null && printed >= limit) process.stderr.write(`more: --after ${next}\n`);
}

/** The PSID of a `portSet` text ("all" or "offset/psidLength/psid"). */
function portSetPsid(portSet: string): number {
  return portSet === "all" ? 0 : Number(portSet.split("/")[2]);
}

async function* pagesFromServer(
  socket: string,
  params: URLSearchParams,
  after: string | undefined,
): AsyncIterable<Page> {
  let cursor = after ?? null;
  do {
    if (cursor !== null) params.set("after", cursor);
    const response = await controlFetch(socket, "GET", `/v1/leases?${params}`);
    const page = await answer<Page>(response, socket);
    yield page;
    cursor = page.next ?? null;
  } while (cursor !== null);
}

async function* pagesFromDb(
  path: string,
  params: URLSearchParams,
  after: string | undefined,
): AsyncIterable<Page> {
  let filter: LeaseFilter;
  let cursor = -1;
  try {
    filter = parseLeaseFilter(params, (pool) => pool);
    if (after !== undefined) {
      const key = parseCursor(after);
      if (key === null) throw new UsageError(`--after: "${after}" is not a cursor (IPV4:PSID)`);
      cursor = key;
    }
  } catch (error) {
    if (error instanceof BadRequest) throw new UsageError(error.message);
    throw error;
  }
  // A shared PostgreSQL database is read through a server that uses it (docs/scale-out.md).
  if (isPostgresUrl(path))
    throw new UsageError(
      `--db ${path}: lease ls --db reads SQLite files only; ask a running server that uses this database instead (dstm lease ls, with --control PATH of its control socket)`,
    );
  refuseDatabaseDirectory(path);
  let store: SqliteLeaseStore;
  try {
    store = SqliteLeaseStore.openReadOnly(path);
  } catch (error) {
    if (error instanceof LeaseStoreError) throw new UsageError(error.message);
    throw error;
  }
  try {
    for (;;) {
      const rows = store.rowsAfter(cursor, DB_PAGE);
      if (rows.length === 0) return;
      const last = rows[rows.length - 1] as Lease;
      cursor = leaseKey(last.ipv4, last.portSet.psid);
      const leases = rows
        .filter((l) => matchesFilter(l, filter, parseIPv6))
        .map((l) => leaseToJson(l)); // a stored row is never an offer
      yield { leases, next: rows.length < DB_PAGE ? null : formatCursor(cursor) };
      if (rows.length < DB_PAGE) return;
    }
  } finally {
    await store.close();
  }
}

/** Rows read from the database per page. */
const DB_PAGE = 1000;

/** `dstm lease get` / `dstm lease release`: one-shot protocol exchanges, for checking a server by hand. */
export function addLeaseProbeCommands(lease: Command): void {
  lease
    .command("get")
    .description(
      "ask a DSTM server for a lease (DSTM_DISCOVER) and print it; the lease stays until released or expired",
    )
    .requiredOption("--server <v6>", "the DSTM server's IPv6 address")
    .option("--server-port <n>", `the server's UDP port (default: ${DSTM_PORT})`)
    .addOption(new Option("--port <n>", "deprecated: --server-port").hideHelp())
    .option(
      "--host6 <v6>",
      "host IPv6 address to ask for (default: the source address the kernel picks); an address of this host is also sent from, another one is refused unless the server runs with --no-source-check",
    )
    .option("--key <file>", "sign with the key in FILE")
    .option("--json", "print JSON")
    .addHelpText(
      "after",
      "\nExamples:\n  dstm lease get --server 2001:db8::53\n  dstm lease get --server 2001:db8::53 --host6 2001:db8:1::99 --key /etc/dstm/key --json",
    )
    .action(async (flags) => {
      const { client, transport } = await probeClient(flags);
      try {
        const lease = await client.discover();
        const view = {
          hostIPv4: formatIPv4(lease.ipv4),
          hostIPv6: lease.host6,
          tepIPv4: lease.tep4 === undefined ? null : formatIPv4(lease.tep4),
          tepIPv6: lease.tep6,
          leaseTime: lease.leaseTime,
          ports:
            lease.portSet && lease.portSet.psidLength > 0 ? describePorts(lease.portSet) : "all",
        };
        process.stdout.write(
          flags.json
            ? `${JSON.stringify(view)}\n`
            : `${view.hostIPv4}${view.ports === "all" ? "" : ` ports ${view.ports}`} for ${view.hostIPv6} via TEP ${view.tepIPv6}${view.tepIPv4 ? ` (${view.tepIPv4})` : ""}, ${lease.leaseTime}s\n`,
        );
      } finally {
        transport.close();
      }
    });
  lease
    .command("release")
    .description("give a lease back (DSTM_RELEASE)")
    .requiredOption("--server <v6>", "the DSTM server's IPv6 address")
    .requiredOption("--ipv4 <addr>", "the leased IPv4 address")
    .option("--server-port <n>", `the server's UDP port (default: ${DSTM_PORT})`)
    .addOption(new Option("--port <n>", "deprecated: --server-port").hideHelp())
    .option("--host6 <v6>", "host IPv6 address holding the lease (default: the source address)")
    .option("--key <file>", "sign with the key in FILE")
    .addHelpText(
      "after",
      "\nExamples:\n  dstm lease release --server 2001:db8::53 --ipv4 192.168.20.2\n  dstm lease release --server 2001:db8::53 --ipv4 192.168.20.2 --host6 2001:db8:1::99",
    )
    .action(async (flags) => {
      const ipv4 = unicastIPv4(flags.ipv4, "--ipv4", "the leased");
      const { client, transport } = await probeClient(flags);
      try {
        await client.release(ipv4);
        process.stdout.write(`released ${flags.ipv4}\n`);
      } finally {
        transport.close();
      }
    });
}

async function probeClient(flags: {
  server: string;
  serverPort?: string;
  port?: string;
  host6?: string;
  key?: string;
}) {
  const server = unicastIPv6(flags.server, "--server", "the DSTM server's", { loopback: true });
  if (flags.port !== undefined) {
    if (flags.serverPort !== undefined)
      throw new UsageError("--port and --server-port are the same setting; give --server-port");
    process.stderr.write("dstm: --port is deprecated; use --server-port\n");
  }
  const portText = flags.serverPort ?? flags.port;
  const port = portText === undefined ? DSTM_PORT : Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new UsageError(`--server-port: "${portText}" is not a port`);
  const host6 =
    flags.host6 === undefined
      ? await sourceAddressFor(server, port)
      : unicastIPv6(flags.host6, "--host6", "the host's", { loopback: true });
  const key = flags.key ? readKeys(flags.key, { holder: "client" })[0] : undefined;
  // Ask from the address the lease is for (a multihomed host has others); an address that is
  // not ours (asking on another host's behalf, source check off) leaves the choice to the kernel.
  const transport = await DstmTransport.open({ server, port, key, bind: host6 }).catch(
    (error: unknown) => {
      if (error instanceof UdpBindError && error.code === "EADDRNOTAVAIL")
        return DstmTransport.open({ server, port, key });
      throw error;
    },
  );
  return { client: new DstmClient(transport, host6), transport };
}
