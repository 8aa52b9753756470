/**
 * The lab of the kernel-DTI tests (client_kernel_dti, redteam_kernel_dti, renumber), as root in
 * namespaces, and the command lines they start in it:
 *
 *   host ns: 2001:db8:7::10 (c0) ──veth── core ns (k0): server 2001:db8:7::53, TEP 2001:db8:7::1
 *                                          (k1) 192.0.2.1 ──veth── web ns: 192.0.2.80 (w0)
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNetns, type Netns, vethPair } from "../../lib/sys/netns.ts";
import { announceSkip, netnsSkipReason } from "./netns.ts";
import { type DstmProcess, spawnDstm } from "./process.ts";
import { tepArgv } from "./tep_argv.ts";

/** The DSTM server's address in the core namespace. */
export const LAB_SERVER6 = "2001:db8:7::53";

/**
 * What a kernel-DTI suite starts from: why it is skipped (null: it runs; announced under the
 * name `suite`), a fresh temporary directory `tmpPrefix`…, and the list of the namespaces it
 * made (to delete in afterAll, with the directory).
 */
export function dtiSuite(
  suite: string,
  tmpPrefix: string,
): { skip: string | null; dir: string; made: Netns[] } {
  const skip = netnsSkipReason({ tun: true });
  announceSkip(suite, skip);
  return { skip, dir: mkdtempSync(join(tmpdir(), tmpPrefix)), made: [] };
}

/** The three namespaces of the lab; the caller deletes them. */
export interface DtiLab {
  readonly host: Netns;
  readonly core: Netns;
  readonly web: Netns;
}

/**
 * Makes the lab's namespaces (names `prefix`…) with their links and addresses; `core6` are the
 * IPv6 addresses (CIDR) of the core's k0: the server's and the TEP's.
 */
export function createDtiLab(prefix: string, core6: readonly string[]): DtiLab {
  const host = createNetns(prefix);
  const core = createNetns(prefix);
  const web = createNetns(prefix);
  vethPair(host, "c0", core, "k0");
  vethPair(core, "k1", web, "w0");
  host.addAddress("c0", "2001:db8:7::10/64");
  for (const a of core6) core.addAddress("k0", a);
  core.addAddress("k1", "192.0.2.1/24");
  web.addAddress("w0", "192.0.2.80/24");
  web.addRoute("default", "via", "192.0.2.1");
  return { host, core, web };
}

/** Where the lab's server listens and what it leases. */
export interface LabServerOptions {
  /** `--lease-time`, in s. */
  readonly leaseTime: number;
  /** The TEP's IPv6 address (default 2001:db8:7::1); its IPv4 one is 192.0.2.1. */
  readonly tep6?: string;
  /** Flags put after `--pool`. */
  readonly extra?: readonly string[];
  /** `--control`: the server's control socket (none given: the default). */
  readonly control?: string;
  /** Flags for the TEP (after its own). */
  readonly tepExtra?: readonly string[];
}

/** `["server", "--listen", "[2001:db8:7::53]:4607", "--pool", "198.51.100.0/28", …]`, leases in memory. */
export function labServerArgv(o: LabServerOptions): string[] {
  return [
    "server",
    "--listen",
    `[${LAB_SERVER6}]:4607`,
    "--pool",
    "198.51.100.0/28",
    ...(o.extra ?? []),
    "--tep",
    `${o.tep6 ?? "2001:db8:7::1"},192.0.2.1`,
    "--lease-time",
    String(o.leaseTime),
    "--db",
    "memory",
    // No control socket unless asked for: never the machine's default /run/dstm/server.sock.
    ...(o.control === undefined ? ["--no-control"] : ["--control", o.control]),
  ];
}

/**
 * `dstm tep` at `tep6` (default 2001:db8:7::1) / 192.0.2.1 routing 198.51.100.0/28, bindings
 * from the lab's server with `--insecure-control` (the server is on another host of the link;
 * the channel is not under test in these suites), then `extra`.
 */
export function labTepArgv(tep6 = "2001:db8:7::1", extra: readonly string[] = []): string[] {
  return [
    ...tepArgv({ ipv6: tep6, server: LAB_SERVER6, route: "198.51.100.0/28" }),
    "--insecure-control",
    ...extra,
  ];
}

/** `["client", "--server", "2001:db8:7::53", "--dti", dti, "--ifname", ifname, "--route", "192.0.2.0/24", …extra]`. */
export function labClientArgv(
  dti: string,
  ifname: string,
  extra: readonly string[] = [],
): string[] {
  return [
    "client",
    "--server",
    LAB_SERVER6,
    "--dti",
    dti,
    "--ifname",
    ifname,
    "--route",
    "192.0.2.0/24",
    ...extra,
  ];
}

/**
 * Starts the lab's server ({@link labServerArgv} with `o`) and its TEP ({@link labTepArgv} at
 * `o.tep6`) in `core`, and waits until the server has the TEP (`tep-connected`). Resolves
 * with both, server first; the caller stops them (by PID, {@link stopAll}). Rejects when one
 * does not start within 20 s.
 */
export async function startLabCore(core: Netns, o: LabServerOptions): Promise<DstmProcess[]> {
  const server = spawnDstm(labServerArgv(o), {}, core.name);
  const started = [server];
  try {
    await server.waitFor(/ start /, 20_000);
    const tep = spawnDstm(labTepArgv(o.tep6, o.tepExtra), {}, core.name);
    started.push(tep);
    await tep.waitFor(/tep-start/, 20_000);
    await server.waitFor(/tep-connected/, 20_000);
    return started;
  } catch (error) {
    await stopAll(started);
    throw error;
  }
}

/** SIGTERM to each of `procs` (undefined ones skipped), then waits for them all to exit. */
export async function stopAll(procs: readonly (DstmProcess | undefined)[]): Promise<void> {
  for (const p of procs) p?.proc.kill("SIGTERM");
  await Promise.all(procs.map((p) => p?.exited));
}

/**
 * The end of a lab suite, also after a failure: SIGTERM to the dstm processes and the other
 * children (`others`: listeners, sinks), waits for them all, deletes the namespaces `made`
 * and removes `dir`.
 */
export async function tearDownLab(o: {
  readonly procs: readonly (DstmProcess | undefined)[];
  readonly others?: readonly {
    kill(signal?: NodeJS.Signals): void;
    readonly exited: Promise<number>;
  }[];
  readonly made: readonly Netns[];
  readonly dir: string;
}): Promise<void> {
  await stopAll(o.procs);
  for (const p of o.others ?? []) p.kill("SIGTERM");
  await Promise.all((o.others ?? []).map((p) => p.exited));
  for (const ns of o.made) ns.delete();
  rmSync(o.dir, { recursive: true, force: true });
}
