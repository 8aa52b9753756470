/**
 * Several `dstm server` processes on one PostgreSQL database, one `dstm tep`, in network
 * namespaces made for the run (docs/scale-out.md): shared by the active-active tests and
 * bench/failover.ts.
 *
 * ```
 *   ns srv: servers [2001:db8:1::53]:4607, [::54]:4607 … (+ load scripts)  ─┐
 *   ns cl:  a real `dstm client` 2001:db8:1::100 (DTI)                      ─┼─ br0 in ns tep
 *   ns tep: dstm tep 2001:db8:1::1 / 192.0.2.1 ── ns web 192.0.2.80         ─┘
 * ```
 *
 * The database listens on a Unix socket only (test/helpers/postgres.ts): every namespace
 * reaches it through the file system. Control sockets are files too, read from the test.
 * {@link AaLab.down} kills what it started (by PID) and deletes the namespaces.
 */
import { join } from "node:path";
import { createNetns, type Netns, vethPair } from "../../lib/sys/netns.ts";
import { type DstmProcess, spawnDstm } from "./process.ts";

export { metric } from "./prometheus.ts";

export const AA = {
  tep6: "2001:db8:1::1",
  tep4: "192.0.2.1",
  web4: "192.0.2.80",
  client6: "2001:db8:1::100",
  /** Server i listens on [server6(i)]:4607. */
  server6: (i: number) => `2001:db8:1::${(0x53 + i).toString(16)}`,
} as const;

export interface AaServer {
  readonly index: number;
  readonly address: string;
  /** Control socket (file): /metrics, /v1/leases. */
  readonly control: string;
  readonly proc: DstmProcess;
}

export interface AaLabOptions {
  /** Working directory for sockets (the caller removes it). */
  readonly dir: string;
  /** The `postgres://` URL every server uses. */
  readonly db: string;
  /** Server `index`'s own `--db` instead (servers with separate databases: a misconfiguration). */
  readonly dbOf?: (index: number) => string;
  readonly pool: string;
  /** How many server addresses the srv namespace gets (default 2). */
  readonly servers?: number;
  /** Extra `dstm server` flags. */
  readonly serverArgs?: readonly string[];
  /** Name prefix of the namespaces (default `dstma-`): each helper's own. */
  readonly nsPrefix?: string;
}

/** GET `path` from a control socket: the body's text. */
export async function controlGet(socket: string, path: string): Promise<string> {
  return (await fetch(`http://localhost${path}`, { unix: socket })).text();
}

export class AaLab {
  readonly srv: Netns;
  readonly tepNs: Netns;
  readonly web: Netns;
  readonly cl: Netns;
  readonly servers: (AaServer | undefined)[] = [];
  readonly tepSocket: string;
  readonly clientSocket: string;
  tep: DstmProcess | undefined;
  client: DstmProcess | undefined;
  readonly #o: AaLabOptions;
  readonly #namespaces: Netns[] = [];
  readonly #procs: DstmProcess[] = [];

