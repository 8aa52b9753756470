/**
 * `dstm client --dti kernel|ip6tnl|seg6` refuses at startup (exit 2, also with --check) what
 * the kernel tunnel cannot do (lib/client/tunnel_dti.ts kernelDtiRefusal; docs/kernel-dti.md),
 * and takes what it can. No root needed: --check stops before anything is made, but for
 * `--dti ip6tnl`, where it asks the kernel as a start does whether it has ip6tnl (a probe
 * device made and deleted at once; only as root, so that run is in a namespace of its own).
 */
import { describe, expect, test } from "bun:test";
import { DTI_MODES } from "../lib/client/dti.ts";
import { CLIENT_SCHEMA } from "../lib/config/client_schema.ts";
import { withNetns } from "./helpers/netns.ts";
import { runDstm } from "./helpers/process.ts";

describe("dstm client --dti: refusals at startup", () => {
  test("the --dti choices are the DTI modes of lib/client/dti.ts", () => {
    const setting = CLIENT_SCHEMA.settings.find((s) => s.name === "dti");
    expect(setting?.kind).toEqual({ type: "choice", choices: [...DTI_MODES] });
  });

  test.each([
    [["--dti", "kernel", "--on-demand"], /--on-demand needs the userspace DTI/],
    [["--dti", "ip6tnl", "--no-offload"], /--no-offload applies to the userspace DTI/],
    [["--dti", "seg6", "--udp-gro"], /--udp-gro applies to the userspace DTI/],
    [["--dti", "tun", "--udp-gro", "--no-offload"], /--udp-gro needs the DTI offloads/],
    [["--dti", "seg6", "--dscp", "10"], /--dscp N needs --dti ip6tnl or tun/],
    [["--dti", "gre"], /dti/],
  ])("%p is refused with exit 2", async (flags, message) => {
    const r = await runDstm(["client", "--server", "2001:db8::53", ...flags, "--check"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
  });

  test("the ones it can do pass --check", async () => {
    for (const flags of [
      ["--dti", "seg6", "--no-mss-clamp"],
      ["--dti", "tun", "--on-demand"],
      ["--dti", "tun", "--udp-gro"],
    ]) {
      const r = await runDstm(["client", "--server", "2001:db8::53", ...flags, "--check"]);
      expect(r.code).toBe(0);
    }
  });

  // A newcomer's --check approved --dti ip6tnl on a kernel without it; the start then failed
  // after taking a lease ("this kernel has no ip6tnl"). --check now asks the kernel as the
  // start does: OK where the kernel has ip6tnl, the start's refusal (exit 2) where it has not.
  test.each([
    [[], "use --dti seg6 or kernel"],
    [["--dscp", "10"], "use --dti tun (seg6 cannot write --dscp)"],
  ])("--dti ip6tnl %p: --check finds out whether the kernel has ip6tnl", async (flags, use) => {
    const argv = ["client", "--server", "2001:db8::53", "--dti", "ip6tnl", ...flags, "--check"];
    if (process.getuid?.() !== 0) {
      // It cannot ask the kernel without CAP_NET_ADMIN: as before, the start finds out.
      expect((await runDstm(argv)).code).toBe(0);
      return;
    }
    await withNetns(async (ns) => {
      const has = ns.exec(["ip", "link", "add", "probe0", "type", "ip6tnl"]).code === 0;
      const r = await runDstm(argv, {}, ns.name);
      if (has) expect([r.code, r.stderr]).toEqual([0, ""]);
      else
        expect([r.code, r.stderr]).toEqual([
          2,
          `dstm: DTI dti0: --dti ip6tnl: this kernel has no ip6tnl (CONFIG_IPV6_TUNNEL); ${use}\n`,
        ]);
      // The probe device is gone again.
      expect(ns.ip("-o", "link", "show")).not.toContain("dstmchk");
    });
  });
});
