/**
 * The TEP's control socket keeps a burst of datagrams its reader is too busy to take
 * (issue 12 item 2): a snapshot of 1,000,000 bindings is 22,728 SNAPSHOT datagrams in 7 s, and
 * with the default 208 KiB receive buffer a busy TEP dropped some and lost whole snapshots
 * (docs/benchmarks.md "One million leases"). `bindUdp(…, { receiveBuffer })` raises the buffer
 * of Bun's socket (lib/sys/udp_buffer.ts). A server's listener (`listenUdp`, on one address or
 * on `::`) keeps a burst of queries the same way: every host retransmitting at once after a
 * restart, while the main thread is busy with a group commit. On [::1]; as root the size goes
 * beyond rmem_max.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { bindUdp, LISTEN_RECEIVE_BUFFER, listenUdp, type UdpEndpoint } from "../lib/sys/udp.ts";
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

describe("a server's listener (listenUdp)", () => {
  // 3,000 queries of 100 bytes: about 270 fit the default 208 KiB with the kernel's overhead.
  const BURST = 3000;
  for (const address of ["::1", "::"]) {
    test.skipIf(process.getuid?.() !== 0)(
      `on [${address}]: a burst of queries sent while the server is busy is kept whole`,
      async () => {
        let taken = 0;
        let plainTaken = 0;
        const listener = await listenUdp(address, 0, () => {
          taken++;
        });
        const plain = await bindUdp("::1", 0, () => {
          plainTaken++;
        });
        const sender = await bindUdp("::1", 0, () => {});
        open.push(listener, plain, sender);
        const query = new Uint8Array(100);
        let refused = 0;
        // One thread: the listener reads nothing before this loop ends, as a busy server.
        for (let i = 0; i < BURST; i++) {
          if (!sender.send(query, "::1", listener.port)) refused++;
          if (!sender.send(query, "::1", plain.port)) refused++;
        }
        expect(refused).toBe(0);
        await waitUntil(() => taken === BURST, { timeoutMs: 10_000, what: "the burst" });
        expect(taken).toBe(BURST);
        // A socket with the default buffer does lose it: the listener's own buffer is what kept it.
        expect(plainTaken).toBeLessThan(BURST);
        expect(LISTEN_RECEIVE_BUFFER).toBeGreaterThanOrEqual(4 << 20);
      },
    );
  }
});
