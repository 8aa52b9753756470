/**
 * Binding table lookups per second with 1 binding and with 65,536 bindings, side by side.
 *
 *   bun bench/binding.ts [--lookups 20000000] [--rounds 5] [--shared]
 *
 * Each round times `lookupHost` (encapsulation side: copy the host IPv6 address out) and
 * `matchesHost` (decapsulation side: compare with the outer source) in a tight loop over
 * keys taken in a shuffled order, for a table of one binding and for a table of 65,536
 * (198.18.0.0/16, RFC 2544's benchmarking range; with --shared, 16,384 addresses × 4 PSIDs
 * of offset 6, PSID length 2). The two sizes alternate within each round and the report is
 * the median over rounds: these 2-vCPU machines are noisy, so the ratio is the claim.
 * The last two lines time the whole per-packet steps (validate the IPv4 header, read the
 * port, look up, count) on prebuilt 64-byte UDP packets, one per key.
 */
import { writeIPv4Header } from "../lib/net/ipv4.ts";
import { BindingTable } from "../lib/tunnel/binding.ts";
import { Counters } from "../lib/tunnel/counters.ts";
import { TepContext, tepDecap, tepEncap, Verdict } from "../lib/tunnel/pipeline.ts";
import { parseBenchArgs } from "./bench_args.ts";

const { values } = parseBenchArgs(import.meta.path, {
  options: {
    lookups: { type: "string", default: "20000000" },
    rounds: { type: "string", default: "5" },
    shared: { type: "boolean", default: false },
  },
});
const LOOKUPS = Number(values.lookups);
const ROUNDS = Number(values.rounds);
const BASE = 0xc6120000; // 198.18.0.0

interface Setup {
  name: string;
  table: BindingTable;
  ips: Uint32Array;
  ports: Uint16Array;
  hosts: Uint8Array; // 16 bytes per key, the host each key is bound to
  encapPackets?: Uint8Array;
  decapPackets?: Uint8Array;
}

function host6(i: number): Uint8Array {
  const h = new Uint8Array(16);
  h.set([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0]);
  new DataView(h.buffer).setUint32(12, i);
  return h;
}

function setup(count: number, shared: boolean): Setup {
  const table = BindingTable.create({ maxEntries: Math.max(count, 16) });
  const keys = 1 << 16; // the loop walks 65,536 keys either way, so both sizes do the same work
  const ips = new Uint32Array(keys);
  const ports = new Uint16Array(keys);
  const hosts = new Uint8Array(keys * 16);
  for (let i = 0; i < count; i++) {
    if (shared) {
      const psid = i & 3;
      table.set(BASE + (i >>> 2), { offset: 6, psidLength: 2, psid }, host6(i));
    } else {
      table.set(BASE + i, { offset: 0, psidLength: 0, psid: 0 }, host6(i));
    }
  }
  // Shuffled key order (a fixed LCG so runs are comparable).
  const order = new Uint32Array(keys);
  for (let i = 0; i < keys; i++) order[i] = i % count;
  let seed = 12345;
  for (let i = keys - 1; i > 0; i--) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    const j = seed % (i + 1);
    const t = order[i]!;
    order[i] = order[j]!;
    order[j] = t;
  }
  for (let k = 0; k < keys; k++) {
    const i = order[k]!;
    ips[k] = shared ? BASE + (i >>> 2) : BASE + i;
    // Offset 6, PSID length 2: PSID = bits 9..8 of the port; A = 1 keeps it above 1023.
    ports[k] = shared ? 1024 + ((i & 3) << 8) + 7 : 443;
    hosts.set(host6(i), k * 16);
  }
  return {
    name: `${count.toLocaleString("en")} binding${count === 1 ? "" : "s"}`,
    table,
    ips,
    ports,
    hosts,
  };
}

function timeLookup(s: Setup): number {
  const out = new Uint8Array(16);
  const { table, ips, ports } = s;
  let found = 0;
  const t0 = performance.now();
  for (let n = 0; n < LOOKUPS; n++) {
    const k = n & 0xffff;
    if (table.lookupHost(ips[k]!, ports[k]!, out, 0)) found++;
  }
  const t1 = performance.now();
  if (found !== LOOKUPS) throw new Error(`lookupHost missed ${LOOKUPS - found}`);
  return ((t1 - t0) * 1e6) / LOOKUPS;
}

function timeMatch(s: Setup): number {
  const { table, ips, ports, hosts } = s;
  let found = 0;
  const t0 = performance.now();
  for (let n = 0; n < LOOKUPS; n++) {
    const k = n & 0xffff;
    if (table.matchesHost(ips[k]!, ports[k]!, hosts, k * 16)) found++;
  }
  const t1 = performance.now();
  if (found !== LOOKUPS) throw new Error(`matchesHost missed ${LOOKUPS - found}`);
  return ((t1 - t0) * 1e6) / LOOKUPS;
}

