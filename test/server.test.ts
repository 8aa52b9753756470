import { afterEach, describe, expect, test } from "bun:test";
import { DstmClient, DstmRefusedError, DstmTransport } from "../lib/client/protocol.ts";
import { Logger } from "../lib/control/log.ts";
import { formatIPv4, parseIPv4 } from "../lib/net/addr.ts";
import { DstmServer, type ServerConfig } from "../lib/server/server.ts";
import { type AuthKey, signMessage } from "../lib/wire/auth.ts";
import { decodeMessage, encodeMessage } from "../lib/wire/dstm.ts";
import { MessageType, Status } from "../lib/wire/dstm_types.ts";
import { waitUntil } from "./helpers/wait.ts";

const KEY: AuthKey = { id: 7, secret: new Uint8Array(32).fill(0x5a) };
const OTHER_KEY: AuthKey = { id: 7, secret: new Uint8Array(32).fill(0x33) };

const running: { stop(): unknown }[] = [];
afterEach(async () => {
  for (const r of running.splice(0)) await r.stop();
});

async function startServer(overrides: Partial<ServerConfig> = {}) {
  const logLines: string[] = [];
  const server = await DstmServer.start({
    pools: [{ prefixes: ["192.0.2.0/29"], tep6: "2001:db8::1", tep4: parseIPv4("198.51.100.1")! }],
    leaseTime: 600,
    listen: { address: "::1", port: 0 },
    sourceCheck: false,
    log: new Logger({ sink: (text) => logLines.push(...text.trimEnd().split("\n")) }),
    ...overrides,
  });
  running.push(server);
  return { server, logLines, port: server.listening.port };
}

async function transport(port: number, key?: AuthKey) {
  const t = await DstmTransport.open({
    server: "::1",
    port,
    key,
    retry: { initialMs: 100, tries: 3 },
  });
  running.push({ stop: () => t.close() });
  return t;
}

/** Sends raw bytes and returns the decoded answer (rejects after 5 s of silence). */
async function rawExchange(port: number, bytes: Uint8Array) {
  const answers = await rawAnswers(port, [bytes], 1);
  const decoded = decodeMessage(answers[0]!);
  if (!decoded.ok) throw new Error(decoded.error.message);
  return decoded.value;
}

/** Sends each datagram in order from one socket; resolves once `count` answers came, with them. */
async function rawAnswers(port: number, datagrams: Uint8Array[], count: number) {
  const { bindUdp } = await import("../lib/sys/udp.ts");
  const answers: Uint8Array[] = [];
  const ep = await bindUdp("::1", 0, (data) => {
    answers.push(data);
  });
  try {
    for (const bytes of datagrams) ep.send(bytes, "::1", port);
    await waitUntil(() => answers.length >= count, { what: `${count} answer(s)` });
  } finally {
    ep.close();
  }
  return answers;
}

/**
 * A request that is always answered, with a NAK (a REQUEST for an address outside every
 * pool). Sent after a datagram that must get no answer: its answer is made after the engine
 * has been asked, so it leaves after anything the server answered to the earlier datagram.
 */
const MARKER = encodeMessage({
  type: MessageType.REQUEST,
  xid: 0x6d61726b,
  host6: "2001:db8:ffff::1",
  host4: parseIPv4("203.0.113.1")!,
});

