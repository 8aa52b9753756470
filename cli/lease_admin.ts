/**
 * `dstm lease show | add | del | wipe | export | unreserve` and the paged `dstm lease ls`:
 * lease administration through the running server's control socket (the control API's
 * lease routes, lib/control/lease_admin_api.ts). The socket's mode is the privilege.
 *
 * Exit codes (./errors.ts): 0 done; 2 a bad value (caught here, or the server's 400);
 * 1 refused or failed at run time (404, 409, 503, no server).
 *
 * @module
 */
import { type Command, Option } from "@commander-js/extra-typings";
import { SERVER_CONTROL_DOC } from "../lib/config/common_schema.ts";
import { parseDuration } from "../lib/config/endpoints.ts";
import { defaultControlSocket } from "../lib/config/paths.ts";
import type { LeaseJson } from "../lib/control/lease_view.ts";
import { leaseTablePrinter } from "../lib/control/lease_view.ts";
import { canonicalIPv6, parseIPv4 } from "../lib/net/addr.ts";
import { unixPermissionProblem } from "../lib/sys/http.ts";
import { RuntimeError, UsageError } from "./errors.ts";

const CONTROL_HELP = `control socket of the running server (default: ${SERVER_CONTROL_DOC})`;

/** One request to the control socket; rejects with RuntimeError when nothing answers. */
export async function controlFetch(
  socket: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<Response> {
  try {
    return await fetch(`http://localhost${path}`, {
      method,
      unix: socket,
      body: body === undefined ? undefined : JSON.stringify(body),
      headers: body === undefined ? undefined : { "content-type": "application/json" },
      signal: AbortSignal.timeout(60_000),
    });
  } catch (error) {
    throw new RuntimeError(
      unixPermissionProblem(socket, error) ??
        `no dstm server answers on ${socket}; is it running? (use --control PATH)`,
    );
  }
}

/** The JSON of a 2xx answer; the server's one-line error otherwise (400: exit 2, else exit 1). */
export async function answer<T>(response: Response, socket: string): Promise<T> {
  const text = await response.text();
  let body: { error?: string } = {};
  try {
    body = JSON.parse(text) as { error?: string };
  } catch {
    // not JSON: an old server or something else on the socket
  }
  if (response.ok) return body as T;
  const message = body.error ?? `server at ${socket} answered HTTP ${response.status}`;
  if (response.status === 400) throw new UsageError(message);
  if (response.status === 404 && !body.error)
    throw new RuntimeError(`the server at ${socket} has no lease administration; upgrade it`);
  throw new RuntimeError(message);
}

/** `what`: the flag, or the argument as --help names it; `hint`: what to do instead, if any. */
function ipv4Arg(text: string, what: string, hint = ""): string {
  if (parseIPv4(text) === null)
    throw new UsageError(`${what}: "${text}" is not an IPv4 address${hint}`);
  return text;
}

/** When an IPv6 address is given where the leased IPv4 address belongs: where a host's leases are. */
const hostHint = (text: string) =>
  canonicalIPv6(text) === null
    ? ""
    : `; the leases of host ${text}: dstm lease ls --host ${text} --state all`;

function psidArg(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535)
    throw new UsageError(`--psid: "${text}" is not a PSID (a whole number from 0 to 65535)`);
  return Number(text);
}

/** A reservation as the control API gives it (lib/control/lease_admin_api.ts reservationJson). */
interface ReservationJson {
  readonly hostIPv6: string;
  readonly hostIPv4: string;
  readonly psid: number;
  readonly shared?: boolean;
}

/** `192.0.2.11`, or `198.51.100.7 psid 3` when the pool shares the address. */
function reservedSlot(r: ReservationJson): string {
  return r.shared ? `${r.hostIPv4} psid ${r.psid}` : r.hostIPv4;
}

const psidQuery = (psid: number | undefined) => (psid === undefined ? "" : `?psid=${psid}`);

/** Adds the administration subcommands to `dstm lease`. */
export function addLeaseAdminCommands(lease: Command): void {
  addShowCommand(lease);
  addAddCommand(lease);
  addDelCommand(lease);
  addUnreserveCommand(lease);
  addWipeCommand(lease);
  addExportCommand(lease);
}

