/**
 * The TEP's control socket keeps a burst of datagrams its reader is too busy to take
 * (issue 12 item 2): a snapshot of 1,000,000 bindings is 22,728 SNAPSHOT datagrams in 7 s, and
 * with the default 208 KiB receive buffer a busy TEP dropped some and lost whole snapshots
 * (docs/benchmarks.md "One million leases"). `bindUdp(…, { receiveBuffer })` raises the buffer
 * of Bun's socket (lib/sys/udp_buffer.ts). On [::1]; as root the size goes beyond rmem_max.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { bindUdp, type UdpEndpoint } from "../lib/sys/udp.ts";
import { raiseUdpReceiveBuffer } from "../lib/sys/udp_buffer.ts";
import { CONTROL_RECEIVE_BUFFER } from "../lib/tep/control.ts";
import { waitUntil } from "./helpers/wait.ts";

const open: UdpEndpoint[] = [];
afterEach(() => {
  for (const e of open.splice(0)) e.close();
});

describe("UDP receive buffer", () => {
  test("a burst sent while the reader is busy is kept whole with the TEP's buffer, not with the default", async () => {
    const BURST = 1500; // × 1,200 bytes: far beyond 208 KiB, within 4 MiB with the kernel's overhead
    let taken = { small: 0, big: 0 };
    const small = await bindUdp("::1", 0, () => {
      taken.small++;
    });
    const big = await bindUdp(
      "::1",
      0,
      () => {
        taken.big++;
      },
      { receiveBuffer: CONTROL_RECEIVE_BUFFER },
    );
    const sender = await bindUdp("::1", 0, () => {});
    open.push(small, big, sender);
    const payload = new Uint8Array(1200);
    let refused = 0;
    // One thread: neither receiver reads before this loop ends, as a TEP busy applying bindings.
    for (let i = 0; i < BURST; i++) {
      if (!sender.send(payload, "::1", small.port)) refused++;
      if (!sender.send(payload, "::1", big.port)) refused++;
    }
    expect(refused).toBe(0);
    await waitUntil(() => taken.big === BURST, { timeoutMs: 10_000, what: "the burst" });
    expect(taken.big).toBe(BURST);
    // The default buffer does lose such a burst: without the raised buffer the TEP's would too.
    expect(taken.small).toBeLessThan(BURST);
    taken = { small: 0, big: 0 };
  });

  test("the size is set on the socket of that port, and 0 when this process has none", async () => {
    const ep = await bindUdp("::1", 0, () => {});
    open.push(ep);
    expect(raiseUdpReceiveBuffer(ep.port, 1 << 20)).toBeGreaterThanOrEqual(1 << 20);
    const free = await bindUdp("::1", 0, () => {});
    const port = free.port;
    free.close();
    expect(raiseUdpReceiveBuffer(port, 1 << 20)).toBe(0);
  });
});
