/**
 * Red team of the listeners' 4 MiB receive buffer (lib/sys/udp.ts LISTEN_RECEIVE_BUFFER,
 * lib/sys/udp_buffer.ts raiseUdpReceiveBuffer): the buffer is set on the socket found by its
 * local port in /proc/net/udp{,6}. A process with another UDP socket on the same port number
 * at another address (a server's native listener and its DHCPv4-over-DHCPv6 listener given
 * one port on two addresses, two servers of one process) had the first such socket of its
 * descriptor table raised, not the listener's: the listener kept the default 208 KiB and lost
 * a burst. Root: the buffer goes beyond rmem_max only with SO_RCVBUFFORCE.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { bindUdp, listenUdp, type UdpEndpoint } from "../lib/sys/udp.ts";
import { waitUntil } from "./helpers/wait.ts";

const open: UdpEndpoint[] = [];
afterEach(() => {
  for (const ep of open.splice(0)) ep.close();
});

describe("atk21: a listener's receive buffer with another socket on its port", () => {
  test.skipIf(process.getuid?.() !== 0)(
    "the listener on [::1]:P gets the buffer though 127.0.0.1:P was bound first",
    async () => {
      const BURST = 3000;
      let other = 0;
      // Bound first: its descriptor comes before the listener's in /proc/self/fd.
      const first = await bindUdp("127.0.0.1", 0, () => {
        other++;
      });
      open.push(first);
      let taken = 0;
      const listener = await listenUdp("::1", first.port, () => {
        taken++;
      });
      open.push(listener);
      expect(listener.port).toBe(first.port);
      const sender = await bindUdp("::1", 0, () => {});
      open.push(sender);
      const query = new Uint8Array(100);
      let refused = 0;
      // One thread: the listener reads nothing before this loop ends, as a busy server.
      for (let i = 0; i < BURST; i++) if (!sender.send(query, "::1", listener.port)) refused++;
      expect(refused).toBe(0);
      await waitUntil(() => taken === BURST, {
        timeoutMs: 5_000,
        what: "the burst",
      }).catch(() => {});
      expect(taken).toBe(BURST);
      expect(other).toBe(0);
    },
  );
});