/** `dstm lease show IPV4`: the leases and reservations of one address. */
function addShowCommand(lease: Command): void {
  lease
    .command("show")
    .description("show the leases and reservations of one IPv4 address")
    .argument("<ipv4>", "the leased IPv4 address")
    .option("--psid <n>", "only this port set of a shared address")
    .option("--json", "print JSON")
    .option("--control <path>", CONTROL_HELP)
    .addHelpText(
      "after",
      "\nExamples:\n  dstm lease show 192.0.2.10\n  dstm lease show 198.51.100.7 --psid 3 --json",
    )
    .action(async (ipv4, flags) => {
      const socket = flags.control ?? defaultControlSocket();
      const path = `/v1/leases/${ipv4Arg(ipv4, "IPV4", hostHint(ipv4))}${psidQuery(psidArg(flags.psid))}`;
      const body = await answer<{
        leases: LeaseJson[];
        reservations: ReservationJson[];
      }>(await controlFetch(socket, "GET", path), socket);
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
        return;
      }
      if (body.leases.length) process.stdout.write(leaseTablePrinter(Date.now())(body.leases));
      for (const r of body.reservations)
        process.stdout.write(`reserved: ${reservedSlot(r)} for ${r.hostIPv6}\n`);
    });
}

/** `dstm lease add`: a static lease, or a reservation (`--reserve`). */
function addAddCommand(lease: Command): void {
  lease
    .command("add")
    .description(
      "give a host a lease on a chosen address (a static lease), or --reserve it: the host always gets it, no other host ever does",
    )
    .requiredOption("--host6 <v6>", "the host's IPv6 address")
    .requiredOption("--ipv4 <addr>", "the IPv4 address (in a pool of the server)")
    .option("--psid <n>", "the port set of a shared address (default: 0)")
    .option(
      "--reserve",
      "store a reservation instead of a lease (held by every server sharing the database: docs/scale-out.md)",
    )
    .option(
      "--lease-time <duration>",
      "the lease's time, e.g. 3600, 12h, 30d (default: the server's --lease-time)",
    )
    .option("--json", "print JSON")
    .option("--control <path>", CONTROL_HELP)
    .addHelpText(
      "after",
      "\nExamples:\n  dstm lease add --host6 2001:db8:1::10 --ipv4 192.0.2.10 --lease-time 30d\n  dstm lease add --host6 2001:db8:1::11 --ipv4 192.0.2.11 --reserve\n  dstm lease add --host6 2001:db8:1::12 --ipv4 198.51.100.7 --psid 3",
    )
    .action(async (flags) => {
      const socket = flags.control ?? defaultControlSocket();
      const host6 = canonicalIPv6(flags.host6);
      if (!host6) throw new UsageError(`--host6: "${flags.host6}" is not an IPv6 address`);
      if (flags.reserve && flags.leaseTime !== undefined)
        throw new UsageError("--reserve and --lease-time: a reservation has no lease time");
      const request = {
        host6,
        ipv4: ipv4Arg(flags.ipv4, "--ipv4"),
        psid: psidArg(flags.psid),
        leaseTime:
          flags.leaseTime === undefined
            ? undefined
            : parseDuration(flags.leaseTime, "--lease-time"),
        reserve: flags.reserve === true,
      };
      const body = await answer<{ lease?: LeaseJson; reservation?: ReservationJson }>(
        await controlFetch(socket, "POST", "/v1/leases", request),
        socket,
      );
      if (flags.json) process.stdout.write(`${JSON.stringify(body)}\n`);
      else if (body.lease)
        process.stdout.write(
          `leased ${body.lease.hostIPv4}${body.lease.ports === "all" ? "" : ` ports ${body.lease.ports}`} to ${host6} until ${body.lease.expiresAt}\n`,
        );
      else if (body.reservation)
        process.stdout.write(`reserved ${reservedSlot(body.reservation)} for ${host6}\n`);
    });
}

