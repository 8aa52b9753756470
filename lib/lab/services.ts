/**
 * The lab's processes: dstm server, TEP and clients, a web server and a real FTP server, each
 * started inside its namespace with its output in a log file, and stopped by PID.
 *
 * @module
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type ChildProcess, sleep, spawnDetached, which } from "../sys/process.ts";
import { generateKeyFileText } from "../wire/auth.ts";
import { LAB, type LabNamespaces, nsName, type Role } from "./topology.ts";

/** How to run this same dstm: the compiled executable, or Bun with mod.ts from source. */
export function dstmArgv(): string[] {
  if (import.meta.url.includes("$bunfs")) return [process.execPath];
  return [process.execPath, join(import.meta.dir, "..", "..", "mod.ts")];
}

/** Variations of the lab. */
export interface LabOptions {
  /** Hosts per IPv4 address in the DSTM pool (port sets, RFC 7597); default 1 (whole addresses). */
  share?: number;
  /** Client services run with `--no-offload` (one packet per system call); default none. */
  clientNoOffload?: readonly string[];
  /** The TEP runs with `--no-offload` (one packet per system call); default off. */
  tepNoOffload?: boolean;
}

/** A problem with the lab the user can act on (one line). */
export class LabError extends Error {
  override name = "LabError";
}

export type Service =
  | "server"
  | "tep"
  | "web"
  | "ftp"
  | "client-a"
  | "client-b"
  | "client-c"
  | "client-d"
  | "client-e";
/**
 * What `Lab.up` starts, in order (clients on C and D only when a test asks, on E when the
 * path MTU demo step or test does: {@link Lab.ensure}).
 */
export const SERVICES: readonly Service[] = ["server", "tep", "web", "ftp", "client-a", "client-b"];

const SERVICE_ROLE: Record<Service, Role> = {
  server: "server",
  tep: "tep",
  web: "web",
  ftp: "ftp",
  "client-a": "a",
  "client-b": "b",
  "client-c": "c",
  "client-d": "d",
  "client-e": "e",
};

/** What says a service is ready, in its log. */
const READY: Record<Service, RegExp> = {
  server: / start listen=/,
  tep: / tep-start /,
  web: /Serving HTTP/,
  ftp: /./,
  "client-a": / (bound ipv4=|on-demand )/,
  "client-b": / (bound ipv4=|on-demand )/,
  "client-c": / (bound ipv4=|on-demand )/,
  "client-d": / (bound ipv4=|on-demand )/,
  "client-e": / (bound ipv4=|on-demand )/,
};

/** A 2 MiB file on the web server. */
export const BIG_FILE = "big.bin";
export const WEB_PAGE = "<html><body><h1>DSTM lab: IPv4 web server 192.0.2.80</h1></body></html>\n";
export const FTP_FILE = "ftp-test.bin";

export class LabServices {
  /** Processes started by this object (their exit is observable, unlike a bare PID's). */
  readonly #procs = new Map<number, ChildProcess>();

  constructor(
    readonly lab: string,
    readonly dir: string,
    readonly ns: LabNamespaces,
    readonly options: LabOptions = {},
  ) {}

  logFile(service: Service): string {
    return join(this.dir, `${service}.log`);
  }

  socket(service: Exclude<Service, "web" | "ftp">): string {
    return join(this.dir, `${service}.sock`);
  }

