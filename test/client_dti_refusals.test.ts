/**
 * `dstm client --dti kernel|ip6tnl|seg6` refuses at startup (exit 2, also with --check) what
 * the kernel tunnel cannot do (lib/client/tunnel_dti.ts kernelDtiRefusal; docs/kernel-dti.md),
 * and takes what it can. No root needed: --check stops before anything is made.
 */
import { describe, expect, test } from "bun:test";
import { DTI_MODES } from "../lib/client/dti.ts";
import { CLIENT_SCHEMA } from "../lib/config/client_schema.ts";
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
      ["--dti", "ip6tnl", "--dscp", "10"],
      ["--dti", "seg6", "--no-mss-clamp"],
      ["--dti", "tun", "--on-demand"],
      ["--dti", "tun", "--udp-gro"],
    ]) {
      const r = await runDstm(["client", "--server", "2001:db8::53", ...flags, "--check"]);
      expect(r.code).toBe(0);
    }
  });
});
