/**
 * The RFC minimums of NAPT mapping timeouts (RFC 5382 REQ-5, RFC 4787 REQ-5, RFC 5508 REQ-1):
 * shorter ones are allowed (tests, labs) but warned about.
 *
 * @module
 */
import type { Logger } from "../control/log.ts";
import type { NaptTimeouts } from "../tunnel/napt.ts";

/** Each timeout's flag, RFC minimum (s) and rule. */
const MINIMUMS: [keyof NaptTimeouts, string, number, string][] = [
  ["tcpEstablished", "--napt-tcp-established", 7440, "RFC 5382 REQ-5"],
  ["tcpTransitory", "--napt-tcp-transitory", 240, "RFC 5382 REQ-5"],
  ["udp", "--napt-udp", 120, "RFC 4787 REQ-5"],
  ["icmp", "--napt-icmp", 60, "RFC 5508 REQ-1"],
];

/** Logs `WARN napt-timeout-below-minimum` for each timeout (s) below its RFC minimum. */
export function warnNaptMinimums(t: NaptTimeouts, log: Logger): void {
  for (const [key, , minimum, rule] of MINIMUMS)
    if (t[key] < minimum)
      log.warn("napt-timeout-below-minimum", {
        timeout: key,
        "timeout-s": t[key],
        "minimum-s": minimum,
        rule,
      });
}

/**
 * The same, as lines for `dstm client --check` (stderr): `--napt-udp 30s is below the 120s
 * of RFC 4787 REQ-5: …`.
 */
export function naptMinimumWarnings(t: NaptTimeouts): string[] {
  return MINIMUMS.filter(([key, , minimum]) => t[key] < minimum).map(
    ([key, flag, minimum, rule]) =>
      `${flag} ${t[key]}s is below the ${minimum}s of ${rule}: mappings of idle flows end sooner than their peers expect (allowed, for tests and labs)`,
  );
}
