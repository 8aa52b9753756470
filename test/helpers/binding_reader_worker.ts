/**
 * Reader side of the binding-table concurrency test (test/tunnel_binding.test.ts): attaches to
 * the table, does `lookups` lookups while the test's main thread rewrites bindings, and
 * reports torn reads (a host6 that does not encode the address and PSID looked up) and misses
 * of the bindings the writer never touches.
 *
 * host6 layout written by the test: 2001:0db8 | ipv4 | psid << 16 | version | checksum word,
 * where checksum = ipv4 ^ (psid << 16 | version) ^ 0x5a5a5a5a.
 */
import { BindingTable, LookupStatus } from "../../lib/tunnel/binding.ts";

declare const self: Worker;

interface Job {
  table: SharedArrayBuffer;
  control: SharedArrayBuffer; // Int32: [0] started, [1] done
  base: number;
  stable: number; // addresses base .. base+stable-1 are never changed (whole addresses)
  churned: number; // addresses after them: shared, 4 PSIDs, rewritten all the time
  lookups: number;
}

self.onmessage = (event: MessageEvent<Job>) => {
  const job = event.data;
  const table = BindingTable.attach(job.table);
  const control = new Int32Array(job.control);
  const out = new Uint8Array(16);
  const view = new DataView(out.buffer);
  let torn = 0;
  let stableMisses = 0;
  let churnedFound = 0;
  let churnedMissing = 0;
  let matches = 0;
  Atomics.store(control, 0, 1);
  for (let n = 0; n < job.lookups; n++) {
    const stable = (n & 1) === 0;
    let ipv4: number;
    let port: number;
    let psid: number;
    if (stable) {
      ipv4 = job.base + ((n >>> 1) % job.stable);
      port = 80;
      psid = 0;
    } else {
      const k = (n >>> 1) % (job.churned * 4);
      ipv4 = job.base + job.stable + (k >>> 2);
      psid = k & 3;
      port = 1024 + (psid << 8) + (n & 0xff); // offset 6, PSID length 2
    }
    const status = table.find(ipv4, port, out, 0);
    if (status === LookupStatus.FOUND) {
      const w1 = view.getUint32(4);
      const w2 = view.getUint32(8);
      const w3 = view.getUint32(12);
      if (
        view.getUint32(0) !== 0x20010db8 ||
        w1 !== ipv4 >>> 0 ||
        w2 >>> 16 !== psid ||
        w3 !== (w1 ^ w2 ^ 0x5a5a5a5a) >>> 0
      ) {
        torn++;
      }
      if (!stable) {
        churnedFound++;
        // The decapsulation-side read of the host just found: FOUND unless the writer has
        // moved the binding since.
        if (table.match(ipv4, port, out, 0) === LookupStatus.FOUND) matches++;
      }
    } else if (stable) {
      stableMisses++;
    } else {
      churnedMissing++;
    }
  }
  Atomics.store(control, 1, 1);
  self.postMessage({ torn, stableMisses, churnedFound, churnedMissing, matches });
};
