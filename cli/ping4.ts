/**
 * `dstm ping4`: ICMP echo through the TEP without a DTI, with a temporary lease.
 *
 * @module
 */
import { Command, Option } from "@commander-js/extra-typings";
import { ping4 } from "../lib/client/ping4.ts";
import {
  acquirePing4Lease,
  clientSocketsIn,
  NoClientError,
  type Ping4Lease,
  Ping4LeaseError,
} from "../lib/client/ping4_lease.ts";
import { parsePort, unicastIPv6 } from "../lib/config/endpoints.ts";
import { readKeys } from "../lib/config/key_file.ts";
import { runtimeDir } from "../lib/config/paths.ts";
import { formatIPv4, parseIPv4, parseIPv6 } from "../lib/net/addr.ts";
import { isLocalAddress, sourceAddressFor, UdpBindError } from "../lib/sys/udp.ts";
import { DSTM_PORT } from "../lib/wire/dstm_types.ts";
import { clientSocket } from "./client_status.ts";
import { RuntimeError, UsageError } from "./errors.ts";

/** A renamed flag: the new one, or the old one with a deprecation warning (not both). */
function renamed(flags: Record<string, unknown>, old: string, now: string): string | undefined {
  const kebab = (n: string) => n.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
  if (flags[old] === undefined) return flags[now] as string | undefined;
  if (flags[now] !== undefined)
    throw new UsageError(
      `--${kebab(old)} and --${kebab(now)} are the same setting; give --${kebab(now)}`,
    );
  process.stderr.write(`dstm: --${kebab(old)} is deprecated; use --${kebab(now)}\n`);
  return flags[old] as string;
}

/**
 * `dstm ping4 IPV4`: exit code 0 when a reply came, 1 when none did (as ping(8)), 2 on a
 * usage error ({@link ping4Settings}).
 */
export function ping4Command() {
  return new Command("ping4")
    .description(
      "ping an IPv4 host through the TEP, without a DTI (uses the lease of a dstm client running with this host's IPv6 address, else takes and releases one of its own)",
    )
    .argument("<ipv4>", "the IPv4 host to ping")
    .option(
      "--server <v6>",
      "the DSTM server's IPv6 address (for a temporary lease); without it, the lease of the dstm client running on this host",
    )
    .option("--server-port <n>", `the server's UDP port (default: ${DSTM_PORT})`)
    .addOption(new Option("--port <n>", "deprecated: --server-port").hideHelp())
    .option("--host6 <v6>", "this host's IPv6 address (default: the source towards the server)")
    .addOption(new Option("--source <v6>", "deprecated: --host6").hideHelp())
    .option("--tep <v6>", "use this TEP instead of the one the server names")
    .option("--key <file>", "sign requests with the key in FILE")
    .option(
      "--use-client [ifname|socket]",
      "use the lease of the dstm client running the DTI IFNAME (default: dti0), or answering on the control socket at this path (one with a /)",
    )
    .addOption(new Option("-c, --count <n>", "echo requests to send").default("4", "4"))
    .addOption(new Option("-i, --interval <s>", "seconds between requests").default("1", "1"))
    .addOption(new Option("-s, --size <bytes>", "ICMP data bytes").default("56", "56"))
    .addOption(
      new Option("-M, --pmtudisc <mode>", "do: set DF; dont: clear DF").default("do", "do"),
    )
    .addOption(
      new Option("-W, --timeout <s>", "seconds to wait for the last reply").default("2", "2"),
    )
    .addHelpText(
      "after",
      "\nExamples:\n  dstm ping4 192.0.2.80 -c 3                     # from the lease of the dstm client running here\n  dstm ping4 192.0.2.80 --server 2001:db8:1::53\n  dstm ping4 192.0.2.80 --server 2001:db8:1::53 -c 1 -s 1572 -M do",
    )
    .action(async (target, flags) => runPing4(target, flags));
}

/** Pings `target` with a borrowed or temporary lease (released after); exit code 1 when no reply came. */
async function runPing4(target: string, flags: Ping4Flags & { key?: string }): Promise<void> {
  const settings = ping4Settings(target, flags);
  const { count, interval, size, timeout } = settings;
  const lease = await acquireLease(settings, flags.key);
  const source = lease.source;
  const tep6 = settings.tepOverride ?? lease.tep6;
  if (lease.origin === "client")
    process.stderr.write(`using the lease of the dstm client on ${lease.socket}\n`);
  if (lease.origin === "existing")
    process.stderr.write(
      `using the lease ${lease.host6} already holds (the server says it existed: a dstm client on this host?); it will not be released\n`,
    );
  process.stdout.write(
    `PING ${target} via DSTM (from ${formatIPv4(source)}, TEP ${tep6}): ${size} data bytes\n`,
  );
  let received = 0;
  try {
    const result = await ping4({
      target: settings.targetIPv4,
      source,
      host6: parseIPv6(lease.host6)!,
      tep6: parseIPv6(tep6)!,
      count,
      intervalMs: interval * 1000,
      size,
      dontFragment: settings.dontFragment,
      timeoutMs: timeout * 1000,
      print: (line) => process.stdout.write(`${line}\n`),
    });
    received = result.received;
  } finally {
    await lease.release();
  }
  if (received === 0) process.exitCode = 1;
}

