/**
 * Where a DHCPv4-over-DHCPv6 client sends (the server given by the user: unicast, or
 * `ff02::1:2` on an interface) and who it is (the client hardware address, stable across
 * starts). Split from ./dhcp4o6_client.ts.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { canonicalIPv6 } from "../net/addr.ts";
import { interfaceOfIPv6 } from "../sys/ifinfo.ts";
import { ALL_DHCP_RELAY_AGENTS_AND_SERVERS as MULTICAST } from "../wire/dhcp4o6.ts";

/** `server` as a unicast address, or multicast with the interface to send it on. */
export function parseServer(
  server: string,
  ifname: string | undefined,
  host6: string,
): { unicast: string | null; ifname: string | null } {
  const [address = "", zone] = server.split("%", 2);
  const canonical = canonicalIPv6(address);
  if (canonical === null) throw new RangeError(`server "${server}" is not an IPv6 address`);
  const ownIf = ifname ?? zone ?? interfaceOfIPv6(host6);
  if (canonical === MULTICAST) {
    if (!ownIf)
      throw new RangeError(
        `the server is ${MULTICAST}, a link-scoped address: name the interface (ifname, or ${MULTICAST}%IF)`,
      );
    return { unicast: null, ifname: ownIf };
  }
  if (canonical.startsWith("ff"))
    throw new RangeError(`server ${server}: the only multicast address for 4o6 is ${MULTICAST}`);
  // A link-local server needs its zone; a global one is used as given.
  const unicast = zone !== undefined ? `${canonical}%${zone}` : canonical;
  return { unicast, ifname: ownIf };
}

/**
 * The MAC of the interface (6 bytes, not all zero), else a stable locally administered
 * address derived from `host6` (02:…), never a random one: the server would see a new client
 * at every start.
 */
export function defaultChaddr(host6: string, ifname: string | null): Uint8Array {
  const name = ifname ?? interfaceOfIPv6(host6);
  if (name) {
    try {
      const text = readFileSync(`/sys/class/net/${name}/address`, "utf8").trim();
      const bytes = text.split(":").map((h) => Number.parseInt(h, 16));
      if (bytes.length === 6 && bytes.every((b) => b >= 0 && b <= 255) && bytes.some((b) => b))
        return Uint8Array.from(bytes);
    } catch {
      // no such interface file: fall through
    }
  }
  const digest = createHash("sha256")
    .update(canonicalIPv6(host6) ?? host6)
    .digest();
  return Uint8Array.of(0x02, ...digest.subarray(0, 5));
}
