/**
 * Default locations: system paths for root, per-user paths otherwise, so `dstm server` and
 * `dstm lease ls` find each other without flags.
 *
 * @module
 */
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";

function isRoot(): boolean {
  return typeof process.getuid === "function" && process.getuid() === 0;
}

/** Where the server's control socket lives unless --control says otherwise. */
export function defaultControlSocket(): string {
  return process.env.DSTM_CONTROL ?? join(runtimeDir(), "server.sock");
}

/**
 * Directory of the control sockets: $DSTM_RUNTIME_DIR when set, else /run/dstm as root, else
 * the user's runtime directory. `dstm ping4` looks here for running clients.
 */
export function runtimeDir(): string {
  if (process.env.DSTM_RUNTIME_DIR) return process.env.DSTM_RUNTIME_DIR;
  if (isRoot()) return "/run/dstm";
  const runtime = process.env.XDG_RUNTIME_DIR;
  return runtime ? join(runtime, "dstm") : join(tmpdir(), `dstm-${process.getuid?.() ?? 0}`);
}

/**
 * Where the lease database lives unless --db says otherwise: $DSTM_STATE_DIR/leases.db when
 * set, else /var/lib/dstm/leases.db as root, else the user's state directory.
 */
export function defaultLeaseDb(): string {
  if (process.env.DSTM_STATE_DIR) return join(process.env.DSTM_STATE_DIR, "leases.db");
  if (isRoot()) return "/var/lib/dstm/leases.db";
  const state = process.env.XDG_STATE_HOME ?? join(homedir(), ".local", "state");
  return join(state, "dstm", "leases.db");
}
