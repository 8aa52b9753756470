/**
 * The TEP's binding table: which IPv6 host owns an IPv4 address, or a port set of one.
 *
 * ## What a binding is
 *
 * A binding says "IPv4 address `a` (or the part of its port space named by PSID `p`) is
 * tunnelled to IPv6 host `h`". The TEP consults it twice per packet pair. Going out
 * (decapsulation), the packet arrived in IPv6 from `h'` carrying an IPv4 packet from `a`,
 * port `x`: the binding for `(a, psid(x))` must name `h'`, otherwise the host is using an
 * address or ports it was never given and the packet is dropped and counted (RFC 7596 §5.2,
 * RFC 7597 §8.1: "silently discard"). Coming back (encapsulation), an IPv4 packet for `a`,
 * port `y`, is sent in IPv6 to the host of the binding for `(a, psid(y))`.
 *
 * ## Why the key is (IPv4, PSID)
 *
 * The paper's DSTM leases whole addresses, but its `allocated_port` field and the later
 * draft-ietf-dhc-dhcpv6-opt-dstm-ports let several hosts share one IPv4 address, each with
 * its own slice of the 16-bit port space. RFC 7597 §5.1 names the slices: with offset bits `a`
 * and PSID length `k` (m = 16 − a − k), the port set of PSID `p` is every port
 * `(A << (16 − a)) | (p << m) | j` with 0 < A < 2^a and 0 ≤ j < 2^m. The low 2^(16−a) ports
 * (A = 0) belong to nobody, which keeps the well-known ports out of every set. Reading a port
 * the other way gives its PSID in two shifts and a mask: `(port >> m) & (2^k − 1)`.
 * A binding is therefore keyed by (IPv4, PSID); an address that is not shared has PSID length
 * 0 and its single binding has PSID 0. To turn (IPv4, port) into (IPv4, PSID) the table first
 * needs the address's sharing rule (a, k), so it keeps a second, smaller map from IPv4 to
 * rule. All bindings of one address share one rule; changing the rule means deleting the
 * address's bindings first (`replaceAll` does that for a snapshot).
 *
 * ## Where bindings come from
 *
 * Only from the DSTM server, over the control channel, before the server answers the
 * client, and removed when the lease ends (a restarted TEP receives a full snapshot:
 * `replaceAll`). The TEP never learns a binding from a data packet. Early DSTM let the TEP
 * learn the mapping from the encapsulated traffic itself, and then any host could claim
 * another host's IPv4 address by sending packets with it, hijacking its tunnel. Here a data
 * packet can only be checked against the table, never change it.
 *
 * ## Layout and concurrency
 *
 * One writer (the control thread) and many readers (the decapsulation and encapsulation
 * Workers, which `attach` the same SharedArrayBuffer). Both maps are open-addressing hash
 * tables with linear probing in one SharedArrayBuffer; their capacity is fixed at creation
 * (a power of two ≥ 2 × maxEntries, so the load factor stays ≤ 1/2) and never rehashed into
 * a new buffer, so the Workers can keep their view forever. Entries never move: a deleted
 * slot becomes a tombstone (probes go on past it; inserts reuse it) and turns back into an
 * empty slot when the slot after it is empty. Should tombstones still pile up past 1/4 of a
 * table, the writer compacts it in place under a table-wide generation count that readers
 * check (they wait the few milliseconds it takes; it happens only after heavy churn).
 *
 * Every slot has a sequence number (a seqlock): the writer makes it odd, writes the slot,
 * makes it even; a reader reads the sequence, the slot, and the sequence again, and reads the
 * slot again if the sequence was odd or changed. A reader therefore never sees half of an
 * IPv6 address, and a lookup allocates nothing. The layout, the probe loops and why plain
 * loads between the two atomic sequence loads are safe are in binding_slots.ts.
 *
 * @module
 */
import { formatIPv4 } from "../net/addr.ts";
import { bindingKey, formatPortSet, type PortSetValue, portSetProblem } from "../net/portset.ts";
import {
  BindingConflictError,
  type BindingEntry,
  BindingTableFullError,
  checkBindingAddress,
  checkSnapshot,
  readBindings,
  ruleText,
  sharingRule,
  storedPsid,
} from "./binding_entries.ts";
import {
  A_WORDS,
  B_WORDS,
  bindingBase,
  bury,
  fillAddressSlot,
  fillBindingSlot,
  findAddressSlot,
  findBindingSlot,
  freeSlot,
  H_ADDR_TOMBS,
  H_ADDRESSES,
  H_BIND_TOMBS,
  H_CAPACITY,
  H_GEN,
  H_LAYOUT,
  H_MAGIC,
  H_MAX,
  H_SIZE,
  H_WRITES,
  HEADER_WORDS,
  hashAddress,
  hashBinding,
  LAYOUT_VERSION,
  LookupStatus,
  MAGIC,
  probe,
  readWord,
  writeBindingHost,
} from "./binding_slots.ts";

