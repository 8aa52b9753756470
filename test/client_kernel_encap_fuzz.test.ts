/**
 * Red-team differential fuzz of the `--kernel-encap` out loop (lib/dataplane/
 * client_kernel_encap.ts ClientKernelEncapOut): a super-packet is checked on its first and
 * last segments only and handed back whole to the kernel, which segments it after the seg6
 * encapsulation; that must never let through what the userspace DTI path (ClientOutBatch,
 * every segment checked) would not, nor change a byte of it. Per seed
 * (test/helpers/kencap_fuzz_gen.ts): TCP/UDP super-packets and plain packets of many flows,
 * leased and spoofed sources, whole and shared leases (NAPT, 12-port sets that run out), DF on
 * and off around the path MTU, SYN with MSS, FIN/RST, IPv4 options, fragments in any order,
 * truncated packets, lease and path MTU changes, and super-packets only an attacker's frame
 * would carry (gso_size, gso type, NEEDS_CSUM, csum_start/offset, total length, SYN/RST/CWR on
 * every segment). Oracle (test/helpers/kencap_fuzz_run.ts): the frames written back, cut as the
 * kernel's GSO cuts them (kencap_fuzz_kernel.ts), against the userspace path's inner IPv4
 * packets, replies and counters frame by frame; and the test's own checks of what reaches the
 * wire (client_fuzz_out_check.ts). In memory, no root, the clock fixed per frame.
 *
 * Replay one seed: FUZZ_SEED=123 bun test test/client_kernel_encap_fuzz.test.ts; more: FUZZ_SEEDS=2000.
 */
import { describe, expect, test } from "bun:test";
import { kencapCase } from "./helpers/kencap_fuzz_gen.ts";
import { runKencap } from "./helpers/kencap_fuzz_run.ts";

const SEEDS = process.env.FUZZ_SEED
  ? [Number(process.env.FUZZ_SEED)]
  : Array.from({ length: Number(process.env.FUZZ_SEEDS ?? 120) }, (_, i) => 0x6b000 + i);

describe("ClientKernelEncapOut fuzz: what the kernel sends equals the userspace DTI's", () => {
  test(`${SEEDS.length} seeds`, () => {
    const failures: string[] = [];
    let wire = 0;
    let supers = 0;
    let replies = 0;
    let stricter = 0;
    for (const seed of SEEDS) {
      const r = runKencap(kencapCase(seed));
      wire += r.wire;
      supers += r.supers;
      replies += r.replies;
      stricter += r.stricter;
      if (r.problems.length > 0)
        failures.push(
          `seed ${seed} (replay: FUZZ_SEED=${seed}):\n${r.problems.slice(0, 3).join("\n")}`,
        );
      if (failures.length >= 3) break;
    }
    expect(failures.join("\n\n")).toBe("");
    if (SEEDS.length >= 50) {
      expect(wire).toBeGreaterThan(SEEDS.length * 20);
      expect(supers).toBeGreaterThan(SEEDS.length * 2);
      expect(replies).toBeGreaterThan(SEEDS.length / 4);
    }
    console.log(
      `kernel-encap: ${wire} packets on the wire, ${supers} super-packets checked whole, ${replies} DTI replies, ${stricter} refused for their header`,
    );
  });
});
