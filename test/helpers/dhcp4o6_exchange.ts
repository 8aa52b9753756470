/**
 * A DHCPv4-over-DHCPv6 client stand-in on ::1 for the tests of an in-process server: one
 * DHCPV4-QUERY out, the server's DHCPV4-RESPONSE back, decoded.
 */
import { bindUdp } from "../../lib/sys/udp.ts";
import type { Dhcp4Message } from "../../lib/wire/dhcp4.ts";
import { type Dhcp4o6Message, decodeDhcp4o6 } from "../../lib/wire/dhcp4o6.ts";
import { dhcp4o6Query } from "./dhcp4.ts";
import { waitUntil } from "./wait.ts";

/** Sends `dhcp4` (with `flags`) to [::1]:`port` and resolves with the answer; rejects after 5 s. */
export async function exchange4o6(
  port: number,
  dhcp4: Dhcp4Message,
  flags = 0,
): Promise<Dhcp4o6Message> {
  let answer: Uint8Array | null = null;
  const ep = await bindUdp("::1", 0, (data) => {
    answer = data;
  });
  try {
    ep.send(dhcp4o6Query(dhcp4, flags), "::1", port);
    await waitUntil(() => answer !== null, { what: "the 4o6 server's answer" });
  } finally {
    ep.close();
  }
  const decoded = decodeDhcp4o6(answer!);
  if (!decoded.ok) throw new Error(decoded.error.message);
  return decoded.value;
}
