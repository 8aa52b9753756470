/**
 * Where a DHCPv4-over-DHCPv6 client sends (the server given by the user: unicast, or
 * `ff02::1:2` on an interface) and who it is (the client hardware address, stable across
 * starts), and which servers each message goes to (RFC 7341 §5–6, RFC 2131 §4.4.5). Split
 * from ./dhcp4o6_client.ts.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { canonicalIPv6 } from "../net/addr.ts";
import { interfaceOfIPv6 } from "../sys/ifinfo.ts";
import { ALL_DHCP_RELAY_AGENTS_AND_SERVERS as MULTICAST } from "../wire/dhcp4o6.ts";

/** The server the user gave: `unicast` (null for `ff02::1:2`) and the interface to use. */
export interface Dhcp4o6Target {
  readonly unicast: string | null;
  readonly ifname: string | null;
}

/** `server` as a unicast address, or multicast with the interface to send it on. */
export function parseServer(
  server: string,
  ifname: string | undefined,
  host6: string,
): Dhcp4o6Target {
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

/**
 * DISCOVER and the selecting REQUEST go to the configured server, else the option-88 servers
 * (RFC 7341 §5), else `ff02::1:2` on the interface.
 */
export function discoverDestinations(target: Dhcp4o6Target, servers: readonly string[]): string[] {
  if (target.unicast !== null) return [target.unicast];
  return servers.length > 0 ? [...servers] : [multicastOn(target)];
}

/**
 * Renewing REQUESTs and RELEASE are unicast (RFC 2131 §4.4.5, RFC 7341 §6.1 U flag): to the
 * configured server, else to the one that answered (`responder`).
 */
export function renewDestination(target: Dhcp4o6Target, responder: string): string {
  return target.unicast ?? responder;
}

/**
 * Rebinding REQUESTs go to any server (RFC 2131 §4.4.5): the option-88 servers, else
 * `ff02::1:2` on the interface, else (no interface known) the configured server.
 */
export function rebindDestinations(target: Dhcp4o6Target, servers: readonly string[]): string[] {
  if (servers.length > 0) return [...servers];
  if (target.ifname !== null) return [multicastOn(target)];
  return [target.unicast!];
}

function multicastOn(target: Dhcp4o6Target): string {
  return `${MULTICAST}%${target.ifname}`;
}
