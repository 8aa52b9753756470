/**
 * A client pointed at an address where nothing listens on the DSTM port (e.g. the TEP's):
 * the ICMPv6 port unreachable the kernel gets back is said at once (warn
 * `server-unreachable-icmp`, counted), the retries go on, and the exchange's error says so;
 * the next cycle's `no-answer` and ICMP lines are at debug, as `server-unreachable` promises.
 * On loopback (::1), a port nothing is bound to: the Linux kernel answers port unreachable.
 */
import { expect, test } from "bun:test";
import { ExchangeWarnings } from "../lib/client/exchange_warnings.ts";
import { failoverLeaseClient } from "../lib/client/failover.ts";
import { DstmTimeoutError, DstmTransport } from "../lib/client/protocol.ts";
import { bindUdp } from "../lib/sys/udp.ts";
import { MessageType } from "../lib/wire/dstm_types.ts";
import { capturedLog } from "./helpers/captured_log.ts";

/** A UDP port on ::1 that nothing listens on: bound, then closed. */
async function deadPort(): Promise<number> {
  const ep = await bindUdp("::1", 0, () => {});
  const port = ep.port;
  ep.close();
  return port;
}

test("ICMPv6 port unreachable: warned at once and counted; retries go on; next cycle quiet", async () => {
  const { log, lines } = capturedLog();
  const warnings = new ExchangeWarnings(log, "::1");
  const retransmits: number[] = [];
  const transport = await DstmTransport.open({
    server: "::1",
    port: await deadPort(),
    bind: "::1",
    retry: { initialMs: 200, maxMs: 200, tries: 3 },
    onRetransmit: (attempt, type) => {
      retransmits.push(attempt);
      warnings.retransmit(attempt, type);
    },
    onUnreachable: (type) => warnings.unreachable(type),
  });
  try {
    const discover = { type: MessageType.DISCOVER, host6: "::1" } as const;
    let error: unknown;
    await transport.exchange(discover, MessageType.DISCOVER_ACK).catch((e) => {
      error = e;
    });
    expect(error).toBeInstanceOf(DstmTimeoutError);
    expect((error as Error).message).toContain("only ICMPv6 destination unreachable");
    expect((error as Error).message).toContain("not the TEP's");
    expect(retransmits).toEqual([2, 3]); // the retries are kept
    expect(transport.unreachable).toBeGreaterThanOrEqual(1);
    expect(warnings.icmpUnreachable).toBe(transport.unreachable);
    const first = lines().filter((l) => l.includes("WARN"));
    expect(first.filter((l) => l.includes("server-unreachable-icmp"))).toHaveLength(1);
    expect(first.filter((l) => l.includes("no-answer"))).toHaveLength(1);
    expect(first.join("\n")).toContain("nothing listens on the DSTM port there");
    // The next cycle: the same failure, at debug (not written at the default level).
    await transport.exchange(discover, MessageType.DISCOVER_ACK).catch(() => {});
    expect(lines().filter((l) => l.includes("WARN"))).toEqual(first);
    expect(warnings.icmpUnreachable).toBeGreaterThanOrEqual(2);
  } finally {
    transport.close();
  }
});

test("after an answer, silence is news again: no-answer at warn", () => {
  const { log, lines } = capturedLog();
  const warnings = new ExchangeWarnings(log, "2001:db8::53");
  warnings.retransmit(2, MessageType.REQUEST);
  warnings.retransmit(3, MessageType.REQUEST);
  expect(lines().filter((l) => l.includes("no-answer"))).toHaveLength(1);
  warnings.answered();
  warnings.retransmit(2, MessageType.REQUEST);
  expect(lines().filter((l) => l.includes("no-answer"))).toHaveLength(2);
});

test("several servers (failover): each one's ICMPv6 unreachable is said, naming it", async () => {
  const { log, lines } = capturedLog();
  const warnings = new ExchangeWarnings(log, "::1");
  const ports = [await deadPort(), await deadPort()];
  const client = await failoverLeaseClient({
    servers: ports.map((port) => ({ address: "::1", port })),
    host6: "::1",
    retry: { initialMs: 200, maxMs: 200, tries: 2 },
    onRetransmit: (to, attempt, message) => warnings.retransmit(attempt, message, to),
    onUnreachable: (to, type) => warnings.unreachable(type, to),
  });
  try {
    const error = await client.discover().catch((e) => e);
    expect(error).toBeInstanceOf(DstmTimeoutError);
    expect(warnings.icmpUnreachable).toBeGreaterThanOrEqual(2);
    const warned = lines().filter(
      (l) => l.includes("WARN") && l.includes("server-unreachable-icmp"),
    );
    // Said once at warn (then at debug until an answer), naming the first server.
    expect(warned).toHaveLength(1);
    expect(warned[0]).toContain(`[::1]:${ports[0]}`);
  } finally {
    client.close();
  }
});
