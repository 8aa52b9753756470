/**
 * The request paths run before the listeners open, so that the first hosts a fresh server
 * answers are served by compiled code. JavaScriptCore compiles a function to machine code only
 * after it has run many times (LLInt, then the baseline, DFG and FTL tiers): measured, the
 * first 64 DHCPv4-over-DHCPv6 DORAs of a cold `dstm server` took 44–58 ms each against 4–5 ms
 * later, and in the first 20,000 DORAs the compiler threads took 0.6–0.9 s of CPU from the
 * two the server and its hosts shared (docs/benchmarks.md). After a restart or a failover
 * every host's retransmission comes at once: exactly when that matters.
 *
 * How: {@link warmUp} starts {@link TWINS} twins of the server — the server's own start code
 * (the `start` passed in, DstmServer.start) on the server's configuration, with a scratch
 * pool, a scratch store of the server's kind, no control socket, no metrics endpoint, a log
 * that drops its lines, and endpoints of no socket ({@link ListenUdp}). It feeds their
 * listeners' datagram callbacks what a UDP socket would (a fresh Uint8Array per query, the
 * sender's address as a string), native DSTM_DISCOVERs and DHCPv4-over-DHCPv6 DORAs (RFC
 * 7341 §6, RFC 2131 §4.3) of synthetic hosts, {@link IN_FLIGHT} at a time, and takes their
 * answers from the endpoints' send queues. So the code compiled is the code the server runs,
 * on objects of the same shapes: the same handlers, engine, store class, TEP view and
 * admission. Two twins rather than one: code compiled while only one object ever reached it
 * may take that object as a constant, and is thrown away at the first request of the real
 * server (JavaScriptCore's BadConstantValue exits, seen in the first version of this warm-up
 * that ran the handlers alone, on a memory store).
 *
 * Nothing reaches the network (the twins' TEP messages are dropped: their endpoints send
 * nothing), the server's lease store, metrics or log. The scratch pools are in 198.18.0.0/15
 * (RFC 2544's benchmarking range) with the first pool's port sharing; the synthetic hosts
 * in 2001:db8:ffff::/64 (RFC 3849), or for 4o6 in the first prefix of `--dhcp4o6-allow` of
 * 96 bits or fewer (none: no 4o6 host).
 * The scratch store is SQLite in a temporary directory (removed after) when the server's is
 * SQLite, else memory (a PostgreSQL server's twins run on memory: no scratch database). The
 * directory is on a memory filesystem (tmpfs: `$TMPDIR` when it is one, else /dev/shm), whose
 * fsyncs return at once: a twin's SQLite store fsyncs a dozen times on the event loop to open
 * (schema, lock file, created marker, directory) and its WAL at each write, so on a disk
 * whose fsync takes 100 ms the twins alone took 2.7 s and leased nothing (review of the
 * change: start 3.8 s against 1.3 s before the twins). Without a memory filesystem with
 * {@link SCRATCH_MIN_BYTES} free, or when the first twin cannot open its SQLite store (a
 * full filesystem), the twins run on memory. A SIGTERM, SIGINT or SIGHUP during the warm-up
 * removes the directory before the signal ends the process as it would have.
 * Bounded: at most `exchanges` exchanges or `maxMs` (no twin nor exchange is begun after
 * it), then at most `settleMs` waiting for the compiler threads to go quiet
 * (./../sys/jit_threads.ts).
 *
 * @module
 */
