/**
 * sd_notify(3) without libsystemd: the service manager's readiness protocol for `Type=notify`
 * units. systemd puts the path of a unix datagram socket in `$NOTIFY_SOCKET` (a leading `@`
 * means the Linux abstract namespace); the service sends newline-separated `KEY=VALUE`
 * assignments to it, `READY=1` once it serves, `STOPPING=1` when it shuts down, `STATUS=…`
 * for `systemctl status`. See sd_notify(3) and systemd.service(5) "Type=notify".
 *
 * @module
 */
import { close, errnoName, SOCK_CLOEXEC, SOCK_DGRAM, sendto, socket } from "./libc.ts";

const AF_UNIX = 1;
/** sizeof(struct sockaddr_un): sun_family (2) + sun_path (108). */
const SOCKADDR_UN_SIZE = 110;
const MSG_NOSIGNAL = 0x4000;

/**
 * The `struct sockaddr_un` for `$NOTIFY_SOCKET` and its length, or a reason it is unusable.
 * `@name` is the abstract socket "\0name" (length without a trailing NUL); a path gets one.
 */
export function notifySocketAddress(
  value: string,
): { addr: Uint8Array; length: number } | { error: string } {
  const abstract = value.startsWith("@");
  if (!abstract && !value.startsWith("/"))
    return { error: `NOTIFY_SOCKET "${value}" is neither an absolute path nor @abstract` };
  const name = new TextEncoder().encode(abstract ? value.slice(1) : value);
  // sun_path holds 108 bytes: a path needs its NUL, an abstract name its leading NUL.
  if (name.length + 1 > SOCKADDR_UN_SIZE - 2)
    return { error: `NOTIFY_SOCKET is longer than ${SOCKADDR_UN_SIZE - 3} bytes` };
  const addr = new Uint8Array(SOCKADDR_UN_SIZE);
  new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
  addr.set(name, abstract ? 3 : 2);
  return { addr, length: 2 + 1 + name.length };
}

/**
 * Sends `state` (e.g. `"READY=1\nSTATUS=serving 3 pools"`) to the service manager. Returns
 * `true` when sent, `false` when not run under a manager that asked for it (no
 * `$NOTIFY_SOCKET`); never throws, since a lost notification must not stop the daemon: on a
 * send error it returns the one-line reason instead, for the caller to log.
 *
 * @example sdNotify("READY=1") // after the sockets are bound
 */
export function sdNotify(
  state: string,
  env: Record<string, string | undefined> = process.env,
): boolean | string {
  const value = env.NOTIFY_SOCKET;
  if (value === undefined || value === "") return false;
  const target = notifySocketAddress(value);
  if ("error" in target) return target.error;
  const fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return `socket(AF_UNIX): ${errnoName(-fd)}`;
  try {
    const bytes = new TextEncoder().encode(state);
    const sent = sendto(fd, bytes, 0, bytes.length, MSG_NOSIGNAL, target.addr, target.length);
    return sent === bytes.length
      ? true
      : `sendto ${value}: ${sent < 0 ? errnoName(-sent) : "short write"}`;
  } finally {
    close(fd);
  }
}
