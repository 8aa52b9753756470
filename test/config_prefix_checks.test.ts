/**
 * Prefix mistakes a newcomer makes, refused with what to do: a TEP whose own IPv4 address is
 * inside a pool (it would be leased to a host), and a `--route` with host bits set (the TEP's
 * and the client's, as `--pool` already did).
 */
import { describe, expect, test } from "bun:test";
import { resolveClientSettings } from "../lib/config/client_resolve.ts";
import { UsageError } from "../lib/config/errors.ts";
import { mergeSettings } from "../lib/config/merge.ts";
import { resolveServerSettings, type ServerFlags } from "../lib/config/server_resolve.ts";
import { SERVER_SCHEMA } from "../lib/config/server_schema.ts";
import { tepEndpoints } from "../lib/config/tep_resolve.ts";

/** The pools resolveServerSettings makes of `flags`, or its refusal. */
function pools(flags: ServerFlags) {
  const settings = mergeSettings(
    SERVER_SCHEMA,
    { db: "memory", ...flags } as Record<string, unknown>,
    {
      defaults: false,
    },
  );
  return resolveServerSettings(settings.values as ServerFlags, settings, {
    prepareDatabase: () => {},
    warn: () => {},
  }).pools;
}

describe("a TEP's IPv4 address inside a pool", () => {
  test("is refused, naming the pool, the TEP and the two ways out", () => {
    expect(() => pools({ pool: ["198.51.100.0/24"], tep: "2001:db8:1::1,198.51.100.1" })).toThrow(
      new UsageError(
        "pool 198.51.100.0/24: it holds the IPv4 address 198.51.100.1 of TEP 2001:db8:1::1, which would be leased to a host; give the TEP an address outside the pools, or --exclude 198.51.100.1",
      ),
    );
  });

  test("is refused in another pool too", () => {
    expect(() =>
      pools({ pool: ["198.51.100.0/25", "203.0.113.0/24"], tep: "2001:db8:1::1,203.0.113.9" }),
    ).toThrow(/^pool 203\.0\.113\.0\/24: it holds the IPv4 address 203\.0\.113\.9 of TEP/);
  });

  test("is accepted when the pool excludes it (an address or a CIDR)", () => {
    for (const exclude of ["198.51.100.1", "198.51.100.0/30"]) {
      const [pool] = pools({
        pool: ["198.51.100.0/24"],
        tep: "2001:db8:1::1,198.51.100.1",
        exclude: [exclude],
      });
      expect(pool?.exclude).toEqual([exclude]);
    }
  });

  test("outside every pool, or no TEP IPv4 at all, is fine", () => {
    expect(pools({ pool: ["198.51.100.0/24"], tep: "2001:db8:1::1,192.0.2.1" })).toHaveLength(1);
    expect(pools({ pool: ["198.51.100.0/24"], tep: "2001:db8:1::1" })).toHaveLength(1);
  });
});

describe("--route with host bits set says which prefix was meant", () => {
  test("dstm tep", () => {
    const flags = {
      ifname: "tep0",
      linkMtu: "1500",
      hairpin: false,
      icmpRate: "100",
      mssClamp: true,
      offload: true,
      dscp: "copy",
      ipv6: "2001:db8:1::1",
      ipv4: "192.0.2.1",
      server: ["::1"],
    };
    expect(() => tepEndpoints({ ...flags, route: ["198.51.100.5/24"] })).toThrow(
      new UsageError("--route: 198.51.100.5/24 has host bits set; did you mean 198.51.100.0/24?"),
    );
    expect(() => tepEndpoints({ ...flags, route: ["banana"] })).toThrow(
      new UsageError('--route: "banana" is not an IPv4 CIDR (e.g. 192.0.2.0/24)'),
    );
    expect(tepEndpoints({ ...flags, route: ["198.51.100.0/24"] }).routes).toEqual([
      "198.51.100.0/24",
    ]);
  });

  test("dstm client", () => {
    const flags = {
      protocol: "dstm" as const,
      server: "2001:db8::53",
      ifname: "dti0",
      dti: "tun" as const,
      mssClamp: true,
      offload: true,
      dscp: "copy",
      idle: "60",
      naptTcpEstablished: "2h4m",
      naptTcpTransitory: "4m",
      naptUdp: "5m",
      naptIcmp: "1m",
      fragmentTimeout: "15",
    };
    expect(() => resolveClientSettings({ ...flags, route: ["10.0.0.1/8"] })).toThrow(
      new UsageError("--route: 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?"),
    );
    expect(() => resolveClientSettings({ ...flags, route: ["192.0.2.0/33"] })).toThrow(
      new UsageError('--route: "192.0.2.0/33" is not an IPv4 CIDR (e.g. 192.0.2.0/24)'),
    );
  });
});
