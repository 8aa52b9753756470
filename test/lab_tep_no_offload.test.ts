/**
 * The TEP with `--no-offload`, end to end as root in the lab: one packet per system call, so
 * its Workers run the plain tep-decap / tep-encap loops of lib/dataplane/forwarder_worker.ts
 * instead of the batched ones (tep_batch.ts) every other lab test uses. The paper's demo
 * (web, FTP, ping, host to host) goes through it; the kernel says the TUN has no
 * IFF_VNET_HDR, and the TEP's counters show both directions forwarded.
 */
import { describe, expect, test } from "bun:test";
import type { Lab } from "../lib/lab/lab.ts";
import { labTepStats } from "../lib/lab/probes.ts";
import { demoStepTests, labSuite } from "./helpers/lab_suite.ts";

let lab: Lab;
const { skip } = labSuite({
  suite: "lab_tep_no_offload",
  namePrefix: "t",
  dirPrefix: "dstm-tepplain-",
  options: { tepNoOffload: true },
  up: (l) => {
    lab = l;
  },
});

/** IFF_VNET_HDR in /sys/class/net/IF/tun_flags (linux/if_tun.h). */
const IFF_VNET_HDR = 0x4000;

describe.skipIf(skip !== null)("the lab with a TEP without offloads", () => {
  test("the TEP's TUN has no IFF_VNET_HDR (one packet per system call)", () => {
    const r = lab.run("tep", ["cat", "/sys/class/net/tep0/tun_flags"]);
    expect(r.code).toBe(0);
    const flags = Number.parseInt(r.stdout.trim(), 16);
    expect(Number.isNaN(flags)).toBe(false);
    expect(flags & IFF_VNET_HDR).toBe(0);
  });

  demoStepTests(() => lab);

  test("both directions went through the TEP's plain loops", () => {
    const counters = labTepStats(lab).counters;
    expect(counters["decap-forward"] ?? 0).toBeGreaterThan(0);
    expect(counters["encap-forward"] ?? 0).toBeGreaterThan(0);
  });
});
