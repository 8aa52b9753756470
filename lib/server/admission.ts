/**
 * Admission control of the server's two allocation protocols: who may ask for a lease, and
 * how often. Checked before the allocation engine, after authentication.
 *
 * - **Rate limit per source prefix** (native and 4o6): a token bucket per host prefix
 *   (./../alloc/host_prefix.ts, default /64) of the datagram's source, `ratePerSecond`
 *   requests a second with `burst` saved up. The table holds at most `maxPrefixes` buckets
 *   and forgets the least recently used, so a sender cycling through source prefixes cannot
 *   grow memory; a forgotten prefix starts again with a full bucket. Over the limit a request
 *   is dropped without an answer (answering a flood is what the limit avoids).
 * - **DHCPv4-over-DHCPv6 allow list**: RFC 7341 has no authentication, so `--key` cannot
 *   protect it; a server that has keys only answers 4o6 hosts inside the allowed prefixes
 *   (or, explicitly, every host). Outside, the query is dropped.
 * - The engine's **lease caps per host prefix** (`prefix-limit`) and **per site prefix**
 *   (`site-limit`, ../alloc/prefix_caps.ts) are counted here as well, and its refusal of a
 *   host whose IPv6 address is a TEP's (`host6-is-tep`, ../alloc/allocator.ts).
 *
 * Every refusal is counted in `dstm_admission_refused_total{protocol, reason}` and logged at
 * warn, at most once per `logIntervalMs` per (protocol, reason), with how many were not logged.
 *
 * @module
 */
import { hostPrefixKey } from "../alloc/host_prefix.ts";
import { defaultSiteCap } from "../alloc/prefix_caps.ts";
import type { LogFields, Logger } from "../control/log.ts";
import type { Metrics } from "../control/metrics.ts";
import { parseIPv6 } from "../net/addr.ts";

export type AdmissionProtocol = "native" | "dhcp4o6";
export type AdmissionRefusal =
  | "rate-limit"
  | "prefix-limit"
  | "site-limit"
  | "not-allowed"
  | "host6-is-tep";

/**
 * The engine's refusals counted here (lib/alloc/engine_types.ts EngineFailure): the lease caps,
 * and a host whose IPv6 address is a TEP's (its binding would make the TEP tunnel to itself).
 */
export function isAdmissionRefusal(reason: string): reason is AdmissionRefusal {
  return reason === "prefix-limit" || reason === "site-limit" || reason === "host6-is-tep";
}

/** Defaults of `dstm server` (see README: the server flags). */
export const ADMISSION_DEFAULTS = {
  /** Leases one host prefix may hold: more than one machine needs, 6% of a /24 pool. */
  maxLeasesPerPrefix: 16,
  hostPrefixLength: 64,
  /** Requests per second per source prefix, sustained. */
  ratePerSecond: 10,
  /** Requests per source prefix at once: a link's worth of hosts booting together. */
  burst: 100,
  maxPrefixes: 65_536,
  logIntervalMs: 10_000,
} as const;

/** The server option that sets the cap a refusal met (named in its warn line). */
const LIMIT_FLAGS: Partial<Record<AdmissionRefusal, string>> = {
  "prefix-limit": "--max-leases-per-prefix",
  "site-limit": "--max-leases-per-site",
};

/**
 * `--max-leases-per-site`, or its default from `--max-leases-per-prefix`
 * (../alloc/prefix_caps.ts): 64 with the defaults, 0 (off) when the per-prefix cap is off.
 */
export function siteCap(
  settings:
    | { readonly maxLeasesPerSite?: number; readonly maxLeasesPerPrefix?: number }
    | undefined,
): number {
  return (
    settings?.maxLeasesPerSite ??
    defaultSiteCap(settings?.maxLeasesPerPrefix ?? ADMISSION_DEFAULTS.maxLeasesPerPrefix)
  );
}

