/**
 * A link-local DHCPv4-over-DHCPv6 host is one only on its link (RFC 4291 §2.5.6): in `source`
 * mode its holder key names the link too (lib/server/dhcp4o6_identity.ts linkLocalHolder), so
 * two machines with one fe80:: address on two links never share a lease
 * (test/ver17_relay_link_local.test.ts is the same through real chained dhcrelay -6).
 */
import { describe, expect, test } from "bun:test";
import { linkLocalHolder } from "../lib/server/dhcp4o6_identity.ts";
import type { Dhcp6RelayMessage } from "../lib/wire/dhcp6_relay.ts";

const relay = (linkAddress: string, peerAddress: string, interfaceId?: string): Dhcp6RelayMessage =>
  ({
    type: 12,
    hopCount: 0,
    linkAddress,
    peerAddress,
    ...(interfaceId ? { interfaceId: new TextEncoder().encode(interfaceId) } : {}),
  }) as unknown as Dhcp6RelayMessage;

describe("linkLocalHolder", () => {
  test("a global host is named by its address alone (null)", () => {
    expect(linkLocalHolder("2001:db8:1::10", [], "2001:db8:1::10")).toBeNull();
    expect(
      linkLocalHolder("2001:db8:1::10", [relay("2001:db8:1::1", "2001:db8:1::10")], "2001:db8::2"),
    ).toBeNull();
  });

  test("direct: the receiving interface names the link", () => {
    const a = linkLocalHolder("fe80::10", [], "fe80::10%3");
    const b = linkLocalHolder("fe80::10", [], "fe80::10%4");
    expect(a).not.toBeNull();
    expect(a).not.toBe(b);
    expect(linkLocalHolder("fe80::10", [], "fe80::10%3")).toBe(a);
    // fe80::/10, not only fe80::/64
    expect(linkLocalHolder("febf::10", [], "febf::10%3")).not.toBeNull();
  });

  test("relayed: two links of one relay (interface-id) differ; one link is stable", () => {
    const via = (id: string) => [relay("::", "fe80::10", id)];
    const a = linkLocalHolder("fe80::10", via("la0"), "2001:db8::1");
    const b = linkLocalHolder("fe80::10", via("lb0"), "2001:db8::1");
    expect(a).not.toBe(b);
    expect(linkLocalHolder("fe80::10", via("la0"), "2001:db8::1")).toBe(a);
  });

  test("relayed with a global link-address: its /64 and Interface-ID name the link, not the path", () => {
    const one = linkLocalHolder("fe80::10", [relay("2001:db8:a::1", "fe80::10")], "2001:db8::1");
    const two = linkLocalHolder("fe80::10", [relay("2001:db8:b::1", "fe80::10")], "2001:db8::1");
    // Another relay of the same link (its own link-address, its own source), or the same one
    // behind another chain: the same link (test/atk17_dhcp4o6_two_relays.test.ts).
    const other = linkLocalHolder("fe80::10", [relay("2001:db8:a::2", "fe80::10")], "2001:db8::9");
    const chained = linkLocalHolder(
      "fe80::10",
      [relay("2001:db8:c::1", "2001:db8:d::1"), relay("2001:db8:a::1", "fe80::10")],
      "2001:db8::1",
    );
    expect(one).not.toBe(two);
    expect(other).toBe(one);
    expect(chained).toBe(one);
    // One link-address for two links told apart by Interface-ID: two links, two keys.
    const la = linkLocalHolder(
      "fe80::10",
      [relay("2001:db8:a::1", "fe80::10", "la0")],
      "2001:db8::1",
    );
    const lb = linkLocalHolder(
      "fe80::10",
      [relay("2001:db8:a::1", "fe80::10", "lb0")],
      "2001:db8::1",
    );
    expect(new Set([one, la, lb]).size).toBe(3);
  });

  test("relayed with link-address :: (or link-local): relay addresses and chains differ", () => {
    const one = linkLocalHolder("fe80::10", [relay("::", "fe80::10", "la0")], "2001:db8::1");
    const other = linkLocalHolder("fe80::10", [relay("::", "fe80::10", "la0")], "2001:db8::9");
    const local = linkLocalHolder("fe80::10", [relay("fe80::1", "fe80::10", "la0")], "2001:db8::1");
    const chained = linkLocalHolder(
      "fe80::10",
      [relay("2001:db8:c::1", "2001:db8:d::1"), relay("::", "fe80::10", "la0")],
      "2001:db8::1",
    );
    expect(new Set([one, other, local, chained]).size).toBe(4);
  });
});
