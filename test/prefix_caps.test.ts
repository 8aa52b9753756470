import { describe, expect, test } from "bun:test";
import { defaultSiteCap, PrefixCaps } from "../lib/alloc/prefix_caps.ts";

describe("PrefixCaps", () => {
  test("the /64s of one /56 share the site cap; another site is not affected", () => {
    const caps = new PrefixCaps(2, 64, 3, 56);
    // Three /64s of 2001:db8:100::/56, one lease each: the site is full.
    for (const h of ["2001:db8:100:1::1", "2001:db8:100:2::1", "2001:db8:100:ff::1"]) {
      expect(caps.over(h, 0)).toBeUndefined();
      caps.add(h, 1);
    }
    const over = caps.over("2001:db8:100:3::1", 0);
    expect(over?.reason).toBe("site-limit");
    expect(over?.message).toContain("2001:db8:100::/56");
    expect(over?.message).toContain("--max-leases-per-site");
    // The next /56 (2001:db8:100:100::/56) is another site.
    expect(caps.over("2001:db8:100:100::1", 0)).toBeUndefined();
    // A host replacing its own lease (held 1) is not refused; a lease that ends frees room.
    expect(caps.over("2001:db8:100:1::1", 1)).toBeUndefined();
    caps.add("2001:db8:100:2::1", -1);
    expect(caps.over("2001:db8:100:3::1", 0)).toBeUndefined();
  });

  test("the host prefix cap is checked first; 0 turns a cap off; bad caps throw", () => {
    const caps = new PrefixCaps(1, 64, 0);
    caps.add("2001:db8:1::1", 1);
    expect(caps.over("2001:db8:1::2", 0)?.reason).toBe("prefix-limit");
    for (let i = 0; i < 100; i++) caps.add(`2001:db8:1:${i + 1}::1`, 1);
    expect(caps.over("2001:db8:1:200::1", 0)).toBeUndefined();
    expect(() => new PrefixCaps(-1, 64)).toThrow(RangeError);
    expect(() => new PrefixCaps(1, 64, 1.5)).toThrow(RangeError);
    // The default site cap follows the per-prefix cap: 64 for the default 16, off with it.
    expect([defaultSiteCap(16), defaultSiteCap(0)]).toEqual([64, 0]);
  });
});
