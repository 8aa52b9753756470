/**
 * PacketRing (lib/sys/packet_ring.ts) copies each frame's packet into the caller's buffer by
 * its address, looked up once per buffer and index and kept (issue 14: ptr() at every copy was
 * half of the copy's cost). A buffer that takes another's place must get the packets, and the
 * buffer it replaced must be left alone. As root, in a namespace (test/sys_scripts/packet_ring_bufs.ts).
 */
import { afterAll, describe, expect, test } from "bun:test";
import type { Netns } from "../lib/sys/netns.ts";
import { addressNetns, announceSkip, netnsSkipReason, runScript } from "./helpers/netns.ts";

const skip = netnsSkipReason();
announceSkip("sys_packet_ring", skip);
const TEP6 = "2001:db8:7::1";

describe.skipIf(skip !== null)("PacketRing read buffers", () => {
  let ns: Netns | undefined;
  afterAll(() => ns?.delete());

  test("packets land in the buffers of each read, also when others took their indexes before", async () => {
    ns = addressNetns("dstmt-ring-", [TEP6]);
    const r = await runScript<{
      first: number[];
      aBefore: number[];
      second: number[];
      aAfterB: number[];
      third: number[];
    }>(ns, "packet_ring_bufs.ts", [TEP6]);
    expect(r.first).toEqual([100, 101, 102, 103]);
    expect(r.aBefore).toEqual([100, 101, 102, 103]);
    expect(r.second).toEqual([104, 105, 106, 107]); // into set B, new buffers at indexes 0-3
    expect(r.aAfterB).toEqual([100, 101, 102, 103]); // set A untouched by B's read
    expect(r.third).toEqual([108, 109, 110, 111]); // set A again
  });
});
