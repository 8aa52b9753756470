/**
 * The TEP's bindings as its control plane (control.ts) holds them, and the data plane's table
 * they make:
 *
 * - static bindings (`--binding V4=V6`, `--binding-file`), installed at start and changed only
 *   by a reload (static_reload.ts); they own their addresses, so the server may neither bind
 *   nor unbind those;
 * - the bindings the server manages, keyed by (IPv4, PSID) (lib/net/portset.ts `bindingKey`),
 *   with the digest SYNC reports (lib/wire/digest.ts: the sum of their hashes mod 2^32; static
 *   bindings are not in it, so a snapshot never removes them).
 *
 * Each managed binding keeps the GENERATION of the BIND that installed it (undefined when the
 * server sent none), and each slot an UNBIND freed keeps that UNBIND's generation for a while
 * (at most {@link UNBOUND_MARKS_MAX} slots, the oldest forgotten first): the order of BIND and
 * UNBIND of one binding, whichever server sent them (./binding_order.ts). A snapshot with a
 * cut generation keeps what the TEP learned after the cut ({@link TepBindings.loadSnapshot}).
 *
 * @module
 */
import { canonicalIPv6, parseIPv6 } from "../net/addr.ts";
import { bindingKey } from "../net/portset.ts";
import { bindingHash } from "../wire/digest.ts";
import type { WireBinding, WirePortSet } from "../wire/dstm_types.ts";
import { type BindOrder, bindOrder, type UnbindOrder, unbindOrder } from "./binding_order.ts";
import type { CompleteSnapshot } from "./snapshot_assembly.ts";
import { type StaticChange, staticChange } from "./static_reload.ts";

/** What the control plane needs from the data plane's binding table (single writer). */
export interface BindingWriter {
  set(ipv4: number, portSet: WirePortSet, host6: Uint8Array): void;
  delete(ipv4: number, psid: number): void;
  /** Atomically (for readers: entry by entry, never a torn entry) makes the table exactly `entries`. */
  replaceAll(entries: readonly { ipv4: number; portSet: WirePortSet; host6: Uint8Array }[]): void;
}

/**
 * Slots whose last UNBIND's generation is kept (about 50 bytes each: 3 MiB): a BIND sent
 * before that UNBIND and arriving after it is recognised while the slot is among the last
 * this many freed. Past it, such a BIND is applied as before and the next SYNC corrects it.
 */
export const UNBOUND_MARKS_MAX = 65_536;

/**
 * How long (ms) what the TEP learned from a BIND or UNBIND with a generation outranks what
 * is older: a BIND not newer than an UNBIND of its slot is ignored for this long after that
 * UNBIND came, and a snapshot keeps a binding or a freed slot newer than its cut when its
 * BIND or UNBIND came at most this long before the snapshot's first part (a server's cut, its
 * first part's arrival and a late message of another server are a SYNC period or two apart,
 * with lost parts asked for again). Past it the TEP is as before: should the store's numbers
 * ever go back (a lease database restored or created anew), nothing the TEP holds from before
 * outlives the next snapshot.
 */
export const GENERATION_WINDOW_MS = 10_000;

interface Entry {
  readonly binding: WireBinding;
  readonly host6: Uint8Array;
  readonly hash: number;
  /** GENERATION of the BIND that installed it; undefined: unknown. */
  readonly gen: number | undefined;
  /** When that BIND came (ms; meaningful only with `gen`). */
  readonly at: number;
}

/** The UNBIND that last freed a slot: its GENERATION and when it came (ms). */
interface Unbound {
  readonly gen: number;
  readonly at: number;
}

/** See the module comment. One per TEP. */
export class TepBindings {
  readonly #table: BindingWriter;
  #managed = new Map<number, Entry>();
  /** Slot key → the UNBIND that last freed it (insertion order: oldest first). */
  readonly #unbound = new Map<number, Unbound>();
  readonly #now: () => number;
  #static: Entry[];
  /** IPv4 addresses with a static binding: the server's messages may not touch them. */
  #staticAddresses: Set<number>;
  #digest = 0;

  /** `statics` are held from the start; {@link apply} installs them. `now`: clock (ms). */
  constructor(table: BindingWriter, statics: readonly WireBinding[], now: () => number = Date.now) {
    this.#table = table;
    this.#now = now;
    this.#static = statics.map((b) => entry(b));
    this.#staticAddresses = new Set(this.#static.map((e) => e.binding.host4));
  }

  /** Server-managed bindings held now. */
  get managedCount(): number {
    return this.#managed.size;
  }

  /** Static bindings held now. */
  get staticCount(): number {
    return this.#static.length;
  }