  /** The command line of a service. */
  argv(service: Service): string[] {
    const dstm = dstmArgv();
    switch (service) {
      case "server":
        return [
          ...dstm,
          "server",
          "--pool",
          LAB.pool,
          "--tep",
          `${LAB.tep6},${LAB.tep4}`,
          "--listen",
          `[${LAB.server6}]:4607`,
          "--db",
          join(this.dir, "leases.db"),
          "--control",
          this.socket("server"),
          "--lease-time",
          "10m",
          // The server ⇄ TEP key (docs/security.md): the TEP is on another host of the link.
          "--tep-key",
          this.tepKeyFile(),
          ...(this.options.share && this.options.share > 1
            ? ["--share", String(this.options.share)]
            : []),
        ];
      case "tep":
        return [
          ...dstm,
          "tep",
          "--ipv6",
          LAB.tep6,
          "--ipv4",
          LAB.tep4,
          "--server",
          LAB.server6,
          "--route",
          LAB.pool,
          "--link-mtu",
          String(LAB.ipv6Mtu),
          "--control",
          this.socket("tep"),
          "--key",
          this.tepKeyFile(),
          ...(this.options.tepNoOffload ? ["--no-offload"] : []),
        ];
      case "client-a":
      case "client-b":
      case "client-c":
      case "client-d":
      case "client-e":
        return [
          ...dstm,
          "client",
          "--server",
          LAB.server6,
          "--control",
          this.socket(service),
          ...(this.options.clientNoOffload?.includes(service) ? ["--no-offload"] : []),
        ];
      case "web":
        return [
          python(),
          "-u",
          "-m",
          "http.server",
          "80",
          "--bind",
          LAB.web4,
          "--directory",
          join(this.dir, "www"),
        ];
      case "ftp":
        return ["/usr/sbin/vsftpd", join(this.dir, "vsftpd.conf")];
    }
  }

  /** The server ⇄ TEP key file (written by prepareFiles; hosts never get it). */
  tepKeyFile(): string {
    return join(this.dir, "tep.key");
  }

  /** Writes the web root, the FTP root, vsftpd's configuration and the server ⇄ TEP key. */
  prepareFiles(): void {
    if (!existsSync(this.tepKeyFile()))
      writeFileSync(this.tepKeyFile(), generateKeyFileText(1), { mode: 0o600 });
    mkdirSync(join(this.dir, "www"), { recursive: true });
    writeFileSync(join(this.dir, "www", "index.html"), WEB_PAGE);
    // One page per node, so concurrent fetches can check each got its own reply.
    for (const node of ["a", "b", "c", "d"])
      writeFileSync(join(this.dir, "www", `node-${node}.txt`), nodePage(node));
    // 2 MiB of a known pattern: a download that needs full-size segments (path MTU tests).
    writeFileSync(
      join(this.dir, "www", BIG_FILE),
      new Uint8Array(2 << 20).map((_, i) => (i * 13 + 5) & 255),
    );
    const ftpRoot = join(this.dir, "ftp");
    mkdirSync(ftpRoot, { recursive: true, mode: 0o755 });
    // 256 KiB of a known pattern, so a transfer can be checked byte for byte.
    const data = new Uint8Array(256 * 1024).map((_, i) => (i * 7 + 3) & 255);
    writeFileSync(join(ftpRoot, FTP_FILE), data);
    mkdirSync(join(this.dir, "empty"), { recursive: true, mode: 0o755 });
    writeFileSync(
      join(this.dir, "vsftpd.conf"),
      [
        "listen=YES",
        "listen_ipv6=NO",
        `listen_address=${LAB.ftp4}`,
        "background=NO",
        "anonymous_enable=YES",
        "no_anon_password=YES",
        `anon_root=${ftpRoot}`,
        "local_enable=NO",
        "write_enable=NO",
        "pasv_enable=YES",
        `pasv_address=${LAB.ftp4}`,
        "pasv_min_port=30000",
        "pasv_max_port=30100",
        "port_enable=YES",
        "connect_from_port_20=YES",
        "seccomp_sandbox=NO",
        `secure_chroot_dir=${join(this.dir, "empty")}`,
        "xferlog_enable=YES",
        `vsftpd_log_file=${join(this.dir, "vsftpd-transfers.log")}`,
        "",
      ].join("\n"),
    );
  }

