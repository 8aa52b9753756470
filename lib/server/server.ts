/**
 * The DSTM server process: allocation engine + lease store + UDP listener + control socket +
 * metrics + expiry sweeper, started and stopped as one.
 *
 * @module
 */
import { AllocationEngine, isDeclinedHost, type PoolConfig } from "../alloc/engine.ts";
import { Reclaimer } from "../alloc/reclaimer.ts";
import { controlHandler } from "../control/api.ts";
import { causeOf, type Logger } from "../control/log.ts";
import { Metrics, metricsHandler } from "../control/metrics.ts";
import type { Lease, LeaseStore } from "../lease/lease.ts";
import { MemoryLeaseStore } from "../lease/memory.ts";
import { isPostgresUrl, PostgresLeaseStore } from "../lease/postgres.ts";
import { SqliteLeaseStore } from "../lease/sqlite.ts";
import { canonicalIPv6, formatIPv4 } from "../net/addr.ts";
import { type HttpEndpoint, serveTcp, serveUnix } from "../sys/http.ts";
import { interfaceOfIPv6 } from "../sys/ifinfo.ts";
import { ifNameToIndex } from "../sys/libc.ts";
import { listenUdp, UdpBindError, type UdpEndpoint } from "../sys/udp.ts";
import { type AuthKey, ReplayGuard } from "../wire/auth.ts";
import { ADMISSION_DEFAULTS, Admission, siteCap } from "./admission.ts";
import { Dhcp4o6Handler } from "./dhcp4o6.ts";
import type { Dhcp4o6IdentityMode } from "./dhcp4o6_identity.ts";
import { type LinkSelector, linkSelectorOf } from "./dhcp4o6_link.ts";
import { DstmHandler } from "./handler.ts";
import { LeaseAdmin } from "./lease_admin.ts";
import { PoolWatch } from "./pool_watch.ts";
import { applyReload, type ReloadResult } from "./reload.ts";
import { TepSync } from "./tep_sync.ts";

export interface ServerConfig {
  readonly pools: readonly PoolConfig[];
  /** Default (and, unless maxLeaseTime says more, maximum) lease time in seconds. */
  readonly leaseTime: number;
  readonly maxLeaseTime?: number;
  readonly listen: { readonly address: string; readonly port: number };
  /** SQLite lease database, or a `postgres://` URL (shared by several servers); in-memory leases when absent. */
  readonly db?: string;
  /** Create the database empty even though dstm created one at `db` before (it vanished). */
  readonly newDb?: boolean;
  readonly keys?: readonly AuthKey[];
  /**
   * Server ⇄ TEP keys (`--tep-key`): sign BIND/UNBIND/SNAPSHOT, verify SYNC and BIND_ACK.
   * Never a host key (hosts hold those). Absent: the TEP channel is unauthenticated.
   */
  readonly tepKeys?: readonly AuthKey[];
  readonly sourceCheck: boolean;
  /** After a reload that changed `keys`, how long the keys it dropped stay accepted (s; default 3600). */
  readonly keyOverlapSeconds?: number;
  /** Log format and level the logger was made with (compared on reload; default text, info). */
  readonly logFormat?: "text" | "json";
  readonly logLevel?: "debug" | "info" | "warn" | "error";
  /** Unix socket path of the control API; none when absent. */
  readonly control?: string;
  /** Prometheus endpoint; none when absent. */
  readonly metrics?: { readonly address: string; readonly port: number };
  /** Warn when a pool is this full, in percent (default 90; ./pool_watch.ts). */
  readonly poolWarnPercent?: number;
  /** UDP port of the TEPs' control endpoint (default 4608). */
  readonly tepPort?: number;
  /** Source of BIND / UNBIND to the TEPs (default: the listen address, or where each TEP's SYNC arrived). */
  readonly tepSource?: string;
  /** Refuse leases whose TEP has not synced yet, instead of delivering them in its first snapshot. */
  readonly requireTep?: boolean;
  /**
   * Also answer DHCPv4-over-DHCPv6 (RFC 7341) on `address`:`port` (547), joining ff02::1:2 on
   * `interfaces`; `serverId` is the DHCPv4 server identifier (option 54).
   */
  readonly dhcp4o6?: {
    readonly address: string;
    readonly port: number;
    readonly interfaces: readonly string[];
    readonly serverId: number;
    /** IPv6 prefixes whose hosts may use 4o6 (RFC 7341 has no authentication); absent: any. */
    readonly allow?: readonly string[];
    /** IPv6 prefixes of the relays allowed to send RELAY-FORW (`--dhcp4o6-relay`); absent: see Admission. */
    readonly relays?: readonly string[];
    /** How long a DECLINEd address stays unavailable (s); default 86400. */
    readonly declineProbation?: number;
    /** Who a 4o6 client is: its IPv6 address (default), client identifier or chaddr. */
    readonly identity?: Dhcp4o6IdentityMode;
  };
  /**
   * Admission control (./admission.ts); each setting defaults to ADMISSION_DEFAULTS, 0 turns
   * the cap or the rate limit off.
   */
  readonly admission?: {
    readonly maxLeasesPerPrefix?: number;
    readonly hostPrefixLength?: number;
    /** Leases per site prefix (lib/alloc/prefix_caps.ts); default defaultSiteCap(maxLeasesPerPrefix). */
    readonly maxLeasesPerSite?: number;
    readonly sitePrefixLength?: number;
    readonly ratePerSecond?: number;
    readonly burst?: number;
  };
  /** Clocks (ms), injectable for tests: wall (default Date.now), monotonic (default performance.now). */
  readonly clock?: { readonly now?: () => number; readonly monotonic?: () => number };
  /** How often the sweeper looks for expired leases (ms). */
  readonly sweepIntervalMs?: number;
  /**
   * Bounds of one reclamation slice (lib/alloc/reclaimer.ts): most leases (default 100) and
   * longest time (ms, default 250); 0: no bound. Answers go out between slices.
   */
  readonly reclaim?: { readonly maxLeases?: number; readonly maxMs?: number };
  readonly log: Logger;
}

