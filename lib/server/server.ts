/**
 * The DSTM server process: allocation engine + lease store + UDP listener + control socket +
 * metrics + expiry sweeper, started and stopped as one. Its settings are ./server_config.ts, its
 * UDP listeners ./listeners.ts, the metric families it declares ./server_metrics.ts, what it
 * says at start ./start_report.ts.
 *
 * @module
 */
import { AllocationEngine, type Generations, type PoolConfig } from "../alloc/engine.ts";
import { Reclaimer } from "../alloc/reclaimer.ts";
import { controlHandler } from "../control/api.ts";
import type { Logger } from "../control/log.ts";
import { Metrics, metricsHandler } from "../control/metrics.ts";
import type { Lease, LeaseStore } from "../lease/lease.ts";
import { MemoryLeaseStore } from "../lease/memory.ts";
import { isPostgresUrl, PostgresLeaseStore } from "../lease/postgres.ts";
import { SqliteLeaseStore } from "../lease/sqlite.ts";
import { WalSyncError } from "../lease/wal_sync.ts";
import { canonicalIPv6, formatIPv4 } from "../net/addr.ts";
import { type HttpEndpoint, serveTcp, serveUnix } from "../sys/http.ts";
import { globalIPv6Addresses } from "../sys/ifinfo.ts";
import { niceJitCompilerThreads } from "../sys/jit_threads.ts";
import { ifNameToIndex } from "../sys/libc.ts";
import type { UdpEndpoint } from "../sys/udp.ts";
import type { AuthKey } from "../wire/auth.ts";
import { ADMISSION_DEFAULTS, type Admission, siteCap } from "./admission.ts";
import { Dhcp4o6Handler } from "./dhcp4o6.ts";
import { type LinkSelector, linkSelectorOf } from "./dhcp4o6_link.ts";
import { LinkNames } from "./dhcp4o6_link_names.ts";
import { LeaseAdmin } from "./lease_admin.ts";
import { type AnswerGate, listenDhcp4o6, listenDstm } from "./listeners.ts";
import { countOrphans, orphanTotal, warnOrphans } from "./orphans.ts";
import { PoolWatch } from "./pool_watch.ts";
import { applyReload, type ReloadResult } from "./reload.ts";
import type { ServerConfig } from "./server_config.ts";
import { declareServerMetrics } from "./server_metrics.ts";
import { admissionFor, dstmHandlerFor, tepSyncFor } from "./server_parts.ts";
import { logStart, warnUnauthenticated } from "./start_report.ts";
import { declareCheckpointMetrics, StoreFailureReport } from "./store_failures.ts";
import type { TepSync } from "./tep_sync.ts";
import { warmUpLogged } from "./warm_up.ts";

export type { ServerConfig } from "./server_config.ts";

/** An offset of the shared database's clock from this server's said at warn from here (ms). */
const STORE_CLOCK_WARN_MS = 1000;

/**
 * Niceness of a `dstm server` process's JIT compiler threads (lib/sys/jit_threads.ts), set
 * after its warm-up and kept at each sweep. A fresh server's code tiers up while it answers:
 * in the first 20,000 4o6 DORAs the compiler threads took 0.5-0.9 s of CPU, a third of two
 * CPUs, from the event loop and the hosts. At 10 they yield it: 4o6 DORA/s over 20,000 fresh
 * hosts +6-11 % in 4 of 5 pairs, twice, p99 no worse (docs/benchmarks.md, session 14).
 */
