/**
 * The options of DSTM protocol version 1 as a table (docs/protocol.md, "Options"): for each
 * option code its name, value length, and how it is read from a message's bytes into a
 * `DstmMessage` and written from one, the way the DHCP codecs keep their option specs.
 * dstm.ts walks the options of a message and asks this table; a new option is one entry here
 * (and a bit in the message rules of dstm.ts), a new extension (code ≥ 0x80, skipped by
 * receivers that do not know it) one entry in `DSTM_EXTENSIONS` with the message type it
 * belongs to.
 *
 * Each entry has three parts. `encodingLength(msg)` counts the bytes the option adds to `msg`
 * without checking anything; `prepare(msg)` checks the fields the option carries (throws
 * `RangeError`) and returns what `write` needs, or undefined when `msg` has none; `read`
 * checks the value bytes of one occurrence (its length is already checked against `length`)
 * and stores it in the message being decoded, or returns the fault.
 *
 * The server ⇄ TEP options (SYNC_STATE, SNAPSHOT_PART, BINDING, SNAPSHOT_MISSING, GENERATION) are in
 * ./dstm_tep_options.ts.
 *
 * @module
 */
import { formatIPv4, formatIPv6 } from "../net/addr.ts";
import { readU16, readU32, writeU16, writeU32 } from "../net/bytes.ts";
import type { DecodeError } from "./codec.ts";
import type { DecodeErrorCode } from "./dstm.ts";
import {
  checkIPv4,
  checkPortSet,
  isUint32,
  isZero,
  parseUnicastIPv6,
  putBytes,
  putOptionHead,
  putPortSet,
  readPortSet,
  utf8Length,
} from "./dstm_fields.ts";
import {
  bindingOption,
  generationOption,
  snapshotMissingOption,
  snapshotPartOption,
  syncStateOption,
} from "./dstm_tep_options.ts";
import {
  AUTH_MAC_LENGTH,
  AUTH_NONCE_LENGTH,
  type DstmMessage,
  MessageType,
  OptionCode,
  STATUS_TEXT_MAX,
  Status,
  type WireAuth,
  type WirePortSet,
} from "./dstm_types.ts";

/** A `DstmMessage` being filled by the decoder. */
export type MutableDstmMessage = { -readonly [K in keyof DstmMessage]: DstmMessage[K] };

/** How one option is sized, checked, written and read; `P` is what `prepare` hands `write`. */
export interface DstmOptionSpec<P> {
  readonly code: number;
  readonly name: string;
  /** Fewest bytes of one value. */
  readonly minLength: number;
  /** Most bytes of one value (the same as `minLength` but for STATUS: 2–255). */
  readonly maxLength: number;
  /** May appear more than once in a message (BINDING). */
  readonly repeatable: boolean;
  /** Bytes the option adds to `msg` (code and length bytes included), 0 when absent. No checks. */
  encodingLength(msg: DstmMessage): number;
  /** The checked value(s) of `msg` for `write`, undefined when absent; throws `RangeError`. */
  prepare(msg: DstmMessage): P | undefined;
  /** Writes the option (each occurrence) at `at` of `buf`; returns the offset after it. */
  write(value: P, buf: Uint8Array, at: number): number;
  /** Checks one value at `v` (`len` bytes) and stores it in `msg`; returns the fault if any. */
  read(buf: Uint8Array, v: number, len: number, msg: MutableDstmMessage): DstmOptionFault;
}

/** What `read` returns: nothing, or why the value is refused. */
export type DstmOptionFault = DecodeError<DecodeErrorCode> | undefined;

/** Bytes of the AUTH value: key id (4), timestamp (8), nonce, MAC. */
export const AUTH_VALUE_LENGTH = 12 + AUTH_NONCE_LENGTH + AUTH_MAC_LENGTH;

const _STATUS_NAMES: string[] = [];
for (const [name, code] of Object.entries(Status)) _STATUS_NAMES[code] = name;

/** Name of a status code: `statusName(1)` is `"POOL_EXHAUSTED"`, unknown ones `"status 99"`. */
export function statusName(status: number): string {
  return _STATUS_NAMES[status] ?? `status ${status}`;
}

// ignoreBOM keeps a leading U+FEFF in the text, so STATUS text round-trips byte for byte.
const _textDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const _textEncoder = new TextEncoder();

function _ipv4Spec(code: number, name: string, field: "host4" | "tep4"): DstmOptionSpec<number> {
  return {
    code,
    name,
    minLength: 4,
    maxLength: 4,
    repeatable: false,
    encodingLength: (msg) => (msg[field] === undefined ? 0 : 6),
    prepare: (msg) => (msg[field] === undefined ? undefined : checkIPv4(field, msg[field])),
    write: (address, buf, at) => writeU32(buf, putOptionHead(buf, at, code, 4), address),
    read(buf, v, _len, msg) {
      const address = readU32(buf, v);
      if (address === 0 || address === 0xffffffff) {
        return {
          code: "bad-address",
          message: `${name} ${formatIPv4(address)} is not a host address`,
        };
      }
      msg[field] = address;
      return undefined;
    },
  };
}

