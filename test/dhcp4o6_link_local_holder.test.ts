/**
 * A link-local DHCPv4-over-DHCPv6 host is one only on its link (RFC 4291 §2.5.6): in `source`
 * mode its holder key names the link too (lib/server/dhcp4o6_identity.ts linkLocalHolder,
 * lib/server/dhcp4o6_link_names.ts), so two machines with one fe80:: address on two links never
 * share a lease (test/ver17_relay_link_local.test.ts is the same through real chained dhcrelay
 * -6), and one machine gets one key however its query comes: directly, or through any relay
 * of its link (test/id18_dhcp4o6_one_link.test.ts through real dhcrelay -6).
 */
import { describe, expect, test } from "bun:test";
import { parseIPv6 } from "../lib/net/addr.ts";
import { linkLocalHolder } from "../lib/server/dhcp4o6_identity.ts";
import { LinkNames } from "../lib/server/dhcp4o6_link_names.ts";
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

  test("relayed with a global link-address: its /64 names the link, not the path; with an Interface-ID, the relay's link-address and Interface-ID", () => {
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

  // The server: interface 3 on 2001:db8:4::/64 and 2001:db8:44::/64, interface 4 on
  // 2001:db8:5::/64, interfaces 6 and 7 both in 2001:db8:9::/64 (no one link's), 8 none.
  const at = (index: number, address: string) => ({
    index,
    bytes: parseIPv6(address) as Uint8Array,
  });
  const ADDRESSES = [
    at(3, "2001:db8:44::547"),
    at(3, "2001:db8:4::547"),
    at(3, "fe80::547"),
    at(4, "2001:db8:5::547"),
    at(6, "2001:db8:9::6"),
    at(7, "2001:db8:9::7"),
  ];
  const names = (declared: string[][] = []) => new LinkNames(declared, () => ADDRESSES);

  test("direct and relayed (no Interface-ID) on one link: one key (fault a)", () => {
    const n = names();
    const direct = linkLocalHolder("fe80::10", [], "fe80::10%3", n);
    const relayed = linkLocalHolder(
      "fe80::10",
      [relay("2001:db8:4::1", "fe80::10")],
      "2001:db8:7::1",
      n,
    );
    // A relay using the link's other prefix: the same link.
    const other = linkLocalHolder(
      "fe80::10",
      [relay("2001:db8:44::1", "fe80::10")],
      "2001:db8:7::2",
      n,
    );
    expect(direct).toBe("ll:fe80::10@net:20010db800040000");
    expect(relayed).toBe(direct);
    expect(other).toBe(direct);
    // Without knowing the server's interfaces (before): two keys for one machine.
    expect(linkLocalHolder("fe80::10", [], "fe80::10%3")).not.toBe(relayed);
  });

  test("direct on two links: two keys; an interface without a prefix of its own keeps %zone", () => {
    const n = names();
    const a = linkLocalHolder("fe80::10", [], "fe80::10%3", n);
    const b = linkLocalHolder("fe80::10", [], "fe80::10%4", n);
    expect(a).not.toBe(b);
    expect(linkLocalHolder("fe80::10", [], "fe80::10%6", n)).toBe("ll:fe80::10%6");
    expect(linkLocalHolder("fe80::10", [], "fe80::10%7", n)).toBe("ll:fe80::10%7");
    expect(linkLocalHolder("fe80::10", [], "fe80::10%8", n)).toBe("ll:fe80::10%8");
  });

  test("two relays of one link, each with its own Interface-ID: one key once the link is declared (fault b)", () => {
    const r1 = [relay("2001:db8:20::1", "fe80::10", "ra0")];
    const r2 = [relay("2001:db8:20::2", "fe80::10", "rb0")];
    const undeclared = names();
    // Undeclared, the Interface-ID may be all that tells links apart: two keys (safe).
    expect(linkLocalHolder("fe80::10", r1, "2001:db8:7::1", undeclared)).not.toBe(
      linkLocalHolder("fe80::10", r2, "2001:db8:7::2", undeclared),
    );
    const n = names([["2001:db8:20::/64"]]);
    const k1 = linkLocalHolder("fe80::10", r1, "2001:db8:7::1", n);
    expect(k1).toBe("ll:fe80::10@net:20010db800200000");
    expect(linkLocalHolder("fe80::10", r2, "2001:db8:7::2", n)).toBe(k1);
    // A relay of the link sending no Interface-ID: the same key.
    expect(linkLocalHolder("fe80::10", [relay("2001:db8:20::3", "fe80::10")], "x", n)).toBe(k1);
  });

  test("a declared link of two prefixes, holding a server interface's /64: one name", () => {
    const n = names([["2001:db8:44::/64", "2001:db8:30::/64"]]);
    const direct = linkLocalHolder("fe80::10", [], "fe80::10%3", n);
    expect(direct).toBe("ll:fe80::10@net:20010db800300000");
    for (const link of ["2001:db8:30::1", "2001:db8:44::1", "2001:db8:4::1"])
      expect(linkLocalHolder("fe80::10", [relay(link, "fe80::10", "eth9")], "x", n)).toBe(
        link === "2001:db8:4::1" ? "ll:fe80::10@at:2001:db8:4::1#65746839" : direct,
      );
    expect(linkLocalHolder("fe80::10", [relay("2001:db8:4::1", "fe80::10")], "x", n)).toBe(direct);
  });

  test("one relay address per link-address: two relays' loopbacks in one /64, same Interface-ID name, two links", () => {
    // Before: the key held the /64 and the Interface-ID, so both were one client.
    const n = names();
    const a = linkLocalHolder("fe80::10", [relay("2001:db8:ff::1", "fe80::10", "eth1")], "x", n);
    const b = linkLocalHolder("fe80::10", [relay("2001:db8:ff::2", "fe80::10", "eth1")], "x", n);
    expect(a).not.toBe(b);
    expect(linkLocalHolder("fe80::10", [relay("2001:db8:ff::1", "fe80::10", "eth1")], "y", n)).toBe(
      a,
    );
  });

  test("an Interface-ID with a link-address of the server's own undeclared link: not merged with it", () => {
    // The relay may borrow that address for links of its own (RFC 8415 §19.1.1).
    const n = names();
    const relayed = [relay("2001:db8:4::1", "fe80::10", "d1")];
    expect(linkLocalHolder("fe80::10", relayed, "x", n)).not.toBe(
      linkLocalHolder("fe80::10", [], "fe80::10%3", n),
    );
  });

  test("the server's addresses are read again after a second: a renumbered interface is named anew", () => {
    let now = 0;
    let list = [at(3, "2001:db8:4::547")];
    const n = new LinkNames(
      [],
      () => list,
      () => now,
    );
    expect(n.ofInterface(3)).toBe("net:20010db800040000");
    list = [at(3, "2001:db8:6::547")];
    now = 999;
    expect(n.ofInterface(3)).toBe("net:20010db800040000");
    now = 1000;
    expect(n.ofInterface(3)).toBe("net:20010db800060000");
  });
});
