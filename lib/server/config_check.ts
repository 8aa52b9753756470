/**
 * `dstm server --check`: what start would refuse, without starting (no socket, no database,
 * no directory), and the one-line summary of a configuration that passes.
 *
 * @module
 */
import { AllocationEngine } from "../alloc/engine.ts";
import { PoolConfigError } from "../alloc/pool.ts";
import { MemoryLeaseStore } from "../lease/memory.ts";
import { interfaceExists } from "../sys/ifinfo.ts";
import type { ServerConfig } from "./server_config.ts";
import { AUTH_OFF_WARNING } from "./start_report.ts";

/**
 * Why start would refuse `config`, or undefined: each `dhcp4o6.interfaces` entry must exist
 * here (start would fail to join ff02::1:2 on it), and the pools must pass the allocation
 * engine's checks (host bits, overlaps; a {@link PoolConfigError}'s message). Other errors
 * are thrown.
 */
export function serverConfigProblem(config: Omit<ServerConfig, "log">): string | undefined {
  for (const ifname of config.dhcp4o6?.interfaces ?? [])
    if (!interfaceExists(ifname))
      return `--dhcp4o6-interface ${ifname}: no such interface on this host (see ip link)`;
  try {
    new AllocationEngine({
      pools: [...config.pools],
      store: new MemoryLeaseStore(),
      leaseTime: config.leaseTime,
      maxLeaseTime: config.maxLeaseTime,
    });
  } catch (error) {
    if (error instanceof PoolConfigError) return error.message;
    throw error;
  }
  return undefined;
}

/** `dstm server: configuration OK (…)`: pools, where it listens, the lease database. */
export function serverConfigSummary(config: Omit<ServerConfig, "log">): string {
  return `dstm server: configuration OK (${config.pools.length} pool(s), listen [${config.listen.address}]:${config.listen.port}${config.dhcp4o6 ? `, dhcp4o6 [${config.dhcp4o6.address}]:${config.dhcp4o6.port}` : ""}, ${config.db ? `database ${config.db}` : "memory"})`;
}

/**
 * What start would warn about in a configuration that passes, one line each (`--check` prints
 * them after the summary): a server without `--key` ({@link AUTH_OFF_WARNING}).
 */
export function serverConfigWarnings(config: Omit<ServerConfig, "log">): string[] {
  return config.keys?.length ? [] : [`warning: ${AUTH_OFF_WARNING}`];
}