export { BindingConflictError, type BindingEntry, BindingTableFullError, LookupStatus };

/** Largest maxEntries accepted (the buffer is 96 bytes per entry: 400 MB here). */
export const MAX_BINDINGS = 1 << 22;

/**
 * The binding table. Create it on the control thread with `BindingTable.create`, hand
 * `buffer` to each Worker, which calls `BindingTable.attach(buffer)`.
 *
 * @example
 * const table = BindingTable.create({ maxEntries: 65536 });
 * table.set(parseIPv4("198.51.100.7")!, { offset: 0, psidLength: 0, psid: 0 }, host6);
 * table.lookupHost(parseIPv4("198.51.100.7")!, 443, out16, 0); // true, out16 = host6
 */
export class BindingTable {
  /** The shared memory holding the whole table. */
  readonly buffer: SharedArrayBuffer;
  /** Slots per map (a power of two). */
  readonly capacity: number;
  /** Most bindings `set` accepts. */
  readonly maxEntries: number;
  private readonly w: Int32Array;
  private readonly mask: number;
  private readonly bindBase: number;

  private constructor(buffer: SharedArrayBuffer) {
    const w = new Int32Array(buffer);
    if (w.length < HEADER_WORDS || w[H_MAGIC] !== MAGIC || w[H_LAYOUT] !== LAYOUT_VERSION) {
      throw new TypeError("not a binding table buffer (made by BindingTable.create)");
    }
    this.buffer = buffer;
    this.w = w;
    this.capacity = w[H_CAPACITY]!;
    this.maxEntries = w[H_MAX]!;
    this.mask = this.capacity - 1;
    this.bindBase = bindingBase(this.capacity);
  }

  /**
   * A new, empty table for up to `maxEntries` bindings (1 … MAX_BINDINGS).
   *
   * @example BindingTable.create({ maxEntries: 65536 }).capacity // 131072
   */
  static create(options: { maxEntries: number }): BindingTable {
    const { maxEntries } = options;
    if (!Number.isInteger(maxEntries) || maxEntries < 1 || maxEntries > MAX_BINDINGS) {
      throw new RangeError(`maxEntries ${maxEntries} is not 1–${MAX_BINDINGS}`);
    }
    let capacity = 16;
    while (capacity < 2 * maxEntries) capacity *= 2;
    const words = HEADER_WORDS + (A_WORDS + B_WORDS) * capacity;
    const buffer = new SharedArrayBuffer(words * 4);
    const w = new Int32Array(buffer);
    w[H_MAGIC] = MAGIC;
    w[H_LAYOUT] = LAYOUT_VERSION;
    w[H_CAPACITY] = capacity;
    w[H_MAX] = maxEntries;
    return new BindingTable(buffer);
  }

  /**
   * A view of a table created elsewhere (in another Worker). Readers use `lookupHost`,
   * `matchesHost`, `match`, `find`; only the creating thread should write.
   *
   * @example const table = BindingTable.attach(workerData.bindings);
   */
  static attach(buffer: SharedArrayBuffer): BindingTable {
    return new BindingTable(buffer);
  }

  /** Number of bindings. */
  get size(): number {
    return Atomics.load(this.w, H_SIZE);
  }

  /** Number of distinct IPv4 addresses with at least one binding. */
  get addressCount(): number {
    return Atomics.load(this.w, H_ADDRESSES);
  }

  /**
   * Changes made to the table so far (a set that changed something, a delete that removed
   * something; one atomic read): an answer looked up while it had one value is still the
   * table's answer while it has that value (batch_lookups.ts).
   */
  get writes(): number {
    return Atomics.load(this.w, H_WRITES);
  }

  /** Tombstones in the binding map (for tests and metrics). */
  get tombstones(): number {
    return Atomics.load(this.w, H_BIND_TOMBS);
  }

  // ---------------------------------------------------------------- readers (per packet)