function _ipv6Spec(
  code: number,
  name: string,
  field: "host6" | "tep6",
): DstmOptionSpec<Uint8Array> {
  return {
    code,
    name,
    minLength: 16,
    maxLength: 16,
    repeatable: false,
    encodingLength: (msg) => (msg[field] === undefined ? 0 : 18),
    prepare: (msg) => (msg[field] === undefined ? undefined : parseUnicastIPv6(field, msg[field])),
    write: (bytes, buf, at) => putBytes(buf, putOptionHead(buf, at, code, 16), bytes),
    read(buf, v, _len, msg) {
      if (buf[v] === 0xff || isZero(buf, v, 16)) {
        const message = `${name} ${formatIPv6(buf, v)} is not unicast`;
        return { code: "bad-address", message };
      }
      msg[field] = formatIPv6(buf, v);
      return undefined;
    },
  };
}

const _portSet: DstmOptionSpec<WirePortSet> = {
  code: OptionCode.PORT_SET,
  name: "PORT_SET",
  minLength: 4,
  maxLength: 4,
  repeatable: false,
  encodingLength: (msg) => (msg.portSet === undefined ? 0 : 6),
  prepare: (msg) => (msg.portSet === undefined ? undefined : checkPortSet(msg.portSet)),
  write: (ps, buf, at) => putPortSet(buf, putOptionHead(buf, at, OptionCode.PORT_SET, 4), ps),
  read(buf, v, _len, msg) {
    const portSet = readPortSet(buf, v);
    if (typeof portSet === "string")
      return { code: "bad-port-set", message: `PORT_SET ${portSet}` };
    msg.portSet = portSet;
    return undefined;
  },
};

const _leaseTime: DstmOptionSpec<number> = {
  code: OptionCode.LEASE_TIME,
  name: "LEASE_TIME",
  minLength: 4,
  maxLength: 4,
  repeatable: false,
  encodingLength: (msg) => (msg.leaseTime === undefined ? 0 : 6),
  prepare(msg) {
    const seconds = msg.leaseTime;
    if (seconds === undefined) return undefined;
    if (!isUint32(seconds) || seconds === 0) {
      throw new RangeError(`leaseTime ${seconds} is not 1..2^32-1 seconds`);
    }
    return seconds;
  },
  write: (seconds, buf, at) =>
    writeU32(buf, putOptionHead(buf, at, OptionCode.LEASE_TIME, 4), seconds),
  read(buf, v, _len, msg) {
    const seconds = readU32(buf, v);
    if (seconds === 0) return { code: "bad-lease-time", message: "LEASE_TIME is zero" };
    msg.leaseTime = seconds;
    return undefined;
  },
};

const _status: DstmOptionSpec<{ status: number; text: string }> = {
  code: OptionCode.STATUS,
  name: "STATUS",
  minLength: 2,
  maxLength: 255,
  repeatable: false,
  encodingLength: (msg) => (msg.status === undefined ? 0 : 4 + utf8Length(msg.statusText ?? "")),
  prepare(msg) {
    const { status, statusText: text } = msg;
    if (status === undefined) {
      if (text !== undefined) throw new RangeError("statusText given without status");
      return undefined;
    }
    if (_STATUS_NAMES[status] === undefined || !Number.isInteger(status)) {
      throw new RangeError(`status ${status} is unknown`);
    }
    if (text !== undefined && (!text.isWellFormed() || utf8Length(text) > STATUS_TEXT_MAX)) {
      throw new RangeError(`statusText is not well-formed or longer than ${STATUS_TEXT_MAX} bytes`);
    }
    return { status, text: text ?? "" };
  },
  write({ status, text }, buf, at) {
    const textLength = utf8Length(text);
    const p = writeU16(buf, putOptionHead(buf, at, OptionCode.STATUS, 2 + textLength), status);
    _textEncoder.encodeInto(text, buf.subarray(p, p + textLength));
    return p + textLength;
  },
  read(buf, v, len, msg) {
    const status = readU16(buf, v);
    if (_STATUS_NAMES[status] === undefined) {
      return { code: "bad-status", message: `STATUS code ${status} is unknown` };
    }
    msg.status = status as Status;
    if (len > 2) {
      try {
        msg.statusText = _textDecoder.decode(buf.subarray(v + 2, v + len));
      } catch {
        return { code: "bad-text", message: "STATUS text is not valid UTF-8" };
      }
    }
    return undefined;
  },
};

