/**
 * `--log-level debug`: one line per protocol message received or sent, on the server, the
 * TEP and the client (never per data packet): `message-received` / `message-sent` with the
 * message type, the peer's address and what the message says (host IPv6, IPv4, status).
 *
 * @example
 * logMessage(log, "sent", { type: MessageType.DISCOVER, xid: 7, host6: "2001:db8::a" }, "2001:db8::53");
 * // DEBUG message-sent type=DISCOVER peer=2001:db8::53 xid=7 host6=2001:db8::a
 *
 * @module
 */
import { formatIPv4 } from "../net/addr.ts";
import { messageTypeName } from "../wire/dstm.ts";
import { statusName } from "../wire/dstm_options.ts";
import type { DstmMessage } from "../wire/dstm_types.ts";
import type { LogFields, Logger } from "./log.ts";

/** The fields of `message` worth a debug line (type, xid, host, address, result, reason). */
export function messageFields(message: DstmMessage): LogFields {
  return {
    type: messageTypeName(message.type),
    xid: message.xid,
    host6: message.host6,
    ipv4: message.host4 === undefined ? undefined : formatIPv4(message.host4),
    tep6: message.tep6,
    status: message.status === undefined ? undefined : statusName(message.status),
    reason: message.statusText,
    bindings: message.bindings?.length,
    "sync-count": message.syncCount,
  };
}

/**
 * Logs `message` at debug as `message-received` (from `peer`) or `message-sent` (to `peer`),
 * with `extra` fields (e.g. `result`); nothing is formatted unless debug is on.
 */
export function logMessage(
  log: Logger,
  direction: "received" | "sent",
  message: DstmMessage,
  peer: string,
  extra: LogFields = {},
): void {
  if (!log.enabled("debug")) return;
  log.debug(`message-${direction}`, { ...messageFields(message), peer, ...extra });
}