export interface AdmissionOptions {
  readonly metrics: Metrics;
  readonly log: Logger;
  /** Host prefix length (bits) of the rate limit. */
  readonly hostPrefixLength?: number;
  /** Requests per second per source prefix; 0: no rate limit. */
  readonly ratePerSecond?: number;
  readonly burst?: number;
  /** Most source prefixes tracked at once (least recently used forgotten). */
  readonly maxPrefixes?: number;
  /** IPv6 prefixes (`2001:db8:4::/64`) whose hosts may use DHCPv4-over-DHCPv6; absent: all. */
  readonly dhcp4o6Allow?: readonly string[];
  /**
   * IPv6 prefixes of the DHCPv6 relays (`--dhcp4o6-relay`): only they may send RELAY-FORW.
   * Absent: any source inside `dhcp4o6Allow` may (any source without it), so a host in the
   * list can name another host as peer-address (docs/security.md).
   */
  readonly dhcp4o6Relays?: readonly string[];
  /** Monotonic clock (ms) for the buckets and the log limit; default performance.now(). */
  readonly now?: () => number;
  readonly logIntervalMs?: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/** An IPv6 prefix as 16 bytes + length. */
export interface IPv6Prefix {
  readonly bytes: Uint8Array;
  readonly length: number;
}

/** Parses `2001:db8::/48`; null when it is not an IPv6 prefix. */
export function parseIPv6Prefix(text: string): IPv6Prefix | null {
  const slash = text.indexOf("/");
  if (slash < 0) return null;
  const length = Number(text.slice(slash + 1));
  const bytes = parseIPv6(text.slice(0, slash));
  if (!bytes || !/^\d{1,3}$/.test(text.slice(slash + 1)) || length > 128) return null;
  return { bytes, length };
}

/** True when `address` (16 bytes) is inside `prefix`. */
export function ipv6PrefixContains(prefix: IPv6Prefix, address: Uint8Array): boolean {
  let bits = prefix.length;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if (((prefix.bytes[i]! ^ address[i]!) & mask) !== 0) return false;
  }
  return true;
}

export class Admission {
  readonly #o: AdmissionOptions;
  readonly #now: () => number;
  readonly #length: number;
  #rate: number;
  #burst: number;
  readonly #maxPrefixes: number;
  readonly #allow: IPv6Prefix[] | undefined;
  readonly #relays: IPv6Prefix[] | undefined;
  readonly #buckets = new Map<string, Bucket>();
  /** (protocol reason) → when last logged, and how many refusals since were not. */
  readonly #logged = new Map<string, { at: number; suppressed: number }>();

