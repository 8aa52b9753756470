/**
 * The addresses a command binds (`dstm server --listen`, `--metrics`, `--dhcp4o6-listen`,
 * `--tep-source`; `dstm tep --metrics` and `--ipv6`; `dstm client --metrics` and `--host6`)
 * must be this host's: bind(2) fails with EADDRNOTAVAIL otherwise. `--check` and the start refuse them
 * alike, before anything is opened (exit 2, one line naming the flag and the address).
 *
 * One mistake gets a hint: an IPv6 address with a port written without brackets,
 * `--metrics ::1:9604`, is itself a valid IPv6 address (0::1:9604, RFC 4291 §2.2), so it is
 * taken as the address with the default port. When that address is not this host's and its
 * last group reads as a port, the refusal says `did you mean [::1]:9604?` (RFC 5952 §6:
 * brackets around an address with a port). The host's addresses come from the caller
 * (`isLocal`: lib/sys/local_address.ts), so this module does no I/O.
 *
 * @module
 */
import { canonicalIPv6 } from "../net/addr.ts";
import { UsageError } from "./errors.ts";

/** One bound address: the flag, the text given and the address it names. */
export interface BoundAddress {
  /** The flag, e.g. `--metrics`. */
  readonly what: string;
  /** As given (for the message and the bracket hint). */
  readonly text: string;
  /** The address parsed from it: canonical IPv6, dotted IPv4 or `localhost`. */
  readonly address: string;
  /** A source address, not `ADDRESS:PORT` (`--tep-source`): no bracket hint, no wildcard. */
  readonly source?: boolean;
  /** What to do instead, when not "give one of them" (e.g. a flag that may be left out). */
  readonly fix?: string;
}

/**
 * The refusal of the first of `bound` that is not an address of this host (`isLocal` false),
 * or undefined. The wildcards `::` and `0.0.0.0` always pass.
 *
 * @example foreignAddressProblem([{ what: "--metrics", text: "::1:9604", address: "::1:9604" }], () => false)
 * // "--metrics ::1:9604: no interface has this address (::1:9604 is not one of this host's); did you mean [::1]:9604? …"
 */
export function foreignAddressProblem(
  bound: readonly BoundAddress[],
  isLocal: (address: string) => boolean,
): string | undefined {
  for (const b of bound) {
    if (b.address === "::" || b.address === "0.0.0.0" || isLocal(b.address)) continue;
    const meant = b.source ? undefined : bracketMeant(b.text);
    return `${b.what} ${b.text}: no interface has this address: ${b.address} is not one of this host's (see ip address)${
      meant
        ? `; did you mean ${meant}? (an IPv6 address with a port is written in brackets)`
        : b.fix
          ? `; ${b.fix}`
          : b.source
            ? "; give one of them"
            : "; give one of them, or the wildcard (:: or 0.0.0.0) for every address"
    }`;
  }
  return undefined;
}

/** Throws the {@link foreignAddressProblem} as a UsageError (exit 2). */
export function refuseForeignAddresses(
  bound: readonly BoundAddress[],
  isLocal: (address: string) => boolean,
): void {
  const problem = foreignAddressProblem(bound, isLocal);
  if (problem) throw new UsageError(problem);
}

/**
 * `[ADDRESS]:PORT` when `text` is a bare IPv6 address whose last group reads as a port
 * (decimal, 1–65535) after an address: `::1:9604` → `[::1]:9604`, `2001:db8::4607` →
 * `[2001:db8::]:4607`; else undefined.
 */
export function bracketMeant(text: string): string | undefined {
  if (text.startsWith("[") || canonicalIPv6(text) === null) return undefined;
  const match = /^(.*):(\d{1,5})$/.exec(text);
  if (!match) return undefined;
  const port = Number(match[2]);
  if (port < 1 || port > 65535) return undefined;
  // "2001:db8::4607": what is left ends in one colon of the "::".
  const rest = match[1]!.endsWith(":") ? `${match[1]}:` : match[1]!;
  const address = canonicalIPv6(rest);
  return address === null ? undefined : `[${address}]:${port}`;
}

/** `dstm server`'s bound addresses: `--listen`, `--metrics`, `--dhcp4o6-listen`, `--tep-source`. */
export function serverBoundAddresses(
  flags: { listen?: string; metrics?: string; dhcp4o6Listen?: string; tepSource?: string },
  config: {
    listen: { address: string };
    metrics?: { address: string };
    dhcp4o6?: { address: string };
    tepSource?: string;
  },
): BoundAddress[] {
  const bound: BoundAddress[] = [
    { what: "--listen", text: flags.listen ?? "[::]", address: config.listen.address },
  ];
  if (config.metrics && flags.metrics)
    bound.push({ what: "--metrics", text: flags.metrics, address: config.metrics.address });
  if (config.dhcp4o6)
    bound.push({
      what: "--dhcp4o6-listen",
      text: flags.dhcp4o6Listen ?? "[::]",
      address: config.dhcp4o6.address,
    });
  if (config.tepSource && flags.tepSource)
    bound.push({
      what: "--tep-source",
      text: flags.tepSource,
      address: config.tepSource,
      source: true,
    });
  return bound;
}

/** The `--metrics` address of `dstm tep` or `dstm client`, if any. */
export function metricsBoundAddresses(
  flags: { metrics?: string },
  config: { metrics?: { address: string } },
): BoundAddress[] {
  return config.metrics && flags.metrics
    ? [{ what: "--metrics", text: flags.metrics, address: config.metrics.address }]
    : [];
}

/**
 * The address `dstm tep` sends and receives the tunnel from, `--ipv6` (its raw socket and
 * control socket bind it): refused by `--check` and the start alike when this host lacks it.
 */
export function tepBoundAddresses(
  flags: { ipv6?: string },
  config: { ipv6: string },
): BoundAddress[] {
  return [
    {
      what: "--ipv6",
      text: flags.ipv6 ?? config.ipv6,
      address: config.ipv6,
      source: true,
      fix: `give one of them, or add it to the interface towards the hosts first (ip address add ${config.ipv6} dev IFNAME)`,
    },
  ];
}

/**
 * `dstm client --host6`, the address it sends from (its sockets bind it), if given: refused
 * by `--check` and the start alike when this host lacks it. Without it the client takes its
 * source towards the server, so leaving it out is the other fix.
 */
export function clientBoundAddresses(
  flags: { host6?: string },
  config: { host6?: string },
): BoundAddress[] {
  return config.host6 === undefined
    ? []
    : [
        {
          what: "--host6",
          text: flags.host6 ?? config.host6,
          address: config.host6,
          source: true,
          fix: "give one of them, or leave --host6 out to send from the source address towards the server",
        },
      ];
}
