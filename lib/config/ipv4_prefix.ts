/**
 * An IPv4 prefix flag (`--route CIDR`), checked with the reason a bad one is refused.
 *
 * @module
 */
import { formatIPv4Prefix, type IPv4Prefix, parseIPv4Prefix, prefixMeant } from "../net/prefix.ts";
import { UsageError } from "./errors.ts";

/**
 * `text` as an IPv4 prefix. Throws {@link UsageError} naming `flag`: for a prefix with host
 * bits set (`198.51.100.5/24`) it says which prefix was meant, as `--pool` does.
 */
export function ipv4PrefixFlag(text: string, flag: string): IPv4Prefix {
  const prefix = parseIPv4Prefix(text);
  if (prefix) return prefix;
  const meant = prefixMeant(text);
  if (meant !== null)
    throw new UsageError(`${flag}: ${text} has host bits set; did you mean ${meant}?`);
  throw new UsageError(`${flag}: "${text}" is not an IPv4 CIDR (e.g. 192.0.2.0/24)`);
}

/**
 * Each of `texts` as an IPv4 prefix ({@link ipv4PrefixFlag}); one given twice is refused with
 * a {@link UsageError} (the second route add would fail with EEXIST once the daemon runs).
 */
export function ipv4PrefixFlags(texts: readonly string[], flag: string): IPv4Prefix[] {
  const seen = new Set<string>();
  return texts.map((text) => {
    const prefix = ipv4PrefixFlag(text, flag);
    const key = formatIPv4Prefix(prefix);
    if (seen.has(key)) throw new UsageError(`${flag}: ${key} is given twice`);
    seen.add(key);
    return prefix;
  });
}
