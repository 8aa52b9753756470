import { describe, expect, test } from "bun:test";
import { AllocationEngine } from "../lib/alloc/engine.ts";
import { Pool, PoolConfigError } from "../lib/alloc/pool.ts";
import {
  lowestPort,
  MIN_PORTS_PER_SET,
  portSharing,
  type SharingSpec,
  sharingProblem,
} from "../lib/alloc/sharing.ts";
import { WHOLE_ADDRESS } from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { formatIPv4, parseIPv4 } from "../lib/net/addr.ts";
import { portSetRanges, portSetSize } from "../lib/net/portset.ts";
import { poolConfigError } from "./helpers/pool_error.ts";

const ip = (text: string) => parseIPv4(text) as number;

describe("sharingProblem(): configurations refused with one line", () => {
  test("share must be a power of two from 1 to 65536", () => {
    for (const share of [0, 3, 6, -4, 1.5, 131072, Number.NaN]) {
      expect(sharingProblem({ share })).toBe(
        `share ${share} is not a power of two from 1 to 65536 (1, 2, 4, 8, …)`,
      );
    }
    for (const share of [1, 2, 4, 256, 512]) expect(sharingProblem({ share })).toBeNull();
  });

  test("psid-offset must be 0–15", () => {
    expect(sharingProblem({ share: 4, psidOffset: 16 })).toBe(
      "psid-offset 16 is not 0–15 (MAP uses 6)",
    );
    expect(sharingProblem({ share: 4, psidOffset: -1 })).toContain("is not 0–15");
    expect(sharingProblem({ share: 4, psidOffset: 2.5 })).toContain("is not 0–15");
  });

  test("offset + PSID length must not exceed 16", () => {
    expect(sharingProblem({ share: 2048, psidOffset: 6 })).toBe(
      "psid-offset 6 + PSID length 11 (share 2048) is 17, more than 16; lower one of them",
    );
    expect(sharingProblem({ share: 2, psidOffset: 15, allowWellKnownPorts: true })).toBeNull(); // 16 is fine
    expect(sharingProblem({ share: 4, psidOffset: 15 })).toContain("is 17, more than 16");
  });

  test(`each port set must keep at least ${MIN_PORTS_PER_SET} ports`, () => {
    // offset 6, k = 10: (2^6 − 1) · 2^0 = 63 ports
    expect(sharingProblem({ share: 1024, psidOffset: 6 })).toBe(
      "share 1024 with psid-offset 6 leaves 63 ports per host, fewer than 64; share less",
    );
    expect(sharingProblem({ share: 512, psidOffset: 6 })).toBeNull(); // 126 ports
    expect(sharingProblem({ share: 2048, psidOffset: 0 })).toContain("leaves 32 ports");
    expect(sharingProblem({ share: 1024, psidOffset: 0 })).toBeNull(); // 64 ports
    expect(sharingProblem({ share: 65536, psidOffset: 0 })).toContain("leaves 1 ports");
  });

  test("offsets above 6 put well-known ports in every set: refused unless allowed", () => {
    expect(sharingProblem({ share: 2, psidOffset: 8 })).toBe(
      "with psid-offset 8 every port set holds well-known ports (below 1024); use psid-offset 1–6, or allow-well-known-ports",
    );
    expect(sharingProblem({ share: 2, psidOffset: 8, allowWellKnownPorts: true })).toBeNull();
    expect(sharingProblem({ share: 2, psidOffset: 7 })).toContain("well-known");
  });

  test("share 1 is a whole address whatever the offset", () => {
    expect(sharingProblem({})).toBeNull();
    expect(sharingProblem({ share: 1, psidOffset: 0 })).toBeNull();
    expect(sharingProblem({ share: 1, psidOffset: 16 })).toContain("psid-offset 16");
  });
});

