/**
 * Which lease `dstm ping4` sends from, and whether it may release it.
 *
 * A DSTM server knows a host by its HOST_IPV6 (docs/protocol.md; with the source check on,
 * HOST_IPV6 must also be the request's source address), and holds at most one active lease
 * per HOST_IPV6. So a DISCOVER from ping4 on a host whose `dstm client` already holds a lease
 * for the same IPv6 address is, to the server, that client renewing: ping4 gets the client's
 * own lease, and its RELEASE at the end ends the client's lease (the TEP then drops the
 * client's traffic, and the address can go to another host). Therefore:
 *
 * 1. `--use-client`: the lease of that client, never released. Without `--server` either:
 *    the lease of the one client running on this host (found as in 2., with `--host6` the
 *    one using it), never released; none or several: ping4 says so.
 * 2. Otherwise, if a running client on this host (one answering on a control socket in the
 *    runtime directory or one of its subdirectories, such as a lab's `lab-NAME/`) uses the
 *    same host IPv6 address: its lease, never released; if it holds none right now
 *    (acquiring, on-demand and idle) ping4 refuses rather than take one the client will then
 *    share.
 * 3. Otherwise ping4 sends a DISCOVER for its host IPv6 address. When the DISCOVER_ACK carries
 *    EXISTING_LEASE (docs/protocol.md) the host already held that lease (a client this search
 *    cannot see, e.g. with a `--control` path elsewhere): ping4 uses it and never releases it.
 *    Otherwise the lease is ping4's own, and ping4 releases it at the end. This holds whatever
 *    the socket layout; the socket search above only spares a leaseless client a shared lease.
 *
 * @module
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { parseIPv4 } from "../net/addr.ts";
import { getUnix, unixPermissionProblem } from "../sys/http.ts";
import type { AuthKey } from "../wire/auth.ts";
import { DstmClient, DstmTransport } from "./protocol.ts";

/** The status a running `dstm client` reports on its control socket (`/v1/status`), as used here. */
export interface RunningClientStatus {
  readonly state?: string;
  readonly ifname?: string;
  readonly host6: string;
  readonly ipv4: string | null;
  readonly tep6: string | null;
}

/** The lease ping4 sends from. */
export interface Ping4Lease {
  /** Leased IPv4 address (unsigned 32-bit): the echo requests' source. */
  readonly source: number;
  /** Host IPv6 (outer source) and TEP IPv6 (outer destination), RFC 5952 text. */
  readonly host6: string;
  readonly tep6: string;
  /**
   * `client`: borrowed from the running client at `socket`; `existing`: the server said the
   * host already held it (EXISTING_LEASE), never released; `own`: created by ping4.
   */
  readonly origin: "client" | "existing" | "own";
  /** The control socket of the client whose lease this is (origin `client`). */
  readonly socket?: string;
  /** Gives the lease back: releases an own lease; does nothing to a client's. */
  release(): Promise<void>;
}

/** A reason ping4 cannot run that the user can fix (exit 2). */
export class Ping4LeaseError extends Error {
  override name = "Ping4LeaseError";
}

export interface Ping4LeaseOptions {
  /** `--use-client`: the control socket of the client whose lease to use. */
  readonly useClient?: string;
  /** Control sockets of clients that may run on this host (see {@link clientSocketsIn}). */
  readonly clientSockets?: readonly string[];
  /** The DSTM server (for an own lease). */
  readonly server?: { readonly address: string; readonly port: number };
  /** This host's IPv6 address; default: the source address towards the server. */
  readonly host6?: string;
  /** Finds the source address towards the server (lib/sys/udp.ts sourceAddressFor). */
  readonly sourceFor?: (address: string, port: number) => Promise<string>;
  readonly key?: AuthKey;
  /**
   * Whether an IPv6 address is this host's (lib/sys/udp.ts isLocalAddress): without
   * `server`, only a client sending from one of them runs here (a lab's sockets sit side by
   * side, its clients in other namespaces). Default: every address is.
   */
  readonly isLocal?: (address: string) => Promise<boolean>;
  /** Per-socket status timeout (ms); default 1000. */
  readonly statusTimeoutMs?: number;
}

/**
 * Chooses ping4's lease as the module documentation says. Throws {@link Ping4LeaseError} for
 * a missing or leaseless `--use-client` client or a same-address client without a lease,
 * and what {@link DstmClient.discover} throws when the server refuses or is silent.
 */
