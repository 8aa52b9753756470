/**
 * Red team (atk17), "many big packets in one batch" at the TEP: the encapsulating loop
 * (lib/tunnel/tep_batch.ts TepEncapBatch) collects up to 128 packets per batch — the
 * segments of one super-packet the TUN hands over (a 64 KiB GRO/TSO packet of a flow with a
 * small MSS: 122 segments at 536 bytes), or with `--fragment inner` the fragments queued with
 * them — and sends them with one Raw6Batch.write, whose vectors hold 64 (its default, as
 * lib/dataplane/forwarder_worker.ts makes it). TunnelBatchSocket.write says it sends packet
 * `i < count`; on main Raw6Batch sent the first 64 and dropped the rest silently (counted as
 * one EAGAIN). Now it sends a longer vector in chunks of its size, in order.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { cleanupNetns, createNetns } from "../lib/sys/netns.ts";
import { announceSkip, netnsSkipReason, startScript } from "./helpers/netns.ts";

const skip = netnsSkipReason();
announceSkip("atk17_tep_encap_vector", skip);
afterAll(() => cleanupNetns());

interface Result {
  sent: number;
  received: string[];
  packets: string[];
}

describe.skipIf(skip !== null)("Raw6Batch.write above its vector size (namespace)", () => {
  test("100 packets through a 64-packet Raw6Batch: all sent, all arrive, in order", async () => {
    const ns = createNetns("k17-");
    try {
      ns.addAddress("lo", "2001:db8:1::1/128");
      ns.addAddress("lo", "2001:db8:1::2/128");
      const r = await startScript<Result>(ns, "atk17_encap_vector.ts").result;
      expect(r.sent).toBe(100); // main: 64
      expect(r.received.length).toBe(100);
      expect(r.received).toEqual(r.packets);
    } finally {
      ns.delete();
    }
  });
});
