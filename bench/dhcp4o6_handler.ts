/**
 * Micro-benchmark of the server's DHCPv4-over-DHCPv6 path in one process, without UDP:
 * DORAs (DHCPV4-QUERY carrying DISCOVER, then REQUEST of the address offered; RFC 7341 §6,
 * RFC 2131 §4.3) of fresh hosts, decoded, decided, stored and encoded by the server's
 * `Dhcp4o6Handler` over an `AllocationEngine` on the memory store (default) or SQLite (WAL,
 * fsynced, in a temporary directory), the queries shaped as bench/dhcp4o6_load.ts sends them
 * (client identifier, parameter request list). Prints the main thread's CPU time per DORA
 * (µs; user + system, process.threadCpuUsage): what bounds bench/kea_compare.ts on a
 * two-vCPU machine, without the kernel's UDP work; steadier than a rate. Not a test.
 *
 *   node_modules/.bin/bun bench/dhcp4o6_handler.ts [count] [concurrency] [rounds]   # 60000 64 3
 *   STORE=sqlite node_modules/.bin/bun bench/dhcp4o6_handler.ts
 *
 * Each round first runs 20,000 DORAs that are not measured (the JIT compiles the path).
 *
 * @module
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AllocationEngine } from "../lib/alloc/engine.ts";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import type { LeaseStore } from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { Dhcp4o6Handler } from "../lib/server/dhcp4o6.ts";
import { Dhcp4MessageType } from "../lib/wire/dhcp4.ts";
import { decodeDhcp4o6 } from "../lib/wire/dhcp4o6.ts";
import { dhcp4Message, dhcp4o6Query } from "../test/helpers/dhcp4.ts";
import { benchNumbers } from "./bench_args.ts";

const WARM_UP = 20_000;
const SERVER_ID = 0xcb007144; // 203.0.113.68
const PARAMETER_REQUEST_LIST = [1, 3, 6, 51, 54, 58, 59, 159];
const [count = 60_000, concurrency = 64, rounds = 3] = benchNumbers(
  import.meta.path,
  ["count", "concurrency", "rounds"],
  [60_000, 64, 3],
);
if (count + WARM_UP > 131_000)
  throw new Error(`count: at most ${131_000 - WARM_UP} (the pool's size)`);

function query(n: number, type: Dhcp4MessageType, yiaddr = 0): Uint8Array {
  const chaddr = Uint8Array.of(2, 0, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
  return dhcp4o6Query(
    dhcp4Message(
      type,
      {
        clientId: Uint8Array.of(1, ...chaddr),
        parameterRequestList: PARAMETER_REQUEST_LIST,
        ...(type === Dhcp4MessageType.REQUEST ? { requestedIp: yiaddr, serverId: SERVER_ID } : {}),
      },
      { xid: n, chaddr },
    ),
  );
}

/** Where option 50's value sits in a 4o6 REQUEST whose requested address is 0.0.0.1. */
function requestedIpOffset(request: Uint8Array): number {
  const decoded = decodeDhcp4o6(request);
  if (!decoded.ok || decoded.value.dhcp4.options.requestedIp !== 1) throw new Error("bad REQUEST");
  for (let p = 8 + 240; p + 6 <= request.length; p += 2 + request[p + 1]!)
    if (request[p] === 50) return p + 2;
  throw new Error("no option 50");
}

async function round(store: LeaseStore): Promise<{ cpuUs: number; ms: number; acked: number }> {
  const engine = new AllocationEngine({
    pools: [{ prefixes: ["198.18.0.0/15"], tep6: "2001:db8::1" }],
    store,
    leaseTime: 3600,
  });
  await engine.start();
  const log = new Logger({ sink: () => {}, level: "warn" });
  const handler = new Dhcp4o6Handler({ engine, metrics: new Metrics(), log, serverId: SERVER_ID });
  const total = WARM_UP + count;
  const discovers = Array.from({ length: total }, (_, i) =>
    query(i + 1, Dhcp4MessageType.DISCOVER),
  );
  // Each REQUEST made beforehand with requested address 0.0.0.1, patched with the offer's.
  const requests = Array.from({ length: total }, (_, i) =>
    query(i + 1, Dhcp4MessageType.REQUEST, 1),
  );
  const at50 = requestedIpOffset(requests[0]!);
  const host6 = (n: number) =>
    `2001:db8:ff::${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
  let acked = 0;
  const dora = async (i: number) => {
    const n = i + 1;
    const source = host6(n);
    const offer = await handler.handle(discovers[i]!, source);
    if (!offer) return;
    // As the generator does: the offer's yiaddr (a DHCPV4-RESPONSE whose first option is 87)
    // patched into the REQUEST made beforehand.
    if (offer[0] !== 21 || offer[5] !== 87) throw new Error("unexpected OFFER layout");
    const request = requests[i]!;
    request.set(offer.subarray(24, 28), at50);
    const ack = await handler.handle(request, source);
    if (ack?.[0] === 21 && ack[8 + 240 + 2] === Dhcp4MessageType.ACK) acked++;
  };
  const run = async (from: number, to: number) => {
    let next = from;
    const worker = async () => {
      while (next < to) await dora(next++);
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
  };
  await run(0, WARM_UP);
  acked = 0;
  const cpu0 = process.threadCpuUsage();
  const t0 = performance.now();
  await run(WARM_UP, total);
  const ms = performance.now() - t0;
  const cpu = process.threadCpuUsage(cpu0);
  await engine.close();
  return { cpuUs: (cpu.user + cpu.system) / count, ms, acked };
}

const kind = process.env.STORE === "sqlite" ? "sqlite" : "memory";
for (let r = 1; r <= rounds; r++) {
  const dir = mkdtempSync(join(tmpdir(), "dstm-4o6h-"));
  try {
    const store =
      kind === "sqlite"
        ? await SqliteLeaseStore.open(join(dir, "leases.db"))
        : new MemoryLeaseStore();
    const x = await round(store);
    await store.close();
    console.log(
      `round ${r} ${kind}: ${x.acked}/${count} DORAs, ${x.cpuUs.toFixed(1)} µs main-thread CPU per DORA , ${Math.round((count / x.ms) * 1000)}/s`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
