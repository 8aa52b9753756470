/**
 * Network namespaces for the tests and the lab, by running iproute2's `ip` with
 * `Bun.spawnSync` / `Bun.spawn` (https://bun.sh/docs/api/spawn). Not for the data path.
 *
 * Every namespace gets a unique name (prefix + random suffix) and is remembered, so
 * {@link cleanupNetns} can delete all the namespaces this process made; it runs by itself
 * when the process exits or gets SIGINT / SIGTERM / SIGHUP. Veth pairs are created directly
 * inside the namespaces (`ip -n A link add ... peer ... netns B`), so nothing ever appears
 * in, or is attached to, the machine's own namespace.
 *
 * @module
 */

const _created = new Set<string>();
let _hooksInstalled = false;

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** Kill the command (SIGKILL) after this many milliseconds (default 30 000). */
  timeoutMs?: number;
  env?: Record<string, string | undefined>;
  cwd?: string;
}

/** A namespace created by {@link createNetns}. */
export class Netns {
  constructor(readonly name: string) {}

  /** Runs `ip -n NAME ...args`; returns stdout, throws with ip's stderr on failure. */
  ip(...args: string[]): string {
    return _run(["ip", "-n", this.name, ...args]);
  }

  /** Runs `ip -j -n NAME ...args` and parses the JSON. */
  ipJson<T = unknown>(...args: string[]): T {
    const text = _run(["ip", "-j", "-n", this.name, ...args]).trim();
    return JSON.parse(text === "" ? "[]" : text) as T;
  }

  /** Runs `argv` inside the namespace to completion (`ip netns exec`). */
  exec(argv: readonly string[], opts: ExecOptions = {}): ExecResult {
    const proc = Bun.spawnSync(["ip", "netns", "exec", this.name, ...argv], {
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, ...opts.env },
      cwd: opts.cwd,
      timeout: opts.timeoutMs ?? 30_000,
      killSignal: "SIGKILL",
    });
    return {
      code: proc.exitCode ?? -1,
      stdout: proc.stdout.toString(),
      stderr: proc.stderr.toString(),
    };
  }

  /** Starts `argv` inside the namespace; the caller waits for it or kills it by PID. */
  spawn(argv: readonly string[], opts: ExecOptions = {}): Bun.Subprocess<"ignore", "pipe", "pipe"> {
    return Bun.spawn(["ip", "netns", "exec", this.name, ...argv], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, ...opts.env },
      cwd: opts.cwd,
      timeout: opts.timeoutMs ?? 30_000,
      killSignal: "SIGKILL",
    });
  }

  /** Sets `ifname` up (`ip link set IF up`). */
  up(ifname: string): void {
    this.ip("link", "set", ifname, "up");
  }

  /** Adds an address; IPv6 ones skip DAD so they are usable at once. */
  addAddress(ifname: string, cidr: string): void {
    this.ip("addr", "add", cidr, "dev", ifname, ...(cidr.includes(":") ? ["nodad"] : []));
  }

  /** Adds a route: `ns.addRoute("default", "via", "192.0.2.1")`. */
  addRoute(...spec: string[]): void {
    this.ip(spec.some((s) => s.includes(":")) ? "-6" : "-4", "route", "add", ...spec);
  }

  /** Deletes the namespace (see {@link deleteNetns}). */
  delete(): void {
    deleteNetns(this.name);
  }
}

/**
 * Creates a namespace named `prefix` + 8 random hex digits, with its loopback up.
 *
 * @example const ns = createNetns(); ns.ip("link", "show"); ns.delete();
 */
export function createNetns(prefix = "dstmt-"): Netns {
  _installHooks();
  const suffix = [...crypto.getRandomValues(new Uint8Array(4))]
    .map((b) => b.toString(16).padStart(2, "0"))
    .join("");
  const name = `${prefix}${suffix}`;
  _run(["ip", "netns", "add", name]);
  _created.add(name);
  try {
    new Netns(name).up("lo");
  } catch (error) {
    deleteNetns(name);
    throw error;
  }
  return new Netns(name);
}

/**
 * Creates the namespace `name` (loopback up) that outlives this process: not registered for
 * cleanup at exit. For `dstm lab up`, whose namespaces `dstm lab down` removes.
 */
export function createPersistentNetns(name: string): Netns {
  _run(["ip", "netns", "add", name]);
  const ns = new Netns(name);
  ns.up("lo");
  return ns;
}

/** Names of the existing namespaces that start with `prefix`. */
export function listNetns(prefix: string): string[] {
  const out = Bun.spawnSync(["ip", "netns", "list"], {
    stdout: "pipe",
    stderr: "ignore",
  }).stdout.toString();
  return out
    .split("\n")
    .map((line) => line.split(" ")[0] ?? "")
    .filter((name) => name.startsWith(prefix));
}

/** PIDs of the processes running in namespace `name` (`ip netns pids`); none when it is gone. */
export function netnsPids(name: string): number[] {
  const out = Bun.spawnSync(["ip", "netns", "pids", name], {
    stdout: "pipe",
    stderr: "ignore",
  }).stdout.toString();
  return out.split(/\s+/).filter(Boolean).map(Number);
}

/** Deletes a namespace (its interfaces go with it); no error if it is already gone. */
export function deleteNetns(name: string): void {
  _created.delete(name);
  Bun.spawnSync(["ip", "netns", "del", name], { stdout: "ignore", stderr: "ignore" });
}

export interface VethOptions {
  mtu?: number;
  /** Set both ends up (default true). */
  up?: boolean;
}

/**
 * A veth pair with end `aName` in namespace `a` and end `bName` in `b`, created inside the
 * namespaces (never in the machine's own).
 */
export function vethPair(
  a: Netns,
  aName: string,
  b: Netns,
  bName: string,
  opts: VethOptions = {},
): void {
  const mtu = opts.mtu === undefined ? [] : ["mtu", String(opts.mtu)];
  a.ip(
    "link",
    "add",
    aName,
    ...mtu,
    "type",
    "veth",
    "peer",
    "name",
    bName,
    ...mtu,
    "netns",
    b.name,
  );
  if (opts.up ?? true) {
    a.up(aName);
    b.up(bName);
  }
}

/** Names of the namespaces this process created and has not deleted yet. */
export function createdNetns(): string[] {
  return [..._created];
}

/** Deletes every namespace this process created. Safe to call more than once. */
export function cleanupNetns(): void {
  for (const name of [..._created]) deleteNetns(name);
}

function _installHooks(): void {
  if (_hooksInstalled) return;
  _hooksInstalled = true;
  process.on("exit", cleanupNetns);
  for (const [signal, code] of [
    ["SIGINT", 130],
    ["SIGTERM", 143],
    ["SIGHUP", 129],
  ] as const) {
    process.once(signal, () => {
      cleanupNetns();
      process.exit(code);
    });
  }
}

function _run(argv: string[]): string {
  const proc = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe", timeout: 30_000 });
  if (proc.exitCode !== 0) {
    const why = proc.stderr.toString().trim() || `exit code ${proc.exitCode}`;
    throw new Error(`${argv.join(" ")}: ${why}`);
  }
  return proc.stdout.toString();
}