export class DstmServer {
  readonly engine: AllocationEngine;
  readonly metrics: Metrics;
  /** The TEPs' view (bindings, digest, connected); undefined before start. */
  get tepSync(): TepSync | undefined {
    return this.#tepSync;
  }
  #udp: UdpEndpoint | undefined;
  #udp4o6: UdpEndpoint | undefined;
  #http: HttpEndpoint[] = [];
  #sweeper: Reclaimer | undefined;
  #poolWatch: PoolWatch | undefined;
  #inflight = 0;
  #metricsWhere: string | undefined;
  #tepSync: TepSync | undefined;
  #admission: Admission | undefined;
  #stopping = false;
  #stopped: Promise<void> | undefined;
  readonly #fatal = Promise.withResolvers<Error>();
  /** The configuration running now (replaced by each applied reload). */
  #config: ServerConfig | undefined;
  /** The 4o6 pools of each link (./dhcp4o6_link.ts), built at start and by each reload. */
  #links: LinkSelector | undefined;
  /** Host keys the handler checks: replaced in place on reload. */
  #keys: Map<number, AuthKey> | undefined;
  /** TEPs the channel accepts (canonical IPv6): those of the pools at start. */
  #teps = new Set<string>();
  #reloader: (() => ServerConfig | Promise<ServerConfig>) | undefined;
  #reloading: Promise<ReloadResult> | undefined;
  readonly #keyTimers = new Set<ReturnType<typeof setTimeout>>();
  readonly #log: Logger;
  readonly #store: LeaseStore;

  private constructor(engine: AllocationEngine, store: LeaseStore, metrics: Metrics, log: Logger) {
    this.engine = engine;
    this.#store = store;
    this.metrics = metrics;
    this.#log = log;
  }

  /** The DHCPv4-over-DHCPv6 port, 0 when that service is off. */
  get dhcp4o6Port(): number {
    return this.#udp4o6?.port ?? 0;
  }

