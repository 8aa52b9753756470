/**
 * RFC 2131 §4.3.2 (SELECTING): a REQUEST whose server identifier names another server means
 * the client took that server's offer; this server answers nothing and frees the address it
 * offered (issue 10, mutant 7: removing that branch survived the suite). Driven through
 * Dhcp4o6Handler directly, so no socket and no timing is involved.
 */
import { describe, expect, test } from "bun:test";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { parseIPv4 } from "../lib/net/addr.ts";
import { Dhcp4o6Handler } from "../lib/server/dhcp4o6.ts";
import { Dhcp4MessageType, type Dhcp4Options } from "../lib/wire/dhcp4.ts";
import { decodeDhcp4o6 } from "../lib/wire/dhcp4o6.ts";
import { dhcp4Message, dhcp4o6Query } from "./helpers/dhcp4.ts";
import { startEngine } from "./helpers/engine.ts";

const US = parseIPv4("192.0.2.1")!;
const THEM = parseIPv4("192.0.2.99")!;
const HOST = "2001:db8:5::1";

function query(type: Dhcp4MessageType, options: Partial<Dhcp4Options> = {}): Uint8Array {
  const chaddr = Uint8Array.from([0x02, 0, 0, 0, 0, 0x05]);
  return dhcp4o6Query(dhcp4Message(type, options, { xid: 0x0badcafe, chaddr }));
}

async function setup() {
  const { engine } = await startEngine([{ prefixes: ["198.51.100.0/29"], tep6: "2001:db8::1" }]);
  const metrics = new Metrics();
  const handler = new Dhcp4o6Handler({
    engine,
    serverId: US,
    log: new Logger({ sink: () => {} }),
    metrics,
  });
  const offer = await handler.handle(query(Dhcp4MessageType.DISCOVER), HOST);
  const decoded = decodeDhcp4o6(offer!);
  if (!decoded.ok) throw new Error(decoded.error.message);
  expect(decoded.value.dhcp4.options.messageType).toBe(Dhcp4MessageType.OFFER);
  return { engine, metrics, handler, offered: decoded.value.dhcp4.yiaddr };
}

describe("4o6 REQUEST naming another server", () => {
  test("gets no answer, and the address this server offered goes back to the pool", async () => {
    const { engine, metrics, handler, offered } = await setup();
    expect(engine.lookupHost(HOST)?.ipv4).toBe(offered);
    const answer = await handler.handle(
      query(Dhcp4MessageType.REQUEST, { requestedIp: offered, serverId: THEM }),
      HOST,
    );
    expect(answer).toBeNull();
    expect(engine.lookupHost(HOST)).toBeUndefined();
    expect(
      metrics.get("dstm_dhcp4o6_messages_total", { type: "request", result: "other-server" }),
    ).toBe(1);
    expect(metrics.get("dstm_dhcp4o6_messages_total", { type: "request", result: "ack" })).toBe(0);
  });

  test("the same REQUEST naming this server is acknowledged", async () => {
    const { engine, handler, offered } = await setup();
    const answer = await handler.handle(
      query(Dhcp4MessageType.REQUEST, { requestedIp: offered, serverId: US }),
      HOST,
    );
    const decoded = decodeDhcp4o6(answer!);
    if (!decoded.ok) throw new Error(decoded.error.message);
    expect(decoded.value.dhcp4.options.messageType).toBe(Dhcp4MessageType.ACK);
    expect(engine.lookupHost(HOST)?.ipv4).toBe(offered);
  });
});
