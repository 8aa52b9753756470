import { describe, expect, test } from "bun:test";
import { MAX_POOL_SLOTS, Pool, poolsOverlap } from "../lib/alloc/pool.ts";
import { ACTIVE, NEVER, PoolSlots } from "../lib/alloc/slots.ts";
import { formatIPv4, parseIPv4 } from "../lib/net/addr.ts";
import { poolConfigError } from "./helpers/pool_error.ts";

const ip = (text: string) => parseIPv4(text) as number;
const addresses = (pool: Pool) => [...pool].map(formatIPv4);

describe("Pool", () => {
  test("a /24 hands out .1 to .254: never the network or broadcast address", () => {
    const pool = new Pool({ prefixes: ["192.0.2.0/24"] });
    expect(pool.size).toBe(254);
    expect(pool.slotCount).toBe(256);
    expect(pool.name).toBe("192.0.2.0/24");
    expect(pool.contains(ip("192.0.2.0"))).toBe(false);
    expect(pool.contains(ip("192.0.2.255"))).toBe(false);
    expect(pool.contains(ip("192.0.2.1"))).toBe(true);
    expect(pool.contains(ip("192.0.3.1"))).toBe(false);
    const list = addresses(pool);
    expect(list[0]).toBe("192.0.2.1");
    expect(list.at(-1)).toBe("192.0.2.254");
    expect(list).toHaveLength(254);
  });

  test("a /30 has two usable addresses", () => {
    expect(addresses(new Pool({ prefixes: ["192.0.2.4/30"] }))).toEqual(["192.0.2.5", "192.0.2.6"]);
  });

  test("a /31 and a /32 use every address (RFC 3021)", () => {
    expect(addresses(new Pool({ prefixes: ["192.0.2.4/31"] }))).toEqual(["192.0.2.4", "192.0.2.5"]);
    expect(addresses(new Pool({ prefixes: ["192.0.2.9/32"] }))).toEqual(["192.0.2.9"]);
  });

  test("excluded addresses and blocks are never handed out", () => {
    const pool = new Pool({
      prefixes: ["192.0.2.0/28"],
      exclude: ["192.0.2.1", "192.0.2.8/30"],
    });
    expect(addresses(pool)).toEqual([
      "192.0.2.2",
      "192.0.2.3",
      "192.0.2.4",
      "192.0.2.5",
      "192.0.2.6",
      "192.0.2.7",
      "192.0.2.12",
      "192.0.2.13",
      "192.0.2.14",
    ]);
    expect(pool.size).toBe(9);
    expect(pool.contains(ip("192.0.2.9"))).toBe(false);
  });

  test("several prefixes map to dense slots in config order", () => {
    const pool = new Pool({ name: "lab", prefixes: ["198.51.100.8/29", "192.0.2.0/30"] });
    expect(pool.name).toBe("lab");
    expect(pool.slotCount).toBe(12);
    expect(pool.size).toBe(8);
    expect(pool.slotOf(ip("198.51.100.8"))).toBe(0);
    expect(pool.slotOf(ip("192.0.2.1"))).toBe(9);
    expect(pool.slotOf(ip("203.0.113.1"))).toBe(-1);
    for (let slot = 0; slot < pool.slotCount; slot++) {
      expect(pool.slotOf(pool.addressOf(slot))).toBe(slot);
    }
    expect(pool.isUsable(8)).toBe(false); // 192.0.2.0: network
    expect(addresses(pool).at(-1)).toBe("192.0.2.2");
  });

  test("an exclusion may span adjacent prefixes listed in any order", () => {
    const pool = new Pool({
      prefixes: ["192.0.2.128/25", "198.51.100.0/30", "192.0.2.0/25"],
      exclude: ["192.0.2.0/24"],
    });
    expect(addresses(pool)).toEqual(["198.51.100.1", "198.51.100.2"]);
  });
});

