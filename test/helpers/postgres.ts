/**
 * A throwaway PostgreSQL server for tests: Debian's `initdb` + `pg_ctl` in a temporary
 * directory, listening only on a Unix socket in that directory (no TCP port at all), started
 * as the `postgres` user when we are root (PostgreSQL refuses to run as root), stopped and
 * removed by {@link PgServer.stop}, which the tests call from afterAll (so also when a test
 * fails), and at the latest when the test process exits.
 */
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface PgServer {
  /** A `postgres://` URL of a fresh database on this server (one per call). */
  createDatabase(): Promise<string>;
  /** The socket directory and port, for `psql -h DIR -p PORT`. */
  readonly socketDir: string;
  readonly port: number;
  /** Stops the server (immediate shutdown) and removes its directory. */
  stop(): Promise<void>;
  /**
   * Kills the server as a crash would (immediate shutdown: connections cut, crash recovery at
   * the next start) and starts it again on the same directory and socket; resolves once it
   * accepts connections. `downMs`: how long it stays down in between (ms; default 0).
   */
  restart(downMs?: number): Promise<void>;
}

/** The newest installed PostgreSQL's bin directory, or undefined. */
export function postgresBin(): string | undefined {
  const base = "/usr/lib/postgresql";
  if (!existsSync(base)) return undefined;
  const versions = readdirSync(base)
    .filter((v) => existsSync(join(base, v, "bin", "initdb")))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(base, versions[0], "bin") : undefined;
}

/** Runs a PostgreSQL tool, as `postgres` when we are root. Throws with its output on failure. */
function run(argv: string[]): void {
  const asRoot = process.getuid?.() === 0;
  const cmd = asRoot ? ["runuser", "-u", "postgres", "--", ...argv] : argv;
  const result = Bun.spawnSync(cmd, {
    stdout: "pipe",
    stderr: "pipe",
    env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", LANG: "C" },
  });
  if (result.exitCode !== 0) {
    throw new Error(
      `${argv[0]} failed (${result.exitCode}): ${result.stderr.toString()}${result.stdout.toString()}`,
    );
  }
}

let serial = 0;

/** Starts a throwaway server; throws when PostgreSQL is not installed. */
export async function startPostgres(): Promise<PgServer> {
  const bin = postgresBin();
  if (!bin) throw new Error("PostgreSQL is not installed (scripts/test-deps.sh installs it)");
  const dir = mkdtempSync(join(tmpdir(), "dstm-pg-"));
  const data = join(dir, "data");
  // The port only names the socket file (.s.PGSQL.PORT) in our own directory.
  const port = 20000 + (process.pid % 20000);
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    chmodSync(dir, 0o755);
    const { uid, gid } = _postgresIds();
    chownSync(dir, uid, gid);
  }
  let started = false;
  // If the test process exits without afterAll (a crash, process.exit), still take the server
  // down (SIGQUIT: immediate shutdown) and remove its directory.
  const onExit = () => {
    try {
      const pid = Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0]);
      if (pid > 0) {
        process.kill(pid, "SIGQUIT");
        // wait (bounded) until it is gone, so that it writes nothing into what we remove
        for (let i = 0; i < 300; i++) {
          process.kill(pid, 0); // throws once the process is gone
          Bun.sleepSync(10);
        }
      }
    } catch {
      // not running
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", onExit);
  const stop = async () => {
    process.off("exit", onExit);
    if (started) {
      try {
        run([join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"]);
      } catch {
        // already gone
      }
      started = false;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const options = [
    "-c listen_addresses=''",
    `-c unix_socket_directories='${dir}'`,
    `-p ${port}`,
    "-c fsync=off",
    "-c max_connections=100",
  ].join(" ");
  try {
    run([join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "-N", "-E", "UTF8"]);
    run([join(bin, "pg_ctl"), "-D", data, "-l", join(dir, "log"), "-o", options, "-w", "start"]);
    started = true;
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    socketDir: dir,
    port,
    stop,
    async restart(downMs = 0) {
      run([join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"]);
      started = false;
      // The outage's length is the scenario, not a wait for state.
      if (downMs > 0) await Bun.sleep(downMs);
      run([join(bin, "pg_ctl"), "-D", data, "-l", join(dir, "log"), "-o", options, "-w", "start"]);
      started = true;
    },
    async createDatabase() {
      const name = `dstm_${process.pid}_${++serial}`;
      run([
        join(bin, "..", "bin", "createdb"),
        "-h",
        dir,
        "-p",
        String(port),
        "-U",
        "postgres",
        name,
      ]);
      return `postgres://postgres@localhost:${port}/${name}?path=${encodeURIComponent(dir)}`;
    },
  };
}

function _postgresIds(): { uid: number; gid: number } {
  const line = Bun.spawnSync(["id", "-u", "postgres"]).stdout.toString().trim();
  const group = Bun.spawnSync(["id", "-g", "postgres"]).stdout.toString().trim();
  if (!line || !group) throw new Error("no postgres user (install the postgresql package)");
  return { uid: Number(line), gid: Number(group) };
}