describe("dstm server over UDP", () => {
  test("discover, renew and release a lease; the paper's lease-table fields come back", async () => {
    const { server, port, logLines } = await startServer();
    const client = new DstmClient(await transport(port), "2001:db8:a::1");
    const lease = await client.discover();
    expect(formatIPv4(lease.ipv4)).toBe("192.0.2.1");
    expect(lease.tep6).toBe("2001:db8::1");
    expect(lease.tep4).toBe(parseIPv4("198.51.100.1")!);
    expect(lease.leaseTime).toBe(600);
    const renewed = await client.request(lease.ipv4);
    expect(renewed.ipv4).toBe(lease.ipv4);
    expect(server.engine.lookupHost("2001:db8:a::1")?.ipv4).toBe(lease.ipv4);
    await client.release(lease.ipv4);
    expect(server.engine.lookupHost("2001:db8:a::1")).toBeUndefined();
    // Log lines reach the sink in batches: wait for the last one.
    await waitUntil(() => logLines.some((l) => / release ipv4=192\.0\.2\.1/.test(l)), {
      what: "the release log line",
    });
    expect(logLines.some((l) => / allocate ipv4=192\.0\.2\.1 host6=2001:db8:a::1/.test(l))).toBe(
      true,
    );
    expect(logLines.some((l) => / renew ipv4=192\.0\.2\.1/.test(l))).toBe(true);
    expect(logLines.some((l) => / release ipv4=192\.0\.2\.1/.test(l))).toBe(true);
    expect(server.metrics.get("dstm_messages_total", { type: "discover", result: "ack" })).toBe(1);
  });

  test("a /29 pool hands out 6 addresses, then answers POOL_EXHAUSTED", async () => {
    const { port, server } = await startServer();
    const t = await transport(port);
    const leases = await Promise.all(
      Array.from({ length: 6 }, (_, i) => new DstmClient(t, `2001:db8:b::${i + 1}`).discover()),
    );
    expect(new Set(leases.map((l) => l.ipv4)).size).toBe(6);
    const refused = await new DstmClient(t, "2001:db8:b::99").discover().catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(DstmRefusedError);
    expect((refused as DstmRefusedError).status).toBe(Status.POOL_EXHAUSTED);
    expect(
      server.metrics.get("dstm_messages_total", { type: "discover", result: "nak_pool_exhausted" }),
    ).toBe(1);
  });

  test("two hosts racing over UDP for the last free address: one wins, the other gets POOL_EXHAUSTED", async () => {
    const { port } = await startServer({
      pools: [{ prefixes: ["192.0.2.0/30"], exclude: ["192.0.2.1"], tep6: "2001:db8::1" }],
    });
    const t = await transport(port);
    const results = await Promise.allSettled([
      new DstmClient(t, "2001:db8:9::1").discover(),
      new DstmClient(t, "2001:db8:9::2").discover(),
    ]);
    const won = results.filter((r) => r.status === "fulfilled");
    const lost = results.filter((r) => r.status === "rejected");
    expect(won.length).toBe(1);
    expect(formatIPv4((won[0] as PromiseFulfilledResult<{ ipv4: number }>).value.ipv4)).toBe(
      "192.0.2.2",
    );
    expect(lost.length).toBe(1);
    expect(((lost[0] as PromiseRejectedResult).reason as DstmRefusedError).status).toBe(
      Status.POOL_EXHAUSTED,
    );
  });

  test("releasing an unknown lease gets NO_SUCH_LEASE, renewing another host's address ADDRESS_IN_USE", async () => {
    const { port } = await startServer();
    const t = await transport(port);
    const a = new DstmClient(t, "2001:db8:c::a");
    const b = new DstmClient(t, "2001:db8:c::b");
    const lease = await a.discover();
    const release = await b.release(lease.ipv4).catch((e: unknown) => e);
    expect((release as DstmRefusedError).status).toBe(Status.NO_SUCH_LEASE);
    const steal = await b.request(lease.ipv4).catch((e: unknown) => e);
    expect((steal as DstmRefusedError).status).toBe(Status.ADDRESS_IN_USE);
  });

  test("with the source check on, a HOST_IPV6 other than the source is NOT_AUTHORISED", async () => {
    const { port, server } = await startServer({ sourceCheck: true });
    const t = await transport(port);
    const spoofed = await new DstmClient(t, "2001:db8:d::1").discover().catch((e: unknown) => e);
    expect((spoofed as DstmRefusedError).status).toBe(Status.NOT_AUTHORISED);
    const honest = await new DstmClient(t, "::1").discover();
    expect(formatIPv4(honest.ipv4)).toBe("192.0.2.1");
    expect(server.metrics.get("dstm_auth_failures_total", { reason: "source-mismatch" })).toBe(1);
  });

  test("malformed requests get NAK MALFORMED with their xid; garbage without a header is dropped and counted", async () => {
    const { port, server } = await startServer();
    const good = encodeMessage({ type: MessageType.DISCOVER, xid: 0x1234, host6: "2001:db8::5" });
    const bad = good.slice();
    bad[2] = 0x80; // a reserved flag
    const answer = await rawExchange(port, bad);
    expect(answer?.type).toBe(MessageType.NAK);
    expect(answer?.xid).toBe(0x1234);
    expect(answer?.status).toBe(Status.MALFORMED);
    // Garbage, then the marker: the only answer is the marker's.
    const answers = await rawAnswers(port, [new Uint8Array([1, 2, 3]), MARKER], 1);
    const decoded = answers.map((a) => decodeMessage(a));
    expect(decoded.map((d) => (d.ok ? [d.value.xid, d.value.type] : d.error.code))).toEqual([
      [0x6d61726b, MessageType.NAK],
    ]);
    expect(server.metrics.get("dstm_dropped_total", { reason: "no-header" })).toBe(1);
    const total = server.metrics.snapshot().filter((s) => s.name === "dstm_malformed_total");
    expect(total.reduce((n, s) => n + s.value, 0)).toBe(1);
  });

  test("with a key: unsigned, wrongly signed and replayed requests are refused and counted; signed ones work", async () => {
    const { port, server } = await startServer({ keys: [KEY] });
    const unsigned = await new DstmClient(await transport(port), "2001:db8:e::1")
      .discover()
      .catch((e: unknown) => e);
    expect((unsigned as DstmRefusedError).status).toBe(Status.NOT_AUTHORISED);
    const wrong = await new DstmClient(await transport(port, OTHER_KEY), "2001:db8:e::2")
      .discover()
      .catch((e: unknown) => e);
    expect((wrong as DstmRefusedError).status).toBe(Status.NOT_AUTHORISED);
    const signed = signMessage(
      { type: MessageType.DISCOVER, xid: 99, host6: "2001:db8:e::3" },
      KEY,
      Date.now(),
    );
    const first = await rawExchange(port, signed);
    expect(first?.type).toBe(MessageType.DISCOVER_ACK);
    expect(first?.auth?.keyId).toBe(KEY.id);
    const replay = await rawExchange(port, signed);
    expect(replay?.type).toBe(MessageType.NAK);
    expect(replay?.status).toBe(Status.NOT_AUTHORISED);
    const lease = await new DstmClient(await transport(port, KEY), "2001:db8:e::4").discover();
    expect(lease.ipv4).toBeGreaterThan(0);
    expect(server.metrics.get("dstm_auth_failures_total", { reason: "missing" })).toBe(1);
    expect(server.metrics.get("dstm_auth_failures_total", { reason: "bad-mac" })).toBe(1);
    expect(server.metrics.get("dstm_auth_failures_total", { reason: "replayed" })).toBe(1);
  });

  test("a retransmitted DISCOVER gets the same lease, not a second one", async () => {
    const { port, server } = await startServer();
    const discover = encodeMessage({ type: MessageType.DISCOVER, xid: 5, host6: "2001:db8:f::1" });
    const first = await rawExchange(port, discover);
    const second = await rawExchange(port, discover);
    expect(second?.host4).toBeDefined();
    expect(second?.host4).toBe(first?.host4 as number);
    expect(server.engine.leases({ state: "active" }).length).toBe(1);
  });

  test("expiry: a lease not renewed is reclaimed by the sweeper and logged", async () => {
    const { port, server, logLines } = await startServer({ leaseTime: 1, sweepIntervalMs: 100 });
    const lease = await new DstmClient(await transport(port), "2001:db8:1::1").discover();
    expect(lease.leaseTime).toBe(1);
    await waitUntil(() => server.engine.lookupHost("2001:db8:1::1") === undefined, {
      timeoutMs: 10_000,
      intervalMs: 50,
      what: "the sweeper to reclaim the lease",
    });
    await waitUntil(
      () => logLines.some((l) => / expire ipv4=192\.0\.2\.1 host6=2001:db8:1::1/.test(l)),
      { what: "the expire log line" },
    );
    expect(server.metrics.get("dstm_leases_expired_total")).toBe(1);
  });

  test("metrics expose pool usage and message counts in Prometheus format", async () => {
    const { port, server } = await startServer();
    await new DstmClient(await transport(port), "2001:db8:2::1").discover();
    const text = await server.metrics.text();
    expect(text).toContain('dstm_pool_addresses{pool="192.0.2.0/29",state="active"} 1');
    expect(text).toContain('dstm_pool_addresses{pool="192.0.2.0/29",state="free"} 5');
    expect(text).toContain('dstm_messages_total{type="discover",result="ack"} 1');
    expect(text).toContain("# TYPE dstm_messages_total counter");
  });
});