  constructor(options: AaLabOptions) {
    this.#o = options;
    this.tepSocket = join(options.dir, "tep.sock");
    this.clientSocket = join(options.dir, "client.sock");
    const ns = () => {
      const n = createNetns(options.nsPrefix ?? "dstma-");
      this.#namespaces.push(n);
      return n;
    };
    try {
      this.srv = ns();
      this.tepNs = ns();
      this.web = ns();
      this.cl = ns();
      for (const n of this.#namespaces) n.exec(["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"]);
      this.tepNs.ip("link", "add", "br0", "type", "bridge");
      this.tepNs.up("br0");
      vethPair(this.srv, "s0", this.tepNs, "p-srv");
      vethPair(this.cl, "c0", this.tepNs, "p-cl");
      for (const port of ["p-srv", "p-cl"]) this.tepNs.ip("link", "set", port, "master", "br0");
      this.tepNs.addAddress("br0", `${AA.tep6}/64`);
      for (let i = 0; i < (options.servers ?? 2); i++)
        this.srv.addAddress("s0", `${AA.server6(i)}/64`);
      this.cl.addAddress("c0", `${AA.client6}/64`);
      vethPair(this.tepNs, "t4", this.web, "w0");
      this.tepNs.addAddress("t4", `${AA.tep4}/24`);
      this.web.addAddress("w0", `${AA.web4}/24`);
      this.web.addRoute(options.pool, "via", AA.tep4);
    } catch (error) {
      for (const n of this.#namespaces) n.delete();
      throw error;
    }
  }

  /** Starts server `index` on [server6(index)]:4607; resolves once it listens. */
  async startServer(index: number): Promise<AaServer> {
    const address = AA.server6(index);
    const control = join(this.#o.dir, `server${index}.sock`);
    const proc = this.#track(
      spawnDstm(
        [
          "server",
          ...[
            "--pool",
            this.#o.pool,
            "--tep",
            AA.tep6,
            "--db",
            this.#o.dbOf?.(index) ?? this.#o.db,
          ],
          ...["--listen", `[${address}]:4607`, "--control", control, "--no-source-check"],
          ...["--max-leases-per-prefix", "0", "--prefix-rate", "0"],
          ...(this.#o.serverArgs ?? []),
        ],
        {},
        this.srv.name,
      ),
    );
    await proc.waitFor(/ start listen=/, 60_000);
    const server = { index, address, control, proc };
    this.servers[index] = server;
    return server;
  }

  /** Starts the TEP with every server as `--server`; resolves once its stats socket answers. */
  async startTep(): Promise<DstmProcess> {
    const servers = (this.#o.servers ?? 2) > 0 ? this.#serverFlags() : [];
    const proc = this.#track(
      spawnDstm(
        [
          "tep",
          ...["--ipv6", AA.tep6, "--ipv4", AA.tep4, ...servers, "--route", this.#o.pool],
          ...["--control", this.tepSocket, "--insecure-control"],
        ],
        {},
        this.tepNs.name,
      ),
    );
    await proc.waitFor(/tep-start/, 60_000);
    this.tep = proc;
    return proc;
  }

  /** Starts a real `dstm client` (DTI) in ns cl with every server as `--server`. */
  async startClient(): Promise<DstmProcess> {
    const proc = this.#track(
      spawnDstm(
        ["client", ...this.#serverFlags(), "--control", this.clientSocket],
        {},
        this.cl.name,
      ),
    );
    await proc.waitFor(/ bound /, 60_000);
    this.client = proc;
    return proc;
  }

  /** The TEP's Prometheus text. */
  tepMetrics(): Promise<string> {
    return controlGet(this.tepSocket, "/metrics");
  }

  /** `ping -c COUNT` from the client's namespace to the web host: the replies received. */
  ping(count = 3): number {
    const r = this.cl.exec(["ping", "-n", "-c", String(count), "-i", "0.2", "-W", "2", AA.web4], {
      timeoutMs: 30_000,
    });
    return Number(/(\d+) received/.exec(r.stdout)?.[1] ?? 0);
  }

  /** SIGKILL (`kill -9`) or SIGTERM to a process this lab started; resolves once it is gone. */
  async stop(proc: DstmProcess | undefined, signal: "SIGKILL" | "SIGTERM" = "SIGTERM") {
    if (!proc) return;
    proc.proc.kill(signal);
    await proc.exited;
  }

  /** Kills everything this lab started and deletes its namespaces. */
  async down(): Promise<void> {
    for (const p of this.#procs) p.proc.kill("SIGKILL");
    await Promise.all(this.#procs.map((p) => p.exited));
    for (const n of this.#namespaces) n.delete();
  }

  #serverFlags(): string[] {
    return Array.from({ length: this.#o.servers ?? 2 }, (_, i) => [
      "--server",
      AA.server6(i),
    ]).flat();
  }

  #track(proc: DstmProcess): DstmProcess {
    this.#procs.push(proc);
    return proc;
  }
}
