/**
 * The first retransmission of a 4o6 client's exchange is said at warn with a hint of what a
 * silent server lacks (lib/client/dhcp4o6_transport.ts). The hint names the answer awaited:
 * a REPLY for the INFORMATION-REQUEST that asks for the 4o6 servers (RFC 7341 §5), a
 * DHCPV4-RESPONSE for a DHCPV4-QUERY. Before, the INFORMATION-REQUEST's said
 * "no DHCPV4-RESPONSE yet … --dhcp4o6-allow".
 */
import { expect, test } from "bun:test";
import { askServers, Dhcp4o6Transport } from "../lib/client/dhcp4o6_transport.ts";
import { Logger } from "../lib/control/log.ts";
import type { UdpEndpoint } from "../lib/sys/udp.ts";

test("an unanswered INFORMATION-REQUEST warns of no REPLY, not of no DHCPV4-RESPONSE", async () => {
  const lines: string[] = [];
  const log = new Logger({ sink: (text) => lines.push(...text.trimEnd().split("\n")) });
  const sent: string[] = [];
  const endpoint = {
    address: "::",
    port: 546,
    send: (_data: Uint8Array, address: string) => {
      sent.push(address);
      return true;
    },
    queue: () => {},
    close: () => {},
  } as unknown as UdpEndpoint;
  const io = new Dhcp4o6Transport({
    endpoint,
    serverPort: 547,
    retry: { initialMs: 5, maxMs: 5, tries: 2 },
    now: () => performance.now(),
    log,
  });
  const servers = await askServers(
    io,
    new Uint8Array(6).fill(2),
    () => performance.now(),
    "eth0",
  ).catch(() => null);
  expect(servers).toBeNull();
  expect(sent).toEqual(["ff02::1:2%eth0", "ff02::1:2%eth0"]);
  log.flush();
  const warned = lines.filter((l) => / WARN no-answer /.test(l));
  expect(warned).toHaveLength(1);
  expect(warned[0]).toContain("message=INFORMATION-REQUEST");
  expect(warned[0]).toContain("no REPLY yet");
  expect(warned[0]).not.toContain("DHCPV4-RESPONSE");
});