/**
 * The lease to ping from (lib/client/ping4_lease.ts): a running client's, or a temporary one.
 * A client that does not answer or holds no lease is a run-time condition: RuntimeError (exit 1).
 */
async function acquireLease(
  settings: Ping4Settings,
  keyFile: string | undefined,
): Promise<Ping4Lease> {
  try {
    return await acquirePing4Lease({
      useClient: settings.useClient,
      clientSockets: clientSocketsIn(runtimeDir()),
      server: settings.server ? { address: settings.server, port: settings.port } : undefined,
      host6: settings.host6,
      sourceFor: sourceAddressFor,
      isLocal: isLocalAddress,
      key: keyFile ? readKeys(keyFile, { holder: "client" })[0] : undefined,
    });
  } catch (error) {
    // ping4 has no --listen: the address it could not bind is --host6's; like a listen
    // address this host lacks, a configuration error (exit 2).
    if (
      error instanceof UdpBindError &&
      error.code === "EADDRNOTAVAIL" &&
      settings.host6 !== undefined
    )
      throw new UsageError(
        `--host6 ${settings.host6}: no interface of this host has this address (ping4 sends from it); check --host6 and that IPv6 is configured`,
      );
    if (error instanceof NoClientError)
      throw new UsageError(
        `--server V6 is required when no dstm client runs on this host (none${settings.host6 ? ` using ${settings.host6}` : ""} answers on a control socket in ${runtimeDir()}): the DSTM server, for a lease of ping4's own; or --use-client IFNAME|PATH to name a client`,
      );
    if (!(error instanceof Ping4LeaseError)) throw error;
    let message = error.message;
    const useClient = settings.useClient;
    if (useClient !== undefined && message.startsWith("no dstm client answers")) {
      const found = clientSocketsIn(runtimeDir()).filter((s) => s !== useClient);
      message += found.length
        ? `; control sockets found: ${found.join(", ")} (--use-client PATH)`
        : "; is it running? (--use-client IFNAME or PATH)";
    }
    throw new RuntimeError(message);
  }
}

/** The flags of `dstm ping4` as commander gives them (strings; `--use-client` may be bare). */
interface Ping4Flags {
  count: string;
  interval: string;
  size: string;
  timeout: string;
  pmtudisc: string;
  useClient?: string | true;
  server?: string;
  serverPort?: string;
  port?: string;
  host6?: string;
  source?: string;
  tep?: string;
}

/** What `dstm ping4` was asked for, checked: times in seconds, `size` in ICMP data bytes. */
interface Ping4Settings {
  targetIPv4: number;
  count: number;
  interval: number;
  size: number;
  timeout: number;
  dontFragment: boolean;
  /** The control socket of the dstm client whose lease to use, if any. */
  useClient: string | undefined;
  server: string | undefined;
  port: number;
  host6: string | undefined;
  tepOverride: string | undefined;
}

/**
 * Checks `target` and the flags (ranges as ping(8)'s where it has them; -M do|dont) and
 * resolves the deprecated names. Throws a {@link UsageError} (exit code 2) naming the flag.
 */
function ping4Settings(target: string, flags: Ping4Flags): Ping4Settings {
  const targetIPv4 = parseIPv4(target);
  if (targetIPv4 === null) throw new UsageError(`"${target}" is not an IPv4 address`);
  const count = Number(flags.count);
  const interval = Number(flags.interval);
  const size = Number(flags.size);
  const timeout = Number(flags.timeout);
  if (!Number.isInteger(count) || count < 1 || count > 1_000_000)
    throw new UsageError("-c: 1..1000000");
  if (!(interval >= 0.01 && interval <= 3600)) throw new UsageError("-i: 0.01..3600 seconds");
  if (!Number.isInteger(size) || size < 0 || size > 65507)
    throw new UsageError("-s: 0..65507 bytes");
  if (!(timeout > 0 && timeout <= 60)) throw new UsageError("-W: up to 60 seconds");
  if (flags.pmtudisc !== "do" && flags.pmtudisc !== "dont")
    throw new UsageError('-M: "do" or "dont"');
  const useClient =
    flags.useClient === undefined
      ? undefined
      : typeof flags.useClient === "string" && flags.useClient.includes("/")
        ? flags.useClient
        : clientSocket(typeof flags.useClient === "string" ? flags.useClient : "dti0");
  const server = flags.server
    ? unicastIPv6(flags.server, "--server", "the DSTM server's", { loopback: true })
    : undefined;
  const port = parsePort(renamed({ ...flags }, "port", "serverPort"), "--server-port", DSTM_PORT);
  const host6Text = renamed({ ...flags }, "source", "host6");
  const host6 = host6Text ? unicastIPv6(host6Text, "--host6", "this host's") : undefined;
  const tepOverride = flags.tep ? unicastIPv6(flags.tep, "--tep", "the TEP's") : undefined;
  const dontFragment = flags.pmtudisc === "do";
  return {
    targetIPv4,
    count,
    interval,
    size,
    timeout,
    dontFragment,
    useClient,
    server,
    port,
    host6,
    tepOverride,
  };
}
