/**
 * Which counters each process shows (lib/tunnel/counters.ts counterNamesOf / countersOf): the
 * slice layout is shared, but `dstm tep stats` must not list the ~30 client-* counters a TEP
 * never counts, nor a client's status the TEP's decap-* / encap-*.
 */
import { describe, expect, test } from "bun:test";
import {
  COUNTER_NAMES,
  Counter,
  Counters,
  counterNamesOf,
  countersOf,
} from "../lib/tunnel/counters.ts";

describe("counters per process", () => {
  test("a TEP shows no client-* counter, a client no decap-* / encap-* but the one it counts", () => {
    const tep = counterNamesOf("tep");
    const client = counterNamesOf("client");
    expect(tep.filter((n) => n.startsWith("client-"))).toEqual([]);
    expect(client.filter((n) => /^(decap|encap)-/.test(n))).toEqual(["encap-too-big-path-mtu"]);
    // Shared ones (path MTU, tunnel errors, ICMP relay) are in both; nothing is in neither.
    for (const shared of ["pmtu-learned", "tunnel-error-too-big", "icmp-relay-frag-needed"])
      expect(tep.includes(shared as never) && client.includes(shared as never)).toBe(true);
    expect(new Set([...tep, ...client])).toEqual(new Set(COUNTER_NAMES));
  });

  test("countersOf keeps the values, in declaration order", () => {
    const counters = Counters.create({ slices: 2 });
    counters.slice(1)[Counter["decap-forward"]] = 3;
    counters.slice(0)[Counter["client-encap-forward"]] = 5;
    const tep = countersOf("tep", counters.snapshot());
    expect(tep["decap-forward"]).toBe(3);
    expect("client-encap-forward" in tep).toBe(false);
    expect(Object.keys(tep)).toEqual([...counterNamesOf("tep")]);
    const client = countersOf("client", counters.snapshot());
    expect(client["client-encap-forward"]).toBe(5);
    expect("decap-forward" in client).toBe(false);
  });
});
