/**
 * lib/sys/udp.ts bindUdp: an ICMP port unreachable for one datagram (a peer that went away)
 * is reported as the socket's pending error by the NEXT send (udp(7)), which Bun turns into
 * an ECONNREFUSED throw. That next datagram, to another peer, must still leave: red17 found a
 * TEP whose SYNC to its live server, sent right after one to a dead server, was lost every
 * period, so the live server took the TEP for gone and sent it no UNBIND.
 */
import { expect, test } from "bun:test";
import { bindUdp } from "../lib/sys/udp.ts";
import { waitUntil } from "./helpers/wait.ts";

test("a datagram right after one to a dead port is sent, and the error counted once each", async () => {
  const got: number[] = [];
  const live = await bindUdp("::1", 0, (data) => {
    got.push(data[0]!);
  });
  const dead = await bindUdp("::1", 0, () => {});
  const deadPort = dead.port;
  dead.close();
  const ep = await bindUdp("::1", 0, () => {});
  try {
    const sent: boolean[] = [];
    for (let i = 1; i <= 3; i++) {
      ep.send(new Uint8Array([100 + i]), "::1", deadPort);
      // Same turn of the event loop: the pending error is reported by this send.
      sent.push(ep.send(new Uint8Array([i]), "::1", live.port));
    }
    expect(sent).toEqual([true, true, true]);
    await waitUntil(() => got.length === 3, {
      timeoutMs: 5000,
      what: "three datagrams at the live peer",
    });
    expect(got.sort()).toEqual([1, 2, 3]);
    await waitUntil(() => ep.asyncErrors >= 3, {
      timeoutMs: 5000,
      what: "the ICMP errors counted",
    });
    expect(ep.asyncErrors).toBe(3);
  } finally {
    ep.close();
    live.close();
  }
});

test("through the send queue (sendmmsg), a batch with a dead port first: every live datagram arrives", async () => {
  const got: number[] = [];
  const live = await bindUdp("::1", 0, (data) => {
    got.push(data[0]!);
  });
  const dead = await bindUdp("::1", 0, () => {});
  const deadPort = dead.port;
  dead.close();
  const ep = await bindUdp("::1", 0, () => {});
  const refused: number[] = [];
  try {
    // One batch: the dead port's datagram first, then the live peer's.
    ep.queue(new Uint8Array([99]), "::1", deadPort);
    for (let i = 1; i <= 4; i++)
      ep.queue(new Uint8Array([i]), "::1", live.port, undefined, () => refused.push(i));
    await waitUntil(() => got.length === 4, { timeoutMs: 5000, what: "four queued datagrams" });
    expect(got.sort()).toEqual([1, 2, 3, 4]);
    expect(refused).toEqual([]);
  } finally {
    ep.close();
    live.close();
  }
});