const _auth: DstmOptionSpec<WireAuth> = {
  code: OptionCode.AUTH,
  name: "AUTH",
  minLength: AUTH_VALUE_LENGTH,
  maxLength: AUTH_VALUE_LENGTH,
  repeatable: false,
  encodingLength: (msg) => (msg.auth === undefined ? 0 : 2 + AUTH_VALUE_LENGTH),
  prepare(msg) {
    if (msg.auth === undefined) return undefined;
    const { keyId, timestamp, nonce, mac } = msg.auth;
    if (!isUint32(keyId)) throw new RangeError(`auth keyId ${keyId} is not 32-bit unsigned`);
    if (!Number.isSafeInteger(timestamp) || timestamp < 0) {
      throw new RangeError(`auth timestamp ${timestamp} is not a non-negative safe integer`);
    }
    if (nonce.length !== AUTH_NONCE_LENGTH || mac.length !== AUTH_MAC_LENGTH) {
      throw new RangeError(`auth nonce/mac must be ${AUTH_NONCE_LENGTH}/${AUTH_MAC_LENGTH} bytes`);
    }
    return msg.auth;
  },
  write({ keyId, timestamp, nonce, mac }, buf, at) {
    let p = writeU32(buf, putOptionHead(buf, at, OptionCode.AUTH, AUTH_VALUE_LENGTH), keyId);
    p = writeU32(buf, p, Math.floor(timestamp / 2 ** 32));
    p = writeU32(buf, p, timestamp >>> 0);
    p = putBytes(buf, p, nonce);
    return putBytes(buf, p, mac);
  },
  read(buf, v, _len, msg) {
    const hi = readU32(buf, v + 4);
    if (hi > 0x1fffff) return { code: "bad-auth", message: "AUTH timestamp exceeds 2^53-1 ms" };
    const nonceAt = v + 12;
    const macAt = nonceAt + AUTH_NONCE_LENGTH;
    msg.auth = {
      keyId: readU32(buf, v),
      timestamp: hi * 2 ** 32 + readU32(buf, v + 8),
      nonce: buf.slice(nonceAt, macAt),
      mac: buf.slice(macAt, macAt + AUTH_MAC_LENGTH),
    };
    return undefined;
  },
};

/** Every option of version 1, indexed by its code (index 0 and unknown codes: undefined). */
export const DSTM_OPTIONS: readonly (DstmOptionSpec<unknown> | undefined)[] = (() => {
  const specs = [
    _ipv4Spec(OptionCode.HOST_IPV4, "HOST_IPV4", "host4"),
    _ipv6Spec(OptionCode.HOST_IPV6, "HOST_IPV6", "host6"),
    _ipv4Spec(OptionCode.TEP_IPV4, "TEP_IPV4", "tep4"),
    _ipv6Spec(OptionCode.TEP_IPV6, "TEP_IPV6", "tep6"),
    _portSet,
    _leaseTime,
    _status,
    _auth,
    syncStateOption,
    snapshotPartOption,
    bindingOption,
  ] as DstmOptionSpec<unknown>[];
  const table: (DstmOptionSpec<unknown> | undefined)[] = [];
  for (const spec of specs) table[spec.code] = spec;
  return table;
})();

/** The options of version 1 in code order (the order `encodeMessage` checks them in). */
export const DSTM_OPTION_LIST: readonly DstmOptionSpec<unknown>[] = DSTM_OPTIONS.filter(
  (s) => s !== undefined,
);

/** An extension option (code ≥ 0x80): read only in `onlyIn`, skipped everywhere else. */
export interface DstmExtensionSpec<P> extends DstmOptionSpec<P> {
  /** The message types that carry it (elsewhere it is skipped when read, refused when written). */
  readonly onlyIn: readonly MessageType[];
}

const _existingLease: DstmExtensionSpec<true> = {
  code: OptionCode.EXISTING_LEASE,
  name: "EXISTING_LEASE",
  minLength: 0,
  maxLength: 0,
  repeatable: false,
  onlyIn: [MessageType.DISCOVER_ACK],
  encodingLength: (msg) => (msg.existingLease ? 2 : 0),
  prepare: (msg) => (msg.existingLease ? true : undefined),
  write: (_value, buf, at) => putOptionHead(buf, at, OptionCode.EXISTING_LEASE, 0),
  read(_buf, _v, _len, msg) {
    if (msg.existingLease)
      return { code: "duplicate-option", message: "EXISTING_LEASE appears twice" };
    msg.existingLease = true;
    return undefined;
  },
};

/**
 * The extension options (codes 0x80–0xFF) this version reads, by code. A receiver skips an
 * extension it does not know, and one in a message type other than its `onlyIn`, so that
 * older peers keep working (docs/protocol.md, "Options").
 */
export const DSTM_EXTENSIONS: ReadonlyMap<number, DstmExtensionSpec<unknown>> = new Map([
  [_existingLease.code, _existingLease as DstmExtensionSpec<unknown>],
  [snapshotMissingOption.code, snapshotMissingOption as DstmExtensionSpec<unknown>],
  [generationOption.code, generationOption as DstmExtensionSpec<unknown>],
]);

/**
 * The options in the order a message writes them: code order, then the extensions, AUTH
 * (whose MAC ends the message) last.
 */
export const DSTM_WRITE_ORDER: readonly DstmOptionSpec<unknown>[] = [
  ...DSTM_OPTION_LIST.filter((s) => s.code !== OptionCode.AUTH),
  ...DSTM_EXTENSIONS.values(),
  DSTM_OPTIONS[OptionCode.AUTH]!,
];

/** Name of an option code, `""` when unknown. */
export function optionName(code: number): string {
  return DSTM_OPTIONS[code]?.name ?? "";
}
