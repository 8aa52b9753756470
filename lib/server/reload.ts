/**
 * What a configuration reload (SIGHUP, `dstm server reload`) may change while the server
 * runs, and what needs a restart. Like Kea's config-reload, it is all or nothing: when one
 * setting cannot change live, the reload is refused with one line naming it and the
 * running configuration stays as it is.
 *
 * Live: pools (added, removed, resized, re-shared, another TEP among the configured ones),
 * exclusions, lease times, host keys (`--key`; keys the new file drops stay accepted for
 * `--key-overlap`), the server ⇄ TEP key (`--tep-key`: the new file's first key signs at
 * once, keys it drops stay accepted from the TEPs for `--key-overlap`; docs/security.md has
 * the rotation procedure), log level, the per-prefix lease cap, the rate limit.
 * Restart: listen address, database, control socket, metrics endpoint, TEP port,
 * DHCPv4-over-DHCPv6, source check, require-tep, log format, host prefix length, turning
 * authentication (`--key` or `--tep-key`) on or off, and a TEP address no pool named before (the TEP channel
 * accepts SYNC only from the TEPs it started with).
 *
 * @module
 */
import type { AllocationEngine } from "../alloc/engine.ts";
import { SITE_DEFAULTS } from "../alloc/prefix_caps.ts";
import { afterOverlap } from "../control/key_ring.ts";
import type { Logger } from "../control/log.ts";
import type { Metrics } from "../control/metrics.ts";
import type { AuthKey } from "../wire/auth.ts";
import { ADMISSION_DEFAULTS, type Admission, siteCap } from "./admission.ts";
import { countOrphans, orphanTotal, warnOrphans } from "./orphans.ts";
import { POOL_WARN_PERCENT } from "./pool_watch.ts";
import type { ServerConfig } from "./server_config.ts";
import { TEP_CONTROL_PORT } from "./tep_sync.ts";

/** Outcome of a reload: applied (and what changed) or refused (and why). */
export interface ReloadResult {
  readonly ok: boolean;
  /** One line: what changed, or why nothing did. */
  readonly message: string;
  /** Settings that changed (empty when refused or when nothing changed). */
  readonly changed: readonly string[];
}

const hex = (k: AuthKey) =>
  `${k.id}:${Array.from(k.secret, (b) => b.toString(16).padStart(2, "0")).join("")}`;
const keysText = (keys: readonly AuthKey[] | undefined) =>
  keys === undefined ? "" : keys.map(hex).sort().join(",");

/** Settings only a restart changes, as comparable text. */
function fixed(c: ServerConfig): Record<string, string> {
  return {
    listen: `[${c.listen.address}]:${c.listen.port}`,
    db: c.db ?? "memory",
    control: c.control ?? "off",
    metrics: c.metrics ? `[${c.metrics.address}]:${c.metrics.port}` : "off",
    "tep-port": String(c.tepPort ?? TEP_CONTROL_PORT),
    "tep-key": c.tepKeys?.length ? "on" : "off",
    dhcp4o6: JSON.stringify(c.dhcp4o6 ?? null),
    "source-check": String(c.sourceCheck),
    "require-tep": String(c.requireTep === true),
    "log-format": c.logFormat ?? "text",
    "host-prefix-length": String(
      c.admission?.hostPrefixLength ?? ADMISSION_DEFAULTS.hostPrefixLength,
    ),
    "site-prefix-length": String(c.admission?.sitePrefixLength ?? SITE_DEFAULTS.sitePrefixLength),
    key: c.keys?.length ? "on" : "off",
  };
}

/** Settings a reload changes live, as comparable text. */
function live(c: ServerConfig): Record<string, string> {
  return {
    pool: JSON.stringify(c.pools),
    "lease-time": String(c.leaseTime),
    "max-lease-time": String(c.maxLeaseTime ?? c.leaseTime),
    key: keysText(c.keys),
    // Order matters: the first key signs.
    "tep-key": (c.tepKeys ?? []).map(hex).join(","),
    "key-overlap": String(c.keyOverlapSeconds ?? 3600),
    "log-level": c.logLevel ?? "info",
    "max-leases-per-prefix": String(
      c.admission?.maxLeasesPerPrefix ?? ADMISSION_DEFAULTS.maxLeasesPerPrefix,
    ),
    "max-leases-per-site": String(siteCap(c.admission)),
    "prefix-rate": String(c.admission?.ratePerSecond ?? ADMISSION_DEFAULTS.ratePerSecond),
    "prefix-burst": String(c.admission?.burst ?? ADMISSION_DEFAULTS.burst),
    "pool-warn-percent": String(c.poolWarnPercent ?? POOL_WARN_PERCENT),
  };
}

