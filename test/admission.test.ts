import { describe, expect, test } from "bun:test";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { parseIPv6 } from "../lib/net/addr.ts";
import { Admission, ipv6PrefixContains, parseIPv6Prefix } from "../lib/server/admission.ts";

function setup(options: Partial<ConstructorParameters<typeof Admission>[0]> = {}) {
  const clock = { now: 0 };
  const lines: string[] = [];
  const metrics = new Metrics();
  const admission = new Admission({
    metrics,
    log: new Logger({ sink: (t) => lines.push(...t.trimEnd().split("\n")) }),
    now: () => clock.now,
    ...options,
  });
  const refused = (protocol: string, reason: string) =>
    metrics.get("dstm_admission_refused_total", { protocol, reason });
  return { admission, clock, lines, refused };
}

describe("Admission", () => {
  test("IPv6 prefixes parse and contain", () => {
    const p = parseIPv6Prefix("2001:db8:4::/62")!;
    expect(p.length).toBe(62);
    expect(ipv6PrefixContains(p, parseIPv6("2001:db8:4:3::1")!)).toBe(true);
    expect(ipv6PrefixContains(p, parseIPv6("2001:db8:4:4::1")!)).toBe(false);
    expect(ipv6PrefixContains(parseIPv6Prefix("::/0")!, parseIPv6("2001:db8::1")!)).toBe(true);
    for (const bad of ["2001:db8::1", "2001:db8::/129", "2001:db8::/x", "192.0.2.0/24"]) {
      expect(parseIPv6Prefix(bad)).toBeNull();
    }
  });

  test("a source prefix gets its burst, then its rate; other prefixes are not affected", () => {
    const { admission, clock, refused } = setup({ ratePerSecond: 2, burst: 3 });
    const take = (source: string) => admission.admit("native", source);
    expect([1, 2, 3, 4].map((i) => take(`2001:db8:1::${i}`))).toEqual([true, true, true, false]);
    expect(take("2001:db8:2::1")).toBe(true);
    clock.now += 500; // one token back at 2/s
    expect([take("2001:db8:1::9"), take("2001:db8:1::9")]).toEqual([true, false]);
    expect(refused("native", "rate-limit")).toBe(2);
  });

  test("link-local sources with a zone share the fe80::/64 bucket (zone ignored), not one each", () => {
    const { admission, refused } = setup({ ratePerSecond: 1, burst: 2 });
    // Before: `fe80::…%eth0` did not parse, so each address was its own bucket.
    const sources = ["fe80::1%eth0", "fe80::2%eth0", "fe80::3%eth1"];
    expect(sources.map((s) => admission.admit("native", s))).toEqual([true, true, false]);
    expect(admission.trackedPrefixes).toBe(1);
    expect(refused("native", "rate-limit")).toBe(1);
  });

  test("the bucket table is bounded: the least recently used prefix is forgotten", () => {
    const { admission } = setup({ ratePerSecond: 1, burst: 1, maxPrefixes: 4 });
    for (let i = 0; i < 1000; i++) admission.admit("native", `2001:db8:${i.toString(16)}::1`);
    expect(admission.trackedPrefixes).toBe(4);
    // The most recent prefix is still remembered (empty bucket), the first one is not.
    expect(admission.admit("native", "2001:db8:3e7::1")).toBe(false);
    expect(admission.admit("native", "2001:db8:0::1")).toBe(true);
  });

  test("4o6 outside the allow list is refused before any bucket; native is not checked", () => {
    const { admission, refused } = setup({ dhcp4o6Allow: ["2001:db8:8::/64"], ratePerSecond: 1 });
    expect(admission.admit("dhcp4o6", "2001:db8:7::1")).toBe(false);
    expect(admission.trackedPrefixes).toBe(0);
    expect(admission.admit("dhcp4o6", "2001:db8:8::1")).toBe(true);
    expect(admission.admit("native", "2001:db8:7::1")).toBe(true);
    expect(refused("dhcp4o6", "not-allowed")).toBe(1);
    expect(() => setup({ dhcp4o6Allow: ["2001:db8:8::1"] })).toThrow(RangeError);
  });

  test("refusals are logged at warn once per interval per reason, saying how many were not", async () => {
    const { admission, clock, lines } = setup({
      ratePerSecond: 1,
      burst: 1,
      logIntervalMs: 10_000,
    });
    for (let i = 0; i < 5; i++) admission.admit("native", "2001:db8:1::1");
    admission.refused("native", "prefix-limit", { host6: "2001:db8:1::1" });
    clock.now += 10_000;
    admission.admit("native", "2001:db8:9::1");
    admission.admit("native", "2001:db8:9::1");
    await new Promise((resolve) => setImmediate(resolve));
    const rate = lines.filter((l) => / WARN reject reason=rate-limit /.test(l));
    expect(rate.length).toBe(2);
    expect(rate[0]).not.toMatch(/not-logged/);
    expect(rate[1]).toMatch(/not-logged=3/);
    const prefix = lines.filter((l) => /reason=prefix-limit/.test(l));
    expect(prefix.length).toBe(1);
    expect(prefix[0]).toContain("limit=--max-leases-per-prefix");
    expect(rate[0]).not.toContain("limit=");
  });
});
