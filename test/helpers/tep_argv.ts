/**
 * The command line that starts (or checks) a `dstm tep` in the tests: the TEP's IPv6 and IPv4
 * addresses, the server it takes bindings from and the IPv4 route it serves, with the lab's
 * defaults (TEP 2001:db8:1::1 / 192.0.2.1, server 2001:db8:1::53, route 198.51.100.0/24).
 * Callers add the flags under test after it. And the counters `dstm tep stats` reports.
 *
 * @example
 * await runDstm([...tepArgv({ server: "::1" }), "--check"]);
 */
import { join } from "node:path";
import type { Netns } from "../../lib/sys/netns.ts";
import { BUN, ROOT } from "./process.ts";

/** Where the TEP sits: every field defaults to the lab's. */
export interface TepArgvOptions {
  /** `--ipv6`: the TEP's tunnel address. */
  readonly ipv6?: string;
  /** `--ipv4`: its IPv4 address on the IPv4 network. */
  readonly ipv4?: string;
  /** `--server`: the DSTM server that installs its bindings. */
  readonly server?: string;
  /** `--route`: the IPv4 prefix (CIDR) it serves. */
  readonly route?: string;
  /** `--insecure-control --binding B --stats SOCKET`: a TEP with one static binding whose server is elsewhere. */
  readonly staticBinding?: { readonly binding: string; readonly stats: string };
}

/** `["tep", "--ipv6", …, "--ipv4", …, "--server", …, "--route", …]` for `bun mod.ts`. */
export function tepArgv(o: TepArgvOptions = {}): string[] {
  return [
    "tep",
    "--ipv6",
    o.ipv6 ?? "2001:db8:1::1",
    "--ipv4",
    o.ipv4 ?? "192.0.2.1",
    "--server",
    o.server ?? "2001:db8:1::53",
    "--route",
    o.route ?? "198.51.100.0/24",
    ...(o.staticBinding === undefined
      ? []
      : [
          "--insecure-control",
          "--binding",
          o.staticBinding.binding,
          "--stats",
          o.staticBinding.stats,
        ]),
  ];
}

/** The counters of the TEP whose control socket is `socket`, from `dstm tep stats --json` run in `where`. */
export function tepCounters(where: Netns, socket: string): Record<string, number> {
  const r = where.exec([BUN, join(ROOT, "mod.ts"), "tep", "stats", "--json", "--control", socket]);
  return (JSON.parse(r.stdout) as { counters: Record<string, number> }).counters;
}
