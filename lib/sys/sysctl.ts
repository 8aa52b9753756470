/**
 * Kernel parameters under /proc/sys (Documentation/admin-guide/sysctl, proc(5)), read and
 * written with `node:fs` `readFileSync` / `writeFileSync` as Bun implements them. Values under
 * /proc/sys/net belong to the network namespace of the calling process.
 *
 * Keys are written as sysctl(8) does: `net.ipv4.ip_forward`, or with slashes when a part
 * holds a dot, such as an interface name: `net/ipv4/conf/eth0.100/rp_filter`.
 *
 * @module
 */
import { readFileSync, writeFileSync } from "node:fs";
import { Errno, SysError } from "./libc.ts";

/** The /proc/sys path of a sysctl key. */
export function sysctlPath(key: string): string {
  if (!/^[\w.\-/@:+]+$/.test(key) || key.split(/[./]/).some((p) => p === "" || p === "..")) {
    throw new SysError(
      `sysctl ${key}`,
      Errno.EINVAL,
      "not a sysctl key (like net.ipv4.ip_forward)",
    );
  }
  return `/proc/sys/${key.includes("/") ? key : key.replaceAll(".", "/")}`;
}

/**
 * Reads a sysctl value, without the trailing newline.
 *
 * @example readSysctl("net.ipv4.ip_forward") // "0"
 */
export function readSysctl(key: string): string {
  try {
    return readFileSync(sysctlPath(key), "utf8").trimEnd();
  } catch (error) {
    throw _sysctlError(key, "read", error);
  }
}

/**
 * Writes a sysctl value.
 *
 * @example writeSysctl("net.ipv4.conf.all.rp_filter", 0)
 */
export function writeSysctl(key: string, value: string | number): void {
  try {
    writeFileSync(sysctlPath(key), `${value}\n`);
  } catch (error) {
    throw _sysctlError(key, `write ${value} to`, error);
  }
}

function _sysctlError(key: string, action: string, error: unknown): Error {
  if (error instanceof SysError) return error;
  const code = (error as { code?: string }).code ?? "";
  const op = `sysctl ${action} ${key}`;
  switch (code) {
    case "ENOENT":
      return new SysError(op, Errno.ENOENT, `no sysctl ${key} (missing interface or module?)`);
    case "EACCES":
    case "EPERM":
      return new SysError(op, Errno[code], "changing kernel parameters needs root");
    case "EROFS":
      return new SysError(op, Errno.EROFS, "/proc/sys is read-only here (a container?)");
    case "EINVAL":
      return new SysError(op, Errno.EINVAL, "the kernel rejected the value");
    default:
      return new SysError(op, Errno.EIO, `${(error as Error).message ?? error}`);
  }
}
