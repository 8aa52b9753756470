/**
 * The TEP's control channel without a key (no `--key`): BIND/UNBIND/SNAPSHOT are then accepted
 * unsigned from the servers' addresses and port. That is safe only when every server is on
 * this host (loopback, or an address of one of its interfaces), or knowingly with
 * `--insecure-control` (anyone who can spoof a server's address could rebind hosts).
 *
 * @module
 */
import type { Logger } from "../control/log.ts";
import { interfaceOfIPv6 } from "../sys/ifinfo.ts";

/**
 * Why the TEP must not run unsigned with these `servers` (IPv6, the first named in the
 * message), or undefined after logging `WARN control-auth-off` with the reason it may.
 */
export function unsignedControlProblem(
  servers: readonly string[],
  insecureControl: boolean,
  log: Logger,
): string | undefined {
  const local = servers.every((s) => s === "::1" || interfaceOfIPv6(s) !== null);
  if (!local && !insecureControl)
    return `--server ${servers[0]} is not an address of this host: give --key FILE (the server's --tep-key) to authenticate it, or --insecure-control`;
  log.warn("control-auth-off", {
    server: servers.join(","),
    detail: local
      ? "server on this host: BIND/UNBIND/SNAPSHOT accepted unsigned from its address and port"
      : "--insecure-control: BIND/UNBIND/SNAPSHOT accepted unsigned; anyone who can spoof the server's address can rebind hosts",
  });
  return undefined;
}
