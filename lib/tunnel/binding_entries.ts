/**
 * Bindings as the control plane sees them (binding.ts has the table and why it is keyed by
 * (IPv4, PSID)): the `BindingEntry` shape, its errors, the checks `set` and `replaceAll` make
 * before anything changes, and reading every binding out of the shared maps. None of this is
 * on the per-packet path; all of it may allocate.
 *
 * @module
 */
import { formatIPv4 } from "../net/addr.ts";
import { bindingKey, formatPortSet, type PortSetValue, portSetProblem } from "../net/portset.ts";
import { B_WORDS, H_GEN, putWord, USED } from "./binding_slots.ts";

/** A binding as the control plane sees it. */
export interface BindingEntry {
  readonly ipv4: number;
  readonly portSet: PortSetValue;
  /** 16 bytes. */
  readonly host6: Uint8Array;
}

/** Thrown by `set` when maxEntries bindings are already stored. */
export class BindingTableFullError extends Error {
  override name = "BindingTableFullError";
}

/** Thrown by `set` when a binding's sharing rule differs from the other bindings of its address. */
export class BindingConflictError extends Error {
  override name = "BindingConflictError";
}

/** The sharing rule kept in the maps: psidLength | offset << 8, 0 for a whole address. */
export function sharingRule(portSet: PortSetValue): number {
  const k = portSet.psidLength;
  return k === 0 ? 0 : k | (portSet.offset << 8);
}

/** The PSID a binding is stored under: 0 for a whole address. */
export function storedPsid(portSet: PortSetValue): number {
  return portSet.psidLength === 0 ? 0 : portSet.psid;
}

/** Throws RangeError unless `ipv4` is an unsigned 32-bit number. */
export function checkBindingAddress(ipv4: number): void {
  if (!Number.isInteger(ipv4) || ipv4 < 0 || ipv4 > 0xffffffff) {
    throw new RangeError(`${ipv4} is not an IPv4 address (unsigned 32-bit number)`);
  }
}

/** A sharing rule in words, for error messages. */
export function ruleText(rule: number): string {
  const k = rule & 0xff;
  return k === 0 ? "all (not shared)" : `offset ${rule >>> 8}, PSID length ${k}`;
}

/**
 * Checks a snapshot as a whole before `replaceAll` touches the table: addresses, port sets,
 * 16-byte hosts, no (IPv4, PSID) twice, one sharing rule per address, at most `maxEntries`.
 * Returns the bindings by `bindingKey` and each address's rule; throws RangeError,
 * BindingConflictError or BindingTableFullError.
 */
export function checkSnapshot(
  entries: Iterable<BindingEntry>,
  maxEntries: number,
): { wanted: Map<number, BindingEntry>; rules: Map<number, number> } {
  const wanted = new Map<number, BindingEntry>();
  const rules = new Map<number, number>();
  for (const e of entries) {
    checkBindingAddress(e.ipv4);
    const problem = portSetProblem(e.portSet);
    if (problem !== null) {
      throw new RangeError(
        `${formatIPv4(e.ipv4)} port set ${formatPortSet(e.portSet)}: ${problem}`,
      );
    }
    if (e.host6.length !== 16) throw new RangeError(`${formatIPv4(e.ipv4)}: host6 needs 16 bytes`);
    const rule = sharingRule(e.portSet);
    const psid = storedPsid(e.portSet);
    const id = bindingKey(e.ipv4, psid);
    if (wanted.has(id)) {
      throw new RangeError(`${formatIPv4(e.ipv4)} PSID ${psid} appears twice in the snapshot`);
    }
    const other = rules.get(e.ipv4);
    if (other !== undefined && other !== rule) {
      throw new BindingConflictError(
        `${formatIPv4(e.ipv4)} has port sets ${ruleText(other)} and ${ruleText(rule)} in the snapshot`,
      );
    }
    rules.set(e.ipv4, rule);
    wanted.set(id, e);
  }
  if (wanted.size > maxEntries) {
    throw new BindingTableFullError(
      `snapshot has ${wanted.size} bindings, the table holds ${maxEntries}`,
    );
  }
  return { wanted, rules };
}

/**
 * Every binding in the binding map of `w` (`capacity` slots from word `bindBase`), each slot
 * read under its seqlock and the whole walk retried while a compaction overlaps it; sorted by
 * address then PSID.
 */
export function readBindings(w: Int32Array, capacity: number, bindBase: number): BindingEntry[] {
  const out: BindingEntry[] = [];
  for (;;) {
    const gen = Atomics.load(w, H_GEN);
    if ((gen & 1) !== 0) continue;
    out.length = 0;
    for (let i = 0; i < capacity; i++) {
      const s = bindBase + i * B_WORDS;
      let seq: number;
      let meta: number;
      let key: number;
      let rule: number;
      const host6 = new Uint8Array(16);
      do {
        seq = Atomics.load(w, s);
        key = Atomics.load(w, s + 1);
        meta = Atomics.load(w, s + 2);
        rule = Atomics.load(w, s + 3);
        for (let j = 0; j < 4; j++) putWord(host6, 4 * j, Atomics.load(w, s + 4 + j));
      } while ((seq & 1) !== 0 || Atomics.load(w, s) !== seq);
      if ((meta & 3) !== USED) continue;
      const psidLength = rule & 0xff;
      out.push({
        ipv4: key >>> 0,
        portSet: { offset: rule >>> 8, psidLength, psid: meta >>> 16 },
        host6,
      });
    }
    if (Atomics.load(w, H_GEN) === gen) break;
  }
  return out.sort((x, y) => x.ipv4 - y.ipv4 || x.portSet.psid - y.portSet.psid);
}
