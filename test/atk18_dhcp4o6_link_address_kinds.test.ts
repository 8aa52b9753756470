/**
 * Red team (atk18): which link-addresses name a link (lib/server/dhcp4o6_identity.ts
 * linkLocalHolder). RFC 8415 §9.1: link-address is an address of the client's link, "typically
 * a globally scoped unicast address (i.e., GUA or ULA)", or `::` when the relay has none
 * (§19.1.1). On 9593fea every link-address but `::` and fe80::/10 was taken as one and named
 * the link by its /64, so two relays of two links that both sent a multicast address
 * (ff02::1:2), the loopback ::1, or IPv4-mapped addresses (::ffff:192.0.2.1 and
 * ::ffff:198.51.100.1, all in ::/64) gave fe80::10 on both links one key: `net:ff02000000000000`
 * or `net:0000000000000000`, one lease, each able to release the other's. None of these is an
 * address of a link (RFC 4291 §2.4: ::/8 reserved, ff00::/8 multicast), so they name none now:
 * the key is the relay path, as for `::`.
 */
import { describe, expect, test } from "bun:test";
import { parseIPv6 } from "../lib/net/addr.ts";
import { linkLocalHolder } from "../lib/server/dhcp4o6_identity.ts";
import { LinkNames } from "../lib/server/dhcp4o6_link_names.ts";
import type { Dhcp6RelayMessage } from "../lib/wire/dhcp6_relay.ts";

const relay = (linkAddress: string): Dhcp6RelayMessage => ({
  type: 12,
  hopCount: 0,
  linkAddress,
  peerAddress: "fe80::10",
  relayMessage: new Uint8Array(0),
});

describe("atk18: link-addresses that name no link", () => {
  test.each([
    ["ff02::1:2", "ff02::1:2"],
    ["ff05::1:3", "ff05::1:3"],
    ["::1", "::1"],
    ["::ffff:192.0.2.1", "::ffff:198.51.100.1"],
    ["::2", "::3"],
  ])("relays of two links sending %s and %s: two keys", (one, two) => {
    const a = linkLocalHolder("fe80::10", [relay(one)], "2001:db8:71::1");
    const b = linkLocalHolder("fe80::10", [relay(two)], "2001:db8:72::2");
    expect(a).not.toBe(b); // before: one net:… key
    expect(a).toStartWith("ll:fe80::10@2001:db8:71::1|");
  });

  test("GUA and ULA link-addresses still name the link by their /64", () => {
    expect(linkLocalHolder("fe80::10", [relay("2001:db8:4::1")], "2001:db8:71::1")).toBe(
      "ll:fe80::10@net:20010db800040000",
    );
    expect(linkLocalHolder("fe80::10", [relay("fd00:4::1")], "2001:db8:71::1")).toBe(
      "ll:fe80::10@net:fd00000400000000",
    );
  });
});

describe("atk18: a flood of link-local queries", () => {
  test("10 000 distinct link-addresses and interfaces in one second: the server's addresses read once, each link its own key", () => {
    let reads = 0;
    let now = 0;
    const names = new LinkNames(
      [["2001:db8:40::/48"]],
      () => {
        reads++;
        return [{ index: 2, bytes: parseIPv6("2001:db8:4::547")!, permanent: true }];
      },
      () => now,
    );
    const keys = new Set<string | null>();
    for (let i = 0; i < 10_000; i++) {
      keys.add(
        linkLocalHolder(
          "fe80::10",
          [relay(`2001:db8:${(i + 0x1000).toString(16)}::1`)],
          "2001:db8:7::1",
          names,
        ),
      );
      keys.add(linkLocalHolder("fe80::10", [], `fe80::10%${i + 3}`, names));
      now += 0.05; // 10 000 queries in 0.5 s
    }
    expect(reads).toBe(1);
    expect(keys.size).toBe(20_000);
    now = 1000;
    linkLocalHolder("fe80::10", [], "fe80::10%2", names);
    expect(reads).toBe(2);
  });
});
