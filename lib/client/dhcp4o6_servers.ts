/**
 * The option-88 step of RFC 7341 §5 before a DHCPv4-over-DHCPv6 DISCOVER to `ff02::1:2`, for
 * ./dhcp4o6_client.ts: the INFORMATION-REQUEST's REPLY lists the 4o6 servers (an empty list:
 * keep `ff02::1:2`); a REPLY without option 88 means no 4o6 service on the link; no REPLY at
 * all (a 4o6 server that is not a DHCPv6 server) keeps `ff02::1:2`, with a warn.
 *
 * @module
 */
import type { Logger } from "../control/log.ts";
import { ALL_DHCP_RELAY_AGENTS_AND_SERVERS as MULTICAST } from "../wire/dhcp4o6.ts";
import { Status } from "../wire/dstm_types.ts";
import { DstmRefusedError, DstmTimeoutError } from "./protocol.ts";

/**
 * Runs `discover` (the client's discoverServers, which keeps the list it gets): resolves when
 * the DISCOVER may go (to the list or `ff02::1:2`); rejects with {@link DstmRefusedError} when
 * the link has no 4o6 service, and with what `discover` threw unless it was a timeout of an
 * open client (`closed()` false).
 */
export async function learnServers(
  discover: () => Promise<string[] | null>,
  closed: () => boolean,
  log?: Logger,
): Promise<void> {
  let servers: string[] | null;
  try {
    servers = await discover();
  } catch (error) {
    if (!(error instanceof DstmTimeoutError) || closed()) throw error;
    log?.warn("no-option-88", {
      detail: `no REPLY to the INFORMATION-REQUEST for option 88; sending to ${MULTICAST}`,
    });
    return;
  }
  if (servers === null)
    throw new DstmRefusedError(
      Status.NOT_AUTHORISED,
      "the DHCPv6 REPLY has no OPTION_DHCP4_O_DHCP6_SERVER (88): no DHCPv4-over-DHCPv6 on this link (RFC 7341 §5)",
    );
  log?.info("dhcp4o6-servers", { servers: servers.length ? servers.join(",") : MULTICAST });
}
