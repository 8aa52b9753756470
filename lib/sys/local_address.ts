/**
 * Whether this host (its network namespace) has an address, as bind(2) decides it: the
 * kernel refuses a socket bound to an address none of its interfaces holds (EADDRNOTAVAIL),
 * unless `net.ipv4.ip_nonlocal_bind` / `net.ipv6.ip_nonlocal_bind` is 1 (ip-sysctl.rst: a
 * floating address of VRRP or keepalived, not there yet). Used by `--check` and at start to
 * refuse a `--listen` or `--metrics` address that could never be bound (lib/config/
 * listen_address.ts), before anything is opened.
 *
 * - IPv6: the addresses of /proc/net/if_inet6 (every interface, tentative ones included: DAD
 *   ends by itself), through ./ifinfo.ts. An AnyIP route does not make an IPv6 address
 *   bindable (net/ipv6/af_inet6.c checks the interfaces' addresses), so it does not count.
 * - IPv4: the addresses and subnet broadcasts of ./ipv4_addresses.ts (one rtnetlink dump),
 *   and all of 127.0.0.0/8 once the loopback holds one of it (the kernel's `local
 *   127.0.0.0/8` route). An IPv4-mapped IPv6 address is taken as its IPv4 address.
 *
 * When the host cannot be asked (no /proc, a netlink error) the answer is yes: bind will say.
 *
 * @module
 */
import { parseIPv4, parseIPv6 } from "../net/addr.ts";
import { interfaceOfIPv6 } from "./ifinfo.ts";
import { localIPv4Addresses } from "./ipv4_addresses.ts";
import { readSysctl } from "./sysctl.ts";

/**
 * True when `address` (IPv6 text, dotted IPv4, or `localhost`) is one of this host's, or
 * the kernel lets any address be bound; false when bind(2) would fail with EADDRNOTAVAIL.
 *
 * @example isLocalAddress("::1") // true once lo is up
 * @example isLocalAddress("2001:db8::99") // false on a host without that address
 */
export function isLocalAddress(address: string): boolean {
  if (address === "localhost") return true;
  const v4 = parseIPv4(address);
  if (v4 !== null) return isLocalIPv4(v4);
  const v6 = parseIPv6(address);
  if (!v6) return true; // not an address: the parser's message, not ours
  if (v6.subarray(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff)
    return isLocalIPv4(((v6[12]! << 24) | (v6[13]! << 16) | (v6[14]! << 8) | v6[15]!) >>> 0);
  if (_nonlocalBind("net.ipv6.ip_nonlocal_bind")) return true;
  try {
    return interfaceOfIPv6(address) !== null;
  } catch {
    return true;
  }
}

function isLocalIPv4(v4: number): boolean {
  if (_nonlocalBind("net.ipv4.ip_nonlocal_bind")) return true;
  let addresses: number[];
  try {
    addresses = localIPv4Addresses();
  } catch {
    return true;
  }
  if (addresses.includes(v4)) return true;
  const loopback = (a: number) => a >>> 24 === 127;
  return loopback(v4) && addresses.some(loopback);
}

function _nonlocalBind(key: string): boolean {
  try {
    return readSysctl(key) === "1";
  } catch {
    return false;
  }
}
