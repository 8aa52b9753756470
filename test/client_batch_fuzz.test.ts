/**
 * Red-team differential fuzz of the DSTM client's batched data path (issue 14: a super-packet
 * or a coalesced train never lets through what separate packets would not, and never reorders
 * a flow), on in-memory devices, no root, no timing (the clock is fixed).
 *
 * Out (test/helpers/client_fuzz_out.ts, lib/dataplane/client_batch.ts ClientOutBatch): per
 * seed, TCP/UDP super-packets and single packets of many flows from leased, spoofed, stale and
 * placeholder sources, whole and shared leases (NAPT), lease changes between reads. Three runs
 * must agree byte for byte — each super-packet read whole through a DTI with offloads, the same
 * traffic cut beforehand as a DTI without offloads hands it (several per read), and one packet
 * per read: the IPv6 packets sent (TEP, traffic class, flow label, in order), the ICMPv4
 * errors and RSTs into the DTI, the counters, the on-demand lease requests. Independent of
 * lib/: nothing sent from another source than the lease, outside the port set, above the
 * tunnel MTU with DF, with a bad checksum, or a SYN's MSS above the clamp.
 *
 * In (test/helpers/client_fuzz_in.ts, ClientInBatch): batches of IPv4-in-IPv6 from the TEP
 * and from spoofers, to the lease and others, reverse-NAPT hits and misses, good, bad and
 * partial checksums, ECN, fragments, options, truncated packets; a DTI with TCP (and per seed
 * UDP) GSO whose super-packets are cut back as the kernel cuts them, a DTI without offloads,
 * and one packet per read must agree (per flow in order; plain and one by one write for write;
 * counters), compared by test/helpers/tep_fuzz_run.ts compareRuns; and independently: nothing
 * from a non-TEP outer source written, every written packet to the leased address, NAPT
 * mapped back to the host port the test saw the mapping made for.
 *
 * Replay one seed: FUZZ_SEED=123 bun test test/client_batch_fuzz.test.ts; more: FUZZ_SEEDS=2000.
 */
import { describe, expect, test } from "bun:test";
import { inCase, runIn } from "./helpers/client_fuzz_in.ts";
import { outCase, runOut } from "./helpers/client_fuzz_out.ts";
import { compareRuns } from "./helpers/tep_fuzz_run.ts";

const SEEDS = process.env.FUZZ_SEED
  ? [Number(process.env.FUZZ_SEED)]
  : Array.from({ length: Number(process.env.FUZZ_SEEDS ?? 120) }, (_, i) => 0xc1000 + i);

function firstDifference(a: readonly string[], b: readonly string[], what: string): string {
  for (let i = 0; i < Math.max(a.length, b.length); i++)
    if (a[i] !== b[i])
      return `${what} differ at ${i} of ${a.length}/${b.length}:\n  ${a[i]?.slice(0, 200)}\n  ${b[i]?.slice(0, 200)}`;
  return "";
}

describe("ClientOutBatch fuzz: super-packets read whole, cut beforehand, and one by one agree", () => {
  test(`${SEEDS.length} seeds`, () => {
    const failures: string[] = [];
    let sent = 0;
    let replies = 0;
    let supers = 0;
    for (const seed of SEEDS) {
      const c = outCase(seed);
      supers += c.events.filter((e) => e.kind === "read" && e.frame.gsoSize > 0).length;
      const whole = runOut(c, "whole");
      const apart = runOut(c, "apart");
      const single = runOut(c, "single");
      sent += single.sent.length;
      replies += single.replies.length;
      const problems: string[] = [...whole.oracle.slice(0, 2), ...single.oracle.slice(0, 2)];
      for (const [name, x] of [
        ["whole", whole],
        ["apart", apart],
      ] as const) {
        if (x.counters !== single.counters)
          problems.push(`counters ${name} ${x.counters}\n  ≠ one by one ${single.counters}`);
        const d =
          firstDifference(x.sent, single.sent, `IPv6 packets sent (${name} / one by one)`) ||
          firstDifference(x.replies, single.replies, `DTI replies (${name} / one by one)`);
        if (d) problems.push(d);
        if (x.asked !== single.asked || x.queued !== single.queued)
          problems.push(
            `${name}: lease asked ${x.asked}, queued ${x.queued} ≠ ${single.asked}, ${single.queued}`,
          );
        if (x.errors > 0) problems.push(`${name}: read or write errors`);
      }
      if (problems.length > 0)
        failures.push(`seed ${seed} (replay: FUZZ_SEED=${seed}): ${problems.join("\n")}`);
      if (failures.length >= 3) break;
    }
    expect(failures.join("\n\n")).toBe("");
    if (SEEDS.length >= 50) {
      expect(sent).toBeGreaterThan(SEEDS.length * 20);
      expect(replies).toBeGreaterThan(SEEDS.length / 4);
      expect(supers).toBeGreaterThan(SEEDS.length * 2);
    }
    console.log(`out: ${sent} sent, ${replies} DTI replies, ${supers} super-packets`);
  });
});

describe("ClientInBatch fuzz: GSO DTI, plain DTI and one by one agree", () => {
  test(`${SEEDS.length} seeds`, () => {
    const failures: string[] = [];
    let arrivals = 0;
    let delivered = 0;
    let coalesced = 0;
    for (const seed of SEEDS) {
      const c = inCase(seed);
      arrivals += c.batches.reduce((n, b) => n + b.arrivals.length, 0);
      const gso = runIn(c, "gso");
      const plain = runIn(c, "plain");
      const single = runIn(c, "single");
      delivered += single.delivered.length;
      coalesced += gso.writes.filter((w) => !w.startsWith("0 ")).length;
      const diff = [
        ...gso.oracle.slice(0, 1),
        ...plain.oracle.slice(0, 1),
        compareRuns(gso, plain, single),
      ]
        .filter((x) => x !== "")
        .join("\n");
      if (diff !== "") failures.push(`seed ${seed} (replay: FUZZ_SEED=${seed}): ${diff}`);
      if (failures.length >= 3) break;
    }
    expect(failures.join("\n\n")).toBe("");
    if (SEEDS.length >= 50) {
      expect(delivered).toBeGreaterThan(arrivals / 3);
      expect(coalesced).toBeGreaterThan(SEEDS.length);
    }
    console.log(
      `in: ${arrivals} arrivals, ${delivered} delivered, ${coalesced} super-packets written`,
    );
  });
});
