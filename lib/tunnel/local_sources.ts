/**
 * The host's own IPv4 addresses, as inner sources the DSTM client's inbound path refuses
 * (pipeline_client.ts clientDecap, `client-decap-drop-local-source`).
 *
 * Why: with `--kernel-encap` the DTI has `accept_local=1` (and `rp_filter=0`), which the
 * kernel needs to take the Worker's checked packets (source: the leased address, a local one)
 * back from the DTI (lib/client/kernel_encap.ts). The decapsulated packets the inbound Worker
 * writes into the same DTI get that setting too: without this check the kernel would deliver
 * a packet from the TEP (or from an on-link neighbour spoofing it) whose inner source is one
 * of the host's own addresses — the leased one, or one on another LAN — where, with
 * `accept_local=0`, it dropped it as a martian source. Likewise the broadcast address of one
 * of the host's subnets (accept_local skips the kernel's source lookup, which refused it):
 * an echo request "from" 203.0.113.255 made the host broadcast its echo reply onto that LAN
 * (without `--kernel-encap` too, where rp_filter is 0 and the host has no policy rules: the
 * kernel then checks only that the source is not one of its addresses).
 * The inbound Worker's copy of the list
 * is re-read from the kernel when it says an IPv4 address changed (rtnetlink notifications),
 * before the packets read after the change are checked; once a second when notifications
 * are unavailable (lib/dataplane/local_sources_follower.ts).
 *
 * The list is sorted; {@link LocalSources.has} is a binary search and allocates nothing.
 * {@link LocalSources.set} (on a change only) may swap in a larger array.
 *
 * @module
 */

/** A sorted set of IPv4 addresses (u32, host byte order). */
export class LocalSources {
  #list = new Uint32Array(16);
  #count = 0;

  /** How many addresses the set holds. */
  get size(): number {
    return this.#count;
  }

  /** Replaces the set with `addresses` (u32 each; duplicates are fine). Not per packet. */
  set(addresses: readonly number[]): void {
    const sorted = Uint32Array.from(addresses, (a) => a >>> 0).sort();
    if (sorted.length > this.#list.length) this.#list = new Uint32Array(sorted.length * 2);
    let n = 0;
    for (let i = 0; i < sorted.length; i++)
      if (n === 0 || sorted[i] !== this.#list[n - 1]) this.#list[n++] = sorted[i]!;
    this.#count = n;
  }

  /** True when `address` (u32) is one of the host's. */
  has(address: number): boolean {
    const list = this.#list;
    const a = address >>> 0;
    let lo = 0;
    let hi = this.#count - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const m = list[mid]!;
      if (m === a) return true;
      if (m < a) lo = mid + 1;
      else hi = mid - 1;
    }
    return false;
  }
}
