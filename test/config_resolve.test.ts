/**
 * The settings of server, TEP and client are checked in lib/config without cli/ (issue 10):
 * what each resolver returns and refuses, called directly.
 */
import { describe, expect, test } from "bun:test";
import { resolveClientSettings } from "../lib/config/client_resolve.ts";
import { UsageError } from "../lib/config/errors.ts";
import { mergeSettings } from "../lib/config/merge.ts";
import { resolveServerSettings, type ServerFlags } from "../lib/config/server_resolve.ts";
import { SERVER_SCHEMA } from "../lib/config/server_schema.ts";
import { tepEndpoints, tepNumbers } from "../lib/config/tep_resolve.ts";
import { parseIPv4 } from "../lib/net/addr.ts";

/** resolveServerSettings on `flags` as the command line gives them, with the databases it prepared. */
function server(flags: ServerFlags, warnings: string[] = []) {
  const settings = mergeSettings(SERVER_SCHEMA, flags as Record<string, unknown>, {
    defaults: false,
  });
  const prepared: string[] = [];
  const config = resolveServerSettings(settings.values as ServerFlags, settings, {
    prepareDatabase: (db) => prepared.push(db),
    warn: (text) => warnings.push(text),
  });
  return { config, prepared };
}

describe("resolveServerSettings", () => {
  test("pools get the default TEP and sharing; defaults fill the rest", () => {
    const { config } = server({
      pool: ["198.51.100.0/24"],
      tep: "2001:db8::1,192.0.2.1",
      share: "4",
      db: "memory",
    });
    expect(config.pools).toEqual([
      {
        prefixes: ["198.51.100.0/24"],
        exclude: undefined,
        tep6: "2001:db8::1",
        tep4: parseIPv4("192.0.2.1")!,
        share: 4,
        psidOffset: undefined,
        allowWellKnownPorts: false,
      },
    ]);
    expect(config.leaseTime).toBe(3600);
    expect(config.maxLeaseTime).toBe(3600);
    expect(config.listen).toEqual({ address: "::", port: 4607 });
    expect(config.db).toBeUndefined();
    expect(config.logFormat).toBe("text");
    expect("log" in config).toBe(false);
  });

  test("prepareDatabase sees a database file, never the in-memory store", () => {
    const file = server({ pool: ["198.51.100.0/24"], tep: "2001:db8::1", db: "/x/leases.db" });
    expect(file.prepared).toEqual(["/x/leases.db"]);
    const memory = server({ pool: ["198.51.100.0/24"], tep: "2001:db8::1", db: "memory" });
    expect(memory.prepared).toEqual([]);
  });

  test("a DHCPv4-over-DHCPv6 setting without --dhcp4o6 is a warning, not an error", () => {
    const warnings: string[] = [];
    server(
      {
        pool: ["198.51.100.0/24"],
        tep: "2001:db8::1",
        db: "memory",
        dhcp4o6Open: true,
        declineProbation: "1h",
      },
      warnings,
    );
    expect(warnings).toEqual([
      "--dhcp4o6-open, --decline-probation have no effect without --dhcp4o6 (TOML: dhcp4o6 = true)",
    ]);
  });

  test("refusals are UsageErrors naming the flag", () => {
    const refuse = (flags: ServerFlags) => () => server({ db: "memory", ...flags });
    expect(refuse({})).toThrow(UsageError);
    expect(refuse({})).toThrow(
      new UsageError(
        "no pool: give --pool CIDR (e.g. --pool 192.168.20.0/24) or [[pool]] in --config",
      ),
    );
    expect(refuse({ pool: ["198.51.100.0/24"] })).toThrow(
      "pool 198.51.100.0/24: no TEP; give --tep IPV6[,IPV4]",
    );
    expect(
      refuse({
        pool: ["198.51.100.0/24"],
        tep: "2001:db8::1",
        leaseTime: "2h",
        maxLeaseTime: "1h",
      }),
    ).toThrow("--max-lease-time (3600s) must not be shorter than --lease-time (7200s)");
    expect(refuse({ pool: ["198.51.100.0/24"], tep: "2001:db8::1", prefixBurst: "0" })).toThrow(
      "--prefix-burst must be at least 1",
    );
  });
});

describe("tepEndpoints and tepNumbers", () => {
  const base = { ifname: "tep0", linkMtu: "1500", hairpin: false, icmpRate: "100" };
  const tunnel = { mssClamp: true, offload: true, dscp: "copy" };

  test("several missing settings are named at once", () => {
    expect(() => tepEndpoints({ ...base, ...tunnel, ipv4: "192.0.2.1" })).toThrow(
      /^--ipv6 V6, --server V6, --route CIDR are required/,
    );
  });

  test("the first server, the others, the routes; dscp copy is -1", () => {
    const flags = {
      ...base,
      ...tunnel,
      ipv6: "2001:db8:1::1",
      ipv4: "192.0.2.1",
      server: ["::1", "2001:db8::53"],
      route: ["198.51.100.0/24"],
    };
    expect(tepEndpoints(flags)).toEqual({
      ipv6: "2001:db8:1::1",
      ipv4: parseIPv4("192.0.2.1")!,
      server: "::1",
      moreServers: ["2001:db8::53"],
      routes: ["198.51.100.0/24"],
    });
    const n = tepNumbers(flags);
    expect([n.linkMtu, n.icmpRate, n.dscp, n.serverPort, n.controlPort]).toEqual([
      1500, 100, -1, 4607, 4608,
    ]);
    expect(() => tepNumbers({ ...flags, linkMtu: "99" })).toThrow(
      '--link-mtu: "99" is not 1280–65575',
    );
  });
});

describe("resolveClientSettings", () => {
  const flags = {
    protocol: "dhcp4o6" as const,
    ifname: "dti0",
    dti: "tun" as const,
    mssClamp: true,
    offload: true,
    dscp: "0",
    idle: "60",
    naptTcpEstablished: "2h4m",
    naptTcpTransitory: "4m",
    naptUdp: "5m",
    naptIcmp: "1m",
    fragmentTimeout: "60",
  };

  test("dhcp4o6 to ff02::1:2 keeps the zone and takes port 547", () => {
    const r = resolveClientSettings({ ...flags, server: "ff02::1:2%eth0", tep: "2001:db8::1" });
    expect([r.server, r.zone, r.port, r.tep6]).toEqual(["ff02::1:2", "eth0", 547, "2001:db8::1"]);
  });

  test("dhcp4o6 needs --tep and takes one --server", () => {
    expect(() => resolveClientSettings({ ...flags, server: "2001:db8::53" })).toThrow(
      "--tep V6 is required with --protocol dhcp4o6",
    );
    expect(() =>
      resolveClientSettings({ ...flags, server: ["2001:db8::53", "2001:db8::54"], tep: "::1" }),
    ).toThrow("--protocol dhcp4o6 takes one --server");
  });
});
