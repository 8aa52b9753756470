/**
 * `dstm lease ls`: the lease table, live from a running server's control socket or offline
 * from its database.
 *
 * @module
 */
import { Command, Option } from "@commander-js/extra-typings";
import { DstmClient, DstmTransport } from "../lib/client/protocol.ts";
import {
  describePorts,
  type LeaseJson,
  leaseToJson,
  renderLeaseTable,
} from "../lib/control/lease_view.ts";
import { LeaseStoreError, SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { formatIPv4 } from "../lib/net/addr.ts";
import { getUnix, unixPermissionProblem } from "../lib/sys/http.ts";
import { sourceAddressFor, UdpBindError } from "../lib/sys/udp.ts";
import { DSTM_PORT } from "../lib/wire/dstm_types.ts";
import { readKeys } from "./common.ts";
import { unicastIPv4, unicastIPv6 } from "./endpoints.ts";
import { RuntimeError, UsageError } from "./errors.ts";
import { defaultControlSocket } from "./paths.ts";

export function leaseCommand(): Command {
  const lease = new Command("lease").description("inspect the lease table");
  lease
    .command("ls")
    .description("list leases: host IPv4, host IPv6, TEP IPv4, TEP IPv6, ports, state, expiry")
    .option("--json", "print JSON (one object with a leases array)")
    .option("--all", "include released and expired leases (kept for sticky re-allocation)")
    .option(
      "--control <path>",
      `control socket of the running server (default ${defaultControlSocket()})`,
    )
    .option("--db <path>", "read the lease database directly (server stopped)")
    .addHelpText(
      "after",
      "\nExamples:\n  dstm lease ls\n  dstm lease ls --json --all\n  dstm lease ls --db /var/lib/dstm/leases.db",
    )
    .action(async (flags) => {
      const leases = flags.db
        ? await fromDb(flags.db, flags.all ?? false)
        : await fromServer(flags.control ?? defaultControlSocket(), flags.all ?? false);
      if (flags.json) process.stdout.write(`${JSON.stringify({ leases }, null, 2)}\n`);
      else
        process.stdout.write(leases.length ? renderLeaseTable(leases, Date.now()) : "no leases\n");
    });
  addLeaseProbeCommands(lease);
  return lease;
}

async function fromServer(socket: string, all: boolean): Promise<LeaseJson[]> {
  let response: Response;
  try {
    response = await getUnix(socket, `/v1/leases${all ? "?all=1" : ""}`);
  } catch (error) {
    throw new RuntimeError(
      unixPermissionProblem(socket, error) ??
        `no dstm server answers on ${socket}; is it running? (use --control PATH, or --db PATH when it is stopped)`,
    );
  }
  if (!response.ok) throw new RuntimeError(`server at ${socket} answered HTTP ${response.status}`);
  return ((await response.json()) as { leases: LeaseJson[] }).leases;
}

async function fromDb(path: string, all: boolean): Promise<LeaseJson[]> {
  let store: SqliteLeaseStore;
  try {
    store = SqliteLeaseStore.openReadOnly(path);
  } catch (error) {
    if (error instanceof LeaseStoreError) throw new UsageError(error.message);
    throw error;
  }
  try {
    const leases = await store.loadAll();
    return leases.filter((l) => all || l.state === "active").map(leaseToJson);
  } finally {
    await store.close();
  }
}

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
  const key = flags.key ? readKeys(flags.key)[0] : undefined;
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