  /** The UDP address and port the server answers on. */
  get listening(): { address: string; port: number } {
    return { address: this.#udp?.address ?? "", port: this.#udp?.port ?? 0 };
  }

  /**
   * Opens the store, loads the leases, binds every endpoint. Throws (after undoing what it
   * did) with a one-line message on bad configuration or an unavailable resource.
   */
  static async start(config: ServerConfig): Promise<DstmServer> {
    const store: LeaseStore = !config.db
      ? new MemoryLeaseStore()
      : isPostgresUrl(config.db)
        ? await PostgresLeaseStore.open(config.db)
        : SqliteLeaseStore.open(config.db, { newDb: config.newDb });
    const metrics = new Metrics();
    let server: DstmServer | undefined;
    const log = config.log;
    metrics.counter(
      "dstm_clock_steps_total",
      "Steps of the wall clock seen (leases expire on the monotonic clock)",
    );
    try {
      const engine = new AllocationEngine({
        pools: [...config.pools],
        store,
        leaseTime: config.leaseTime,
        maxLeaseTime: config.maxLeaseTime,
        now: config.clock?.now ?? Date.now,
        monotonic: config.clock?.monotonic ?? (() => performance.now()),
        maxLeasesPerPrefix:
          config.admission?.maxLeasesPerPrefix ?? ADMISSION_DEFAULTS.maxLeasesPerPrefix,
        hostPrefixLength: config.admission?.hostPrefixLength,
        maxLeasesPerSite: siteCap(config.admission),
        sitePrefixLength: config.admission?.sitePrefixLength,
        reclaimMaxLeases: config.reclaim?.maxLeases,
        reclaimMaxMs: config.reclaim?.maxMs,
        // Another server sharing the database decided: keep this server's TEP view whole, so
        // that the snapshot it sends a TEP has every binding (docs/scale-out.md).
        onAbsorb: (before, after) => {
          if (server) server.#absorbed(before, after);
        },
        onClockStep: (stepMs) => {
          // Leases keep their time on the monotonic clock: nothing expires early or late.
          metrics.inc("dstm_clock_steps_total", {});
          log.warn("clock-step", {
            "step-s": Math.round(stepMs / 1000),
            detail: "the wall clock stepped; leases keep expiring on the monotonic clock",
          });
        },
        onStoreError: (error) => {
          if (server) server.#storeFailed(error);
        },
      });
      await engine.start();
      server = new DstmServer(engine, store, metrics, config.log);
      await server.#open(config);
      return server;
    } catch (error) {
      if (server) await server.stop();
      else await store.close().catch(() => {});
      throw error;
    }
  }

  async #open(config: ServerConfig): Promise<void> {
    const { engine, metrics } = this;
    metrics.gauge(
      "dstm_pool_addresses",
      "Leasable units of each pool (addresses, or address × port set when shared), by state",
    );
    metrics.gauge("dstm_leases_active", "Active leases");
    metrics.gauge(
      "dstm_lease_write_conflicts",
      "Lease writes another server sharing the database won (each decided again)",
    );
    metrics.counter("dstm_leases_expired_total", "Leases reclaimed by the expiry sweeper");
    metrics.onCollect(() => {
      let active = 0;
      for (const pool of engine.stats()) {
        metrics.set("dstm_pool_addresses", { pool: pool.pool, state: "active" }, pool.active);
        metrics.set("dstm_pool_addresses", { pool: pool.pool, state: "free" }, pool.free);
        active += pool.active;
      }
      metrics.set("dstm_leases_active", {}, active);
      metrics.set("dstm_lease_write_conflicts", {}, engine.conflicts());
    });
    const keys =
      config.keys && config.keys.length > 0
        ? new Map(config.keys.map((k) => [k.id, k]))
        : undefined;
    this.#keys = keys;
    this.#config = config;
    for (const pool of config.pools) this.#teps.add(canonicalIPv6(pool.tep6) ?? pool.tep6);
    metrics.counter("dstm_reloads_total", "Configuration reloads, by result (applied, refused)");
    this.#tepSync = new TepSync(
      {
        keys: config.tepKeys,
        teps: config.pools.map((pool) => pool.tep6),
        tepPort: config.tepPort,
        requireTep: config.requireTep,
        log: this.#log,
        metrics,
        send: (data, address, port, source) =>
          this.#udp?.send(data, address, port, source) ?? false,
        source:
          config.tepSource ??
          (isWildcard(config.listen.address) ? undefined : config.listen.address),
        pools: engine.pools(),
      },
      // A declined address's holder (RFC 6666 discard prefix) is no host: no binding.
      // Read from the lease table as it is, unsorted and uncopied (a million rows at start).
      _activeBindings(engine.rows()),
    );
    this.#admission = new Admission({
      metrics,
      log: this.#log,
      hostPrefixLength: config.admission?.hostPrefixLength,
      ratePerSecond: config.admission?.ratePerSecond ?? ADMISSION_DEFAULTS.ratePerSecond,
      burst: config.admission?.burst,
      dhcp4o6Allow: config.dhcp4o6?.allow,
      dhcp4o6Relays: config.dhcp4o6?.relays,
      now: config.clock?.monotonic,
    });
    const handler = new DstmHandler({
      admission: this.#admission,
      bindings: this.#tepSync,
      engine,
      keys,
      // Nothing stamped before this start: what the previous run accepted cannot be replayed.
      replayGuard: keys
        ? new ReplayGuard({ notBefore: (config.clock?.now ?? Date.now)() })
        : undefined,
      sourceCheck: config.sourceCheck,
      log: this.#log,
      metrics,
    });
    // Answers leave from the address the query was sent to (IPV6_PKTINFO on `::`).
    this.#udp = await listenUdp(
      config.listen.address,
      config.listen.port,
      (data, address, port, local) => {
        if (this.#stopping) return;
        this.#inflight++;
        handler.handle(data, address, port, local).then(
          (answer) => {
            this.#inflight--;
            if (answer && this.#udp && !this.#udp.send(answer, address, port, local)) {
              metrics.inc("dstm_dropped_total", { reason: "send-failed" });
            }
          },
          (error: unknown) => {
            this.#inflight--;
            metrics.inc("dstm_dropped_total", { reason: "internal-error" });
            this.#log.error("internal-error", { detail: (error as Error).message, from: address });
          },
        );
      },
    );
    if (config.dhcp4o6) await this.#openDhcp4o6(config.dhcp4o6);
    if (config.dhcp4o6 && keys && !config.dhcp4o6.allow) {
      this.#log.warn("dhcp4o6-open", {
        detail:
          "DHCPv4-over-DHCPv6 has no authentication: any host can lease over it, whatever --key says",
      });
    }
    if (config.control) {
      this.#http.push(
        await serveUnix(
          config.control,
          controlHandler({
            admin: new LeaseAdmin({
              engine,
              bindings: () => this.#tepSync,
              leaseTime: () => engine.grantSeconds(),
              log: this.#log,
              metrics,
            }),
            pools: () => engine.stats(),
            metrics,
            reload: () => this.reload("control"),
          }),
        ),
      );
    }
    if (config.metrics) {
      const endpoint = serveTcp(
        config.metrics.address,
        config.metrics.port,
        metricsHandler(metrics),
      );
      this.#http.push(endpoint);
      this.#metricsWhere = endpoint.where;
    }
    this.#warnTepAuthOff(config);
    const poolWatch = new PoolWatch(this.#log, config.poolWarnPercent);
    this.#poolWatch = poolWatch;
    this.#sweeper = new Reclaimer({
      engine,
      onExpired: (expired) => this.#expired(expired),
      onRun: ({ leases, slices, ms }) =>
        this.#log.info("reclaim", { leases, slices, "time-ms": Math.round(ms) }),
      beforeRun: () => {
        poolWatch.check(engine.stats());
        return this.#storeStillThere();
      },
    });
    this.#sweeper.start(config.sweepIntervalMs ?? 1000);
    const pools = engine.stats();
    this.#log.info("start", {
      listen: `[${this.#udp.address}]:${this.#udp.port}`,
      pools: pools.map((p) => p.pool).join(","),
      addresses: pools.reduce((n, p) => n + p.addresses, 0),
      leases: pools.reduce((n, p) => n + p.size, 0),
      active: pools.reduce((n, p) => n + p.active, 0),
      store:
        this.#store instanceof PostgresLeaseStore
          ? this.#store.where
          : config.db
            ? `sqlite:${config.db}`
            : "memory",
      auth: keys ? `${keys.size} key(s)` : "off",
      "max-leases-per-prefix":
        config.admission?.maxLeasesPerPrefix ?? ADMISSION_DEFAULTS.maxLeasesPerPrefix,
      "max-leases-per-site": siteCap(config.admission),
      "prefix-rate": config.admission?.ratePerSecond ?? ADMISSION_DEFAULTS.ratePerSecond,
      "tep-auth": config.tepKeys?.length ? `${config.tepKeys.length} key(s)` : "off",
      control: config.control,
      metrics: this.#metricsWhere,
    });
  }

  /**
   * Says once, at start, that the TEP channel is unsigned (docs/security.md), unless every TEP
   * address is configured on this host (loopback included): then that channel never leaves it.
   */
  #warnTepAuthOff(config: ServerConfig): void {
    if (config.tepKeys?.length) return;
    if (config.pools.every((pool) => interfaceOfIPv6(pool.tep6) !== null)) return;
    this.#log.warn("tep-auth-off", {
      detail:
        "BIND/UNBIND/SNAPSHOT to the TEPs are unsigned; give --tep-key FILE here and --key FILE to each dstm tep on another machine",
    });
  }

  async #openDhcp4o6(c: NonNullable<ServerConfig["dhcp4o6"]>): Promise<void> {
    const handler = new Dhcp4o6Handler({
      admission: this.#admission,
      engine: this.engine,
      bindings: this.#tepSync,
      serverId: c.serverId,
      address: c.address,
      declineProbation: c.declineProbation,
      identity: c.identity,
      hostPrefixLength: this.#config?.admission?.hostPrefixLength,
      links: () => this.#links,
      log: this.#log,
      metrics: this.metrics,
    });
    this.#setLinks(this.#config?.pools ?? []);
    const endpoint = await listenUdp(c.address, c.port, (data, address, port, local) => {
      if (this.#stopping) return;
      this.#inflight++;
      handler.handle(data, address).then(
        (answer) => {
          this.#inflight--;
          if (answer) this.#udp4o6?.send(answer, address, port, local);
        },
        (error: unknown) => {
          this.#inflight--;
          this.#log.error("internal-error", {
            protocol: "dhcp4o6",
            detail: (error as Error).message,
          });
        },
      );
    });
    this.#udp4o6 = endpoint;
    for (const ifname of c.interfaces) {
      if (!endpoint.joinGroup("ff02::1:2", ifname)) {
        throw new UdpBindError(
          `cannot join ff02::1:2 on ${ifname}: is it an interface with IPv6?`,
          "EJOIN",
        );
      }
    }
    this.#log.info("dhcp4o6", {
      listen: `[${endpoint.address}]:${endpoint.port}`,
      multicast: c.interfaces.length ? c.interfaces.join(",") : undefined,
      "server-id": formatIPv4(c.serverId),
      // RFC 7341 has no authentication: who may lease over it is the allow list.
      allow: c.allow?.join(",") ?? "any",
      relays: c.relays?.join(",") ?? (c.allow ? "any allowed" : "any"),
    });
  }

  /** The 4o6 link selector of `pools` (the engine's pools, in this order). */
  #setLinks(pools: readonly PoolConfig[]): void {
    const names = this.engine.pools().map((p) => p.name);
    this.#links = linkSelectorOf(names, pools, (name) => Math.max(0, ifNameToIndex(name)));
  }

  /** Where a reload gets the new configuration (the CLI reads flags and the file again). */
  onReload(read: () => ServerConfig | Promise<ServerConfig>): void {
    this.#reloader = read;
  }

  /**
   * Reads the configuration again and applies what may change live (./reload.ts), all or
   * nothing: leases and bindings are kept; leases of a removed pool are orphaned (kept until
   * they expire or are released, never handed out again). A refusal is logged at warn with
   * the reason and counted; the running configuration stays. Reloads do not overlap.
   */
  reload(reason: string): Promise<ReloadResult> {
    const previous = this.#reloading ?? Promise.resolve(undefined);
    const next = previous.then(() => this.#reload(reason));
    this.#reloading = next;
    return next;
  }

  async #reload(reason: string): Promise<ReloadResult> {
    const current = this.#config;
    let next: ServerConfig | Error;
    if (!this.#reloader || !current || this.#stopping) {
      next = new Error("this server has no configuration to read again");
    } else {
      try {
        next = await this.#reloader();
      } catch (error) {
        next = error as Error;
      }
    }
    const result = applyReload(
      {
        engine: this.engine,
        admission: this.#admission,
        keys: this.#keys,
        keyTimers: this.#keyTimers,
        tepKeys: current?.tepKeys?.length ? this.#tepSync : undefined,
        teps: this.#teps,
        log: this.#log,
        metrics: this.metrics,
        poolWatch: this.#poolWatch,
      },
      current as ServerConfig,
      next,
      reason,
    );
    if (result.ok) {
      this.#config = next as ServerConfig;
      if (this.#udp4o6) this.#setLinks(this.#config.pools);
    }
    return result;
  }

  /**
   * Resolves with the error when the server stopped by itself: its lease database was
   * deleted or replaced ({@link LeaseDatabaseGoneError}). Never rejects.
   */
  get failed(): Promise<Error> {
    return this.#fatal.promise;
  }

  /** A store write failed: the cause at error level; a vanished database stops the server. */
  #storeFailed(error: unknown): void {
    const detail = error instanceof Error ? error.message : String(error);
    this.#log.error("store-failed", { detail, cause: causeOf(error) });
    if ((error as { fatal?: unknown } | null)?.fatal !== true || this.#stopping) return;
    this.metrics.inc("dstm_dropped_total", { reason: "store-gone" });
    this.#fatal.resolve(error as Error);
    void this.stop();
  }

  /** Before each reclamation run: notices a vanished SQLite database while no request comes. */
  #storeStillThere(): boolean {
    if (!(this.#store instanceof SqliteLeaseStore)) return true;
    try {
      this.#store.verify();
      return true;
    } catch (error) {
      this.#storeFailed(error);
      return false;
    }
  }

  #absorbed(before: Lease | undefined, after: Lease | undefined): void {
    const sync = this.#tepSync;
    if (!sync) return;
    const was = before?.state === "active" ? before : undefined;
    const now = after?.state === "active" ? after : undefined;
    // View only: the server that granted or freed the lease BINDs / UNBINDs it (scale-out.md).
    if (was && (!now || now.host6 !== was.host6 || now.tep6 !== was.tep6)) sync.forget(was);
    if (now && (!was || now.host6 !== was.host6 || now.tep6 !== was.tep6)) sync.adopt(now);
  }

  #expired(expired: readonly Lease[]): void {
    this.metrics.inc("dstm_leases_expired_total", {}, expired.length);
    for (const lease of expired) {
      this.#tepSync?.remove(lease);
      this.#log.info("expire", {
        ipv4: formatIPv4(lease.ipv4),
        host6: lease.host6,
        pool: lease.pool,
      });
    }
  }

  /** Stops answering, waits for answers already being made durable, closes everything. */
  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<void> {
    this.#stopping = true;
    await this.#sweeper?.stop();
    for (const timer of this.#keyTimers) clearTimeout(timer);
    for (let i = 0; i < 200 && this.#inflight > 0; i++)
      await new Promise((resolve) => setTimeout(resolve, 5));
    this.#udp?.close();
    this.#udp4o6?.close();
    this.#tepSync?.close();
    for (const endpoint of this.#http) endpoint.close();
    await this.engine.close();
    await this.#store.close();
    this.#log.info("stop", {});
    this.#log.flush();
  }
}

/** True for the IPv6 wildcard address (`::`): the kernel would pick each source. */
function isWildcard(address: string): boolean {
  return /^[0:]+$/.test(address);
}

/** The active leases among `rows` that are bindings: a declined address's holder is no host. */
function* _activeBindings(rows: Iterable<Lease>): Generator<Lease> {
  for (const lease of rows) {
    if (lease.state === "active" && !isDeclinedHost(lease.host6)) yield lease;
  }
}
