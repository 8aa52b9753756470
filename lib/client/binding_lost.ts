/**
 * When a DSTM client renews early because its TEP says the lease's binding is gone (ICMPv6
 * 1/5 from the TEP about the leased source, lib/dataplane/client_lease.ts): at most once per
 * {@link BINDING_LOST_RENEW_MS}, so that errors (forged ones from the TEP's address too)
 * cannot make the client flood its server; the notices in between are counted and said with
 * the next `binding-lost` line. ./node.ts renews; a refusal then starts over with DISCOVER.
 *
 * {@link BindingLostNotices} takes the notices from wherever they come (the Workers, or the
 * raw ICMPv6 watch of ./kernel_binding_watch.ts for the kernel DTIs), says them and asks for
 * the renewal.
 *
 * @module
 */
import type { Logger } from "../control/log.ts";
import { formatIPv4, parseIPv6 } from "../net/addr.ts";
import type { Counters } from "../tunnel/counters.ts";
import { KernelBindingWatch } from "./kernel_binding_watch.ts";

/** A binding-lost notice renews at most once per this many ms. */
export const BINDING_LOST_RENEW_MS = 10_000;

export class BindingLostGate {
  #at = Number.NEGATIVE_INFINITY;
  #suppressed = 0;

  /**
   * A notice at `now` (ms): undefined when it comes within BINDING_LOST_RENEW_MS of the last
   * renewal it allowed (counted), else the notices left out since then (renew now).
   */
  take(now = Date.now()): { suppressed: number } | undefined {
    if (now - this.#at < BINDING_LOST_RENEW_MS) {
      this.#suppressed += 1;
      return undefined;
    }
    this.#at = now;
    const suppressed = this.#suppressed;
    this.#suppressed = 0;
    return { suppressed };
  }
}

/** The lease a notice is about: its address and TEP (text). */
export interface NoticedLease {
  readonly ipv4: number;
  readonly tep6: string;
}

export interface BindingLostHooks {
  readonly log: Logger;
  /** The lease in force (null while there is none). */
  readonly lease: () => NoticedLease | null;
  /** Whether a notice may renew now: bound, not stopping, not already renewing. */
  readonly bound: () => boolean;
  /** Renew now (./node.ts schedules the renewal at once). */
  readonly renewNow: () => void;
}

/** Binding-lost notices of one client: gated, said at warn, and turned into a renewal. */
export class BindingLostNotices {
  readonly #hooks: BindingLostHooks;
  readonly #gate = new BindingLostGate();
  #watch: KernelBindingWatch | undefined;

  constructor(hooks: BindingLostHooks) {
    this.#hooks = hooks;
  }

  /**
   * The TEP answered a packet from the leased address with ICMPv6 1/5 (it has no binding:
   * the lease was deleted at the server, the server lost it; lib/dataplane/client_lease.ts
   * checked it came from the TEP): renew now instead of at T1, at most once per 10 s; a
   * refusal then starts over with DISCOVER.
   */
  notice(): void {
    const lease = this.#hooks.lease();
    if (!lease || !this.#hooks.bound()) return;
    const allowed = this.#gate.take();
    if (!allowed) return;
    this.#hooks.log.warn("binding-lost", {
      ipv4: formatIPv4(lease.ipv4),
      tep6: lease.tep6,
      suppressed: allowed.suppressed || undefined,
      detail:
        "the TEP has no binding for this lease (ICMPv6 source address failed ingress/egress policy): renewing now",
    });
    this.#hooks.renewNow();
  }

  /**
   * With a kernel DTI (`--dti kernel|seg6|ip6tnl`) there are no Workers and no raw socket of
   * ours for the TEP's ICMPv6 1/5 to reach: a raw ICMPv6 socket watches for it
   * (./kernel_binding_watch.ts) and gives the same notice. (With `--kernel-encap` the inbound
   * Worker's raw socket for next header 4 gets the error about the kernel's packets too, so
   * it needs no watch.) Without CAP_NET_RAW it is said once at warn and the client waits for
   * T1, as before. `host6`: the host's address in force (text).
   */
  watchKernel(counters: Counters, host6: () => string): void {
    try {
      this.#watch = new KernelBindingWatch({
        counters,
        onLost: () => this.notice(),
        lease: () => {
          const lease = this.#hooks.lease();
          if (!lease) return null;
          const h6 = parseIPv6(host6());
          const tep6 = parseIPv6(lease.tep6);
          return h6 && tep6 ? { host6: h6, tep6, ipv4: lease.ipv4 } : null;
        },
      });
    } catch (error) {
      this.#hooks.log.warn("binding-watch-unavailable", {
        detail: `no raw ICMPv6 socket (${(error as Error).message}): a binding lost at the TEP is noticed at the next renewal`,
      });
    }
  }

  stop(): void {
    this.#watch?.stop();
  }
}
