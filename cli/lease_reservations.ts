/**
 * `dstm lease reservations`: every reservation of the running server (the control API's
 * `GET /v1/reservations`, lib/control/lease_admin_api.ts), as a table or the API's JSON; and
 * the hint that points `lease ls --state reserved` / `lease export --state reserved` here.
 *
 * @module
 */
import {
  type Command,
  type CommandUnknownOpts,
  InvalidArgumentError,
  type Option,
} from "@commander-js/extra-typings";
import { SERVER_CONTROL_DOC } from "../lib/config/common_schema.ts";
import { defaultControlSocket } from "../lib/config/paths.ts";
import { answer, controlFetch } from "./lease_admin.ts";

/** A reservation as `GET /v1/reservations` gives it (lib/control/lease_admin_api.ts reservationJson). */
interface ReservationJson {
  readonly hostIPv6: string;
  readonly hostIPv4: string;
  /** The port set (RFC 7597 §5.1); meaningful only when `shared`. */
  readonly psid: number;
  /** The pool shares each address among several hosts. */
  readonly shared: boolean;
  /** ISO 8601, UTC. */
  readonly createdAt: string;
}

/**
 * The reservations as a table: HOST IPv6, IPv4, PSID (only when a pool shares its
 * addresses; `-` for an unshared reservation, which holds every port), CREATED.
 */
export function reservationTable(reservations: readonly ReservationJson[]): string {
  if (reservations.length === 0) return "no reservations\n";
  const shared = reservations.some((r) => r.shared);
  const header = ["HOST IPv6", "IPv4", ...(shared ? ["PSID"] : []), "CREATED"];
  const rows = reservations.map((r) => [
    r.hostIPv6,
    r.hostIPv4,
    ...(shared ? [r.shared ? String(r.psid) : "-"] : []),
    r.createdAt,
  ]);
  const widths = header.map((title, i) =>
    Math.max(title.length, ...rows.map((row) => (row[i] as string).length)),
  );
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] as number)))
      .join("  ");
  return `${[header, ...rows].map(line).join("\n")}\n`;
}

/** Adds `dstm lease reservations` to `dstm lease`. */
export function addReservationsCommand(lease: Command): void {
  lease
    .command("reservations")
    .description(
      "list the reservations (dstm lease add --reserve): host IPv6, IPv4, PSID when the pool shares its addresses, created",
    )
    .option("--json", "print the control API's JSON (one object with a reservations array)")
    .option(
      "--control <path>",
      `control socket of the running server (default: ${SERVER_CONTROL_DOC})`,
    )
    .addHelpText(
      "after",
      "\nExamples:\n  dstm lease reservations\n  dstm lease reservations --json > reservations.json",
    )
    .action(async (flags) => {
      const socket = flags.control ?? defaultControlSocket();
      const body = await answer<{ reservations: ReservationJson[] }>(
        await controlFetch(socket, "GET", "/v1/reservations"),
        socket,
      );
      process.stdout.write(
        flags.json
          ? `${JSON.stringify(body, null, 2)}\n`
          : reservationTable(body.reservations ?? []),
      );
    });
}

/**
 * Makes a `--state` option with choices refuse `reserved` (and `reservations`) with the
 * command that lists reservations: they are not leases, so `lease ls` / `export` never show them.
 */
export function hintReservedState(command: CommandUnknownOpts): void {
  const option = command.options.find((o) => o.long === "--state") as Option | undefined;
  const check = option?.parseArg;
  if (!option || !check) return;
  option.parseArg = <T>(value: string, previous: T): T => {
    if (value === "reserved" || value === "reservations")
      throw new InvalidArgumentError(
        `Allowed choices are ${(option.argChoices ?? []).join(", ")}; reservations are not leases: list them with dstm lease reservations`,
      );
    return check(value, previous);
  };
}
