/**
 * The RFC minimums of NAPT mapping timeouts (RFC 5382 REQ-5, RFC 4787 REQ-5, RFC 5508 REQ-1):
 * shorter ones are allowed (tests, labs) but warned about.
 *
 * @module
 */
import type { Logger } from "../control/log.ts";
import type { NaptTimeouts } from "../tunnel/napt.ts";

/** Logs `WARN napt-timeout-below-minimum` for each timeout (s) below its RFC minimum. */
export function warnNaptMinimums(t: NaptTimeouts, log: Logger): void {
  const minimums: [keyof NaptTimeouts, number, string][] = [
    ["tcpEstablished", 7440, "RFC 5382 REQ-5"],
    ["tcpTransitory", 240, "RFC 5382 REQ-5"],
    ["udp", 120, "RFC 4787 REQ-5"],
    ["icmp", 60, "RFC 5508 REQ-1"],
  ];
  for (const [key, minimum, rule] of minimums)
    if (t[key] < minimum)
      log.warn("napt-timeout-below-minimum", {
        timeout: key,
        "timeout-s": t[key],
        "minimum-s": minimum,
        rule,
      });
}
