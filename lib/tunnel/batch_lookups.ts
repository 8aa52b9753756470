/**
 * The binding lookups of the TEP's decapsulating loop, remembered within one batch (issue 14:
 * the two lookups per datagram, its source's binding and the hairpin check of its
 * destination, were a quarter of that loop's JavaScript at 64-byte UDP, `bun --cpu-prof` of
 * bench/tep_decap_micro.ts). A run of datagrams of one flow asks the same two questions
 * again and again; the answer of the last lookup is taken again while the table has not
 * changed since (BindingTable `writes`, one atomic read per datagram, read before the lookup
 * it tags), so every answer is the one the table would give at that moment, as one by one:
 *
 * - the source (RFC 7597 §8.1, the anti-spoofing check): only a FOUND answer is remembered,
 *   for exactly the same inner source address, source port and outer IPv6 source (all 16
 *   bytes compared): any other datagram (another host, a spoofed outer source, a port
 *   outside the set, no binding) is looked up in the table, and dropped and counted as
 *   before;
 * - the destination (the hairpin check): the answer for the same destination address, with
 *   the table as the same datagram's source lookup saw it (`match` first, then `find`).
 *
 * {@link BatchLookups.forget} at the start of every batch besides: nothing outlives its batch.
 *
 * Allocation-free.
 *
 * @module
 */
import { type BindingTable, LookupStatus } from "./binding.ts";
import { readWord } from "./binding_slots.ts";

/** Scratch for the hairpin lookup (its host is not needed; single-threaded per Worker). */
const _noHost = new Uint8Array(16);

/** See the module comment. One per Worker. */
export class BatchLookups {
  /** The table's `writes` at the current datagram's source lookup. */
  #now = 0;
  /** A FOUND source is remembered (this batch), and the table's `writes` it was found at. */
  #source = false;
  #sourceAt = 0;
  #src4 = 0;
  #port = 0;
  #w0 = 0;
  #w1 = 0;
  #w2 = 0;
  #w3 = 0;
  /** A destination is remembered (this batch), its answer, and the `writes` it was given at. */
  #destination = false;
  #destinationAt = 0;
  #dst4 = 0;
  #dstStatus: LookupStatus = LookupStatus.NO_ADDRESS;

  /** Forgets every answer: call it at the start of every batch. */
  forget(): void {
    this.#source = false;
    this.#destination = false;
  }

  /** `bindings.match(src4, port, src6, off)`, or its FOUND remembered (see the module comment). */
  match(
    bindings: BindingTable,
    src4: number,
    port: number,
    src6: Uint8Array,
    off: number,
  ): LookupStatus {
    const now = bindings.writes;
    this.#now = now;
    const w0 = readWord(src6, off);
    const w1 = readWord(src6, off + 4);
    const w2 = readWord(src6, off + 8);
    const w3 = readWord(src6, off + 12);
    if (
      this.#source &&
      now === this.#sourceAt &&
      src4 === this.#src4 &&
      port === this.#port &&
      w0 === this.#w0 &&
      w1 === this.#w1 &&
      w2 === this.#w2 &&
      w3 === this.#w3
    )
      return LookupStatus.FOUND;
    const status = bindings.match(src4, port, src6, off);
    if (status === LookupStatus.FOUND) {
      this.#source = true;
      this.#sourceAt = now;
      this.#src4 = src4;
      this.#port = port;
      this.#w0 = w0;
      this.#w1 = w1;
      this.#w2 = w2;
      this.#w3 = w3;
    }
    return status;
  }

  /**
   * `bindings.find(dst4, -1, …)` (is the destination bound at all?), or its answer remembered;
   * call it after {@link match} for the same datagram (whose read of `writes` it uses).
   */
  find(bindings: BindingTable, dst4: number): LookupStatus {
    const now = this.#now;
    if (this.#destination && now === this.#destinationAt && dst4 === this.#dst4)
      return this.#dstStatus;
    const status = bindings.find(dst4, -1, _noHost, 0);
    this.#destination = true;
    this.#destinationAt = now;
    this.#dst4 = dst4;
    this.#dstStatus = status;
    return status;
  }
}