  /** The digest of the server-managed bindings (SYNC_STATE). */
  get digest(): number {
    return this.#digest;
  }

  /** True when `host4` has a static binding. */
  isStatic(host4: number): boolean {
    return this.#staticAddresses.has(host4);
  }

  /** True when the server-managed binding of `b`'s address and PSID is exactly `b` (host IPv6, port set). */
  holds(b: WireBinding): boolean {
    const held = this.#managed.get(bindingKey(b.host4, b.portSet.psid))?.binding;
    return held !== undefined && sameBinding(held, b);
  }

  /** True when a server-managed binding of `b`'s slot (IPv4 address and PSID) is held, whoever's. */
  held(b: WireBinding): boolean {
    return this.#managed.has(bindingKey(b.host4, b.portSet.psid));
  }

  /** Generation of the managed binding of `b`'s slot (undefined: none held, or unknown). */
  generation(b: WireBinding): number | undefined {
    return this.#managed.get(bindingKey(b.host4, b.portSet.psid))?.gen;
  }

  /** Whether a BIND of `b` with generation `gen` is applied (./binding_order.ts). */
  bindOrder(b: WireBinding, gen: number | undefined): BindOrder {
    const key = bindingKey(b.host4, b.portSet.psid);
    const unbound = this.#unbound.get(key);
    const recent =
      unbound && this.#now() - unbound.at <= GENERATION_WINDOW_MS ? unbound : undefined;
    return bindOrder(gen, this.#managed.get(key)?.gen, recent?.gen);
  }

  /** Whether an UNBIND of `b` with generation `gen` may apply (./binding_order.ts). */
  unbindOrder(b: WireBinding, gen: number | undefined): UnbindOrder {
    return unbindOrder(gen, this.#managed.get(bindingKey(b.host4, b.portSet.psid))?.gen);
  }

  /**
   * A server's BIND (generation `gen`, if it sent one): into the table, then into the managed
   * set; the slot's UNBIND mark is forgotten. Throws, changing nothing, when the table refuses
   * it (full, or a port-set layout that clashes with the address's others).
   */
  bind(binding: WireBinding, gen?: number): void {
    this.#table.set(binding.host4, binding.portSet, parseIPv6(binding.host6)!);
    this.#put(entry(binding, gen, this.#now()));
    this.#unbound.delete(bindingKey(binding.host4, binding.portSet.psid));
  }

  /**
   * A server's UNBIND (generation `gen`, if it sent one) of a binding it {@link holds}: out of
   * the managed set and the table; the slot is marked freed at `gen`.
   */
  unbind(binding: WireBinding, gen?: number): void {
    const { host4, portSet } = binding;
    this.#drop(host4, portSet.psid);
    this.#table.delete(host4, portSet.psid);
    this.markUnbound(binding, gen);
  }

  /**
   * Notes that an UNBIND of generation `gen` freed `binding`'s slot (kept the higher of two,
   * for the last {@link UNBOUND_MARKS_MAX} slots): a BIND not newer is then ignored. No
   * generation: nothing noted.
   */
  markUnbound(binding: WireBinding, gen: number | undefined): void {
    if (gen === undefined) return;
    const key = bindingKey(binding.host4, binding.portSet.psid);
    const was = this.#unbound.get(key);
    this.#unbound.delete(key);
    this.#unbound.set(key, {
      gen: was === undefined ? gen : Math.max(was.gen, gen),
      at: this.#now(),
    });
    if (this.#unbound.size > UNBOUND_MARKS_MAX) {
      const oldest = this.#unbound.keys().next().value;
      if (oldest !== undefined) this.#unbound.delete(oldest);
    }
  }

