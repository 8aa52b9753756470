/**
 * Why a PostgreSQL server could not be reached. Bun's SQL client says only "Failed to connect"
 * (code ERR_POSTGRES_CONNECTION_REFUSED) whether the host name does not resolve, nothing
 * listens on the port, or the packets go nowhere; an operator needs to know which. After a
 * failed connection, {@link whyUnreachable} asks again step by step — the name, then a TCP
 * connection (or the Unix socket) — and says what it found, with what to check.
 *
 * @module
 */

import { lookup } from "node:dns/promises";
import { existsSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";

/** Where a `postgres://` URL points: a TCP host and port, or a Unix socket path. */
export type PostgresTarget = { host: string; port: number } | { socket: string };

/**
 * The target of `url` (`postgres://user@host:port/db`; `?host=/dir` or `?path=/dir` for a Unix
 * socket directory, whose socket is `.s.PGSQL.PORT`), or null when the URL does not parse.
 * Defaults as libpq's: host localhost, port 5432.
 */
export function postgresTarget(url: string): PostgresTarget | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  const port = u.port === "" ? 5432 : Number(u.port);
  const dir = u.searchParams.get("path") ?? u.searchParams.get("host");
  if (dir?.startsWith("/")) return { socket: join(dir, `.s.PGSQL.${port}`) };
  const host = u.hostname.replace(/^\[|\]$/g, "") || "localhost";
  return { host, port };
}

/** A TCP connection attempt's outcome: "open", or the errno code (ECONNREFUSED, ETIMEDOUT…). */
function tryTcp(host: string, port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    const done = (what: string) => {
      s.destroy();
      resolve(what);
    };
    s.setTimeout(timeoutMs, () => done("ETIMEDOUT"));
    s.once("connect", () => done("open"));
    s.once("error", (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
  });
}

/**
 * One clause saying why `url`'s server could not be reached, and what to check; "" when the
 * name resolves and the port answers (the failure was then past the connection: the
 * caller's message stands). Takes at most about `timeoutMs` (default 3,000 ms) per step.
 */
export async function whyUnreachable(url: string, timeoutMs = 3000): Promise<string> {
  const t = postgresTarget(url);
  if (t === null) return "";
  if ("socket" in t)
    return existsSync(t.socket)
      ? ""
      : `no Unix socket ${t.socket}: is PostgreSQL running with unix_socket_directories there?`;
  let address: string;
  try {
    address = (await lookup(t.host)).address;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "";
    return `the host name ${t.host} does not resolve (${code}): check the URL's host`;
  }
  const at = address.includes(":") ? `[${address}]:${t.port}` : `${address}:${t.port}`;
  const outcome = await tryTcp(address, t.port, timeoutMs);
  if (outcome === "open") return "";
  if (outcome === "ECONNREFUSED")
    return `nothing listens on ${at} (connection refused): is PostgreSQL running, and does its listen_addresses and port include that address?`;
  if (outcome === "ETIMEDOUT")
    return `no answer from ${at} within ${timeoutMs} ms: a firewall, or a wrong address?`;
  return `cannot reach ${at} (${outcome})`;
}
