/**
 * Order-independent digest of a set of bindings, carried in SYNC so that a server can tell
 * in one message whether a TEP's table equals its own (and send a SNAPSHOT when not).
 *
 * digest = Σ fnv1a32(host4 ‖ host6 ‖ offset ‖ psidLength ‖ psid) mod 2^32. A sum, not an XOR,
 * so that a binding present twice does not cancel out.
 *
 * @module
 */
import { parseIPv6 } from "../net/addr.ts";
import type { WireBinding } from "./dstm_types.ts";

/**
 * FNV-1a (32-bit) of one binding in its 24-byte wire layout; `host6`'s 16 bytes start at
 * `host6At` (default 0: a whole 16-byte array; else, e.g., a HOST_IPV6 option's value inside
 * a received message).
 */
export function bindingHash(
  host4: number,
  host6: Uint8Array,
  offset: number,
  psidLength: number,
  psid: number,
  host6At = 0,
): number {
  let h = 0x811c9dc5;
  const mix = (byte: number) => {
    h = Math.imul(h ^ (byte & 255), 0x01000193);
  };
  mix(host4 >>> 24);
  mix(host4 >>> 16);
  mix(host4 >>> 8);
  mix(host4);
  for (let i = host6At; i < host6At + 16; i++) mix(host6[i]!);
  mix(offset);
  mix(psidLength);
  mix(psid >>> 8);
  mix(psid);
  return h >>> 0;
}

/** Digest of a whole table; `bindingsDigest([])` is 0. */
export function bindingsDigest(bindings: Iterable<WireBinding>): number {
  let sum = 0;
  for (const b of bindings) {
    const host6 = parseIPv6(b.host6);
    if (!host6) throw new RangeError(`binding host6 ${b.host6} is not an IPv6 address`);
    sum =
      (sum +
        bindingHash(b.host4, host6, b.portSet.offset, b.portSet.psidLength, b.portSet.psid)) >>>
      0;
  }
  return sum;
}
