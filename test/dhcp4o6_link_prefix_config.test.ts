/**
 * `--dhcp4o6-link-prefix PREFIX[,PREFIX…]` (lib/config/server_dhcp4o6.ts): each value one link's
 * IPv6 prefixes, /64 or shorter (RFC 4291 §2.5.4), that name the link of a relay's link-address
 * whatever Interface-ID it sends (lib/server/dhcp4o6_link_names.ts).
 */
import { describe, expect, test } from "bun:test";
import { UsageError } from "../lib/config/errors.ts";
import { dhcp4o6Settings } from "../lib/config/server_dhcp4o6.ts";
import { parseIPv4 } from "../lib/net/addr.ts";

const POOLS = [
  { prefixes: ["198.51.100.0/28"], tep6: "2001:db8::1", tep4: parseIPv4("192.0.2.1")! },
];
const settings = (values: string[], dhcp4o6 = true, warn: (t: string) => void = () => {}) =>
  dhcp4o6Settings({ dhcp4o6, dhcp4o6LinkPrefix: values }, POOLS as never, false, warn);

describe("--dhcp4o6-link-prefix", () => {
  test("one link per value, its prefixes separated by commas", () => {
    expect(
      settings(["2001:db8:4::/64", "2001:db8:20::/64, 2001:db8:21::/64"])?.linkPrefixes,
    ).toEqual([["2001:db8:4::/64"], ["2001:db8:20::/64", "2001:db8:21::/64"]]);
    expect(settings([])?.linkPrefixes).toBeUndefined();
  });

  test.each([
    ["2001:db8:4::/80", "longer than /64"],
    ["nope", "is not an IPv6 prefix"],
    ["2001:db8:4::10/64", "has host bits set; did you mean 2001:db8:4::/64?"],
    ["2001:db8:4::/64,", "is not an IPv6 prefix"],
    // Only a global link-address names a link: these would name nothing, or every link.
    ["fe80::/64", "reaches into fe80::/10 (link-local)"],
    ["2001:db8:4::/64,ff02::/64", "reaches into ff00::/8 (multicast)"],
    ["::/0", "reaches into fe80::/10 (link-local)"],
  ])("%s is refused (%s)", (value, message) => {
    expect(() => settings([value])).toThrow(UsageError);
    expect(() => settings([value])).toThrow(message);
  });

  test("a prefix given for two links is refused, and so are nested prefixes of two links; twice for one link is not", () => {
    expect(() => settings(["2001:db8:4::/64,2001:db8:44::/64", "2001:db8:4:0::/64"])).toThrow(
      "overlap",
    );
    expect(settings(["2001:db8:4::/64,2001:db8:4::/64"])?.linkPrefixes).toEqual([
      ["2001:db8:4::/64", "2001:db8:4::/64"],
    ]);
    // Nested prefixes of two links would both be named by their lowest /64: one name, two
    // links (atk18). Refused.
    expect(() => settings(["2001:db8::/48", "2001:db8:0:4::/64"])).toThrow("overlap");
  });

  test("without --dhcp4o6 it does nothing, and says so", () => {
    const warned: string[] = [];
    expect(settings(["2001:db8:4::/64"], false, (t) => warned.push(t))).toBeUndefined();
    expect(warned.join("\n")).toContain("--dhcp4o6-link-prefix");
  });
});
