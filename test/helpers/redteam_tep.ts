/**
 * The TEP of the data-plane red-team tests (test/redteam_udp_gro, test/redteam_gro15_tcp):
 * two hosts, A6 and B6; A6 holds 198.51.100.10 whole and port set 1 of 198.51.100.20 (offset 6,
 * PSID length 2), B6 198.51.100.11; and one run of batches through TepDecapBatch over fakes.
 *
 * @module
 */
import { parseIPv6 } from "../../lib/net/addr.ts";
import { TepDecapBatch } from "../../lib/tunnel/tep_batch.ts";
import { type FakeBatchTun, FakeTunnelSocket } from "./fake_devices.ts";
import { type Arrival, tepContext, WHOLE } from "./tep_context.ts";

export const A6 = parseIPv6("2001:db8:a::1")!;
export const B6 = parseIPv6("2001:db8:a::2")!;
export const HOST_A = [198, 51, 100, 10];
export const SHARED = [198, 51, 100, 20];
export const WEB = [203, 0, 113, 80];

/** A fresh TEP context with the bindings above. */
export function redteamTep() {
  return tepContext([
    ["198.51.100.10", WHOLE, A6],
    ["198.51.100.11", WHOLE, B6],
    ["198.51.100.20", { offset: 6, psidLength: 2, psid: 1 }, A6],
  ]);
}

/** Runs `batches` through a fresh {@link redteamTep} whose TUN is `tun`: its counters and loop stats. */
export function runTepBatches(tun: FakeBatchTun, batches: Arrival[][]) {
  const { tep, counters } = redteamTep();
  const raw = new FakeTunnelSocket(64);
  const loop = new TepDecapBatch(tep, raw, tun);
  for (const batch of batches) {
    raw.inbox.push(...batch.map((a) => ({ ...a, packet: a.packet.slice() })));
    while (loop.step() > 0) {}
  }
  return { counters: counters.snapshot(), stats: loop.stats };
}