  /**
   * Looks up the host of (ipv4, port) and copies its IPv6 address to `out[outOffset..+16)`.
   * `port` is the packet's port on the host's side (or −1 when it has none; see l4.ts); it
   * only matters when the address is shared. Returns a LookupStatus; allocation-free.
   *
   * @example if (table.find(dst, port, host6, 0) === LookupStatus.FOUND) send(host6)
   */
  find(ipv4: number, port: number, out: Uint8Array, outOffset: number): LookupStatus {
    const w = this.w;
    for (;;) {
      const gen = Atomics.load(w, H_GEN);
      if ((gen & 1) === 0) {
        const status = probe(w, this.mask, this.bindBase, ipv4 | 0, port, out, outOffset, false);
        // A hit is a binding that existed during the lookup, compaction or not (compaction
        // only moves live bindings). A miss counts only if no compaction overlapped it.
        if (status === LookupStatus.FOUND || Atomics.load(w, H_GEN) === gen) {
          return status as LookupStatus;
        }
      }
    }
  }

  /**
   * Checks that (ipv4, port) is bound to the host whose IPv6 address is at `src6[offset]`.
   * Returns FOUND, NO_ADDRESS, NO_PORT_SET or OTHER_HOST; allocation-free.
   *
   * @example table.match(innerSrc, srcPort, outerSrc6, 0) === LookupStatus.FOUND
   */
  match(ipv4: number, port: number, src6: Uint8Array, offset: number): LookupStatus {
    const w = this.w;
    for (;;) {
      const gen = Atomics.load(w, H_GEN);
      if ((gen & 1) === 0) {
        const status = probe(w, this.mask, this.bindBase, ipv4 | 0, port, src6, offset, true);
        if (status === LookupStatus.FOUND || Atomics.load(w, H_GEN) === gen) {
          return status as LookupStatus;
        }
      }
    }
  }

  /** `find(...) === FOUND`: copies the host IPv6 address to `out16[outOffset..+16)`. */
  lookupHost(ipv4: number, port: number, out16: Uint8Array, outOffset: number): boolean {
    return this.find(ipv4, port, out16, outOffset) === LookupStatus.FOUND;
  }

  /** `match(...) === FOUND`: (ipv4, port) is bound to the host at `src6[offset..+16)`. */
  matchesHost(ipv4: number, port: number, src6: Uint8Array, offset: number): boolean {
    return this.match(ipv4, port, src6, offset) === LookupStatus.FOUND;
  }

  // ---------------------------------------------------------------- writer (control thread)

  /**
   * Adds or replaces the binding (ipv4, portSet.psid) → host6. Throws RangeError for a bad
   * port set or address, BindingConflictError when the address already has bindings under
   * another sharing rule, BindingTableFullError beyond maxEntries. Returns "added",
   * "updated" (new host) or "unchanged".
   *
   * @example table.set(ip, { offset: 6, psidLength: 6, psid: 17 }, host6)
   */
  set(
    ipv4: number,
    portSet: PortSetValue,
    host6: Uint8Array,
    host6Offset = 0,
  ): "added" | "updated" | "unchanged" {
    checkBindingAddress(ipv4);
    const problem = portSetProblem(portSet);
    if (problem !== null) throw new RangeError(`port set ${formatPortSet(portSet)}: ${problem}`);
    if (host6Offset < 0 || host6.length < host6Offset + 16) {
      throw new RangeError("host6 needs 16 bytes");
    }
    const rule = sharingRule(portSet);
    const psid = storedPsid(portSet);
    const key = ipv4 | 0;
    const w = this.w;

    const addr = findAddressSlot(w, this.mask, key);
    if (addr >= 0) {
      const oldRule = w[addr + 2]! >>> 8;
      if (oldRule !== rule) {
        throw new BindingConflictError(
          `${formatIPv4(ipv4)} is bound with port sets ${ruleText(oldRule)}, not ${ruleText(rule)}: delete those bindings first`,
        );
      }
    }
    const h0 = readWord(host6, host6Offset);
    const h1 = readWord(host6, host6Offset + 4);
    const h2 = readWord(host6, host6Offset + 8);
    const h3 = readWord(host6, host6Offset + 12);

    const found = findBindingSlot(w, this.mask, this.bindBase, key, psid);
    if (found >= 0) {
      if (
        w[found + 4] === h0 &&
        w[found + 5] === h1 &&
        w[found + 6] === h2 &&
        w[found + 7] === h3
      ) {
        return "unchanged";
      }
      writeBindingHost(w, found, h0, h1, h2, h3);
      Atomics.add(w, H_WRITES, 1);
      return "updated";
    }
    if (this.size >= this.maxEntries) {
      throw new BindingTableFullError(
        `binding table is full (${this.maxEntries} bindings): start the TEP with a larger table`,
      );
    }
    // Binding first, then the address: a reader that sees the rule also sees the binding.
    const slot = freeSlot(w, this.mask, this.bindBase, B_WORDS, hashBinding(key, psid));
    if (slot < 0) throw new BindingTableFullError("binding table has no free slot");
    fillBindingSlot(w, slot, key, psid, rule, h0, h1, h2, h3);

    if (addr >= 0) {
      w[addr + 3]! += 1; // refcount: only the writer reads it
    } else {
      const a = freeSlot(w, this.mask, HEADER_WORDS, A_WORDS, hashAddress(key));
      if (a < 0) {
        Atomics.add(w, H_WRITES, 1); // the binding slot above is written
        throw new BindingTableFullError("binding table has no free address slot");
      }
      fillAddressSlot(w, a, key, rule);
    }
    Atomics.add(w, H_WRITES, 1);
    this._compactIfNeeded();
    return "added";
  }

