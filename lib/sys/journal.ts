/**
 * Whether stdout is connected to the systemd journal, so log lines may carry a syslog priority
 * prefix (`<3>` … `<7>`, sd-daemon(3)) that journald strips and stores as PRIORITY=.
 *
 * systemd sets `$JOURNAL_STREAM` to "DEVICE:INODE" of the stream it connected to stdout and
 * stderr (systemd.exec(5), "JOURNAL_STREAM"); a process whose stdout was redirected elsewhere
 * (a pipe to `head`, a file) sees other numbers and must not write prefixes.
 *
 * @module
 */
import { fstatSync } from "node:fs";

/**
 * `true` when `$JOURNAL_STREAM` names the device and inode of file descriptor `fd` (1: stdout).
 *
 * @example const log = new Logger({ sink, priorityPrefix: stdoutIsJournal() });
 */
export function stdoutIsJournal(
  env: Record<string, string | undefined> = process.env,
  fd = 1,
): boolean {
  const match = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? "");
  if (!match) return false;
  try {
    const stat = fstatSync(fd, { bigint: true });
    return stat.dev === BigInt(match[1]!) && stat.ino === BigInt(match[2]!);
  } catch {
    return false;
  }
}
