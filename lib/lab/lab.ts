/**
 * `dstm lab`: the paper's test network brought up, inspected and taken down as a unit.
 * State (PIDs, logs, sockets, lease database) lives in one directory per lab, so `down`
 * works from another process and also after a crash: it then finds the lab's namespaces by
 * name and stops whatever runs inside them (`ip netns pids`), all of it started by the lab.
 *
 * @module
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { netnsPids } from "../sys/netns.ts";
import {
  alive,
  LabError,
  type LabOptions,
  LabServices,
  missingLabPackages,
  SERVICES,
  type Service,
  stopPid,
} from "./services.ts";
import {
  buildTopology,
  destroyTopology,
  type LabNamespaces,
  labNamespaces,
  openTopology,
} from "./topology.ts";

export interface LabState {
  name: string;
  startedAt: string;
  pids: Partial<Record<Service, number>>;
  options?: LabOptions;
}

export class Lab {
  readonly ns: LabNamespaces;
  readonly services: LabServices;
  state: LabState;

  private constructor(
    readonly name: string,
    readonly dir: string,
    ns: LabNamespaces,
    state: LabState,
  ) {
    this.ns = ns;
    this.services = new LabServices(name, dir, ns, state.options ?? {});
    this.state = state;
  }

  /** Builds the network and starts every service; on failure takes down what it built. */
  static async up(
    name: string,
    baseDir: string,
    progress: (line: string) => void = () => {},
    options: LabOptions = {},
  ): Promise<Lab> {
    const dir = join(baseDir, `lab-${name}`);
    const missing = missingLabPackages();
    if (missing.length > 0) {
      throw new LabError(
        `the lab runs programs that are not installed: apt-get install -y ${missing.join(" ")} (or run ./demo.sh)`,
      );
    }
    if (labNamespaces(name).length > 0) {
      throw new LabError(
        `lab "${name}" is already up; run \`dstm lab down${name === "lab" ? "" : ` --name ${name}`}\` first`,
      );
    }
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    progress(
      "building namespaces: nodes A and B, DSTM server, TEP, web and FTP servers, two switches, node E behind routers r1 and r2",
    );
    const ns = buildTopology(name);
    const lab = new Lab(name, dir, ns, {
      name,
      startedAt: new Date().toISOString(),
      pids: {},
      options,
    });
    try {
      lab.services.prepareFiles();
      for (const service of SERVICES) {
        progress(`starting ${service}`);
        lab.state.pids[service] = await lab.services.start(service);
        lab.#save();
      }
      return lab;
    } catch (error) {
      await Lab.down(name, baseDir);
      throw error;
    }
  }

  /** The lab `name` as left by `up` (throws when it is not up). */
  static open(name: string, baseDir: string): Lab {
    const dir = join(baseDir, `lab-${name}`);
    const file = join(dir, "state.json");
    if (!existsSync(file) || labNamespaces(name).length === 0)
      throw new LabError(`lab "${name}" is not up (run \`dstm lab up\`)`);
    return new Lab(
      name,
      dir,
      openTopology(name),
      JSON.parse(readFileSync(file, "utf8")) as LabState,
    );
  }

  /**
   * Stops the lab's processes (clients first, so they release their leases), deletes its
   * namespaces and its directory. Works for a half-built or crashed lab; returns what it removed.
   */
  static async down(
    name: string,
    baseDir: string,
  ): Promise<{ processes: number; namespaces: string[] }> {
    const dir = join(baseDir, `lab-${name}`);
    const file = join(dir, "state.json");
    let processes = 0;
    if (existsSync(file)) {
      const state = JSON.parse(readFileSync(file, "utf8")) as LabState;
      for (const service of [...SERVICES].reverse()) {
        const pid = state.pids[service];
        if (pid === undefined) continue;
        await stopPid(pid);
        processes++;
      }
    }
    // Anything still running inside the namespaces (a crash left it, or it was never recorded).
    for (const ns of labNamespaces(name)) {
      for (const pid of netnsPids(ns)) {
        await stopPid(pid, 2000);
        processes++;
      }
    }
    const namespaces = destroyTopology(name);
    rmSync(dir, { recursive: true, force: true });
    return { processes, namespaces };
  }

  /** Runs `argv` in the namespace of `role` and returns its exit code and output. */
  run(role: keyof LabNamespaces, argv: readonly string[], timeoutMs = 30_000) {
    return this.ns[role].exec(argv, { timeoutMs });
  }

  /** Restarts one service (e.g. the TEP), keeping everything else; `extraArgs` go to its command line. */
  async restart(service: Service, extraArgs: readonly string[] = []): Promise<number> {
    const pid = this.state.pids[service];
    if (pid !== undefined) await this.services.stop(pid);
    const fresh = await this.services.start(service, 15_000, extraArgs);
    this.state.pids[service] = fresh;
    this.#save();
    return fresh;
  }

  /** Starts `service` unless the lab already runs it (e.g. node E's client); resolves with its PID. */
  async ensure(service: Service): Promise<number> {
    const pid = this.state.pids[service];
    if (pid !== undefined && alive(pid)) return pid;
    return this.restart(service);
  }

  /** Stops one service (SIGTERM) and forgets its PID. */
  async stop(service: Service): Promise<void> {
    const pid = this.state.pids[service];
    if (pid === undefined) return;
    await this.services.stop(pid);
    delete this.state.pids[service];
    this.#save();
  }

  #save(): void {
    writeFileSync(join(this.dir, "state.json"), `${JSON.stringify(this.state, null, 2)}\n`);
  }
}
