/**
 * The name of a network interface the command creates (the client's DTI, the TEP's tunnel
 * interface), checked as Linux checks it (net/core/dev.c dev_valid_name), so that a bad name
 * is refused at start and by `--check`, not when the interface is created.
 *
 * @module
 */
import { UsageError } from "./errors.ts";

/** IFNAMSIZ (16) less the terminating NUL: the longest interface name, in bytes. */
export const MAX_IFNAME_BYTES = 15;

/**
 * `text` when it is an interface name: 1 to 15 bytes (UTF-8), no `/`, `:` or whitespace, not
 * `.` or `..` (dots inside a name are fine, e.g. `dti.7`). Throws a one-line
 * {@link UsageError} naming `flag` otherwise.
 */
export function interfaceName(text: string, flag = "--ifname"): string {
  if (
    text.length === 0 ||
    new TextEncoder().encode(text).length > MAX_IFNAME_BYTES ||
    /[/:\s]/.test(text) ||
    text === "." ||
    text === ".."
  )
    throw new UsageError(
      `${flag}: "${text}" is not an interface name (1 to ${MAX_IFNAME_BYTES} bytes, no '/', ':' or spaces)`,
    );
  return text;
}