/** `dstm lease del IPV4`: ends a lease now (stored, unbound at the TEP). */
function addDelCommand(lease: Command): void {
  lease
    .command("del")
    .description(
      "end a lease now: stored, unbound at the TEP; the host's next renewal is refused (NAK) and it starts over",
    )
    .argument("<ipv4>", "the leased IPv4 address")
    .option("--psid <n>", "the port set, when the address is shared by several leases")
    .option("--control <path>", CONTROL_HELP)
    .addHelpText(
      "after",
      "\nExamples:\n  dstm lease del 192.0.2.10\n  dstm lease del 198.51.100.7 --psid 3",
    )
    .action(async (ipv4, flags) => {
      const socket = flags.control ?? defaultControlSocket();
      const path = `/v1/leases/${ipv4Arg(ipv4, "IPV4", hostHint(ipv4))}${psidQuery(psidArg(flags.psid))}`;
      const body = await answer<{ ended: LeaseJson[] }>(
        await controlFetch(socket, "DELETE", path),
        socket,
      );
      for (const l of body.ended)
        process.stdout.write(
          `ended ${l.hostIPv4}${l.ports === "all" ? "" : ` ports ${l.ports}`} of ${l.hostIPv6}\n`,
        );
    });
}

/** `dstm lease unreserve HOST6`: removes a host's reservation. */
function addUnreserveCommand(lease: Command): void {
  lease
    .command("unreserve")
    .description("remove a host's reservation (its current lease, if any, stays)")
    .argument("<host6>", "the host's IPv6 address")
    .option("--control <path>", CONTROL_HELP)
    .addHelpText("after", "\nExamples:\n  dstm lease unreserve 2001:db8:1::11")
    .action(async (host, flags) => {
      const socket = flags.control ?? defaultControlSocket();
      const host6 = canonicalIPv6(host);
      if (!host6) {
        const hint =
          parseIPv4(host) === null
            ? ""
            : `; a reservation is removed by its host's IPv6 address (dstm lease show ${host} names it)`;
        throw new UsageError(`HOST6: "${host}" is not an IPv6 address${hint}`);
      }
      await answer(
        await controlFetch(socket, "DELETE", `/v1/reservations/${encodeURIComponent(host6)}`),
        socket,
      );
      process.stdout.write(`removed the reservation of ${host6}\n`);
    });
}

/** `dstm lease wipe --pool CIDR --yes`: ends every active lease of a pool. */
function addWipeCommand(lease: Command): void {
  lease
    .command("wipe")
    .description("end every active lease of a pool (each unbound at its TEP)")
    .requiredOption("--pool <cidr>", "the pool: one of its prefixes")
    .option("--yes", "really do it (required)")
    .option("--control <path>", CONTROL_HELP)
    .addHelpText("after", "\nExamples:\n  dstm lease wipe --pool 192.0.2.0/24 --yes")
    .action(async (flags) => {
      if (!flags.yes)
        throw new UsageError(
          `lease wipe ends every lease of pool ${flags.pool}; add --yes to do it`,
        );
      const socket = flags.control ?? defaultControlSocket();
      const body = await answer<{ ended: number }>(
        await controlFetch(socket, "POST", `/v1/pools/${encodeURIComponent(flags.pool)}/wipe`),
        socket,
      );
      process.stdout.write(`ended ${body.ended} lease(s) of pool ${flags.pool}\n`);
    });
}

/** `dstm lease export`: every lease as NDJSON or CSV, streamed. */
function addExportCommand(lease: Command): void {
  lease
    .command("export")
    .description(
      "write every lease (all states) as NDJSON or CSV, streamed from the running server",
    )
    .addOption(
      new Option("--format <format>", "ndjson (one JSON lease per line) or csv")
        .choices(["ndjson", "csv"] as const)
        .default("ndjson" as const),
    )
    .addOption(
      new Option("--state <state>", "only active, released or expired leases").choices([
        "active",
        "released",
        "expired",
        "all",
      ] as const),
    )
    .option("--control <path>", CONTROL_HELP)
    .addHelpText(
      "after",
      "\nExamples:\n  dstm lease export > leases.ndjson\n  dstm lease export --format csv --state active | head",
    )
    .action(async (flags) => {
      const socket = flags.control ?? defaultControlSocket();
      const query = new URLSearchParams({ format: flags.format });
      if (flags.state) query.set("state", flags.state);
      const response = await controlFetch(socket, "GET", `/v1/leases/export?${query}`);
      if (!response.ok || !response.body) await answer(response, socket);
      for await (const chunk of response.body as ReadableStream<Uint8Array>) {
        if (!process.stdout.write(chunk))
          await new Promise((resolve) => process.stdout.once("drain", resolve));
      }
    });
}
