/**
 * Red team (atk18): `--dhcp4o6-link-prefix` values (lib/config/server_dhcp4o6.ts,
 * lib/server/dhcp4o6_link_names.ts) that overlap across links. Each value is one link, named
 * by the /64 of its lowest prefix; on 9593fea `2001:db8:4::/48` (link 1) and `2001:db8:4::/64`
 * (link 2) were both accepted and both named `net:20010db800040000`: a fe80::10 relayed from
 * link 1 (link-address 2001:db8:4:1::1) and another fe80::10 relayed from link 2
 * (2001:db8:4::1) had one key, one lease, and each could RELEASE the other's. Overlapping
 * values are refused now; prefixes of one link in one value may still nest.
 */
import { describe, expect, test } from "bun:test";
import { UsageError } from "../lib/config/errors.ts";
import { dhcp4o6Settings } from "../lib/config/server_dhcp4o6.ts";
import { parseIPv4, parseIPv6 } from "../lib/net/addr.ts";
import { LinkNames } from "../lib/server/dhcp4o6_link_names.ts";

const POOLS = [
  { prefixes: ["198.51.100.0/28"], tep6: "2001:db8::1", tep4: parseIPv4("192.0.2.1")! },
];
const settings = (values: string[]) =>
  dhcp4o6Settings({ dhcp4o6: true, dhcp4o6LinkPrefix: values }, POOLS as never, false, () => {});

describe("atk18: overlapping --dhcp4o6-link-prefix values", () => {
  test.each([
    [["2001:db8:4::/48", "2001:db8:4::/64"]],
    [["2001:db8:4::/64", "2001:db8:4::/64"]],
    [["2001:db8:20::/64,2001:db8:4::/64", "2001:db8::/40"]],
  ])("%j is refused at start (two links, one name)", (values) => {
    expect(() => settings(values)).toThrow(UsageError);
    expect(() => settings(values)).toThrow("overlap");
    expect(() => new LinkNames(values.map((v) => v.split(",")))).toThrow(RangeError);
  });

  test("one link's own prefixes may nest; disjoint links keep two names", () => {
    expect(settings(["2001:db8:4::/48,2001:db8:4::/64", "2001:db8:5::/64"])?.linkPrefixes).toEqual([
      ["2001:db8:4::/48", "2001:db8:4::/64"],
      ["2001:db8:5::/64"],
    ]);
    const names = new LinkNames([["2001:db8:4::/48"], ["2001:db8:5::/64"]]);
    const one = names.ofLinkAddress(parseIPv6("2001:db8:4:1::1")!, true);
    const two = names.ofLinkAddress(parseIPv6("2001:db8:5::1")!, true);
    expect(one).toBe("net:20010db800040000");
    expect(two).toBe("net:20010db800050000");
  });
});
