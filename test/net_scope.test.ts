import { describe, expect, test } from "bun:test";
import { parseIPv4, parseIPv6 } from "../lib/net/addr.ts";
import { ipv4PrefixScope, ipv4Scope, ipv6Scope, scopeAllowed } from "../lib/net/scope.ts";

describe("ipv6Scope()", () => {
  const cases: [string, string | null][] = [
    ["2001:db8::1", null],
    ["fd00::1", null], // unique local: routable inside a site
    ["::", "unspecified"],
    ["::1", "loopback"],
    ["::2", null],
    ["ff02::1", "multicast"],
    ["ff05::1:3", "multicast"],
    ["fe80::1", "link-local"],
    ["febf::1", "link-local"],
    ["fec0::1", null], // deprecated site-local, not link-local
    ["::ffff:192.0.2.1", "ipv4-mapped"],
    ["64:ff9b::192.0.2.1", null],
  ];
  for (const [text, scope] of cases)
    test(`${text} → ${scope}`, () => expect(ipv6Scope(parseIPv6(text)!)).toBe(scope as never));
  test("reads at an offset", () => {
    const buf = new Uint8Array(20);
    buf.set(parseIPv6("ff02::1")!, 4);
    expect(ipv6Scope(buf, 4)).toBe("multicast");
  });
});

describe("ipv4Scope()", () => {
  const cases: [string, string | null][] = [
    ["192.0.2.1", null],
    ["10.0.0.1", null],
    ["0.0.0.0", "unspecified"],
    ["0.0.0.1", "this-network"],
    ["127.0.0.1", "loopback"],
    ["169.254.1.1", "link-local"],
    ["224.0.0.1", "multicast"],
    ["239.255.255.255", "multicast"],
    ["240.0.0.1", "reserved"],
    ["255.255.255.255", "reserved"],
    ["223.255.255.255", null],
  ];
  for (const [text, scope] of cases)
    test(`${text} → ${scope}`, () => expect(ipv4Scope(parseIPv4(text)!)).toBe(scope as never));
});

describe("ipv4PrefixScope()", () => {
  const p = (base: string, length: number) => ipv4PrefixScope(parseIPv4(base)!, length);
  test("pools inside a special range", () => {
    expect(p("224.0.0.0", 24)).toEqual(["multicast", "224.0.0.0/4"]);
    expect(p("127.0.0.0", 30)).toEqual(["loopback", "127.0.0.0/8"]);
    expect(p("0.0.0.0", 24)).toEqual(["this-network", "0.0.0.0/8"]);
    expect(p("169.254.0.0", 16)).toEqual(["link-local", "169.254.0.0/16"]);
    expect(p("255.255.255.255", 32)).toEqual(["reserved", "240.0.0.0/4"]);
  });
  test("pools covering a special range", () => {
    expect(p("0.0.0.0", 0)).toEqual(["this-network", "0.0.0.0/8"]);
    expect(p("192.0.0.0", 2)).toEqual(["multicast", "224.0.0.0/4"]);
    expect(p("169.0.0.0", 8)).toEqual(["link-local", "169.254.0.0/16"]);
  });
  test("unicast pools", () => {
    for (const [base, length] of [
      ["198.51.100.0", 24],
      ["192.168.20.0", 24],
      ["10.0.0.0", 8],
      ["169.253.0.0", 16],
      ["223.0.0.0", 8],
      ["128.0.0.0", 3], // 128–159: 169.254/16 is not in it
    ] as const)
      expect(p(base, length)).toBeNull();
  });
});

test("scopeAllowed() lets loopback and unspecified through only when asked", () => {
  expect(scopeAllowed(null)).toBe(true);
  expect(scopeAllowed("loopback")).toBe(false);
  expect(scopeAllowed("loopback", { loopback: true })).toBe(true);
  expect(scopeAllowed("unspecified", { loopback: true })).toBe(false);
  expect(scopeAllowed("unspecified", { unspecified: true })).toBe(true);
  expect(scopeAllowed("multicast", { loopback: true, unspecified: true })).toBe(false);
});