describe("auth-off", () => {
  test("a server without --key warns once at start, naming what is exposed and the fix; with --key it does not", async () => {
    const open = await startServer({
      pools: [{ prefixes: ["192.0.2.0/29"], tep6: "::1", tep4: parseIPv4("198.51.100.1")! }],
    });
    // The start line comes after the warning.
    await waitUntil(() => open.logLines.some((l) => / start /.test(l)), { what: "start" });
    const warned = open.logLines.filter((l) => / WARN auth-off /.test(l));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatch(
      /not authenticated.*take leases.*release another host.*dstm keygen.*--key/,
    );
    const keyed = await startServer({
      pools: [{ prefixes: ["192.0.2.0/29"], tep6: "::1", tep4: parseIPv4("198.51.100.1")! }],
      keys: [{ id: 1, secret: new Uint8Array(32).fill(7) }],
    });
    await waitUntil(() => keyed.logLines.some((l) => / start /.test(l)), { what: "start" });
    expect(keyed.logLines.filter((l) => /auth-off/.test(l) && !/tep-auth-off/.test(l))).toEqual([]);
  });
});

describe("tep-auth-off", () => {
  test("is not said when every TEP address is on this host (::1), and said once when one is elsewhere", async () => {
    const local = await startServer({
      pools: [{ prefixes: ["192.0.2.0/29"], tep6: "::1", tep4: parseIPv4("198.51.100.1")! }],
    });
    // The start line comes after any tep-auth-off warning.
    await waitUntil(() => local.logLines.some((l) => / start /.test(l)), { what: "start" });
    expect(local.logLines.filter((l) => /tep-auth-off/.test(l))).toEqual([]);
    const remote = await startServer({
      pools: [
        { prefixes: ["192.0.2.0/29"], tep6: "::1", tep4: parseIPv4("198.51.100.1")! },
        { prefixes: ["192.0.2.8/29"], tep6: "2001:db8::1", tep4: parseIPv4("198.51.100.1")! },
      ],
    });
    await waitUntil(() => remote.logLines.some((l) => / start /.test(l)), { what: "start" });
    expect(remote.logLines.filter((l) => / WARN tep-auth-off /.test(l))).toHaveLength(1);
  });
});
