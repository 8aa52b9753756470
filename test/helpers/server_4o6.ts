/**
 * An in-process `DstmServer` serving DHCPv4-over-DHCPv6 on ::1 (any free port) with its control
 * socket in a fresh temporary directory: pool 198.51.100.0/29 behind TEP 2001:db8::1 /
 * 192.0.2.1, 600 s leases, source check on, logs dropped. Shared by the tests of what an
 * administrator sees and does to 4o6 leases (test/lease_admin_4o6.test.ts,
 * test/lease_identity.test.ts) and of the 4o6 server itself (test/server_dhcp4o6*.test.ts).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Logger } from "../../lib/control/log.ts";
import { parseIPv4 } from "../../lib/net/addr.ts";
import { DstmServer } from "../../lib/server/server.ts";
import type { ServerConfig } from "../../lib/server/server_config.ts";

/** The server identifier (option 54) and TEP IPv4 address of the server. */
export const SERVER_ID_4O6 = parseIPv4("192.0.2.1")!;

/**
 * The server's configuration: `overrides` replace whole fields; log lines go to `sink`
 * (dropped by default).
 */
export function config4o6(
  overrides: Partial<ServerConfig> = {},
  sink: (line: string) => void = () => {},
): ServerConfig {
  return {
    pools: [{ prefixes: ["198.51.100.0/29"], tep6: "2001:db8::1", tep4: SERVER_ID_4O6 }],
    leaseTime: 600,
    listen: { address: "::1", port: 0 },
    sourceCheck: true,
    dhcp4o6: { address: "::1", port: 0, interfaces: [], serverId: SERVER_ID_4O6 },
    log: new Logger({ sink }),
    ...overrides,
  };
}

/** Starts the server of {@link config4o6}; `cleanup` gets its stop. */
export async function startServer4o6(
  cleanup: (() => unknown)[],
  overrides: Partial<ServerConfig> = {},
  sink?: (line: string) => void,
): Promise<DstmServer> {
  const server = await DstmServer.start(config4o6(overrides, sink));
  cleanup.push(() => server.stop());
  return server;
}

/**
 * Starts the server with a control socket in a new temporary directory; `cleanup` gets its stop
 * and the directory's removal (run them in reverse order). `dhcp4o6` adds to the 4o6 settings
 * (e.g. `identity`). Resolves with the server and the path of its control socket.
 */
export async function start4o6Server(
  dirPrefix: string,
  cleanup: (() => unknown)[],
  dhcp4o6: Partial<NonNullable<ServerConfig["dhcp4o6"]>> = {},
): Promise<{ server: DstmServer; control: string }> {
  const dir = mkdtempSync(join(tmpdir(), dirPrefix));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  const control = join(dir, "control.sock");
  const base = config4o6().dhcp4o6!;
  const server = await startServer4o6(cleanup, { control, dhcp4o6: { ...base, ...dhcp4o6 } });
  return { server, control };
}
