/**
 * Red team (atk18): `--log-level debug` writes a link-local client's holder key as `holder=`
 * (lib/server/dhcp4o6_debug.ts; docs/dhcp4o6.md: "`dstm lease ls` shows the holder as …;
 * `--log-level debug` shows it per query"). The `ll:ADDR@LINK` key is the holder in `source`
 * mode only: with `--dhcp4o6-identity client-id` or `chaddr` the lease is held by `id:HEX` /
 * `hw:HTYPE:HEX` (lib/server/dhcp4o6_identity.ts dhcp4Identity), yet on 9593fea the line still
 * said `holder=ll:fe80::10@…`, a key the lease was never held by. Now `holder=` is written
 * in `source` mode only.
 */
import { describe, expect, test } from "bun:test";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { parseIPv4 } from "../lib/net/addr.ts";
import { Dhcp4o6Handler } from "../lib/server/dhcp4o6.ts";
import type { Dhcp4o6IdentityMode } from "../lib/server/dhcp4o6_identity.ts";
import { Dhcp4MessageType } from "../lib/wire/dhcp4.ts";
import { encodeDhcp4o6 } from "../lib/wire/dhcp4o6.ts";
import { dhcp4Message } from "./helpers/dhcp4.ts";
import { startEngine } from "./helpers/engine.ts";

async function received(identity: Dhcp4o6IdentityMode): Promise<string> {
  const { engine } = await startEngine([{ prefixes: ["198.51.100.0/28"], tep6: "2001:db8::1" }]);
  const written: string[] = [];
  const log = new Logger({ sink: (l) => written.push(l), level: "debug" });
  const handler = new Dhcp4o6Handler({
    engine,
    serverId: parseIPv4("192.0.2.1")!,
    log,
    metrics: new Metrics(),
    identity,
  });
  const dhcp4 = dhcp4Message(Dhcp4MessageType.DISCOVER, { clientId: Uint8Array.of(1, 2, 3) });
  await handler.handle(encodeDhcp4o6({ type: 20, flags: 0, dhcp4 }), "fe80::10%2");
  log.flush();
  return (
    written
      .join("")
      .split("\n")
      .find((l) => l.includes("message-received")) ?? ""
  );
}

describe("atk18: holder= in the debug log", () => {
  test("source mode: the link-local key", async () => {
    expect(await received("source")).toContain("holder=ll:fe80::10%2");
  });

  test.each(["client-id", "chaddr"] as const)(
    "%s mode: no ll: key (the lease is not held by it)",
    async (mode) => {
      const line = await received(mode);
      expect(line).toContain("message-received");
      expect(line).not.toContain("holder=ll:");
    },
  );
});
