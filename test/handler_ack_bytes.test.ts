/**
 * The native handler's unsigned ACKs are written straight into their bytes
 * (lib/wire/dstm_ack.ts via lib/server/handler.ts #ack): for every grant the handler answers —
 * a new lease, a DISCOVER from a host that already holds one (EXISTING_LEASE), a REQUEST
 * renewal, a RELEASE; whole addresses with a TEP IPv4 and shared addresses with a PORT_SET —
 * the bytes must be exactly those of the general path, `ackFor` + `encodeMessage`.
 */
import { describe, expect, test } from "bun:test";
import type { PoolConfig } from "../lib/alloc/engine.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { parseIPv4 } from "../lib/net/addr.ts";
import { DstmHandler } from "../lib/server/handler.ts";
import { ackFor } from "../lib/server/handler_messages.ts";
import { decodeMessage, encodeMessage } from "../lib/wire/dstm.ts";
import { type DstmMessage, MessageType } from "../lib/wire/dstm_types.ts";
import { capturedLog } from "./helpers/captured_log.ts";
import { startEngine } from "./helpers/engine.ts";

const POOLS: Record<string, PoolConfig[]> = {
  "whole addresses, TEP with IPv4": [
    { prefixes: ["198.51.100.0/28"], tep6: "2001:db8:1::1", tep4: parseIPv4("192.0.2.1")! },
  ],
  "shared addresses (PORT_SET), TEP without IPv4": [
    { prefixes: ["203.0.113.0/30"], tep6: "2001:db8:2::1", share: 16 },
  ],
};

describe("the handler's ACK bytes equal the general encoder's", () => {
  for (const [name, pools] of Object.entries(POOLS)) {
    test(name, async () => {
      const { engine, clock } = await startEngine(pools.map((p) => ({ ...p })));
      const { log } = capturedLog();
      const handler = new DstmHandler({ engine, log, metrics: new Metrics() });
      let xid = 0x5a000000;
      /** Sends `request` from its host; checks the answer against ackFor + encodeMessage. */
      const exchange = async (request: DstmMessage): Promise<DstmMessage> => {
        const answer = await handler.handle(encodeMessage(request), request.host6!, 4607);
        const decoded = answer ? decodeMessage(answer) : undefined;
        if (!decoded?.ok) throw new Error("no ACK");
        // A RELEASE_ACK: the host holds no lease now; ackFor reads only ipv4 from it.
        const lease = engine.lookupHost(request.host6!) ?? { ipv4: decoded.value.host4! };
        const outcome = decoded.value.existingLease ? "renewed" : "allocated";
        const general = encodeMessage(
          ackFor(request, lease as Parameters<typeof ackFor>[1], outcome, engine),
        );
        expect(answer).toEqual(general);
        return decoded.value;
      };
      for (let h = 1; h <= 3; h++) {
        const host6 = `2001:db8:4::${h.toString(16)}`;
        const offer = await exchange({ type: MessageType.DISCOVER, xid: ++xid, host6 });
        expect(offer.type).toBe(MessageType.DISCOVER_ACK);
        expect(offer.existingLease).toBeUndefined();
        clock.now += 1500;
        const again = await exchange({ type: MessageType.DISCOVER, xid: ++xid, host6 });
        expect(again.existingLease).toBe(true);
        const renewed = await exchange({
          type: MessageType.REQUEST,
          xid: ++xid,
          host6,
          host4: offer.host4,
          leaseTime: 300,
        });
        expect(renewed.type).toBe(MessageType.REQUEST_ACK);
        const released = await exchange({
          type: MessageType.RELEASE,
          xid: ++xid,
          host6,
          host4: offer.host4,
        });
        expect(released.type).toBe(MessageType.RELEASE_ACK);
      }
      await engine.close();
    });
  }
});
