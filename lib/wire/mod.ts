/**
 * The DSTM wire protocol: message types, the codec and message authentication.
 *
 * @example
 * import { decodeMessage, encodeMessage, MessageType } from "./lib/wire/mod.ts";
 * const bytes = encodeMessage({ type: MessageType.DISCOVER, xid: 1, host6: "2001:db8::1" });
 * const decoded = decodeMessage(bytes); // { ok: true, value: { type: 1, xid: 1, host6: ... }, offset: 30 }
 *
 * @module
 */
export * from "./auth.ts";
export * from "./codec.ts";
export * from "./dhcp4.ts";
export * from "./dhcp4o6.ts";
export * from "./digest.ts";
export * from "./dstm.ts";
export * from "./dstm_types.ts";