/**
 * Compares the running configuration with the one read again: the settings that would
 * change (`changed`), or a refusal naming the first one that needs a restart.
 * `teps` are the TEPs the server's channel knows (canonical IPv6).
 */
export function planReload(
  current: ServerConfig,
  next: ServerConfig,
  teps: ReadonlySet<string>,
): { refused: string } | { changed: string[] } {
  const a = fixed(current);
  const b = fixed(next);
  for (const name of Object.keys(a)) {
    if (a[name] !== b[name]) {
      const what =
        name === "key" || name === "tep-key"
          ? `turning --${name} authentication on or off`
          : `--${name}`;
      return { refused: `${what} cannot change without a restart` };
    }
  }
  for (const pool of next.pools) {
    if (!teps.has(pool.tep6))
      return {
        refused: `pool ${pool.prefixes.join(",")}: TEP ${pool.tep6} is new; a TEP the server did not start with needs a restart`,
      };
  }
  const x = live(current);
  const y = live(next);
  return { changed: Object.keys(x).filter((name) => x[name] !== y[name]) };
}

/** What a reload changes in the running server. */
export interface ReloadTarget {
  readonly engine: AllocationEngine;
  readonly admission: Admission | undefined;
  /** The host keys the handler checks, changed in place; undefined: authentication off. */
  readonly keys: Map<number, AuthKey> | undefined;
  /** The server ⇄ TEP channel's keys (`--tep-key`); undefined: no TEP channel or no key. */
  readonly tepKeys?: {
    rotateKeys(
      keys: readonly AuthKey[],
      overlapMs: number,
      onRetired: (keys: readonly AuthKey[]) => void,
    ): AuthKey[];
  };
  /** Timers retiring keys after their overlap (cleared when the server stops). */
  readonly keyTimers: Set<ReturnType<typeof setTimeout>>;
  /** TEPs the channel accepts (canonical IPv6). */
  readonly teps: ReadonlySet<string>;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** The pool fill warnings (--pool-warn-percent). */
  readonly poolWatch?: { percent: number };
}

/**
 * Applies `next` (or refuses it: an Error reading it, a setting that needs a restart, pools
 * the engine refuses) to the running server, all or nothing; logs `reload` (with the
 * changed settings and the orphaned leases) or `WARN reload-refused`, counts
 * `dstm_reloads_total{result}`.
 */
export function applyReload(
  t: ReloadTarget,
  current: ServerConfig,
  next: ServerConfig | Error,
  reason: string,
): ReloadResult {
  const refuse = (message: string): ReloadResult => {
    t.metrics.inc("dstm_reloads_total", { result: "refused" });
    t.log.warn("reload-refused", { reason, detail: message });
    return { ok: false, message, changed: [] };
  };
  if (next instanceof Error) return refuse(next.message);
  const plan = planReload(current, next, t.teps);
  if ("refused" in plan) return refuse(plan.refused);
  let orphans: number;
  try {
    orphans = t.engine.reconfigure({
      pools: [...next.pools],
      leaseTime: next.leaseTime,
      maxLeaseTime: next.maxLeaseTime,
      maxLeasesPerPrefix:
        next.admission?.maxLeasesPerPrefix ?? ADMISSION_DEFAULTS.maxLeasesPerPrefix,
      maxLeasesPerSite: siteCap(next.admission),
    });
  } catch (error) {
    return refuse((error as Error).message);
  }
  t.admission?.setRate(
    next.admission?.ratePerSecond ?? ADMISSION_DEFAULTS.ratePerSecond,
    next.admission?.burst ?? ADMISSION_DEFAULTS.burst,
  );
  if (next.logLevel) t.log.setLevel(next.logLevel);
  if (t.poolWatch) t.poolWatch.percent = next.poolWarnPercent ?? POOL_WARN_PERCENT;
  rotateKeys(t, next);
  if (plan.changed.includes("tep-key")) rotateTepKeys(t, next);
  t.metrics.inc("dstm_reloads_total", { result: "applied" });
  // engine.orphans() also counts released/expired history outside the pools; the warning is
  // about the active leases there, which hold their addresses until they end (./orphans.ts).
  const counted = orphans > 0 ? countOrphans(t.engine) : { outside: 0, otherLayout: 0 };
  const heldOrphans = orphanTotal(counted);
  const stats = t.engine.stats();
  t.log.info("reload", {
    reason,
    changed: plan.changed.join(",") || "nothing",
    pools: stats.map((p) => p.pool).join(","),
    capacity: stats.reduce((n, p) => n + p.size, 0),
    // Every active lease, orphans included: as `lease ls` and dstm_leases_active count them.
    active: stats.reduce((n, p) => n + p.active, 0) + heldOrphans,
    orphaned: heldOrphans,
  });
  warnOrphans(t.log, counted, "reload");
  const pinned = pinnedText(next);
  if (pinned) t.log.info("reload-pinned", { flags: pinned.flags, detail: pinned.text });
  return {
    ok: true,
    message: `reloaded: ${plan.changed.join(", ") || "nothing changed"}${heldOrphans ? `; ${heldOrphans} orphaned lease(s)` : ""}${pinned ? `; ${pinned.text}` : ""}`,
    changed: plan.changed,
  };
}

