/**
 * The lab's probes, shared by the demo (./demo.ts) and the lab's end-to-end tests
 * (test/lab_*.test.ts), so that both run the same commands:
 *
 * - {@link pingArgv}: ping(8) with a payload size and DF setting, e.g. the path MTU probe of
 *   RFC 1191 / RFC 8201 (1,432 data bytes: a 1,460-byte IPv4 packet, {@link PMTU_PROBE_BYTES});
 * - {@link labTepStats}: the TEP's counters and learned path MTUs (`dstm tep stats --json`);
 * - {@link downloadBigFile}: the 2 MiB file from the web server, compared by SHA-256.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Lab } from "./lab.ts";
import { BIG_FILE, dstmArgv } from "./services.ts";
import { LAB, type Role } from "./topology.ts";

/** ICMP data bytes of a 1,460-byte IPv4 echo request (20 + 8 + 1,432): the DTI's MTU. */
export const PMTU_PROBE_BYTES = 1432;

/** How {@link pingArgv} pings. */
export interface PingOptions {
  /** Echo requests (default 2). */
  count?: number;
  /** Seconds between requests (ping -i; default ping's own, 1 s). */
  interval?: number;
  /** Seconds to wait for a reply (ping -W; default 1). */
  wait?: number;
  /** ICMP data bytes (default {@link PMTU_PROBE_BYTES}). */
  size?: number;
  /** Set DF (ping -M do, the default) or not (-M dont). */
  dontFragment?: boolean;
}

/** `ping -c COUNT [-i S] -W S -M do|dont -s BYTES target`. */
export function pingArgv(target: string, o: PingOptions = {}): string[] {
  return [
    ...["ping", "-c", String(o.count ?? 2)],
    ...(o.interval === undefined ? [] : ["-i", String(o.interval)]),
    ...["-W", String(o.wait ?? 1), "-M", o.dontFragment === false ? "dont" : "do"],
    ...["-s", String(o.size ?? PMTU_PROBE_BYTES), target],
  ];
}

/** What `dstm tep stats --json` says: counters by name, path MTUs (bytes) by host. */
export interface LabTepStats {
  counters: Record<string, number>;
  pathMtu: { host: string; mtu: number }[];
}

/** The lab TEP's stats, from its stats socket. Throws when `dstm tep stats` fails. */
export function labTepStats(lab: Lab): LabTepStats {
  const argv = [...dstmArgv(), "tep", "stats", "--json", "--stats", lab.services.socket("tep")];
  const r = lab.run("tep", argv);
  if (r.code !== 0) throw new Error(`dstm tep stats: exit ${r.code}: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as LabTepStats;
}

/**
 * Downloads the web server's {@link BIG_FILE} (2 MiB) from `role` into `file` (curl, 30 s at
 * most): the curl argv and exit code, its stderr, and whether the copy has the SHA-256 of the
 * server's file.
 */
export function downloadBigFile(lab: Lab, role: Role, file: string) {
  rmSync(file, { force: true });
  const argv = ["curl", "-sS", "--max-time", "30", "-o", file, `http://${LAB.web4}/${BIG_FILE}`];
  const r = lab.run(role, argv);
  const digest = (path: string) =>
    existsSync(path) ? createHash("sha256").update(readFileSync(path)).digest("hex") : "";
  const same = r.code === 0 && digest(file) === digest(join(lab.dir, "www", BIG_FILE));
  return { argv, code: r.code, stderr: r.stderr, same };
}
