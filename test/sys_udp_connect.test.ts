/**
 * lib/sys/udp.ts connectUdp, on loopback: a connected socket sends to its peer and receives
 * its answers, receives nothing from anyone else (the kernel filters by the connected
 * address, udp(7)), sends a batch in one call (sendMany) whole and in order, and counts the
 * ICMP port unreachable of a peer that does not listen.
 */
import { expect, test } from "bun:test";
import { bindUdp, connectUdp } from "../lib/sys/udp.ts";
import { waitUntil } from "./helpers/wait.ts";

test("sends to its peer, gets the answers, and nothing from another socket", async () => {
  const echo = await bindUdp("::1", 0, (data, address, port) => {
    echo.send(data, address, port);
  });
  const got: number[] = [];
  const client = await connectUdp("::1", echo.port, (data) => got.push(data[0]!));
  const stranger = await bindUdp("::1", 0, () => {});
  try {
    expect(client.port).toBeGreaterThan(0);
    for (let i = 1; i <= 5; i++) expect(client.send(new Uint8Array([i]))).toBe(true);
    await waitUntil(() => got.length === 5, { timeoutMs: 5000 });
    expect(got.sort()).toEqual([1, 2, 3, 4, 5]);
    // Sent to the client's port before the echo of 6: were it delivered, it would be read first.
    expect(stranger.send(new Uint8Array([42]), "::1", client.port)).toBe(true);
    client.send(new Uint8Array([6]));
    await waitUntil(() => got.includes(6), { timeoutMs: 5000 });
    expect(got).not.toContain(42);
  } finally {
    client.close();
    echo.close();
    stranger.close();
  }
});

test("sendMany: every datagram of the batch reaches the peer, each whole, in order", async () => {
  const got: number[][] = [];
  const sink = await bindUdp("::1", 0, (data) => got.push([...data]));
  const client = await connectUdp("::1", sink.port, () => {});
  try {
    const batch = Array.from({ length: 40 }, (_, i) => new Uint8Array([i, i + 1, i + 2]));
    expect(client.sendMany(batch)).toBe(40);
    expect(client.sendMany([])).toBe(0);
    await waitUntil(() => got.length === 40, { timeoutMs: 5000 });
    expect(got).toEqual(batch.map((d) => [...d]));
  } finally {
    client.close();
    sink.close();
  }
});

test("a peer that does not listen: the ICMP error is counted", async () => {
  const gone = await bindUdp("::1", 0, () => {});
  const port = gone.port;
  gone.close();
  const client = await connectUdp("::1", port, () => {});
  try {
    await waitUntil(
      () => {
        client.send(new Uint8Array([1]));
        return client.asyncErrors > 0;
      },
      { timeoutMs: 5000 },
    );
    expect(client.asyncErrors).toBeGreaterThan(0);
  } finally {
    client.close();
  }
});