  /**
   * Removes the binding (ipv4, psid) (psid 0 for an address that is not shared). Returns
   * false when there was none.
   *
   * @example table.delete(ip, 17)
   */
  delete(ipv4: number, psid: number): boolean {
    const key = ipv4 | 0;
    const w = this.w;
    const slot = findBindingSlot(w, this.mask, this.bindBase, key, psid);
    if (slot < 0) return false;
    bury(w, this.mask, this.bindBase, B_WORDS, slot, H_BIND_TOMBS);
    Atomics.sub(w, H_SIZE, 1);
    const addr = findAddressSlot(w, this.mask, key);
    if (addr >= 0) {
      w[addr + 3]! -= 1;
      if (w[addr + 3] === 0) {
        bury(w, this.mask, HEADER_WORDS, A_WORDS, addr, H_ADDR_TOMBS);
        Atomics.sub(w, H_ADDRESSES, 1);
      }
    }
    Atomics.add(w, H_WRITES, 1);
    return true;
  }

  /**
   * Makes the table hold exactly `entries` (a snapshot from the DSTM server), touching only
   * what differs, so that packets of unchanged bindings keep flowing. Everything is checked
   * before anything changes: duplicate keys, bad port sets, two rules for one address or
   * more than maxEntries throw and leave the table as it was.
   *
   * @example table.replaceAll(snapshot) // { added: 3, updated: 0, removed: 1 }
   */
  replaceAll(entries: Iterable<BindingEntry>): { added: number; updated: number; removed: number } {
    const { wanted, rules } = checkSnapshot(entries, this.maxEntries);
    let removed = 0;
    for (const e of this.entries()) {
      const psid = storedPsid(e.portSet);
      const want = rules.get(e.ipv4);
      if (!wanted.has(bindingKey(e.ipv4, psid)) || want !== sharingRule(e.portSet)) {
        this.delete(e.ipv4, psid);
        removed++;
      }
    }
    let added = 0;
    let updated = 0;
    for (const e of wanted.values()) {
      const result = this.set(e.ipv4, e.portSet, e.host6);
      if (result === "added") added++;
      else if (result === "updated") updated++;
    }
    return { added, updated, removed };
  }

  /**
   * Every binding, sorted by address then PSID (new objects; for snapshots, `lease ls`-style
   * views and tests, not per packet).
   */
  entries(): BindingEntry[] {
    return readBindings(this.w, this.capacity, this.bindBase);
  }

  /** The binding (ipv4, psid), or undefined. Allocates; not for the per-packet path. */
  get(ipv4: number, psid: number): BindingEntry | undefined {
    return this.entries().find((e) => e.ipv4 === ipv4 >>> 0 && e.portSet.psid === psid);
  }

  /**
   * Rebuilds both maps in place without tombstones. Readers wait (spin) while it runs. `set`
   * calls it when tombstones fill a quarter of a map; public for tests and operators.
   */
  compact(): void {
    const w = this.w;
    const live = this.entries();
    Atomics.add(w, H_GEN, 1); // odd: readers wait
    try {
      w.fill(0, HEADER_WORDS);
      Atomics.store(w, H_SIZE, 0);
      Atomics.store(w, H_ADDRESSES, 0);
      Atomics.store(w, H_BIND_TOMBS, 0);
      Atomics.store(w, H_ADDR_TOMBS, 0);
      for (const e of live) this.set(e.ipv4, e.portSet, e.host6);
    } finally {
      Atomics.add(w, H_GEN, 1);
    }
  }

  private _compactIfNeeded(): void {
    const w = this.w;
    const limit = this.capacity >>> 2;
    if ((Atomics.load(w, H_GEN) & 1) !== 0) return; // already compacting
    if (w[H_BIND_TOMBS]! > limit || w[H_ADDR_TOMBS]! > limit) this.compact();
  }
}