  /**
   * The managed bindings become exactly `snapshot`'s, then its later changes are applied on
   * top; its bindings on a static address are left out; and the data plane's table is made
   * static + those. A binding the snapshot holds as the TEP did keeps its generation (others:
   * unknown).
   *
   * A snapshot with a cut generation (`snapshot.generation`: every lease change up to it is in
   * the snapshot, docs/protocol.md "Generations") does not undo what the TEP learned after the
   * cut, from any server, also before the snapshot's first part came: a binding held with a
   * generation above the cut stays (a BIND the snapshot's server had not seen yet when it cut
   * it), and a slot an UNBIND above the cut freed stays free. Without one, as before: the
   * snapshot's bindings and the changes since its first part.
   *
   * Returns how many were left out. Throws what the table throws when it cannot hold them all
   * (full, or a port-set layout that clashes): then nothing changed, the table, the managed set
   * nor the digest, so SYNC still reports what the table holds and the server sees the drift
   * (before, the managed set and digest took the snapshot the table had refused, and SYNC said
   * in sync).
   */
  loadSnapshot(snapshot: CompleteSnapshot): number {
    const before = this.#managed;
    const digestBefore = this.#digest;
    this.#managed = new Map();
    this.#digest = 0;
    let refused = 0;
    try {
      for (const list of snapshot.bindings) {
        for (const b of list) {
          if (this.#staticAddresses.has(b.host4)) {
            refused++;
            continue;
          }
          const held = before.get(bindingKey(b.host4, b.portSet.psid));
          this.#put(held && sameBinding(held.binding, b) ? held : entry(b));
        }
      }
      const cut = snapshot.generation;
      if (cut !== undefined) {
        // Learned after the cut, shortly before the first part (GENERATION_WINDOW_MS).
        const since = (snapshot.startedAt ?? this.#now()) - GENERATION_WINDOW_MS;
        for (const held of before.values())
          if (held.gen !== undefined && held.gen > cut && held.at >= since) this.#put(held);
        for (const [key, { gen, at }] of this.#unbound) {
          const e = this.#managed.get(key);
          if (gen > cut && at >= since && e && (e.gen === undefined || e.gen <= gen))
            this.#drop(e.binding.host4, e.binding.portSet.psid);
        }
      }
      for (const change of snapshot.changes) {
        if (change.bind)
          this.#put(entry(change.binding, change.generation, change.at ?? this.#now()));
        else if (this.holds(change.binding))
          this.#drop(change.binding.host4, change.binding.portSet.psid);
      }
      this.apply();
    } catch (error) {
      this.#managed = before;
      this.#digest = digestBefore;
      throw error;
    }
    return refused;
  }

  /**
   * Reload of the static bindings (./static_reload.ts): the table holds `bindings` and the
   * server-managed bindings from now on. Throws, changing nothing, when one of `bindings`
   * takes an address the server has bound, or the table cannot hold them all.
   */
  replaceStatic(bindings: readonly WireBinding[]): StaticChange {
    const managed = [...this.#managed.values()];
    const change = staticChange(
      this.#static.map((e) => e.binding),
      bindings,
      managed.map((e) => e.binding),
    );
    const next = bindings.map((b) => entry(b));
    this.#table.replaceAll(tableEntries([...next, ...managed]));
    this.#static = next;
    this.#staticAddresses = new Set(next.map((e) => e.binding.host4));
    return change;
  }

  /**
   * Makes the data plane's table exactly static + managed. Throws what the table throws when
   * it cannot hold them all (it then applies none of them).
   */
  apply(): void {
    this.#table.replaceAll(tableEntries([...this.#static, ...this.#managed.values()]));
  }

  #put(e: Entry): void {
    this.#drop(e.binding.host4, e.binding.portSet.psid);
    this.#managed.set(bindingKey(e.binding.host4, e.binding.portSet.psid), e);
    this.#digest = (this.#digest + e.hash) >>> 0;
  }

  #drop(ipv4: number, psid: number): void {
    const key = bindingKey(ipv4, psid);
    const old = this.#managed.get(key);
    if (!old) return;
    this.#managed.delete(key);
    this.#digest = (this.#digest - old.hash) >>> 0;
  }
}

function entry(binding: WireBinding, gen?: number, at = 0): Entry {
  const host6 = parseIPv6(binding.host6)!;
  const { offset, psidLength, psid } = binding.portSet;
  const hash = bindingHash(binding.host4, host6, offset, psidLength, psid);
  return { binding, host6, hash, gen, at };
}

/** True when `a` and `b` are one binding: host IPv6 and port set alike. */
/**
 * Same host and port set. Equal strings first: the wire decoder writes every address in RFC
 * 5952 text, so a binding held and the same one again compare equal without parsing (a 1M
 * resync called canonicalIPv6 2M times, +2 s and +450 MiB at its peak: ver18).
 */
function sameBinding(a: WireBinding, b: WireBinding): boolean {
  return (
    (a.host6 === b.host6 ||
      (canonicalIPv6(a.host6) ?? a.host6) === (canonicalIPv6(b.host6) ?? b.host6)) &&
    a.portSet.offset === b.portSet.offset &&
    a.portSet.psidLength === b.portSet.psidLength &&
    a.portSet.psid === b.portSet.psid
  );
}

function tableEntries(entries: readonly Entry[]) {
  return entries.map((e) => ({
    ipv4: e.binding.host4,
    portSet: e.binding.portSet,
    host6: e.host6,
  }));
}
