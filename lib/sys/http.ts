/**
 * Small HTTP endpoints (control socket, Prometheus metrics) on `Bun.serve`
 * (https://bun.sh/docs/api/http) and requests to them with Bun's `fetch` `unix` option.
 *
 * @module
 */
import { chmodSync, existsSync, mkdirSync, statSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";

export type FetchHandler = (request: Request) => Response | Promise<Response>;

export interface HttpEndpoint {
  /** `unix:/path` or `host:port` as actually bound. */
  readonly where: string;
  close(): void;
}

export class HttpListenError extends Error {
  override name = "HttpListenError";
}

/**
 * Serves `handler` on a Unix socket at `path` (mode 0660, parent created 0755 when missing).
 * A stale socket file left by a crashed server is removed; one with a live server behind it is not.
 */
export async function serveUnix(path: string, handler: FetchHandler): Promise<HttpEndpoint> {
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  } catch (error) {
    throw new HttpListenError(
      `cannot create the directory of control socket ${path}: ${(error as Error).message}`,
    );
  }
  if (existsSync(path)) {
    if (!statSync(path).isSocket())
      throw new HttpListenError(`control socket path ${path} exists and is not a socket`);
    if (await unixAlive(path)) {
      throw new HttpListenError(
        `control socket ${path} is in use by a running dstm process; stop it or use another --control path`,
      );
    }
    try {
      unlinkSync(path);
    } catch (error) {
      throw new HttpListenError(
        `control socket ${path} exists and cannot be removed (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); use another --control path`,
      );
    }
  }
  let server: ReturnType<typeof Bun.serve>;
  try {
    server = Bun.serve({ unix: path, fetch: handler });
  } catch (error) {
    throw new HttpListenError(
      `cannot listen on control socket ${path}: ${(error as Error).message}`,
    );
  }
  chmodSync(path, 0o660);
  return {
    where: `unix:${path}`,
    close: () => {
      server.stop(true);
      try {
        unlinkSync(path);
      } catch {
        // already gone
      }
    },
  };
}

/**
 * Serves `handler` on TCP `hostname`:`port`. Throws {@link HttpListenError} naming the
 * address, and for a port in use the flag that chose it (`flag`, default `--metrics`: the
 * Prometheus endpoint of server, TEP and client is the one TCP listener).
 */
export function serveTcp(
  hostname: string,
  port: number,
  handler: FetchHandler,
  flag = "--metrics",
): HttpEndpoint {
  let server: ReturnType<typeof Bun.serve>;
  try {
    server = Bun.serve({ hostname, port, fetch: handler });
  } catch (error) {
    const where = hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
    const code = (error as { code?: string }).code;
    const why =
      code === "EADDRINUSE"
        ? `the port is in use; choose another with ${flag}`
        : (error as Error).message;
    throw new HttpListenError(`cannot listen on ${where}: ${why}`);
  }
  const host = server.hostname ?? hostname;
  const where = host.includes(":") ? `[${host}]:${server.port}` : `${host}:${server.port}`;
  return { where, close: () => server.stop(true) };
}

/** GETs `urlPath` from the HTTP server on Unix socket `path`. Rejects when nothing listens. */
export async function getUnix(path: string, urlPath: string, timeoutMs = 5000): Promise<Response> {
  return fetch(`http://localhost${urlPath}`, {
    unix: path,
    signal: AbortSignal.timeout(timeoutMs),
  });
}

/** POSTs to `urlPath` of the HTTP server on Unix socket `path` (no body). Rejects when nothing listens. */
export async function postUnix(
  path: string,
  urlPath: string,
  timeoutMs = 30_000,
): Promise<Response> {
  return fetch(`http://localhost${urlPath}`, {
    method: "POST",
    unix: path,
    signal: AbortSignal.timeout(timeoutMs),
  });
}

/**
 * A one-line message when `error` (from {@link getUnix} on `path`) means this user may not
 * use the socket (EACCES/EPERM: the socket is mode 0660, owned by the daemon's user and
 * group), else undefined: the caller then says that nothing answers.
 */
export function unixPermissionProblem(path: string, error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (code !== "EACCES" && code !== "EPERM") return undefined;
  return `permission denied on ${path}: run this as root or as a member of the socket's group`;
}

/** Whether a dstm process answers `/v1/ping` on the Unix socket `path` (or this user may not ask it). */
export async function unixAlive(path: string): Promise<boolean> {
  try {
    await getUnix(path, "/v1/ping", 1000);
    return true;
  } catch (error) {
    // A socket this user may not connect to may well have a live process behind it.
    return unixPermissionProblem(path, error) !== undefined;
  }
}
