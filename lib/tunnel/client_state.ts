/**
 * The lease as the DSTM client's forwarding Workers see it: a few words in a
 * SharedArrayBuffer written by the main thread (which talks to the server) and read by the
 * Workers at each packet. A new lease, or none, bumps `generation`; a Worker rebuilds its
 * per-lease context when it sees a new generation. Both Workers stamp `lastActivity`, which
 * the main thread reads to release an idle lease in on-demand mode.
 *
 * @module
 */
import type { PortSetValue } from "../net/portset.ts";

const GENERATION = 0;
const HAS_LEASE = 1;
const IPV4 = 2;
const OFFSET = 3;
const PSID_LENGTH = 4;
const PSID = 5;
const TEP6 = 6; // 4 words
const ACTIVITY = 10; // seconds since the epoch
const WORDS = 12;

export class ClientState {
  readonly buffer: SharedArrayBuffer;
  readonly #words: Int32Array;

  private constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer;
    this.#words = new Int32Array(buffer, 0, WORDS);
  }

  static create(): ClientState {
    return new ClientState(new SharedArrayBuffer(WORDS * 4));
  }

  static attach(buffer: SharedArrayBuffer): ClientState {
    return new ClientState(buffer);
  }

  /** Main thread: the Workers use this lease from their next packet on. */
  setLease(ipv4: number, portSet: PortSetValue | undefined, tep6: Uint8Array): void {
    const w = this.#words;
    Atomics.store(w, HAS_LEASE, 0);
    Atomics.store(w, IPV4, ipv4 | 0);
    Atomics.store(w, OFFSET, portSet?.offset ?? 0);
    Atomics.store(w, PSID_LENGTH, portSet?.psidLength ?? 0);
    Atomics.store(w, PSID, portSet?.psid ?? 0);
    const view = new DataView(tep6.buffer, tep6.byteOffset, 16);
    for (let i = 0; i < 4; i++) Atomics.store(w, TEP6 + i, view.getInt32(i * 4));
    Atomics.store(w, HAS_LEASE, 1);
    Atomics.add(w, GENERATION, 1);
  }

  /** Main thread: no lease any more (released, expired, refused). */
  clearLease(): void {
    Atomics.store(this.#words, HAS_LEASE, 0);
    Atomics.add(this.#words, GENERATION, 1);
  }

  get generation(): number {
    return Atomics.load(this.#words, GENERATION);
  }

  get hasLease(): boolean {
    return Atomics.load(this.#words, HAS_LEASE) === 1;
  }

  get ipv4(): number {
    return Atomics.load(this.#words, IPV4) >>> 0;
  }

  get portSet(): PortSetValue {
    const w = this.#words;
    return {
      offset: Atomics.load(w, OFFSET),
      psidLength: Atomics.load(w, PSID_LENGTH),
      psid: Atomics.load(w, PSID),
    };
  }

  /** Copies the TEP's IPv6 address into `out` (16 bytes). */
  tep6(out: Uint8Array): Uint8Array {
    const view = new DataView(out.buffer, out.byteOffset, 16);
    for (let i = 0; i < 4; i++) view.setInt32(i * 4, Atomics.load(this.#words, TEP6 + i));
    return out;
  }

  /** Workers: a packet went through now (seconds). */
  touch(nowSeconds: number): void {
    this.#words[ACTIVITY] = nowSeconds;
  }

  /** When the last packet went through (s since the epoch), 0 = never. */
  get lastActivity(): number {
    return Atomics.load(this.#words, ACTIVITY);
  }
}
