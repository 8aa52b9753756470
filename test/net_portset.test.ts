import { describe, expect, test } from "bun:test";
import { leaseKey } from "../lib/lease/lease.ts";
import {
  bindingKey,
  formatPortSet,
  parsePortSet,
  portInSet,
  portSetProblem,
  portSetRanges,
  portSetSize,
  psidOfPort,
} from "../lib/net/portset.ts";

describe("RFC 7597 §5.1 port sets", () => {
  const rfc = { offset: 6, psidLength: 6, psid: 17 };

  test("RFC vector: offset 6, PSID length 6, PSID 17 → 1296–1311, 2320–2335, …", () => {
    const ranges = portSetRanges(rfc);
    expect(ranges.slice(0, 3)).toEqual([
      [1296, 1311],
      [2320, 2335],
      [3344, 3359],
    ]);
    expect(ranges).toHaveLength(63); // A = 1 … 63
    expect(ranges.at(-1)).toEqual([64784, 64799]);
    expect(portSetSize(rfc)).toBe(63 * 16);
  });

  test("psidOfPort() reads the PSID back; the low range has none when the offset is > 0", () => {
    expect(psidOfPort(1296, 6, 6)).toBe(17);
    expect(psidOfPort(1311, 6, 6)).toBe(17);
    expect(psidOfPort(1312, 6, 6)).toBe(18);
    expect(psidOfPort(64799, 6, 6)).toBe(17);
    expect(psidOfPort(80, 6, 6)).toBe(-1);
    expect(psidOfPort(1023, 6, 6)).toBe(-1);
    expect(psidOfPort(1024, 6, 6)).toBe(0);
    expect(psidOfPort(0, 0, 4)).toBe(0); // offset 0: no excluded range
    expect(psidOfPort(65535, 0, 4)).toBe(15);
    expect(psidOfPort(12345, 0, 0)).toBe(0); // not shared
  });

  test("portInSet() agrees with the ranges", () => {
    for (const [first, last] of portSetRanges(rfc)) {
      expect(portInSet(first, rfc)).toBe(true);
      expect(portInSet(last, rfc)).toBe(true);
      expect(portInSet(first - 1, rfc)).toBe(false);
      expect(portInSet(last + 1, rfc)).toBe(false);
    }
    expect(portInSet(80, rfc)).toBe(false);
    expect(portInSet(-1, rfc)).toBe(false);
    expect(portInSet(65536, { offset: 0, psidLength: 0, psid: 0 })).toBe(false);
    expect(portInSet(0, { offset: 0, psidLength: 0, psid: 0 })).toBe(true);
  });

  test("the whole address (PSID length 0) is one range 0–65535", () => {
    expect(portSetRanges({ offset: 0, psidLength: 0, psid: 0 })).toEqual([[0, 65535]]);
    expect(portSetSize({ offset: 6, psidLength: 0, psid: 0 })).toBe(65536);
  });

  test("offset 0 (RFC 7596 lw4o6 default): one contiguous range per PSID", () => {
    expect(portSetRanges({ offset: 0, psidLength: 2, psid: 3 })).toEqual([[49152, 65535]]);
    expect(portSetRanges({ offset: 0, psidLength: 16, psid: 443 })).toEqual([[443, 443]]);
  });

  for (const [a, k] of [
    [6, 6],
    [6, 2],
    [4, 8],
    [1, 1],
    [10, 6],
    [15, 1],
    [2, 14],
  ] as const) {
    test(`a=${a}, k=${k}: all PSIDs together cover every port ≥ 2^(16−a) exactly once`, () => {
      const owner = new Int32Array(65536).fill(-1);
      for (let psid = 0; psid < 2 ** k; psid++) {
        for (const [first, last] of portSetRanges({ offset: a, psidLength: k, psid })) {
          for (let port = first; port <= last; port++) {
            expect(owner[port]).toBe(-1);
            owner[port] = psid;
          }
        }
      }
      const low = 2 ** (16 - a);
      for (let port = 0; port < 65536; port++) {
        const expected = port < low ? -1 : psidOfPort(port, a, k);
        if (owner[port] !== expected)
          expect({ port, owner: owner[port] }).toEqual({ port, owner: expected });
      }
      expect(owner.subarray(0, low).every((o) => o === -1)).toBe(true);
      expect(owner.subarray(low).every((o) => o >= 0)).toBe(true);
      expect(portSetSize({ offset: a, psidLength: k, psid: 0 }) * 2 ** k).toBe(65536 - low);
    });
  }

  test("portSetProblem() names what is wrong; portSetRanges() throws on it", () => {
    expect(portSetProblem(rfc)).toBeNull();
    expect(portSetProblem({ offset: 16, psidLength: 0, psid: 0 })).toContain("offset");
    expect(portSetProblem({ offset: 0, psidLength: 17, psid: 0 })).toContain("psidLength");
    expect(portSetProblem({ offset: 6, psidLength: 11, psid: 0 })).toContain("17");
    expect(portSetProblem({ offset: 6, psidLength: 6, psid: 64 })).toContain("psid 64");
    expect(portSetProblem({ offset: 0, psidLength: 0, psid: 1 })).toContain("psid 1");
    expect(() => portSetRanges({ offset: 6, psidLength: 6, psid: 64 })).toThrow(RangeError);
  });

  test("parsePortSet() reads what formatPortSet() writes", () => {
    expect(parsePortSet("all")).toEqual({ offset: 0, psidLength: 0, psid: 0 });
    expect(parsePortSet(formatPortSet(rfc))).toEqual(rfc);
    expect(parsePortSet("6/6/64")).toBeNull();
    expect(parsePortSet("6/6")).toBeNull();
    expect(parsePortSet("x")).toBeNull();
  });
});

describe("bindingKey()", () => {
  test("one key per (IPv4, PSID), the lease store's key (the TEP and the server agree)", () => {
    const pairs: [number, number][] = [
      [0xc6336409, 0],
      [0xc6336409, 17],
      [0xc6336409, 0xffff],
      [0xc633640a, 0],
      [0xffffffff, 0xffff],
    ];
    const keys = pairs.map(([ipv4, psid]) => bindingKey(ipv4, psid));
    expect(new Set(keys).size).toBe(pairs.length);
    for (const [i, [ipv4, psid]] of pairs.entries()) {
      expect(keys[i]).toBe(leaseKey(ipv4, psid));
      expect(Math.floor(keys[i]! / 65536)).toBe(ipv4);
      expect(keys[i]! % 65536).toBe(psid);
    }
  });
});
