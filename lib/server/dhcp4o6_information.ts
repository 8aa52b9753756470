/**
 * The 4o6 server's answer to a DHCPv6 INFORMATION-REQUEST (split from ./dhcp4o6.ts): how a
 * client learns where 4o6 servers are (RFC 7341 §5, OPTION_DHCP4_O_DHCP6_SERVER, 88).
 *
 * - Answered only when its ORO asks for option 88; one naming another server's DUID is
 *   discarded (RFC 8415 §16.12).
 * - The REPLY echoes the client id, names this server (server id, RFC 8415 §18.3.6) and lists
 *   the server's address in option 88 (or none: "use ff02::1:2", when listening on `::`).
 * - No reflection: RFC 7341 has no authentication, so nothing vouches for the source. A REPLY
 *   longer than the request goes only to a link-local or loopback source, where it cannot
 *   leave the link: a client asking ff02::1:2 sends from its link-local address (RFC 8415
 *   §14.1), and all link-local sources share the fe80::/64 rate-limit bucket
 *   (./admission.ts). To any other source it is refused as `answer-too-long`
 *   (docs/security.md). A standard request is shorter than its REPLY, so off-link clients
 *   are given the server's address some other way (`dstm client --server`).
 *
 * @module
 */
import { Dhcp6MessageType, Dhcp6OptionCode, decodeDhcp6, encodeDhcp6 } from "../wire/dhcp4o6.ts";

export type InformationAnswer =
  | { readonly reply: Uint8Array }
  | { readonly refused: string; readonly replyBytes?: number };

/**
 * The REPLY to INFORMATION-REQUEST `raw` from `host6` (canonical, no zone) of the server
 * named `duid`, listening on `address` (`::`: any), or why none (`no-option-88`,
 * `malformed-…`, `other-server`, `answer-too-long` with the REPLY's size in bytes).
 */
export function informationAnswer(
  raw: Uint8Array,
  host6: string,
  duid: Uint8Array,
  address: string | undefined,
): InformationAnswer {
  const decoded = decodeDhcp6(raw);
  if (!decoded.ok) return { refused: `malformed-${decoded.error.code}` };
  const ask = decoded.value;
  if (!(ask.oro ?? []).includes(Dhcp6OptionCode.DHCP4_O_DHCP6_SERVER))
    return { refused: "no-option-88" };
  const sid = ask.serverId;
  if (sid && !(sid.length === duid.length && sid.every((b, i) => b === duid[i])))
    return { refused: "other-server" };
  const reply = encodeDhcp6({
    type: Dhcp6MessageType.REPLY,
    xid: ask.xid,
    clientId: ask.clientId,
    serverId: duid,
    dhcp4o6Servers: address && address !== "::" ? [address] : [],
  });
  if (reply.length > raw.length && !onLinkOnly(host6))
    return { refused: "answer-too-long", replyBytes: reply.length };
  return { reply };
}

/** A link-local (fe80::/10) or loopback host: an answer to it never leaves the link. */
export function onLinkOnly(host6: string): boolean {
  return host6 === "::1" || /^fe[89ab][0-9a-f]:/i.test(host6);
}