/**
 * The reloadable settings pinned by command-line flags (ServerConfig.pinnedByFlags), as one
 * clause: a reload reads the config file again but the flags still win, so editing the file's
 * `lease-time` under `--lease-time 3h` changes nothing; said, not left to guess. Undefined
 * when no such flag was given.
 */
function pinnedText(c: ServerConfig): { flags: string; text: string } | undefined {
  const pinned = c.pinnedByFlags ?? [];
  if (pinned.length === 0) return undefined;
  const names = pinned.map((p) => `--${p.name}`);
  const shadowed = pinned.filter((p) => p.inFile).map((p) => p.name);
  return {
    flags: names.join(","),
    text: `pinned by command-line flags, which a reload keeps over the config file: ${names.join(", ")}${
      shadowed.length > 0 ? ` (the file's ${shadowed.join(", ")} not used)` : ""
    }; to change them, edit the flags and restart`,
  };
}

/**
 * Host keys whose overlap runs: a reload during it neither restarts it (else a server reloaded
 * more often than --key-overlap would accept a dropped key for ever) nor logs it again.
 */
const retiring = new WeakSet<AuthKey>();

/** New host keys at once; keys the new file dropped stay accepted for keyOverlapSeconds. */
function rotateKeys(t: ReloadTarget, next: ServerConfig): void {
  const map = t.keys;
  if (!map || !next.keys) return;
  const fresh = new Map(next.keys.map((k) => [k.id, k]));
  const dropped = [...map.values()].filter(
    (k) => fresh.get(k.id) === undefined && !retiring.has(k),
  );
  for (const [id, key] of fresh) {
    // Back in the file: no longer retiring.
    const held = map.get(id);
    if (held) retiring.delete(held);
    map.set(id, key);
  }
  for (const key of dropped) retiring.add(key);
  if (dropped.length === 0) return;
  const overlapMs = (next.keyOverlapSeconds ?? 3600) * 1000;
  t.log.info("key-overlap", {
    keys: dropped.map((k) => k.id).join(","),
    "overlap-s": overlapMs / 1000,
    detail: "keys no longer in the key file are accepted until then",
  });
  // In steps: one setTimeout longer than ~24.8 days would fire at once (lib/control/key_ring.ts).
  afterOverlap(overlapMs, t.keyTimers, () => {
    for (const key of dropped) if (map.get(key.id) === key && retiring.has(key)) map.delete(key.id);
    t.log.info("key-retired", { keys: dropped.map((k) => k.id).join(",") });
  });
}

/**
 * The new `--tep-key` file at once (its first key signs BIND/UNBIND/SNAPSHOT, each verifies
 * SYNC and BIND_ACK); keys it dropped stay accepted from the TEPs for keyOverlapSeconds.
 */
function rotateTepKeys(t: ReloadTarget, next: ServerConfig): void {
  if (!t.tepKeys || !next.tepKeys?.length) return;
  const overlapMs = (next.keyOverlapSeconds ?? 3600) * 1000;
  const dropped = t.tepKeys.rotateKeys(next.tepKeys, overlapMs, (retired) =>
    t.log.info("tep-key-retired", { keys: retired.map((k) => k.id).join(",") }),
  );
  t.log.info("tep-key-rotated", {
    "signing-key": next.tepKeys[0]!.id,
    keys: next.tepKeys.map((k) => k.id).join(","),
    overlapping: dropped.map((k) => k.id).join(",") || undefined,
    "overlap-s": dropped.length > 0 ? overlapMs / 1000 : undefined,
    detail:
      dropped.length > 0
        ? "TEP messages signed with the dropped keys are accepted until the overlap ends"
        : undefined,
  });
}