  /** Throws RangeError on a bad setting (a prefix that does not parse, a negative rate). */
  constructor(options: AdmissionOptions) {
    this.#o = options;
    this.#now = options.now ?? (() => performance.now());
    this.#length = options.hostPrefixLength ?? ADMISSION_DEFAULTS.hostPrefixLength;
    this.#rate = options.ratePerSecond ?? 0;
    this.#burst = options.burst ?? ADMISSION_DEFAULTS.burst;
    this.#maxPrefixes = options.maxPrefixes ?? ADMISSION_DEFAULTS.maxPrefixes;
    if (!(this.#rate >= 0) || !(this.#burst >= 1)) {
      throw new RangeError(`rate ${this.#rate}/s, burst ${this.#burst}: need rate ≥ 0, burst ≥ 1`);
    }
    const prefixes = (list: readonly string[] | undefined) =>
      list?.map((text) => {
        const prefix = parseIPv6Prefix(text);
        if (!prefix) throw new RangeError(`"${text}" is not an IPv6 prefix (e.g. 2001:db8:4::/64)`);
        return prefix;
      });
    this.#allow = prefixes(options.dhcp4o6Allow);
    this.#relays = prefixes(options.dhcp4o6Relays);
    options.metrics.counter(
      "dstm_admission_refused_total",
      "Requests refused before or by allocation: rate-limit (per source prefix), prefix-limit (leases per host prefix), site-limit (leases per site prefix), not-allowed (4o6 source outside --dhcp4o6-allow), host6-is-tep (the host's IPv6 address is a TEP's), by protocol",
      ["protocol", "reason"],
    );
  }

  /**
   * New rate limit (configuration reload): `ratePerSecond` requests a second per source
   * prefix (0: off), `burst` at once (≥ 1); buckets keep their tokens, capped at the new
   * burst. Throws RangeError on a bad value and keeps the old one.
   */
  setRate(ratePerSecond: number, burst: number): void {
    if (!(ratePerSecond >= 0) || !(burst >= 1))
      throw new RangeError(`rate ${ratePerSecond}/s, burst ${burst}: need rate ≥ 0, burst ≥ 1`);
    this.#rate = ratePerSecond;
    this.#burst = burst;
  }

  /**
   * May this datagram from `source` (IPv6 text) go on? Counts and logs a refusal. For 4o6 the
   * allow list is checked first, so a source outside it costs no bucket.
   */
  admit(protocol: AdmissionProtocol, source: string): boolean {
    if (protocol === "dhcp4o6" && this.#allow) {
      const bytes = parseIPv6(source);
      if (!bytes || !this.#allow.some((p) => ipv6PrefixContains(p, bytes))) {
        this.refused(protocol, "not-allowed", { from: source });
        return false;
      }
    }
    if (this.#rate === 0) return true;
    const key = hostPrefixKey(source, this.#length);
    const now = this.#now();
    let bucket = this.#buckets.get(key);
    if (bucket) {
      this.#buckets.delete(key); // re-inserted below: the Map's order is least recently used first
      const elapsed = now - bucket.at;
      if (elapsed > 0) {
        bucket.tokens = Math.min(this.#burst, bucket.tokens + (elapsed * this.#rate) / 1000);
        bucket.at = now;
      }
    } else {
      if (this.#buckets.size >= this.#maxPrefixes) {
        const oldest = this.#buckets.keys().next().value as string;
        this.#buckets.delete(oldest);
      }
      bucket = { tokens: this.#burst, at: now };
    }
    this.#buckets.set(key, bucket);
    if (bucket.tokens < 1) {
      this.refused(protocol, "rate-limit", { from: source, prefix: key });
      return false;
    }
    bucket.tokens -= 1;
    return true;
  }

  /**
   * Is `relay` (IPv6 text), the source of a RELAY-FORW, inside `--dhcp4o6-relay`, or when that
   * is not given inside `--dhcp4o6-allow` (true when there is neither)? A refusal is counted and logged as `not-allowed`. No rate limit: one
   * relay speaks for many hosts, each limited by its own prefix in {@link admit}.
   */
  allowsRelay(relay: string): boolean {
    // RFC 8415 §19.1.1: the server believes a relay's peer-address; only a relay may say it.
    const list = this.#relays ?? this.#allow;
    if (!list) return true;
    const bytes = parseIPv6(relay);
    if (bytes && list.some((p) => ipv6PrefixContains(p, bytes))) return true;
    this.refused("dhcp4o6", "not-allowed", { relay });
    return false;
  }

  /** Counts a refusal and logs it at warn, rate-limited per (protocol, reason). */
  refused(protocol: AdmissionProtocol, reason: AdmissionRefusal, fields: LogFields): void {
    this.#o.metrics.inc("dstm_admission_refused_total", { protocol, reason });
    const id = `${protocol} ${reason}`;
    const now = this.#now();
    const last = this.#logged.get(id);
    const interval = this.#o.logIntervalMs ?? ADMISSION_DEFAULTS.logIntervalMs;
    if (last && now - last.at < interval) {
      last.suppressed++;
      return;
    }
    this.#o.log.warn("reject", {
      reason,
      protocol,
      ...fields,
      // The server option that sets the cap this request met.
      limit: LIMIT_FLAGS[reason],
      "not-logged": last?.suppressed || undefined,
    });
    this.#logged.set(id, { at: now, suppressed: 0 });
  }

  /** Source prefixes with a bucket now (at most maxPrefixes). */
  get trackedPrefixes(): number {
    return this.#buckets.size;
  }
}