function timeMiss(s: Setup): number {
  const out = new Uint8Array(16);
  const { table } = s;
  let found = 0;
  const t0 = performance.now();
  for (let n = 0; n < LOOKUPS; n++) {
    // 203.0.113.0/24 + n: never bound (the decapsulation hairpin check's usual case).
    if (table.lookupHost(0xcb007100 + (n & 0xff), 80, out, 0)) found++;
  }
  const t1 = performance.now();
  if (found !== 0) throw new Error("miss lookups found something");
  return ((t1 - t0) * 1e6) / LOOKUPS;
}

/** 64-byte UDP packets, one per key: `toHost` ones for tepEncap, the others for tepDecap. */
function packets(s: Setup, toHost: boolean): Uint8Array {
  const keys = s.ips.length;
  const buf = new Uint8Array(keys * 64);
  for (let k = 0; k < keys; k++) {
    const at = k * 64;
    const web = 0xcb007150; // 203.0.113.80
    const src = toHost ? web : s.ips[k]!;
    const dst = toHost ? s.ips[k]! : web;
    writeIPv4Header(buf, at, 64, 1, 0, 64, 17, src, dst);
    const port = s.ports[k]!;
    buf[at + 20] = toHost ? 0 : port >>> 8;
    buf[at + 21] = toHost ? 53 : port & 0xff;
    buf[at + 22] = toHost ? port >>> 8 : 0;
    buf[at + 23] = toHost ? port & 0xff : 53;
  }
  return buf;
}

function timeSteps(s: Setup, step: "encap" | "decap"): number {
  const ctx = new TepContext({
    bindings: s.table,
    counters: Counters.create({ slices: 1 }).slice(0),
    tepIPv4: 0xc0000201,
  });
  if (step === "encap" && !s.encapPackets) s.encapPackets = packets(s, true);
  if (step === "decap" && !s.decapPackets) s.decapPackets = packets(s, false);
  const buf = (step === "encap" ? s.encapPackets : s.decapPackets)!;
  const host6 = new Uint8Array(16);
  const { hosts } = s;
  let forwarded = 0;
  const t0 = performance.now();
  if (step === "encap") {
    for (let n = 0; n < LOOKUPS; n++) {
      if (tepEncap(ctx, buf, (n & 0xffff) * 64, 64, host6, 0) === Verdict.FORWARD) forwarded++;
    }
  } else {
    for (let n = 0; n < LOOKUPS; n++) {
      const k = n & 0xffff;
      if (tepDecap(ctx, buf, k * 64, 64, hosts, k * 16) === Verdict.FORWARD) forwarded++;
    }
  }
  const t1 = performance.now();
  if (forwarded !== LOOKUPS) throw new Error(`${step} forwarded ${forwarded} of ${LOOKUPS}`);
  return ((t1 - t0) * 1e6) / LOOKUPS;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const small = setup(1, false);
const large = setup(65536, values.shared);
const results = new Map<string, number[]>();
const add = (key: string, v: number) => {
  const list = results.get(key) ?? [];
  list.push(v);
  results.set(key, list);
};
// Warm-up, so the JIT has compiled both paths before anything is timed.
for (const s of [small, large]) {
  timeLookup(s);
  timeMatch(s);
  timeMiss(s);
  timeSteps(s, "encap");
  timeSteps(s, "decap");
}
for (let r = 0; r < ROUNDS; r++) {
  for (const s of r % 2 === 0 ? [small, large] : [large, small]) {
    add(`lookup ${s.name}`, timeLookup(s));
    add(`match ${s.name}`, timeMatch(s));
    add(`miss ${s.name}`, timeMiss(s));
    add(`encap ${s.name}`, timeSteps(s, "encap"));
    add(`decap ${s.name}`, timeSteps(s, "decap"));
  }
}

console.log(
  `binding table, ${LOOKUPS.toLocaleString("en")} lookups × ${ROUNDS} rounds (median ns/op)${values.shared ? ", 65,536 = 16,384 addresses × 4 PSIDs" : ""}`,
);
console.log("operation                     1 binding    65,536 bindings   ratio (large/small)");
const LABELS: Record<string, string> = {
  lookup: "lookupHost (encap)",
  match: "matchesHost (decap)",
  miss: "lookupHost miss",
  encap: "tepEncap, whole step",
  decap: "tepDecap, whole step",
};
for (const op of Object.keys(LABELS)) {
  const a = median(results.get(`lookup ${small.name}`.replace("lookup", op))!);
  const b = median(results.get(`lookup ${large.name}`.replace("lookup", op))!);
  const label = LABELS[op]!;
  console.log(
    `${label.padEnd(28)}  ${a.toFixed(1).padStart(6)} ns    ${b.toFixed(1).padStart(6)} ns        ${(b / a).toFixed(2)}`,
  );
  console.log(
    `${"".padEnd(28)}  ${(1e3 / a).toFixed(1).padStart(6)} M/s   ${(1e3 / b).toFixed(1).padStart(6)} M/s`,
  );
}
