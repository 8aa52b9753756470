/**
 * The DHCPv4 client's RFC 2131 §4.4.5 timers (lib/client/dhcp4_timers.ts), on a clock the
 * test sets: no sockets, no waiting.
 */
import { describe, expect, test } from "bun:test";
import {
  DHCP4_MIN_RETRANSMIT_MS,
  dhcp4NextTransmission,
  dhcp4StateAt,
  dhcp4Timers,
} from "../lib/client/dhcp4_timers.ts";

const T0 = 1_000_000;
// Kea's values from issue 11: lease 120 s, T1 10 s, T2 100 s.
const KEA = { obtainedAt: T0, leaseTime: 120, t1: 10, t2: 100 };
const at = (s: number) => T0 + s * 1000;

describe("RFC 2131 §4.4.5 timers", () => {
  test("T1/T2 are the server's when it sends them; the defaults 1/2 and 7/8 only when it does not", () => {
    expect(dhcp4Timers(120, 10, 100)).toEqual({ t1: 10, t2: 100 });
    expect(dhcp4Timers(120, undefined, 100)).toEqual({ t1: 60, t2: 100 });
    expect(dhcp4Timers(120, 10)).toEqual({ t1: 10, t2: 105 });
    expect(dhcp4Timers(800)).toEqual({ t1: 400, t2: 700 });
    // T2 ≤ lease/2: T1 defaults to at most T2 (renewing never starts after rebinding).
    expect(dhcp4Timers(120, undefined, 40)).toEqual({ t1: 40, t2: 40 });
    // Values past the lease are cut to it, T1 to T2.
    expect(dhcp4Timers(120, 200, 300)).toEqual({ t1: 120, t2: 120 });
  });

  test("states: BOUND until T1, RENEWING until T2, REBINDING until the lease ends, then EXPIRED", () => {
    expect(dhcp4StateAt(KEA, at(0))).toBe("BOUND");
    expect(dhcp4StateAt(KEA, at(9.999))).toBe("BOUND");
    expect(dhcp4StateAt(KEA, at(10))).toBe("RENEWING");
    expect(dhcp4StateAt(KEA, at(99.999))).toBe("RENEWING");
    expect(dhcp4StateAt(KEA, at(100))).toBe("REBINDING");
    expect(dhcp4StateAt(KEA, at(119.999))).toBe("REBINDING");
    expect(dhcp4StateAt(KEA, at(120))).toBe("EXPIRED");
  });

  test("retransmission: half the time left in the state, at least 60 s, never past the state's end", () => {
    // Renewing at T1 = 10: half of 90 s is 45 s, less than 60: the next REQUEST at 70.
    expect(dhcp4NextTransmission(KEA, at(10))).toBe(at(70));
    // At 70: 60 s would pass T2, so the next goes out at T2 (rebinding).
    expect(dhcp4NextTransmission(KEA, at(70))).toBe(at(100));
    // Rebinding at 100: 20 s left, cut at the lease end.
    expect(dhcp4NextTransmission(KEA, at(100))).toBe(at(120));
    expect(dhcp4NextTransmission(KEA, at(120))).toBe(at(120));
    // A long lease: half the time left wins over 60 s.
    const day = { obtainedAt: T0, leaseTime: 86400, t1: 43200, t2: 75600 };
    expect(dhcp4NextTransmission(day, at(43200))).toBe(at(43200 + 16200));
    expect(dhcp4NextTransmission(day, at(75600))).toBe(at(75600 + 5400));
    // Once the state has less than 2 min left, waits stay at 60 s until cut at its end.
    expect(dhcp4NextTransmission(day, at(75600 - 100))).toBe(at(75600 - 40));
    expect(DHCP4_MIN_RETRANSMIT_MS).toBe(60_000);
  });
});
