/** `dstm client`'s NAPT flags: parsed, refused with a usage error when wrong. */
import { describe, expect, test } from "bun:test";
import { runDstm } from "./helpers/process.ts";

describe("dstm client NAPT flags", () => {
  test("--help names every timeout with its RFC minimum", async () => {
    const { code, stdout } = await runDstm(["client", "--help"]);
    expect(code).toBe(0);
    for (const flag of [
      "--napt-tcp-established",
      "--napt-tcp-transitory",
      "--napt-udp",
      "--napt-icmp",
      "--fragment-timeout",
    ])
      expect(stdout).toContain(flag);
    expect(stdout).toMatch(/RFC 5382: ≥ 240s/);
  });

  test("a timeout that is not a duration is a usage error (exit 2), before anything is set up", async () => {
    for (const [flag, value] of [
      ["--napt-tcp-transitory", "soon"],
      ["--napt-udp", "0"],
      ["--fragment-timeout", "-5s"],
    ]) {
      const { code, stderr } = await runDstm(["client", "--server", "2001:db8::53", flag!, value!]);
      expect(code).toBe(2);
      expect(stderr).toContain(flag!);
    }
  });
});
