/**
 * An IPv6 prefix with host bits set (`2001:db8:4::10/64`) is a typo, refused with the prefix
 * meant, as IPv4's already were (a newcomer found `lease ls --prefix` and `--dhcp4o6-allow`
 * took it): lib/net/prefix.ts ipv6PrefixMeant (RFC 4291 §2.3), cli/lease.ts,
 * lib/config/server_dhcp4o6.ts.
 */
import { describe, expect, test } from "bun:test";
import { ipv6PrefixMeant } from "../lib/net/prefix.ts";
import { runDstm } from "./helpers/process.ts";

describe("ipv6PrefixMeant", () => {
  test.each([
    ["2001:db8:4::10/64", "2001:db8:4::/64"],
    ["2001:db8:4:5::/48", "2001:db8:4::/48"],
    ["2001:db8:4:1f::/60", "2001:db8:4:10::/60"],
    ["2001:db8::1/0", "::/0"],
  ])("%s meant %s", (text, meant) => {
    expect(ipv6PrefixMeant(text)).toBe(meant);
  });

  test.each([
    "2001:db8:4::/64",
    "2001:db8::1/128",
    "::/0",
    "2001:db8:4:10::/60",
    "nope/64",
    "2001:db8::/129",
    "2001:db8::",
  ])("%s: nothing to say", (text) => {
    expect(ipv6PrefixMeant(text)).toBeNull();
  });
});

describe("the commands refuse it, naming the prefix meant", () => {
  test("dstm lease ls --prefix", async () => {
    const r = await runDstm([
      "lease",
      "ls",
      "--prefix",
      "2001:db8:1::10/64",
      "--control",
      "/nonexistent.sock",
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(
      "dstm: --prefix: 2001:db8:1::10/64 has host bits set; did you mean 2001:db8:1::/64?",
    );
  });

  test.each(["--dhcp4o6-allow", "--dhcp4o6-relay"])("dstm server --check %s", async (flag) => {
    const r = await runDstm([
      "server",
      "--pool",
      "198.51.100.0/28",
      "--tep",
      "2001:db8::1,192.0.2.1",
      "--db",
      "memory",
      "--dhcp4o6",
      "--dhcp4o6-allow",
      "2001:db8:4::/64",
      flag,
      "2001:db8:7::5/64",
      "--check",
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      `${flag}: 2001:db8:7::5/64 has host bits set; did you mean 2001:db8:7::/64?`,
    );
  });
});
