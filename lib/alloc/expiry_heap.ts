/**
 * The expiry queue of the allocation engine: a min-heap of (expiresAt, lease key) in two
 * Float64Arrays, with lazy deletion (a renewed or freed lease leaves its old entry behind; the
 * engine skips entries that no longer match their row when they surface).
 *
 * @module
 */

/** Min-heap of (expiresAt, key) with lazy deletion: stale entries are skipped when they surface. */
export class ExpiryHeap {
  #times = new Float64Array(1024);
  #keys = new Float64Array(1024);
  size = 0;

  topTime(): number {
    return this.#times[0] as number;
  }

  topKey(): number {
    return this.#keys[0] as number;
  }

  push(time: number, key: number): void {
    if (this.size === this.#times.length) {
      const times = new Float64Array(this.size * 2);
      const keys = new Float64Array(this.size * 2);
      times.set(this.#times);
      keys.set(this.#keys);
      this.#times = times;
      this.#keys = keys;
    }
    let i = this.size++;
    const t = this.#times;
    const k = this.#keys;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if ((t[parent] as number) <= time) break;
      t[i] = t[parent] as number;
      k[i] = k[parent] as number;
      i = parent;
    }
    t[i] = time;
    k[i] = key;
  }

  pop(): void {
    const t = this.#times;
    const k = this.#keys;
    const n = --this.size;
    if (n === 0) return;
    const time = t[n] as number;
    const key = k[n] as number;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && (t[child + 1] as number) < (t[child] as number)) child++;
      if ((t[child] as number) >= time) break;
      t[i] = t[child] as number;
      k[i] = k[child] as number;
      i = child;
    }
    t[i] = time;
    k[i] = key;
  }

  /** Keeps only the entries `keep` accepts (O(n), used when stale entries pile up). */
  retain(keep: (time: number, key: number) => boolean): void {
    const entries: [number, number][] = [];
    for (let i = 0; i < this.size; i++) {
      const time = this.#times[i] as number;
      const key = this.#keys[i] as number;
      if (keep(time, key)) entries.push([time, key]);
    }
    this.size = 0;
    for (const [time, key] of entries) this.push(time, key);
  }
}
