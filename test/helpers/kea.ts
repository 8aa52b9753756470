/**
 * What the ISC Kea namespace tests share (test/conformance_dhcp4o6.test.ts,
 * test/kea_dhcp4o6.test.ts, test/kea_dhcp4o6_timers.test.ts): where Kea is, namespaces without
 * IPv6 DAD, and starting a daemon in a namespace until its log says it is ready.
 */
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { stopPid } from "../../lib/lab/services.ts";
import { createNetns, deleteNetns, type Netns } from "../../lib/sys/netns.ts";
import { ROOT } from "./process.ts";
import { waitUntil } from "./wait.ts";

export const KEA4 = "/usr/sbin/kea-dhcp4";
export const KEA6 = "/usr/sbin/kea-dhcp6";

/** True when both Kea servers (kea-dhcp4, kea-dhcp6) are installed. */
export const haveKea = (): boolean => existsSync(KEA4) && existsSync(KEA6);

/**
 * A namespace of this run (name `prefix` + random) with IPv6 DAD off, link-local included:
 * every address, and so every Kea socket, is usable at once.
 */
export function createNoDadNetns(prefix: string): Netns {
  const ns = createNetns(prefix);
  for (const key of ["default", "all"])
    ns.exec(["sysctl", "-qw", `net.ipv6.conf.${key}.accept_dad=0`]);
  return ns;
}

export interface StartOptions {
  /** The file whose text `ready` must match (default DIR/NAME.out, the process's output). */
  log?: string;
  /** Added to the environment. */
  env?: Record<string, string>;
  /** How long to wait for `ready` (ms, default the starter's `timeoutMs`). */
  timeoutMs?: number;
}

/**
 * A `start(name, where, argv, ready, options)` that runs `argv` in `where` with its stdout and
 * stderr in `dir()`/NAME.out, records it in `procs` under `name`, and resolves to it once the
 * log matches `ready`; rejects if it exits first or is not ready in `timeoutMs` (ms).
 */
export function netnsStarter(
  procs: Map<string, Bun.Subprocess>,
  dir: () => string,
  timeoutMs = 20_000,
) {
  return async function start(
    name: string,
    where: Netns,
    argv: string[],
    ready: RegExp,
    opts: StartOptions = {},
  ): Promise<Bun.Subprocess> {
    const out = join(dir(), `${name}.out`);
    const log = opts.log ?? out;
    const fd = openSync(out, "a");
    const proc = Bun.spawn(["ip", "netns", "exec", where.name, ...argv], {
      stdin: "ignore",
      stdout: fd,
      stderr: fd,
      cwd: ROOT,
      env: { ...process.env, ...opts.env },
    });
    closeSync(fd);
    procs.set(name, proc);
    await waitUntil(
      () => {
        if (existsSync(log) && ready.test(readFileSync(log, "utf8"))) return true;
        if (proc.exitCode !== null)
          throw new Error(
            `${name} exited (${proc.exitCode}): ${readFileSync(out, "utf8").slice(-800)}`,
          );
        return false;
      },
      { timeoutMs: opts.timeoutMs ?? timeoutMs, intervalMs: 50, what: `${name} to start` },
    );
    return proc;
  };
}

/**
 * Writes the configurations of a kea-dhcp6 + kea-dhcp4 pair linked by `dhcp4o6-port` 6767
 * (docs/dhcp4o6.md, "Kea as the 4o6 server") into `dir`, with data, logs and leases in
 * `dir`/kea, and starts both in `where` (kea-dhcp6 listening on eth0/`v6Address`, kea-dhcp4
 * on eth0, which needs an IPv4 address). `subnet4` are Kea's subnet4 entries, `extra4` more
 * Dhcp4 settings.
 */
export async function startKea4o6(
  start: ReturnType<typeof netnsStarter>,
  where: Netns,
  dir: string,
  v6Address: string,
  subnet4: object[],
  extra4: Record<string, unknown> = {},
): Promise<void> {
  const data = join(dir, "kea");
  mkdirSync(data, { recursive: true });
  const loggers = (v: string) => [
    {
      name: `kea-dhcp${v}`,
      output_options: [{ output: join(data, `kea-dhcp${v}.log`) }],
      severity: "DEBUG",
      debuglevel: 99,
    },
  ];
  const leases = (v: string) => ({
    type: "memfile",
    persist: true,
    name: join(data, `kea-leases${v}.csv`),
    "lfc-interval": 0,
  });
  const v4 = {
    Dhcp4: {
      "interfaces-config": { interfaces: ["eth0"], "dhcp-socket-type": "udp" },
      "dhcp4o6-port": 6767,
      "lease-database": leases("4"),
      "valid-lifetime": 600,
      ...extra4,
      subnet4,
      loggers: loggers("4"),
    },
  };
  const prefix = `${v6Address.split("::")[0]}::/64`;
  const v6 = {
    Dhcp6: {
      "interfaces-config": { interfaces: [`eth0/${v6Address}`] },
      "dhcp4o6-port": 6767,
      "data-directory": data,
      "lease-database": leases("6"),
      subnet6: [{ id: 1, subnet: prefix, interface: "eth0" }],
      loggers: loggers("6"),
    },
  };
  writeFileSync(join(dir, "kea4.json"), JSON.stringify(v4));
  writeFileSync(join(dir, "kea6.json"), JSON.stringify(v6));
  const env = { KEA_PIDFILE_DIR: data, KEA_LOCKFILE_DIR: data };
  await start("kea6", where, [KEA6, "-c", join(dir, "kea6.json")], /DHCP6_STARTED/, {
    log: join(data, "kea-dhcp6.log"),
    env,
  });
  await start("kea4", where, [KEA4, "-c", join(dir, "kea4.json")], /DHCP4_STARTED/, {
    log: join(data, "kea-dhcp4.log"),
    env,
  });
}

/**
 * Stops process `name` of `procs` and forgets it: SIGTERM, then SIGKILL after 5 s
 * (lib/lab/services.ts `stopPid`), or only SIGINT when `signal` says so (dumpcap closes its
 * file on it); nothing when it has already ended.
 */
export async function stopProcess(
  procs: Map<string, Bun.Subprocess>,
  name: string,
  signal: "SIGTERM" | "SIGINT" = "SIGTERM",
): Promise<void> {
  const proc = procs.get(name);
  procs.delete(name);
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  if (signal === "SIGINT") proc.kill("SIGINT");
  else await stopPid(proc.pid, 5000);
  await proc.exited;
}

/** Stops what `procs` holds (last started first, by PID), deletes `namespaces` and removes `dir`. */
export async function tearDown(
  procs: Map<string, Bun.Subprocess>,
  namespaces: readonly Netns[],
  dir: string,
): Promise<void> {
  for (const [name, proc] of [...procs].reverse()) {
    procs.delete(name);
    if (proc.exitCode === null) await stopPid(proc.pid, 5000);
    await proc.exited;
  }
  for (const n of namespaces) deleteNetns(n.name);
  if (dir) rmSync(dir, { recursive: true, force: true });
}