describe("portSharing(): the PSIDs a pool hands out", () => {
  test("share 4 with MAP's default offset 6: every PSID, 16,128 ports each, ports 0–1023 in none", () => {
    const sharing = portSharing({ share: 4 });
    expect(sharing).toMatchObject({
      share: 4,
      psidLength: 2,
      psidOffset: 6,
      firstPsid: 0,
      usablePsids: 4,
      portsPerSet: 16128,
    });
    expect(sharing.portSetOf(3)).toEqual({ offset: 6, psidLength: 2, psid: 3 });
    expect(sharing.portSetOf(3)).toBe(sharing.portSetOf(3)); // one frozen object per PSID
    expect(portSetRanges(sharing.portSetOf(0)).slice(0, 2)).toEqual([
      [1024, 1279],
      [2048, 2303],
    ]);
  });

  test("RFC 7597 vector: offset 6, PSID length 6, PSID 17 starts at port 1296", () => {
    expect(lowestPort(6, 6, 17)).toBe(1296);
    const set = portSharing({ share: 64 }).portSetOf(17);
    expect(portSetRanges(set).slice(0, 2)).toEqual([
      [1296, 1311],
      [2320, 2335],
    ]);
  });

  test("offset 0 without allow-well-known-ports skips the PSIDs covering 0–1023", () => {
    expect(portSharing({ share: 4, psidOffset: 0 })).toMatchObject({
      firstPsid: 1,
      usablePsids: 3,
      portsPerSet: 16384,
    });
    expect(portSharing({ share: 64, psidOffset: 0 })).toMatchObject({ firstPsid: 1 }); // 1024 ports each
    expect(portSharing({ share: 1024, psidOffset: 0 })).toMatchObject({
      firstPsid: 16,
      usablePsids: 1008,
      portsPerSet: 64,
    });
  });

  test("offset 0 with allow-well-known-ports includes them", () => {
    const sharing = portSharing({ share: 4, psidOffset: 0, allowWellKnownPorts: true });
    expect(sharing).toMatchObject({ firstPsid: 0, usablePsids: 4 });
    expect(portSetRanges(sharing.portSetOf(0))).toEqual([[0, 16383]]);
  });

  test("share 1: the whole address", () => {
    const sharing = portSharing({});
    expect(sharing).toMatchObject({ share: 1, psidLength: 0, firstPsid: 0, portsPerSet: 65536 });
    expect(sharing.portSetOf(0)).toBe(WHOLE_ADDRESS);
  });

  test("for every valid share and offset: a PSID is handed out exactly when its ports are all ≥ 1024", () => {
    let checked = 0;
    for (let a = 0; a <= 15; a++) {
      for (let k = 1; a + k <= 16; k++) {
        const spec: SharingSpec = { share: 2 ** k, psidOffset: a };
        if (portSetSize({ offset: a, psidLength: k, psid: 0 }) < MIN_PORTS_PER_SET) {
          expect(sharingProblem(spec)).toContain("fewer than 64");
          continue;
        }
        const problem = sharingProblem(spec);
        const allowed = portSharing({ ...spec, allowWellKnownPorts: true });
        expect(allowed.firstPsid).toBe(0);
        for (let psid = 0; psid < 2 ** k; psid++) {
          const first = (portSetRanges(allowed.portSetOf(psid))[0] as [number, number])[0];
          expect(first).toBe(lowestPort(a, k, psid));
          const clear = first >= 1024;
          if (problem === null) {
            expect(psid >= portSharing(spec).firstPsid).toBe(clear);
          } else {
            expect(clear).toBe(false); // refused only when no PSID is clear
          }
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(1000);
  });
});

describe("Pool with sharing", () => {
  test("slots are (address, PSID), address-major; network and broadcast have none", () => {
    const pool = new Pool({ prefixes: ["198.51.100.0/30"], share: 4 });
    expect([pool.slotCount, pool.size, pool.addresses]).toEqual([16, 8, 2]);
    expect(pool.slotOf(ip("198.51.100.1"), 2)).toBe(6);
    expect(pool.slotOf(ip("198.51.100.1"), 4)).toBe(-1);
    expect(pool.slotOf(ip("203.0.113.1"), 0)).toBe(-1);
    for (let slot = 0; slot < pool.slotCount; slot++) {
      expect(pool.slotOf(pool.addressOf(slot), pool.psidOf(slot))).toBe(slot);
      expect(pool.isUsable(slot)).toBe(slot >= 4 && slot < 12);
    }
    expect(formatIPv4(pool.addressOf(7))).toBe("198.51.100.1");
    expect(pool.portSetOf(7)).toEqual({ offset: 6, psidLength: 2, psid: 3 });
    expect([...pool].map(formatIPv4)).toEqual(["198.51.100.1", "198.51.100.2"]);
  });

  test("offset 0 without allow-well-known-ports: PSID 0 of every address is unusable", () => {
    const pool = new Pool({ prefixes: ["198.51.100.0/30"], share: 4, psidOffset: 0 });
    expect(pool.size).toBe(6);
    expect(pool.isUsable(pool.slotOf(ip("198.51.100.1"), 0))).toBe(false);
    expect(pool.isUsable(pool.slotOf(ip("198.51.100.1"), 1))).toBe(true);
    const allowed = new Pool({
      prefixes: ["198.51.100.0/30"],
      share: 4,
      psidOffset: 0,
      allowWellKnownPorts: true,
    });
    expect(allowed.size).toBe(8);
    expect(allowed.isUsable(allowed.slotOf(ip("198.51.100.1"), 0))).toBe(true);
  });

  test("a bad sharing is a PoolConfigError naming the pool, one line", () => {
    const error = poolConfigError;
    expect(error({ prefixes: ["198.51.100.0/30"], share: 3 })).toBe(
      "pool 198.51.100.0/30: share 3 is not a power of two from 1 to 65536 (1, 2, 4, 8, …)",
    );
    expect(error({ name: "p", prefixes: ["198.51.100.0/30"], share: 1024 })).toStartWith(
      "pool p: share 1024 with psid-offset 6 leaves 63 ports",
    );
    expect(error({ prefixes: ["10.0.0.0/16"], share: 128 })).toBe(
      "pool 10.0.0.0/16 has 8388608 port sets (65536 addresses × share 128); the limit is 4194304; share less or split the pool",
    );
    expect(new Pool({ prefixes: ["10.0.0.0/16"], share: 64 }).size).toBe(65534 * 64);
  });

  test("the engine refuses a bad sharing at construction", () => {
    expect(
      () =>
        new AllocationEngine({
          pools: [{ prefixes: ["198.51.100.0/30"], share: 8, psidOffset: 9, tep6: "2001:db8::1" }],
          store: new MemoryLeaseStore(),
          leaseTime: 60,
        }),
    ).toThrow(PoolConfigError);
  });
});
