/**
 * What `dstm ping4` tells the user beside a running client that holds no lease
 * (lib/client/ping4_lease.ts borrowedLease): idle on demand, to send IPv4 traffic through its
 * DTI so that it takes one (it said "wait" without saying for what); else to wait until it is
 * bound.
 */
import { describe, expect, test } from "bun:test";
import { borrowedLease } from "../lib/client/ping4_lease.ts";

const base = { host6: "2001:db8:1::d", ipv4: null, tep6: null };

describe("ping4 beside a client without a lease", () => {
  test("idle on demand: send IPv4 traffic through the DTI, then retry", () => {
    expect(() =>
      borrowedLease("/run/dstm/client-dti0.sock", { ...base, state: "idle", ifname: "dti0" }),
    ).toThrow(
      "the dstm client on /run/dstm/client-dti0.sock uses 2001:db8:1::d and holds no lease now (idle); ping4 will not take one beside it: send IPv4 traffic through dti0 (the client takes a lease on demand), then retry, or give --host6 another IPv6 address of this host",
    );
  });

  test("acquiring: wait until it is bound", () => {
    expect(() => borrowedLease("/s.sock", { ...base, state: "acquiring" })).toThrow(
      "ping4 will not take one beside it: wait until it is bound, then retry, or give --host6",
    );
  });

  test("a client with a lease lends it", () => {
    const lease = borrowedLease("/s.sock", {
      ...base,
      state: "bound",
      ipv4: "192.0.2.10",
      tep6: "2001:db8::1",
    });
    expect(lease.host6).toBe("2001:db8:1::d");
  });
});
