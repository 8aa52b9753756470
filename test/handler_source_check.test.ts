/**
 * The handler's source check (lib/server/handler.ts): HOST_IPV6 must be the datagram's source
 * address, whatever its spelling — the canonical text (compared as it is) or another one
 * (upper case, leading zeros, `::` written out: canonicalized first).
 */
import { describe, expect, test } from "bun:test";
import { AllocationEngine } from "../lib/alloc/engine.ts";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { DstmHandler } from "../lib/server/handler.ts";
import { decodeMessage, encodeMessage } from "../lib/wire/dstm.ts";
import { MessageType, Status } from "../lib/wire/dstm_types.ts";

async function handlerWithSourceCheck() {
  const engine = new AllocationEngine({
    pools: [{ prefixes: ["192.0.2.0/28"], tep6: "2001:db8::1" }],
    store: new MemoryLeaseStore(),
    leaseTime: 600,
  });
  await engine.start();
  const metrics = new Metrics();
  const log = new Logger({ sink: () => {}, level: "error" });
  return { engine, metrics, handler: new DstmHandler({ engine, metrics, log }) };
}

describe("DstmHandler: the source check", () => {
  test("the source in any spelling of HOST_IPV6 is accepted; another address is NOT_AUTHORISED", async () => {
    const { engine, metrics, handler } = await handlerWithSourceCheck();
    const host6 = "2001:db8:1::ab";
    const sources = [
      "2001:db8:1::ab",
      "2001:DB8:1::AB",
      "2001:0db8:0001:0000:0000:0000:0000:00ab",
      "2001:db8:1:0:0:0:0:ab",
    ];
    for (const [i, source] of sources.entries()) {
      const request = encodeMessage({ type: MessageType.DISCOVER, xid: i, host6 });
      const answer = decodeMessage((await handler.handle(request, source, 546))!);
      expect(answer.ok && answer.value.type).toBe(MessageType.DISCOVER_ACK);
    }
    for (const source of ["2001:db8:1::ac", "2001:db8:1::ab:0", "::1"]) {
      const request = encodeMessage({ type: MessageType.DISCOVER, xid: 9, host6 });
      const answer = decodeMessage((await handler.handle(request, source, 546))!);
      expect(answer.ok && answer.value.type).toBe(MessageType.NAK);
      expect(answer.ok && answer.value.status).toBe(Status.NOT_AUTHORISED);
    }
    expect(metrics.get("dstm_auth_failures_total", { reason: "source-mismatch" })).toBe(3);
    await engine.close();
  });
});
