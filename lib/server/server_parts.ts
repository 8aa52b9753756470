/**
 * The pieces a DSTM server process (./server.ts) builds from its configuration before it
 * listens: the TEPs' view (./tep_sync.ts), admission control (./admission.ts) and the native
 * protocol's handler (./handler.ts). Plain constructors; nothing here opens a socket.
 *
 * @module
 */
import { type AllocationEngine, isDeclinedHost } from "../alloc/engine.ts";
import type { Logger } from "../control/log.ts";
import type { Metrics } from "../control/metrics.ts";
import type { Lease } from "../lease/lease.ts";
import { type AuthKey, ReplayGuard } from "../wire/auth.ts";
import { ADMISSION_DEFAULTS, Admission } from "./admission.ts";
import { DstmHandler } from "./handler.ts";
import type { ServerConfig } from "./server_config.ts";
import { TepSync } from "./tep_sync.ts";

/** What every piece shares: the engine, the logger, the metrics. */
export interface ServerParts {
  readonly engine: AllocationEngine;
  readonly log: Logger;
  readonly metrics: Metrics;
}

/** Sends a datagram from the server's listener (false when it could not). */
export type ListenerSend = (
  data: Uint8Array,
  address: string,
  port: number,
  source?: string,
) => boolean;

/**
 * The TEPs' view, seeded with the active leases the engine loaded; `hostKeys`: the hosts' keys
 * in force, only to recognise a TEP given one instead of the TEP key (./tep_channel.ts).
 */
export function tepSyncFor(
  config: ServerConfig,
  p: ServerParts,
  send: ListenerSend,
  hostKeys?: () => Iterable<AuthKey>,
): TepSync {
  return new TepSync(
    {
      keys: config.tepKeys,
      hostKeys,
      teps: config.pools.map((pool) => pool.tep6),
      tepPort: config.tepPort,
      requireTep: config.requireTep,
      log: p.log,
      metrics: p.metrics,
      send,
      source:
        config.tepSource ?? (isWildcard(config.listen.address) ? undefined : config.listen.address),
      pools: p.engine.pools(),
      // Shared store: a SYNC is judged against the rows committed so far (docs/scale-out.md).
      catchUp: p.engine.shared ? () => p.engine.caughtUp() : undefined,
      // Shared store: a SNAPSHOT carries its cut (docs/protocol.md, "Generations"; BIND and
      // UNBIND get theirs from the write's result), so a TEP orders the servers' messages.
      watchedThrough: p.engine.shared ? () => p.engine.watchedThrough() : undefined,
    },
    // A declined address's holder (RFC 6666 discard prefix) is no host: no binding.
    // Read from the lease table as it is, unsorted and uncopied (a million rows at start).
    activeBindings(p.engine.rows()),
  );
}

/** Per-prefix caps and rate limits shared by both protocols (./admission.ts). */
export function admissionFor(config: ServerConfig, p: ServerParts): Admission {
  return new Admission({
    metrics: p.metrics,
    log: p.log,
    hostPrefixLength: config.admission?.hostPrefixLength,
    ratePerSecond: config.admission?.ratePerSecond ?? ADMISSION_DEFAULTS.ratePerSecond,
    burst: config.admission?.burst,
    dhcp4o6Allow: config.dhcp4o6?.allow,
    dhcp4o6Relays: config.dhcp4o6?.relays,
    now: config.clock?.monotonic,
  });
}

/** The native protocol's handler; `keys` absent: authentication off. */
export function dstmHandlerFor(
  config: ServerConfig,
  keys: Map<number, AuthKey> | undefined,
  p: ServerParts & { readonly admission: Admission; readonly bindings: TepSync },
): DstmHandler {
  return new DstmHandler({
    admission: p.admission,
    bindings: p.bindings,
    engine: p.engine,
    keys,
    // Nothing stamped before this start: what the previous run accepted cannot be replayed.
    replayGuard: keys
      ? new ReplayGuard({ notBefore: (config.clock?.now ?? Date.now)() })
      : undefined,
    sourceCheck: config.sourceCheck,
    log: p.log,
    metrics: p.metrics,
  });
}

/** True for the IPv6 wildcard address (`::`): the kernel would pick each source. */
function isWildcard(address: string): boolean {
  return /^[0:]+$/.test(address);
}

/** The active leases among `rows` that are bindings: a declined address's holder is no host. */
function* activeBindings(rows: Iterable<Lease>): Generator<Lease> {
  for (const lease of rows) {
    if (lease.state === "active" && !isDeclinedHost(lease.host6)) yield lease;
  }
}
