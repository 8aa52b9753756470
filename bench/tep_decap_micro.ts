/**
 * The TEP's decapsulating batch loop alone, in memory (issue 14): CPU ns per 64-byte UDP
 * datagram through TepDecapBatch (every check, the UDP GRO, a TUN write that only counts), no
 * kernel, no sockets: what the JS costs per datagram, to compare changes A/B and to profile
 * (`bun --cpu-prof bench/tep_decap_micro.ts`).
 *
 *   bun bench/tep_decap_micro.ts [--flows 1] [--seconds 3] [--partial]
 *
 * `--flows N`: datagrams of N flows in turn (64: no two consecutive ones coalesce).
 * `--partial`: the UDP checksums left in the sender's CHECKSUM_PARTIAL state (a kernel peer on
 * a veth, lib/net/csum_partial.ts) instead of finished.
 */
import { parseIPv6 } from "../lib/net/addr.ts";
import type { BatchDevice, TunnelBatchSocket } from "../lib/net/device.ts";
import { TepDecapBatch } from "../lib/tunnel/tep_batch.ts";
import { tepContext, WHOLE } from "../test/helpers/tep_context.ts";
import { udp } from "../test/helpers/udp_packets.ts";
import { parseBenchArgs } from "./bench_args.ts";

const { values } = parseBenchArgs(import.meta.path, {
  args: Bun.argv.slice(2),
  options: {
    flows: { type: "string", default: "1" },
    seconds: { type: "string", default: "3" },
    partial: { type: "boolean", default: false },
  },
});
const flows = Number(values.flows);
const BATCH = 256;
const A6 = parseIPv6("2001:db8:a::1")!;
const { tep, counters } = tepContext([["198.51.100.10", WHOLE, A6]]);

/** Pre-built datagrams, flow f's id counting up; in turn over the flows. */
const packets: Uint8Array[] = [];
const ids = new Array(flows).fill(0x100);
for (let i = 0; i < BATCH * 4; i++) {
  const f = i % flows;
  const p = udp({
    payload: 64,
    src: [198, 51, 100, 10],
    dst: [203, 0, 113, 80],
    srcPort: 40000 + f,
    dstPort: 5201,
    id: ids[f]++ & 0xffff,
  });
  if (values.partial) {
    // The pseudo-header sum, not complemented, in the checksum field: CHECKSUM_PARTIAL.
    let s = 17 + (p.length - 20);
    for (let k = 12; k < 20; k += 2) s += (p[k]! << 8) | p[k + 1]!;
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    p[26] = s >>> 8;
    p[27] = s;
  }
  packets.push(p);
}

let round = 0;
const raw: TunnelBatchSocket = {
  fd: -1,
  read(bufs, sizes, offset, addrs, trafficClass) {
    const base = (round++ % 4) * BATCH;
    for (let i = 0; i < BATCH; i++) {
      const p = packets[base + i]!;
      bufs[i]!.set(p, offset);
      sizes[i] = p.length;
      addrs.set(A6, 16 * i);
      trafficClass[i] = 0;
    }
    return BATCH;
  },
  write: () => 0,
};
let written = 0;
let segments = 0;
const tun: BatchDevice = {
  fd: -1,
  headroom: 10,
  gso: true,
  gsoUdp: true,
  read: () => 0,
  write(_buf, _off, length) {
    written++;
    segments += length;
    return length;
  },
};
const loop = new TepDecapBatch(tep, raw, tun);
// The copies into the read buffers are the fake socket's, not the TEP's: measured apart.
const copyStart = process.cpuUsage();
const scratch = {
  bufs: Array.from({ length: BATCH }, () => new Uint8Array(2048)),
  sizes: new Int32Array(BATCH),
  addrs: new Uint8Array(16 * BATCH),
  tclass: new Uint8Array(BATCH),
};
for (let r = 0; r < 2000; r++)
  raw.read(scratch.bufs, scratch.sizes, 10, scratch.addrs, scratch.tclass);
const copyCpu = process.cpuUsage(copyStart);
const copyNs = ((copyCpu.user + copyCpu.system) * 1000) / (2000 * BATCH);

for (let i = 0; i < 2000; i++) loop.step(); // warm up
const start = process.cpuUsage();
const t0 = performance.now();
let n = 0;
while (performance.now() - t0 < Number(values.seconds) * 1000)
  for (let i = 0; i < 100; i++) n += loop.step();
const cpu = process.cpuUsage(start);
const ns = ((cpu.user + cpu.system) * 1000) / n;
console.log(
  JSON.stringify({
    flows,
    partial: values.partial,
    datagrams: n,
    nsPerDatagram: Math.round(ns),
    fakeReadCopyNs: Math.round(copyNs),
    tunWritesPerDatagram: +(written / n).toFixed(3),
    forwarded: counters.snapshot()["decap-forward"],
    bytes: segments > 0,
  }),
);
