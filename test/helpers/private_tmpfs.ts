/**
 * A small tmpfs that only this test sees: a holder process made by
 * `unshare -m --propagation private` mounts it over an empty directory inside its own mount
 * namespace (the machine's mounts never change; no loop device, no device-mapper), and every
 * command of the test that must see it — the `dstm server`, `sqlite3`, the filler — runs
 * inside that namespace through `nsenter -t HOLDER -m`. Killing the holder (by PID) and every
 * process entered into the namespace ends the mount.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Ran {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export class PrivateTmpfs {
  /** The mount point (empty, and not a mount, outside the namespace). */
  readonly dir: string;
  readonly #holder: ReturnType<typeof Bun.spawn>;

  private constructor(dir: string, holder: ReturnType<typeof Bun.spawn>) {
    this.dir = dir;
    this.#holder = holder;
  }

  /** Mounts a tmpfs of `sizeBytes` over a new directory named `prefix…` in a private namespace. */
  static async open(prefix: string, sizeBytes: number): Promise<PrivateTmpfs> {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    const holder = Bun.spawn(
      [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        `mount -t tmpfs -o size=${sizeBytes},mode=0700 tmpfs '${dir}' && echo ready && exec sleep 3600`,
      ],
      { stdout: "pipe", stderr: "pipe" },
    );
    // The holder keeps stdout open: read until its "ready" line (or EOF when mount failed).
    const reader = (holder.stdout as ReadableStream<Uint8Array>).getReader();
    let said = "";
    while (!said.includes("ready\n")) {
      const chunk = await reader.read();
      if (chunk.done) break;
      said += new TextDecoder().decode(chunk.value);
    }
    reader.releaseLock();
    if (!said.includes("ready\n")) {
      const err = await new Response(holder.stderr as ReadableStream).text();
      holder.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`cannot mount a private tmpfs on ${dir}: ${err.trim()}`);
    }
    return new PrivateTmpfs(dir, holder);
  }

  /** The namespace holder's PID (for `nsenter -t PID -m`). */
  get pid(): number {
    return this.#holder.pid;
  }

  /** `cmd` prefixed to run inside the namespace. */
  inside(cmd: readonly string[]): string[] {
    return ["nsenter", "-t", String(this.pid), "-m", "--", ...cmd];
  }

  /** Runs `cmd` inside the namespace to completion. */
  async run(cmd: readonly string[]): Promise<Ran> {
    const proc = Bun.spawn(this.inside(cmd), { stdout: "pipe", stderr: "pipe" });
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    return { code, stdout, stderr };
  }

  /** Runs a shell command inside the namespace (the mount point as `$D`). */
  sh(script: string): Promise<Ran> {
    return this.run(["sh", "-c", `D='${this.dir}'; ${script}`]);
  }

  /** Bytes free on the tmpfs, as statfs(2) says inside the namespace. */
  async freeBytes(): Promise<number> {
    const r = await this.run(["stat", "-f", "-c", "%a %S", this.dir]);
    const [blocks, size] = r.stdout.trim().split(" ").map(Number);
    return (blocks ?? 0) * (size ?? 0);
  }

  /** Fills every free byte with the file `name` (dd until ENOSPC); resolves the bytes free after. */
  async fill(name = "fill"): Promise<number> {
    await this.sh(`dd if=/dev/zero of="$D/${name}" bs=4096 oflag=append conv=notrunc 2>/dev/null`);
    return this.freeBytes();
  }

  /** Removes `name` (the filler): the space comes back. */
  async free(name = "fill"): Promise<void> {
    const r = await this.sh(`rm -f "$D/${name}"`);
    if (r.code !== 0) throw new Error(`rm ${name}: ${r.stderr}`);
  }

  /** Kills the holder (by PID); the mount ends with the last process in the namespace. */
  async close(): Promise<void> {
    this.#holder.kill("SIGKILL");
    await this.#holder.exited;
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Runs `body` with a fresh {@link PrivateTmpfs} of `sizeBytes` (directory `prefix…`) and a list
 * `servers` for the processes it starts inside it: afterwards, also when `body` throws, each
 * of them is killed (SIGKILL, by PID) and awaited, then the tmpfs is closed.
 */
export async function withTmpfsServers<T>(
  prefix: string,
  sizeBytes: number,
  body: (t: {
    fs: PrivateTmpfs;
    servers: { proc: ReturnType<typeof Bun.spawn>; exited: Promise<number> }[];
  }) => Promise<T>,
): Promise<T> {
  const fs = await PrivateTmpfs.open(prefix, sizeBytes);
  const servers: { proc: ReturnType<typeof Bun.spawn>; exited: Promise<number> }[] = [];
  try {
    return await body({ fs, servers });
  } finally {
    for (const s of servers) s.proc.kill("SIGKILL");
    await Promise.all(servers.map((s) => s.exited));
    await fs.close();
  }
}