const JIT_NICE = 10;

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
  /** Counts and logs failed store writes by cause (./store_failures.ts). */
  #storeReport: StoreFailureReport | undefined;
  /** Each answer passes this gate: none begins while stopping; stop waits for those begun. */
  readonly #gate: AnswerGate = {
    begin: () => {
      if (this.#stopping) return false;
      this.#inflight++;
      return true;
    },
    end: () => {
      this.#inflight--;
    },
  };

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
        : SqliteLeaseStore.open(config.db, {
            newDb: config.newDb,
            onCheckpointFailure: (detail) =>
              config.log.warn("wal-checkpointer-failed", {
                detail: `${detail}; SQLite's own checkpoints (every 1,000 WAL pages, on the event loop) are back on`,
              }),
          });
    const metrics = new Metrics();
    let server: DstmServer | undefined;
    const log = config.log;
    const storeReport = new StoreFailureReport(log, metrics);
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
        // A full pool with overdue leases: reclaim them now rather than refuse until the tick.
        reclaimNow: () => (server ? server.#reclaimNow() : Promise.resolve(0)),
        // Another server sharing the database decided: keep this server's TEP view whole, so
        // that the snapshot it sends a TEP has every binding (docs/scale-out.md).
        onAbsorb: (before, after) => {
          if (server) server.#absorbed(before, after);
        },
        // A lease the engine ended for a DISCOVER (its slot left the pools): its TEP unbinds it.
        onEnded: (lease, generation) => {
          if (server) server.#tepSync?.remove(lease, generation);
        },
        onStoreClock: (offsetMs) => {
          // Servers sharing a database time their leases by its clock (docs/scale-out.md).
          if (Math.abs(offsetMs) < STORE_CLOCK_WARN_MS) return;
          log.warn("db-clock-offset", {
            "offset-ms": offsetMs,
            detail:
              "this server's wall clock differs from the lease database's: leases are timed by the database's clock (keep both on NTP)",
          });
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
          else storeReport.failed(error, false);
        },
        onStoreRefused: (error, kept) => storeReport.refused(error, kept),
        onStoreRecovered: () => storeReport.wrote(),
      });
      await engine.start();
      // Twins of this server, on scratch stores, run the request paths first (./warm_up.ts).
      if (config.warmUp) {
        await warmUpLogged(config, (twin) => DstmServer.start(twin));
        niceJitCompilerThreads(JIT_NICE);
      }
      server = new DstmServer(engine, store, metrics, config.log);
      server.#storeReport = storeReport;
      await server.#open(config);
      server.#started = true;
      return server;
    } catch (error) {
      if (server) await server.stop();
      else await store.close().catch(() => {});
      throw error;
    }
  }

  /** Start's steps after the engine: TEP sync, handlers, listeners, control, sweeper. */
  async #open(config: ServerConfig): Promise<void> {
    declareServerMetrics(this.metrics, this.engine);
    const store = this.#store;
    if (store instanceof SqliteLeaseStore)
      declareCheckpointMetrics(this.metrics, () => store.checkpoints);
    const keys =
      config.keys && config.keys.length > 0
        ? new Map(config.keys.map((k) => [k.id, k]))
        : undefined;
    this.#keys = keys;
    this.#config = config;
    for (const pool of config.pools) this.#teps.add(canonicalIPv6(pool.tep6) ?? pool.tep6);
    const parts = { engine: this.engine, log: this.#log, metrics: this.metrics };
    this.#tepSync = tepSyncFor(
      config,
      parts,
      (data, address, port, source) => this.#udp?.send(data, address, port, source) ?? false,
      // The host keys in force (a reload replaces them in place): to name a TEP signing with one.
      () => this.#keys?.values() ?? [],
    );
    this.#admission = admissionFor(config, parts);
    this.#udp = await listenDstm(
      config.listen.address,
      config.listen.port,
      dstmHandlerFor(config, keys, {
        ...parts,
        admission: this.#admission,
        bindings: this.#tepSync,
      }),
      this.#gate,
      this.metrics,
      this.#log,
      config.listenUdp,
    );
    if (config.dhcp4o6) await this.#openDhcp4o6(config.dhcp4o6);
    await this.#openControl(config);
    this.#openMetrics(config);
    warnUnauthenticated(this.#log, config, keys !== undefined);
    this.#startSweeper(config);
    const orphans = countOrphans(this.engine);
    logStart(this.#log, config, {
      orphaned: orphanTotal(orphans),
      listen: `[${this.#udp.address}]:${this.#udp.port}`,
      pools: this.engine.stats(),
      store: this.#store instanceof PostgresLeaseStore ? this.#store.where : undefined,
      keys: keys?.size,
      metrics: this.#metricsWhere,
    });
    warnOrphans(this.#log, orphans, "start");
  }

  /** The control API on its Unix socket (`config.control`), when asked for. */
  async #openControl(config: ServerConfig): Promise<void> {
    if (!config.control) return;
    const engine = this.engine;
    this.#http.push(
      await serveUnix(
        config.control,
        controlHandler({
          admin: new LeaseAdmin({
            engine,
            bindings: () => this.#tepSync,
            leaseTime: () => engine.grantSeconds(),
            log: this.#log,
            metrics: this.metrics,
          }),
          pools: () => engine.stats(),
          metrics: this.metrics,
          reload: () => this.reload("control"),
        }),
      ),
    );
  }

  /** The Prometheus endpoint (`config.metrics`), when asked for. */
  #openMetrics(config: ServerConfig): void {
    if (!config.metrics) return;
    const endpoint = serveTcp(
      config.metrics.address,
      config.metrics.port,
      metricsHandler(this.metrics),
    );
    this.#http.push(endpoint);
    this.#metricsWhere = endpoint.where;
  }

  /** The expiry sweeper (and the pool-fill warning it checks before each run). */
  #startSweeper(config: ServerConfig): void {
    const engine = this.engine;
    const poolWatch = new PoolWatch(this.#log, config.poolWarnPercent);
    this.#poolWatch = poolWatch;
    this.#sweeper = new Reclaimer({
      engine,
      onExpired: (expired, generations) => this.#expired(expired, generations),
      onRun: ({ leases, slices, ms }) =>
        this.#log.info("reclaim", { leases, slices, "time-ms": Math.round(ms) }),
      beforeRun: () => {
        // Compiler threads JavaScriptCore started since: compiling yields to answering.
        if (config.warmUp) niceJitCompilerThreads(JIT_NICE);
        poolWatch.check(engine.stats());
        return this.#storeStillThere();
      },
    });
    this.#sweeper.start(config.sweepIntervalMs ?? 1000);
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
      // Direct clients share their link's name with relayed ones only when the relays are
      // named: otherwise any host could pose as a relay of their link (LinkNames).
      linkNames: new LinkNames(c.linkPrefixes, globalIPv6Addresses, undefined, {
        nameDirect: c.relays !== undefined,
      }),
      hostPrefixLength: this.#config?.admission?.hostPrefixLength,
      links: () => this.#links,
      log: this.#log,
      metrics: this.metrics,
    });
    this.#setLinks(this.#config?.pools ?? []);
    // Assigned only when every group is joined; listenDhcp4o6 closes the endpoint otherwise.
    this.#udp4o6 = await listenDhcp4o6(c, handler, this.#gate, this.#log, this.#config?.listenUdp);
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

  /**
   * A store write failed: counted by cause and logged (./store_failures.ts: warn, rate-limited,
   * naming the errno — a full disk refuses changes until space is freed, the server runs on);
   * a vanished database or a failed fsync, at error, stops the server.
   */
  #storeFailed(error: unknown): void {
    const fatal = (error as { fatal?: unknown } | null)?.fatal === true;
    this.#storeReport?.failed(error, fatal);
    if (!fatal || this.#stopping) return;
    // The store's words for why it cannot go on: its file vanished, or an fsync failed.
    const reason = error instanceof WalSyncError ? "store-sync-failed" : "store-gone";
    this.metrics.inc("dstm_dropped_total", { reason });
    this.#fatal.resolve(error as Error);
    void this.stop();
  }

  /** Before each reclamation run: notices a vanished SQLite database while no request comes. */
  #storeStillThere(): boolean {
    if (!(this.#store instanceof SqliteLeaseStore)) return true;
    try {
      if (this.#store.verify() === "lock-file-restored")
        this.#log.warn("lock-file-restored", {
          detail:
            "the lease database's lock file was deleted or replaced while the server ran; a new one is locked (a second server could have started on the database meanwhile): never delete it while a server runs",
        });
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

  /** EngineOptions.reclaimNow: a slice of the sweeper now (0 freed before it starts). */
  #reclaimNow(): Promise<number> {
    return this.#sweeper ? this.#sweeper.sliceNow() : Promise.resolve(0);
  }

  /** Leases the sweeper expired, and each expiry's generation (an UNBIND carries it). */
  #expired(expired: readonly Lease[], generations: Generations): void {
    this.metrics.inc("dstm_leases_expired_total", {}, expired.length);
    for (let i = 0; i < expired.length; i++) {
      const lease = expired[i] as Lease;
      this.#tepSync?.remove(lease, generations?.[i]);
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

  /** Start completed (its `start` line written): only then does stop say `stop`. */
  #started = false;

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
    // A start that failed (a port in use…) says why, and was never a running server.
    if (this.#started) this.#log.info("stop", {});
    this.#log.flush();
  }
}