  /** Starts `service` in its namespace; resolves with its PID once it is ready. */
  async start(
    service: Service,
    timeoutMs = 15_000,
    extraArgs: readonly string[] = [],
  ): Promise<number> {
    const log = this.logFile(service);
    const before = existsSync(log) ? readFileSync(log, "utf8").length : 0;
    const fd = openSync(log, "a");
    const proc = spawnDetached(
      [
        "ip",
        "netns",
        "exec",
        nsName(this.lab, SERVICE_ROLE[service]),
        ...this.argv(service),
        ...extraArgs,
      ],
      { outputFd: fd, env: { ...process.env, PYTHONUNBUFFERED: "1" } },
    );
    closeSync(fd);
    this.#procs.set(proc.pid, proc);
    const deadline = Date.now() + timeoutMs;
    const ready = READY[service];
    while (Date.now() < deadline) {
      const text = readFileSync(log, "utf8").slice(before);
      if (service === "ftp" ? this.#listening(LAB.ftp4, 21) : ready.test(text)) return proc.pid;
      if (proc.exitCode !== null)
        throw new LabError(
          `${service} exited (${proc.exitCode}) while starting: ${lastLines(text)}`,
        );
      await sleep(50);
    }
    throw new LabError(`${service} did not become ready within ${timeoutMs / 1000}s; see ${log}`);
  }

  /** Stops a process of the lab by PID (SIGTERM, then SIGKILL after `graceMs`). */
  async stop(pid: number, graceMs = 5000): Promise<void> {
    const proc = this.#procs.get(pid);
    this.#procs.delete(pid);
    if (!proc) return stopPid(pid, graceMs);
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill("SIGTERM");
    const done = await Promise.race([
      proc.exited.then(() => true),
      sleep(graceMs).then(() => false),
    ]);
    if (!done) {
      proc.kill("SIGKILL");
      await proc.exited;
    }
  }

  #listening(address: string, port: number): boolean {
    const out = this.ns.ftp.exec(["ss", "-Hltn", `sport = :${port}`]).stdout;
    return out.includes(`${address}:${port}`);
  }
}

/** Sends SIGTERM to `pid`, then SIGKILL if it is still there after `graceMs`. */
export async function stopPid(pid: number, graceMs = 5000): Promise<void> {
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    return; // already gone
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!alive(pid)) return;
    await sleep(50);
  }
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // gone meanwhile
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function python(): string {
  return existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
}

function lastLines(text: string): string {
  return text.trim().split("\n").slice(-3).join(" | ");
}

/**
 * The Debian packages of the programs the lab runs, each with how to tell it is installed:
 * `ip` (the namespaces, links, routes), ping, curl (the web and FTP client), vsftpd (the real
 * FTP server) and python3 (the web server). scripts/demo-deps.sh installs the same list
 * (test/demo_deps.test.ts keeps the two equal).
 */
const LAB_PROGRAMS: readonly { readonly pkg: string; readonly installed: () => boolean }[] = [
  { pkg: "iproute2", installed: () => which("ip") !== null },
  { pkg: "iputils-ping", installed: () => which("ping") !== null },
  { pkg: "curl", installed: () => which("curl") !== null },
  { pkg: "vsftpd", installed: () => existsSync("/usr/sbin/vsftpd") },
  { pkg: "python3", installed: () => existsSync("/usr/bin/python3") || which("python3") !== null },
];

/** Every Debian package the lab needs (see {@link LAB_PROGRAMS}). */
export const LAB_PACKAGES: readonly string[] = LAB_PROGRAMS.map((p) => p.pkg);

/** Debian packages of the programs the lab runs that are not installed, e.g. `["vsftpd"]`. */
export function missingLabPackages(): string[] {
  return LAB_PROGRAMS.filter((p) => !p.installed()).map((p) => p.pkg);
}

/** The content of the web server's page for one node: distinct per node and long enough to span packets. */
export function nodePage(node: string): string {
  return `page for node ${node.toUpperCase()}\n${`${node}`.repeat(6000)}\n`;
}