describe("Pool validation", () => {
  const error = poolConfigError;

  test("unparsable CIDRs", () => {
    expect(error({ prefixes: ["192.0.2.0"] })).toBe(
      'pool "192.0.2.0" is not an IPv4 CIDR like 192.0.2.0/24',
    );
    expect(error({ prefixes: ["192.0.2.0/33"] })).toContain("is not an IPv4 CIDR");
    expect(error({ prefixes: ["2001:db8::/64"] })).toContain("is not an IPv4 CIDR");
    expect(error({ prefixes: ["300.0.2.0/24"] })).toContain("is not an IPv4 CIDR");
    expect(error({ prefixes: [] })).toBe("a pool needs at least one CIDR");
  });

  test("host bits set suggests the network", () => {
    expect(error({ prefixes: ["192.0.2.1/24"] })).toBe(
      "pool 192.0.2.1/24 has host bits set; did you mean 192.0.2.0/24?",
    );
    expect(error({ prefixes: ["192.0.2.0/24"], exclude: ["192.0.2.9/30"] })).toContain(
      "did you mean 192.0.2.8/30?",
    );
  });

  test("overlapping prefixes within a pool", () => {
    expect(error({ prefixes: ["192.0.2.0/24", "192.0.2.128/25"] })).toBe(
      "pool 192.0.2.0/24: 192.0.2.0/24 and 192.0.2.128/25 overlap; list each address once",
    );
  });

  test("an exclusion outside the pool", () => {
    expect(error({ prefixes: ["192.0.2.0/25"], exclude: ["192.0.2.200"] })).toContain(
      "excluded 192.0.2.200 is not inside the pool",
    );
    expect(error({ prefixes: ["192.0.2.0/25"], exclude: ["192.0.2.0/24"] })).toContain(
      "excluded 192.0.2.0/24 is not inside the pool",
    );
    expect(error({ prefixes: ["192.0.2.0/25"], exclude: ["banana"] })).toBe(
      'exclude "banana" is not an IPv4 address or CIDR',
    );
  });

  test("a pool with no usable address", () => {
    expect(error({ prefixes: ["192.0.2.0/30"], exclude: ["192.0.2.1", "192.0.2.2"] })).toContain(
      "has no usable address",
    );
    expect(
      error({ prefixes: ["192.0.2.128/25", "192.0.2.0/25"], exclude: ["192.0.2.0/24"] }),
    ).toContain("has no usable address");
  });

  test("a pool larger than the limit", () => {
    expect(MAX_POOL_SLOTS).toBe(2 ** 22);
    expect(error({ prefixes: ["10.0.0.0/8"] })).toContain("the limit is 4194304");
  });
});

describe("poolsOverlap()", () => {
  test("names both pools and the prefixes", () => {
    const a = new Pool({ prefixes: ["192.0.2.0/24"] });
    const b = new Pool({ prefixes: ["198.51.100.0/24"] });
    const c = new Pool({ name: "c", prefixes: ["203.0.113.0/24", "192.0.2.64/26"] });
    expect(poolsOverlap([a, b])).toBeNull();
    const overlap = poolsOverlap([a, b, c]);
    expect(overlap?.a).toBe(a);
    expect(overlap?.b).toBe(c);
    expect(overlap?.message).toBe(
      "pools 192.0.2.0/24 and c overlap (192.0.2.0/24 and 192.0.2.64/26); give each address to one pool",
    );
  });
});

describe("PoolSlots.takeNeverNear (servers sharing a database)", () => {
  test("places all over the pool pick apart in its never-used part, also with its low part in use", () => {
    const pool = new Pool({ prefixes: ["198.18.0.0/22"] });
    const slots = new PoolSlots(pool, "2001:db8::1", 0, () => undefined);
    const used = 768; // after a restart, the low three quarters hold leases
    for (let slot = 0; slot < used; slot++) slots.state[slot] = ACTIVE;
    const n = slots.state.length;
    const picks = Array.from({ length: 16 }, (_, i) =>
      slots.takeNeverNear(Math.floor((i * n) / 16)),
    );
    expect(picks.every((slot) => slot >= used && slots.state[slot] === NEVER)).toBe(true);
    expect(new Set(picks).size).toBe(16); // not all the cursor slot: two servers seldom meet
    for (let slot = used; slot < n; slot++) slots.state[slot] = ACTIVE;
    expect(slots.takeNeverNear(0)).toBe(-1);
  });
});
