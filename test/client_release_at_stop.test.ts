/**
 * The client's stop does not wait on a silent server: the RELEASE at stop is sent twice
 * within `--release-wait` (NodeConfig.releaseWaitMs), then `release-failed` is logged and
 * the client stops (the old code tried 4 times over 1+2+4+8 s, and a protocol without its
 * own bound could hold the stop for ever). A closed transport ends a waiting exchange.
 * Counted in datagrams a silent server on ::1 receives, never in elapsed time.
 */
import { expect, test } from "bun:test";
import type { DtiHooks } from "../lib/client/dti.ts";
import { DstmNode } from "../lib/client/node.ts";
import {
  type ClientLease,
  DstmClient,
  DstmTimeoutError,
  DstmTransport,
  type LeaseClient,
} from "../lib/client/protocol.ts";
import { Logger } from "../lib/control/log.ts";
import { parseIPv4 } from "../lib/net/addr.ts";
import { bindUdp } from "../lib/sys/udp.ts";
import { decodeMessage } from "../lib/wire/dstm.ts";
import { MessageType } from "../lib/wire/dstm_types.ts";
import { waitUntil } from "./helpers/wait.ts";

const A = parseIPv4("198.51.100.7")!;

/** A UDP socket on ::1 that reads every DSTM message and answers none. */
async function silentServer() {
  const types: number[] = [];
  const ep = await bindUdp("::1", 0, (data) => {
    const m = decodeMessage(data);
    if (m.ok) types.push(m.value.type);
  });
  return { port: ep.port, types, close: () => ep.close() };
}

test("RELEASE within 600 ms: two tries, then DstmTimeoutError (not four)", async () => {
  const server = await silentServer();
  const transport = await DstmTransport.open({ server: "::1", port: server.port, bind: "::1" });
  try {
    const client = new DstmClient(transport, "::1");
    const error = await client.release(A, { withinMs: 600 }).catch((e) => e);
    expect(error).toBeInstanceOf(DstmTimeoutError);
    await waitUntil(() => server.types.length >= 2);
    expect(server.types).toEqual([MessageType.RELEASE, MessageType.RELEASE]);
    expect(transport.retransmissions).toBe(1);
  } finally {
    transport.close();
    server.close();
  }
});

test("close() ends an exchange still waiting, with no retry left behind", async () => {
  const server = await silentServer();
  const transport = await DstmTransport.open({
    server: "::1",
    port: server.port,
    bind: "::1",
    retry: { initialMs: 600_000, tries: 4 },
  });
  const client = new DstmClient(transport, "::1");
  const release = client.release(A).catch((e) => e);
  await waitUntil(() => server.types.length === 1);
  transport.close();
  const error = await release;
  expect(error).toBeInstanceOf(DstmTimeoutError);
  expect((error as Error).message).toContain("closed");
  expect(transport.retransmissions).toBe(0);
  server.close();
});

test("stop with a server that never answers: release-failed, and the node stops", async () => {
  const lines: string[] = [];
  const now = Date.now();
  const held: ClientLease = {
    ipv4: A,
    host6: "2001:db8:1::a",
    tep6: "2001:db8::1",
    leaseTime: 3600,
    obtainedAt: now,
    expiresAt: now + 3_600_000,
  };
  let releases = 0;
  let closed = false;
  const client: LeaseClient = {
    host6: "2001:db8:1::a",
    discover: () => Promise.resolve(held),
    request: () => Promise.resolve(held),
    // A protocol that never gives up on its own (the bound is the node's).
    release: () => {
      releases++;
      return new Promise<void>(() => {});
    },
    close: () => {
      closed = true;
    },
  };
  let up = false;
  const dti: DtiHooks = {
    up: () => {
      up = true;
      return Promise.resolve(1460);
    },
    down: () => {
      up = false;
      return Promise.resolve();
    },
    inUse: () => (up ? { mode: "tun" } : undefined),
  };
  const node = await DstmNode.start({
    server: "2001:db8::53",
    host6: "2001:db8:1::a",
    leaseClient: async () => client,
    dti,
    releaseWaitMs: 1000,
    log: new Logger({ sink: (text) => lines.push(...text.trimEnd().split("\n")) }),
  });
  await node.ready;
  await node.stop();
  expect([releases, closed]).toEqual([1, true]);
  const failed = lines.filter((l) => l.includes("release-failed"));
  expect(failed).toHaveLength(1);
  expect(failed[0]).toContain("waited-ms=1000");
}, 30_000);
