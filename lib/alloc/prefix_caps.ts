/**
 * The lease caps of the allocation engine, by the IPv6 prefix of the host: a cap per host
 * prefix (default /64, one machine) and a cap per site prefix (default /56, one customer
 * site), each counting active leases (offers included) and refusing a **new** lease over it;
 * renewals are never refused.
 *
 * Why a site cap: the per-/64 cap and the per-/64 rate limit bound what one machine takes,
 * not how many /64s take leases. A sender that can choose its source address (a spoofer on
 * the link, without `--key`) used 17 /64s × 16 addresses to take a whole /24 (254 leases).
 * An ISP gives each customer site one prefix, a /56 or a /48 (RFC 6177, BCP 157), so the
 * /64s of one site share one cap: the default 64 leases per /56 (4 × the per-/64 cap) leaves a /24 with 190
 * addresses when one site's prefix is used up. Only authentication (`--key`) or source
 * address validation in the network (SAVI, RFC 7039) stops a sender that also spreads over
 * many sites (docs/security.md).
 *
 * @module
 */
import { hostPrefixKey, PrefixCounter } from "./host_prefix.ts";

/**
 * Defaults of `dstm server`: `--site-prefix-length`, and `--max-leases-per-site` as a multiple
 * of `--max-leases-per-prefix` (64 with its default 16; off when that cap is off, so a server
 * told that many hosts share one /64 does not meet a site cap below them).
 */
export const SITE_DEFAULTS = { sitePrefixLength: 56, perPrefixFactor: 4 } as const;

/** The default `--max-leases-per-site` for a `--max-leases-per-prefix` of `perPrefix` (0: off). */
export function defaultSiteCap(perPrefix: number): number {
  return perPrefix * SITE_DEFAULTS.perPrefixFactor;
}

export type PrefixCapReason = "prefix-limit" | "site-limit";

/** One cap: `max` active leases under each prefix of `counter.length` bits. */
interface Cap {
  readonly reason: PrefixCapReason;
  readonly max: number;
  readonly counter: PrefixCounter;
  readonly flag: string;
  readonly what: string;
  readonly unit: string;
}

/** The engine's caps; a cap of 0 is off (nothing counted). */
export class PrefixCaps {
  readonly #caps: Cap[] = [];

  /**
   * `perPrefix` leases per `/prefixLength` host prefix, `perSite` per `/siteLength` site
   * prefix (0: no cap). Throws RangeError on a negative or fractional cap or a length
   * outside 1–128.
   */
  constructor(perPrefix: number, prefixLength: number, perSite = 0, siteLength = 56) {
    for (const [n, name] of [
      [perPrefix, "max leases per prefix"],
      [perSite, "max leases per site"],
    ] as const) {
      if (!Number.isInteger(n) || n < 0)
        throw new RangeError(`${name} ${n}: must be a whole number (0: no cap)`);
    }
    if (perPrefix > 0) {
      this.#caps.push({
        reason: "prefix-limit",
        max: perPrefix,
        counter: new PrefixCounter(prefixLength),
        flag: "--max-leases-per-prefix",
        what: "host prefix",
        unit: "prefix",
      });
    }
    if (perSite > 0) {
      this.#caps.push({
        reason: "site-limit",
        max: perSite,
        counter: new PrefixCounter(siteLength),
        flag: "--max-leases-per-site",
        what: "site prefix",
        unit: "site",
      });
    }
  }

  /** An active lease of `host6` began (+1) or ended (-1). */
  add(host6: string, delta: 1 | -1): void {
    for (const cap of this.#caps) cap.counter.add(host6, delta);
  }

  /**
   * The first cap a new lease of `host6` would exceed, not counting the `held` lease(s) of the
   * host it replaces, with a message naming the prefix and the option; else undefined.
   */
  over(host6: string, held: number): { reason: PrefixCapReason; message: string } | undefined {
    for (const cap of this.#caps) {
      if (cap.counter.count(host6) - held < cap.max) continue;
      const prefix = hostPrefixKey(host6, cap.counter.length);
      return {
        reason: cap.reason,
        message: `${cap.what} ${prefix} holds ${cap.max} leases, the most one ${cap.unit} may hold (${cap.flag})`,
      };
    }
    return undefined;
  }
}