export async function acquirePing4Lease(o: Ping4LeaseOptions): Promise<Ping4Lease> {
  const timeout = o.statusTimeoutMs ?? 1000;
  if (o.useClient !== undefined) {
    let status: RunningClientStatus;
    try {
      status = await clientStatus(o.useClient, timeout);
    } catch (error) {
      throw new Ping4LeaseError(
        unixPermissionProblem(o.useClient, error) ?? `no dstm client answers on ${o.useClient}`,
      );
    }
    return borrowedLease(o.useClient, status);
  }
  if (!o.server)
    return runningClientLease(
      o.clientSockets ?? [],
      o.host6,
      timeout,
      o.isLocal ?? (async () => true),
    );
  const server = o.server;
  const host6 = o.host6 ?? (await o.sourceFor!(server.address, server.port));
  for (const socket of o.clientSockets ?? []) {
    const status = await clientStatus(socket, timeout).catch((error: unknown) =>
      error instanceof Ping4LeaseError ? Promise.reject(error) : undefined,
    );
    if (status?.host6 === host6) return borrowedLease(socket, status);
  }
  const transport = await DstmTransport.open({
    server: server.address,
    port: server.port,
    key: o.key,
    bind: host6,
  });
  const client = new DstmClient(transport, host6);
  let lease: Awaited<ReturnType<DstmClient["discover"]>>;
  try {
    lease = await client.discover();
  } catch (error) {
    transport.close();
    throw error;
  }
  if (lease.existing) {
    // Someone else's lease for this host6 (docs/protocol.md, EXISTING_LEASE): not ours to end.
    transport.close();
    return {
      source: lease.ipv4,
      host6,
      tep6: lease.tep6,
      origin: "existing",
      release: () => Promise.resolve(),
    };
  }
  let released = false;
  return {
    source: lease.ipv4,
    host6,
    tep6: lease.tep6,
    origin: "own",
    release: async () => {
      if (released) return;
      released = true;
      await client.release(lease.ipv4).catch(() => {});
      transport.close();
    },
  };
}

/**
 * No `--server`: the lease of the one `dstm client` running on this host (answering on one of
 * `sockets` and sending from an address of this host; with `host6`, the one using that address). None: {@link NoClientError}; several:
 * {@link Ping4LeaseError} naming their sockets (give --use-client).
 */
async function runningClientLease(
  sockets: readonly string[],
  host6: string | undefined,
  timeoutMs: number,
  isLocal: (address: string) => Promise<boolean>,
): Promise<Ping4Lease> {
  const running: { socket: string; status: RunningClientStatus }[] = [];
  for (const socket of sockets) {
    const status = await clientStatus(socket, timeoutMs).catch((error: unknown) =>
      error instanceof Ping4LeaseError ? Promise.reject(error) : undefined,
    );
    if (!status) continue;
    if (host6 === undefined ? await isLocal(status.host6) : status.host6 === host6)
      running.push({ socket, status });
  }
  const [only, ...more] = running;
  if (!only) throw new NoClientError(sockets.length);
  if (more.length)
    throw new Ping4LeaseError(
      `${running.length} dstm clients run on this host (${running.map((r) => r.socket).join(", ")}): say which with --use-client PATH, or give --server V6 for a lease of ping4's own`,
    );
  return borrowedLease(only.socket, only.status);
}

/** No `--server` and no running `dstm client` found: `sockets` control sockets were looked at. */
export class NoClientError extends Ping4LeaseError {
  override name = "NoClientError";
  constructor(readonly sockets: number) {
    super("no dstm client runs on this host");
  }
}

/**
 * The control sockets of `dstm client`s (`client-IFNAME.sock`) in `dir` (the runtime
 * directory) and in its immediate subdirectories (a lab keeps its clients' sockets in
 * `lab-NAME/`), whether or not anything answers on them; `dir`'s own first, each sorted.
 * An unreadable or missing directory has none.
 */
export function clientSocketsIn(dir: string): string[] {
  const found = _clientSocketsOf(dir);
  for (const sub of _subdirectories(dir)) found.push(..._clientSocketsOf(join(dir, sub)));
  return found;
}

function _clientSocketsOf(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((e) => !e.isDirectory() && /^client-.+\.sock$/.test(e.name))
      .map((e) => e.name)
      .sort()
      .map((name) => join(dir, name));
  } catch {
    return [];
  }
}

function _subdirectories(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name)
      .sort();
  } catch {
    return [];
  }
}

/** GETs `/v1/status` from the client at `socket`; rejects when nothing (or no client) answers. */
export async function clientStatus(socket: string, timeoutMs = 1000): Promise<RunningClientStatus> {
  const response = await getUnix(socket, "/v1/status", timeoutMs);
  // A client answers 503 until its lease service has started: its address is not known yet.
  if (response.status === 503)
    throw new Ping4LeaseError(`the dstm client on ${socket} is starting; try again in a moment`);
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const status = (await response.json()) as RunningClientStatus;
  if (typeof status?.host6 !== "string") throw new Error("not a dstm client status");
  return status;
}

/**
 * The lease of the running client at `socket` whose status is `status`; a Ping4LeaseError
 * saying what to do when it holds none (idle on demand: send IPv4 traffic through its DTI, so
 * it takes a lease; else wait until it is bound).
 */
export function borrowedLease(socket: string, status: RunningClientStatus): Ping4Lease {
  const source = status.ipv4 === null ? null : parseIPv4(status.ipv4);
  if (source === null || !status.tep6) {
    const dti = status.ifname ?? "its DTI";
    const what =
      status.state === "idle"
        ? `send IPv4 traffic through ${dti} (the client takes a lease on demand), then retry`
        : `wait until it is bound, then retry`;
    throw new Ping4LeaseError(
      `the dstm client on ${socket} uses ${status.host6} and holds no lease now (${status.state ?? "no lease"}); ping4 will not take one beside it: ${what}, or give --host6 another IPv6 address of this host`,
    );
  }
  return {
    source,
    host6: status.host6,
    tep6: status.tep6,
    origin: "client",
    socket,
    release: () => Promise.resolve(), // the client's lease is the client's to release
  };
}
