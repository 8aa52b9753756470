/**
 * lib/client/kernel_binding_watch.ts classifySourcePolicy: which ICMPv6 messages a client with
 * a kernel DTI believes as "the TEP has no binding for my lease" (ICMPv6 1/5 from its TEP,
 * RFC 4443 §3.1, quoting a 4over6 packet from the host to that TEP with the leased source),
 * which it counts as forged (the same from another sender), and which are not about its lease.
 * The end-to-end run is test/binding_lost.test.ts (--dti seg6).
 */
import { describe, expect, test } from "bun:test";
import { classifySourcePolicy, type WatchedLease } from "../lib/client/kernel_binding_watch.ts";
import { parseIPv4, parseIPv6 } from "../lib/net/addr.ts";

const lease: WatchedLease = {
  host6: parseIPv6("2001:db8:7::10")!,
  tep6: parseIPv6("2001:db8:7::1")!,
  ipv4: parseIPv4("198.51.100.7")!,
};
const TEP = parseIPv6("2001:db8:7::1")!;
const OTHER = parseIPv6("2001:db8:7::66")!;

/** ICMPv6 type/code quoting IPv6 (src → dst, next header) + an IPv4 header from `src4`. */
function message(
  o: {
    type?: number;
    code?: number;
    src6?: string;
    dst6?: string;
    nh?: number;
    src4?: string;
    v4?: number;
  } = {},
) {
  const m = new Uint8Array(8 + 40 + 28);
  m[0] = o.type ?? 1;
  m[1] = o.code ?? 5;
  m[8] = 0x60;
  m[8 + 5] = 28;
  m[8 + 6] = o.nh ?? 4;
  m[8 + 7] = 64;
  m.set(parseIPv6(o.src6 ?? "2001:db8:7::10")!, 8 + 8);
  m.set(parseIPv6(o.dst6 ?? "2001:db8:7::1")!, 8 + 24);
  const v4 = 48;
  m[v4] = o.v4 ?? 0x45;
  m[v4 + 9] = 17;
  const src = parseIPv4(o.src4 ?? "198.51.100.7")!;
  m[v4 + 12] = src >>> 24;
  m[v4 + 13] = (src >>> 16) & 0xff;
  m[v4 + 14] = (src >>> 8) & 0xff;
  m[v4 + 15] = src & 0xff;
  m.set([192, 0, 2, 80], v4 + 16);
  return m;
}

describe("classifySourcePolicy", () => {
  test("1/5 from the TEP about the lease: lost; the same from another sender: not-tep", () => {
    const m = message();
    expect(classifySourcePolicy(m, m.length, TEP, lease)).toBe("lost");
    expect(classifySourcePolicy(m, m.length, OTHER, lease)).toBe("not-tep");
  });

  test("not about our lease, or not that error: not-ours, from any sender", () => {
    for (const m of [
      message({ code: 3 }), // address unreachable
      message({ type: 2 }), // Packet Too Big
      message({ nh: 41 }), // IPv6 in IPv6
      message({ src6: "2001:db8:7::11" }), // another host
      message({ dst6: "2001:db8:7::2" }), // to another TEP
      message({ src4: "198.51.100.8" }), // another inner source
      message({ v4: 0x65 }), // not IPv4 inside
    ]) {
      expect(classifySourcePolicy(m, m.length, TEP, lease)).toBe("not-ours");
      expect(classifySourcePolicy(m, m.length, OTHER, lease)).toBe("not-ours");
    }
  });

  test("too short to quote the IPv6 and IPv4 headers: not-ours", () => {
    const m = message();
    expect(classifySourcePolicy(m, 8 + 40 + 19, TEP, lease)).toBe("not-ours");
  });
});