import { mkdtempSync, rmSync, statfsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { PoolConfig } from "../alloc/engine_types.ts";
import { Logger } from "../control/log.ts";
import { isPostgresUrl } from "../lease/postgres.ts";
import { formatIPv6, parseIPv6 } from "../net/addr.ts";
import { jitCompilerTicks } from "../sys/jit_threads.ts";
import { sleep } from "../sys/process.ts";
import type { DatagramHandler, UdpEndpoint } from "../sys/udp.ts";
import { signMessage } from "../wire/auth.ts";
import { Dhcp4MessageType } from "../wire/dhcp4.ts";
import { discoverMessage, selectingRequest } from "../wire/dhcp4_requests.ts";
import { Dhcp6MessageType, decodeDhcp4o6, encodeDhcp4o6 } from "../wire/dhcp4o6.ts";
import { encodeMessage } from "../wire/dstm.ts";
import { MessageType } from "../wire/dstm_types.ts";
import type { ListenUdp } from "./listeners.ts";
import type { ServerConfig } from "./server_config.ts";

/** Exchanges, time and settling a warm-up may take at most (defaults of `dstm server`). */
export interface WarmUpLimits {
  /** Exchanges to complete across the twins: a native DISCOVER or a 4o6 DORA each. */
  readonly exchanges: number;
  /** ms for the exchanges. */
  readonly maxMs: number;
  /** ms to wait afterwards for the compiler threads to finish what the exchanges started. */
  readonly settleMs: number;
}

export const WARM_UP_DEFAULTS: WarmUpLimits = { exchanges: 4000, maxMs: 800, settleMs: 200 };

/** Twins started: see the module's note on constants. */
export const TWINS = 2;

/** Synthetic hosts in flight at once, across the twins (what bench/kea_compare.ts sends). */
export const IN_FLIGHT = 64;

/** Starts a server (DstmServer.start), passed in so that this module does not import it. */
export type StartTwin = (config: ServerConfig) => Promise<{ stop(): Promise<void> }>;

/**
 * What a warm-up did: exchanges run (native DISCOVERs plus 4o6 DORAs), how many were answered
 * with a lease (DISCOVER_ACK; a 4o6 ACK), ms taken by the exchanges, ms then waited for the
 * compiler, the twins' store kind.
 */
export interface WarmUpResult {
  readonly exchanges: number;
  readonly leased: number;
  readonly leased4o6: number;
  readonly ms: number;
  readonly settleMs: number;
  readonly store: "sqlite" | "memory";
}

/**
 * {@link warmUp} with the server's log level, said at info (`warm-up`: exchanges,
 * scratch-leases, ms, settle-ms, store=scratch). The lease counts are named as the scratch
 * ones: `leased=2000` on a 254-address pool read as the operator's own leases (newcomer).
 */
export async function warmUpLogged(config: ServerConfig, start: StartTwin): Promise<void> {
  const r = await warmUp(config, start);
  config.log.info("warm-up", {
    exchanges: r.exchanges,
    "scratch-leases": r.leased,
    "scratch-leases-4o6": config.dhcp4o6 ? r.leased4o6 : undefined,
    ms: r.ms,
    "settle-ms": r.settleMs,
    store: `scratch (${r.store}, 198.18.0.0/15; not your pools)`,
  });
}

/**
 * Runs up to `limits.exchanges` synthetic exchanges through {@link TWINS} twins of the server
 * started with `start`, stopping early after `limits.maxMs`, then waits up to
 * `limits.settleMs` for the compiler threads. Never throws: a twin that fails to start or an
 * exchange that fails ends the warm-up (the server starts all the same; whatever failed will
 * be said by the real request).
 */
export async function warmUp(
  config: ServerConfig,
  start: StartTwin,
  limits: WarmUpLimits = WARM_UP_DEFAULTS,
): Promise<WarmUpResult> {
  const started = performance.now();
  const inTime = () => performance.now() - started < limits.maxMs;
  const sqlite = config.db !== undefined && !isPostgresUrl(config.db);
  const scratch =
    sqlite && limits.exchanges > 0 && limits.maxMs > 0 ? _ScratchDir.make() : undefined;
  const running: { stop(): Promise<void> }[] = [];
  const twins: _Twin[] = [];
  let driven: _Counts = { exchanges: 0, leased: 0, leased4o6: 0 };
  let store: WarmUpResult["store"] = "memory";
  try {
    for (let i = 0; i < TWINS && limits.exchanges > 0 && inTime(); i++) {
      const twin = new _Twin();
      running.push(await _startTwin(config, i, scratch, twin, start));
      twins.push(twin);
    }
    if (scratch?.path) store = "sqlite";
    if (twins.length > 0 && inTime()) {
      driven = await new _Driver(config, twins, limits, started).run();
    }
  } catch {
    // A warm-up is an optimisation: the real server says whatever failed here.
  } finally {
    for (const twin of running) await twin.stop().catch(() => {});
    scratch?.remove();
  }
  const ms = Math.round(performance.now() - started);
  const settleMs = driven.exchanges > 0 ? await _settle(limits.settleMs) : 0;
  return { ...driven, ms, settleMs, store };
}

/**
 * Starts twin `n` on a SQLite store in `scratch`, or on memory when there is none or (the
 * first twin only) its store cannot be opened there: `scratch` is then given up, so that
 * both twins have a store of one kind.
 */
async function _startTwin(
  config: ServerConfig,
  n: number,
  scratch: _ScratchDir | undefined,
  twin: _Twin,
  start: StartTwin,
): Promise<{ stop(): Promise<void> }> {
  if (!scratch?.path) return start(_twinConfig(config, n, undefined, twin.listen));
  try {
    return await start(_twinConfig(config, n, scratch.path, twin.listen));
  } catch (error) {
    if (n > 0) throw error;
    scratch.remove();
    twin.reset();
    return start(_twinConfig(config, n, undefined, twin.listen));
  }
}

/** Free bytes a memory filesystem needs for the twins' stores (a warm-up writes ~3 MB). */
export const SCRATCH_MIN_BYTES = 32 * 1024 * 1024;

/** statfs(2) f_type of the memory filesystems (linux/magic.h: TMPFS_MAGIC, RAMFS_MAGIC). */
const MEMORY_FILESYSTEMS: ReadonlySet<number> = new Set([0x01021994, 0x858458f6]);

/** Signals whose default action ends the process: the scratch directory goes first. */
const ENDING_SIGNALS = ["SIGTERM", "SIGINT", "SIGHUP"] as const;

/**
 * The twins' private directory on a memory filesystem (see the module's note), removed by
 * {@link remove}, or by a signal that ends the process before: the signal's handler removes
 * it, then raises the signal again with no handler of ours, so that the process ends as it
 * would have (exit by the signal) unless another handler of that signal is installed.
 */
class _ScratchDir {
  /** The directory; undefined once removed. */
  path: string | undefined;
  readonly #onSignal = (signal: NodeJS.Signals) => {
    this.remove();
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };

  private constructor(path: string) {
    this.path = path;
    for (const signal of ENDING_SIGNALS) process.on(signal, this.#onSignal);
  }

  /** A new directory in the first memory filesystem of `$TMPDIR`, /dev/shm with room; else undefined. */
  static make(candidates: readonly string[] = [tmpdir(), "/dev/shm"]): _ScratchDir | undefined {
    for (const parent of candidates) {
      if (!isRoomyMemoryFilesystem(parent)) continue;
      try {
        return new _ScratchDir(mkdtempSync(join(parent, "dstm-warm-up-")));
      } catch {
        // Not writable (a read-only mount, no inode left): the next one.
      }
    }
    return undefined;
  }

  /** Removes the directory and the signal handlers (once; later calls do nothing). */
  remove(): void {
    for (const signal of ENDING_SIGNALS) process.off(signal, this.#onSignal);
    if (this.path === undefined) return;
    rmSync(this.path, { recursive: true, force: true });
    this.path = undefined;
  }
}

/**
 * True when `path` is on a memory filesystem (tmpfs, ramfs) with {@link SCRATCH_MIN_BYTES}
 * free (statfs(2)); false when it is not, or cannot be looked at.
 */
export function isRoomyMemoryFilesystem(path: string): boolean {
  try {
    const fs = statfsSync(path);
    return (
      MEMORY_FILESYSTEMS.has(Number(fs.type)) &&
      Number(fs.bavail) * Number(fs.bsize) >= SCRATCH_MIN_BYTES
    );
  } catch {
    return false;
  }
}

interface _Counts {
  exchanges: number;
  leased: number;
  leased4o6: number;
}

/**
 * Waits until the compiler threads used no CPU over three polls 20 ms apart, or `maxMs`;
 * returns the ms waited (0 where the threads cannot be seen).
 */
async function _settle(maxMs: number): Promise<number> {
  const started = performance.now();
  let last = jitCompilerTicks();
  if (last === 0) return 0;
  let quiet = 0;
  while (quiet < 3 && performance.now() - started < maxMs) {
    await sleep(20);
    const now = jitCompilerTicks();
    quiet = now === last ? quiet + 1 : 0;
    last = now;
  }
  return Math.round(performance.now() - started);
}

/**
 * A twin's configuration: the server's, with scratch pool `n` (the n-th /17 of 198.18.0.0/15,
 * 32,766 addresses: more than a warm-up leases; the first pool's sharing and TEP), a scratch
 * store in `dir` (memory when undefined), no control or metrics endpoint, no admission limits
 * (every synthetic host shares one prefix), a log that drops its lines, and `listen` for its
 * endpoints.
 */
function _twinConfig(
  config: ServerConfig,
  n: number,
  dir: string | undefined,
  listen: ListenUdp,
): ServerConfig {
  const first = config.pools[0] as PoolConfig;
  const pool: PoolConfig = {
    ...first,
    name: `warm-up-${n}`,
    prefixes: [`198.${18 + (n >> 1)}.${128 * (n & 1)}.0/17`],
    exclude: [],
    links: undefined,
  };
  return {
    ...config,
    pools: [pool],
    db: dir ? join(dir, `twin-${n}.db`) : undefined,
    newDb: true,
    control: undefined,
    metrics: undefined,
    warmUp: false,
    requireTep: false,
    admission: {
      ...config.admission,
      maxLeasesPerPrefix: 0,
      maxLeasesPerSite: 0,
      ratePerSecond: 0,
    },
    log: new Logger({
      sink: () => {},
      level: config.logLevel ?? "info",
      format: config.logFormat,
    }),
    listenUdp: listen,
  };
}

/** One twin's listeners, as its endpoints of no socket saw them open. */
class _Twin {
  native: DatagramHandler | undefined;
  v4o6: DatagramHandler | undefined;
  /** Answers queued by the twin's listeners, delivered to {@link onAnswer} a turn later. */
  onAnswer: (data: Uint8Array, to: string, native: boolean) => void = () => {};

  /** Forgets the listeners of a start that failed (the next start opens its own). */
  reset(): void {
    this.native = undefined;
    this.v4o6 = undefined;
  }

  /** The twin's {@link ListenUdp}: the first endpoint opened is the native one (server.ts). */
  readonly listen: ListenUdp = (address, port, onDatagram) => {
    const native = this.native === undefined;
    if (native) this.native = onDatagram;
    else this.v4o6 = onDatagram;
    return Promise.resolve(
      new _NoSocket(address, port, (data, to) => this.onAnswer(data, to, native)),
    );
  };
}

/**
 * An endpoint of no socket: what is queued (the listener's answers) goes to `answered` in a
 * later turn of the event loop, as a socket's datagrams would; what is sent (the TEP
 * channel's BINDs) is dropped.
 */
class _NoSocket implements UdpEndpoint {
  readonly asyncErrors = 0;
  #queued: { data: Uint8Array; to: string }[] = [];

  constructor(
    readonly address: string,
    readonly port: number,
    private readonly answered: (data: Uint8Array, to: string) => void,
  ) {}

  send(): boolean {
    return true;
  }

  queue(data: Uint8Array, address: string): void {
    if (this.#queued.length === 0) setImmediate(() => this.#deliver());
    this.#queued.push({ data, to: address });
  }

  #deliver(): void {
    const queued = this.#queued;
    this.#queued = [];
    for (const { data, to } of queued) this.answered(data, to);
  }

  close(): void {
    this.#queued = [];
  }

  joinGroup(): boolean {
    return true;
  }
}

/**
 * Keeps {@link IN_FLIGHT} synthetic hosts going through the twins: host `n` goes to twin
 * `n % twins`, and is a native host or (when the 4o6 service is on) a 4o6 host in turn. A
 * native host sends DSTM_DISCOVER (signed with the server's first key when it has keys) and
 * is done at its answer; a 4o6 host sends DISCOVER, then REQUEST for the address offered, and
 * is done at the ACK (or NAK). Ends at `exchanges` done hosts, at `maxMs`, or when no answer
 * came for {@link STALL_MS} (hosts refused without an answer).
 */
class _Driver {
  readonly #config: ServerConfig;
  readonly #twins: readonly _Twin[];
  readonly #limits: WarmUpLimits;
  readonly #started: number;
  readonly #counts: _Counts = { exchanges: 0, leased: 0, leased4o6: 0 };
  /** Where the 4o6 hosts are ({@link _hostPrefix}); undefined: native hosts only. */
  readonly #prefix4o6: Uint8Array | undefined;
  #next = 0;
  #lastAnswer = 0;
  readonly #done = Promise.withResolvers<void>();
  /** The run has ended: answers still coming are not counted. */
  #over = false;

  constructor(
    config: ServerConfig,
    twins: readonly _Twin[],
    limits: WarmUpLimits,
    started: number,
  ) {
    this.#config = config;
    this.#twins = twins;
    this.#limits = limits;
    this.#started = started;
    this.#prefix4o6 = _hostPrefix(config.dhcp4o6?.allow);
    for (const twin of twins)
      twin.onAnswer = (data, to, native) => this.#answer(twin, data, to, native);
  }

  async run(): Promise<_Counts> {
    this.#lastAnswer = performance.now();
    for (let i = 0; i < IN_FLIGHT; i++) this.#startHost();
    const watch = setInterval(() => {
      const now = performance.now();
      if (now - this.#started >= this.#limits.maxMs || now - this.#lastAnswer >= STALL_MS)
        this.#finish();
    }, 20);
    try {
      await this.#done.promise;
    } finally {
      clearInterval(watch);
      for (const twin of this.#twins) twin.onAnswer = () => {};
    }
    return this.#counts;
  }

  /** Starts host number `#next` (or ends the run when enough have been started and done). */
  #startHost(): void {
    const n = this.#next++;
    const twin = this.#twins[n % this.#twins.length] as _Twin;
    const native =
      twin.v4o6 === undefined ||
      this.#prefix4o6 === undefined ||
      (twin.native !== undefined && (n >> 1) % 2 === 0);
    if (native) {
      const host6 = `2001:db8:ffff::${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
      const message = { type: MessageType.DISCOVER, xid: n, host6 };
      const key = this.#config.keys?.[0];
      const query = key ? signMessage(message, key, Date.now()) : encodeMessage(message);
      twin.native?.(query, host6, 546, this.#config.listen.address);
    } else {
      const c = this.#config.dhcp4o6;
      if (!c) return;
      twin.v4o6?.(_query(n, Dhcp4MessageType.DISCOVER), this.#host4o6(n), 546, c.address);
    }
  }

  /** An answer of `twin` to `to`: the host's next query, or its end and the next host. */
  #answer(twin: _Twin, data: Uint8Array, to: string, native: boolean): void {
    if (this.#over) return;
    this.#lastAnswer = performance.now();
    const c = this.#counts;
    if (native) {
      if (data[1] === MessageType.DISCOVER_ACK) c.leased++;
      this.#end();
      return;
    }
    const decoded = decodeDhcp4o6(data);
    const dhcp4 = decoded.ok ? decoded.value.dhcp4 : undefined;
    const type = dhcp4?.options.messageType;
    if (dhcp4 && type === Dhcp4MessageType.OFFER && this.#config.dhcp4o6) {
      const n = (dhcp4.xid >>> 0) & 0x7fffffff;
      const request = _query(
        n,
        Dhcp4MessageType.REQUEST,
        dhcp4.yiaddr,
        this.#config.dhcp4o6.serverId,
      );
      twin.v4o6?.(request, to, 546, this.#config.dhcp4o6.address);
      return;
    }
    if (type === Dhcp4MessageType.ACK) c.leased4o6++;
    this.#end();
  }

  /** A host is done: counts it, starts the next one or ends the run. */
  #end(): void {
    const c = this.#counts;
    c.exchanges++;
    if (c.exchanges >= this.#limits.exchanges) this.#finish();
    else if (performance.now() - this.#started >= this.#limits.maxMs) this.#finish();
    else this.#startHost();
  }

  #finish(): void {
    this.#over = true;
    this.#done.resolve();
  }

  /** 4o6 host `n`'s address: `n` in the low 32 bits of the prefix (2001:db8:ffff:: if none). */
  #host4o6(n: number): string {
    const a = (this.#prefix4o6 ?? new Uint8Array(16)).slice();
    new DataView(a.buffer).setUint32(12, n + 1);
    return formatIPv6(a);
  }
}

/** ms without an answer after which the warm-up ends (its hosts are refused silently). */
const STALL_MS = 200;

/**
 * Where the synthetic 4o6 hosts are: the first 96 bits of the first prefix of `allow`
 * (`--dhcp4o6-allow`) of 96 bits or fewer ("2001:db8:1::/48"); 2001:db8:ffff:: when there is
 * no allow list; undefined when every allowed prefix is longer (a /128 per host): the server
 * would refuse, without an answer, hosts from anywhere else, so only native hosts are driven.
 */
function _hostPrefix(allow: readonly string[] | undefined): Uint8Array | undefined {
  if (allow === undefined) return parseIPv6("2001:db8:ffff::") ?? undefined;
  for (const prefix of allow) {
    const [address, length] = prefix.split("/");
    const parsed = address ? parseIPv6(address) : undefined;
    if (parsed && Number(length) <= 96) return parsed;
  }
  return undefined;
}

/**
 * A DHCPV4-QUERY (RFC 7341 §6.1) from host `n` (xid `n`, chaddr 02:00:n, client identifier
 * 01 + chaddr) carrying what the 4o6 client sends (lib/wire/dhcp4_requests.ts): its
 * DISCOVER, or its SELECTING REQUEST of `requestedIp` from `serverId` (RFC 2131 §4.3.2).
 */
function _query(n: number, type: Dhcp4MessageType, requestedIp = 0, serverId = 0): Uint8Array {
  const chaddr = Uint8Array.of(
    2,
    0,
    (n >>> 24) & 0xff,
    (n >>> 16) & 0xff,
    (n >>> 8) & 0xff,
    n & 0xff,
  );
  const me = { chaddr, clientId: Uint8Array.of(1, ...chaddr) };
  const dhcp4 =
    type === Dhcp4MessageType.REQUEST
      ? selectingRequest(me, n, 0, requestedIp, serverId)
      : discoverMessage(me, n, 0);
  return encodeDhcp4o6({ type: Dhcp6MessageType.DHCPV4_QUERY, flags: 0, dhcp4 });
}
