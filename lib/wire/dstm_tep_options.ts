/**
 * The options of the server ⇄ TEP channel of DSTM version 1 (docs/protocol.md, "Options" and
 * "Server and TEP"): SYNC_STATE (binding count and digest, in SYNC), SNAPSHOT_PART (which part
 * of a chunked SNAPSHOT) and BINDING (host IPv4, host IPv6, port set; repeatable, in BIND,
 * UNBIND and SNAPSHOT), and the extensions SNAPSHOT_MISSING (0x81, in SYNC) and GENERATION
 * (0x82, in BIND, UNBIND and SNAPSHOT). Entries of ./dstm_options.ts's table, same shape: `prepare` throws
 * RangeError on a field out of range, `read` returns the DecodeError of a bad value
 * (`bad-address`, `bad-port-set`). Lengths in bytes, values big-endian.
 *
 * @module
 */
import { formatIPv6 } from "../net/addr.ts";
import { readU16, readU32, writeU16, writeU32 } from "../net/bytes.ts";
import * as field from "./dstm_fields.ts";
import type { DstmExtensionSpec, DstmOptionSpec } from "./dstm_options.ts";
import {
  MessageType,
  OptionCode,
  SNAPSHOT_MISSING_MAX_RANGES,
  type WireBinding,
  type WirePartRange,
  type WireSnapshotMissing,
} from "./dstm_types.ts";

/** SYNC_STATE (9): the sender's binding count and digest, both 32-bit (SYNC). */
export const syncStateOption: DstmOptionSpec<{ count: number; digest: number }> = {
  code: OptionCode.SYNC_STATE,
  name: "SYNC_STATE",
  minLength: 8,
  maxLength: 8,
  repeatable: false,
  encodingLength: (msg) => (msg.syncCount === undefined && msg.syncDigest === undefined ? 0 : 10),
  prepare(msg) {
    if (msg.syncCount === undefined && msg.syncDigest === undefined) return undefined;
    if (!field.isUint32(msg.syncCount ?? -1) || !field.isUint32(msg.syncDigest ?? -1)) {
      throw new RangeError("syncCount and syncDigest must both be 32-bit unsigned integers");
    }
    return { count: msg.syncCount!, digest: msg.syncDigest! };
  },
  write({ count, digest }, buf, at) {
    const p = writeU32(buf, field.putOptionHead(buf, at, OptionCode.SYNC_STATE, 8), count);
    return writeU32(buf, p, digest);
  },
  read(buf, v, _len, msg) {
    msg.syncCount = readU32(buf, v);
    msg.syncDigest = readU32(buf, v + 4);
    return undefined;
  },
};

/** SNAPSHOT_PART (10): which part of which snapshot this SNAPSHOT is (part < parts). */
export const snapshotPartOption: DstmOptionSpec<{ id: number; part: number; parts: number }> = {
  code: OptionCode.SNAPSHOT_PART,
  name: "SNAPSHOT_PART",
  minLength: 8,
  maxLength: 8,
  repeatable: false,
  encodingLength: (msg) => (msg.snapshot === undefined ? 0 : 10),
  prepare(msg) {
    if (msg.snapshot === undefined) return undefined;
    const { id, part, parts } = msg.snapshot;
    if (!field.isUint32(id) || !field.isUint16(part) || !field.isUint16(parts) || part >= parts) {
      throw new RangeError(`snapshot id ${id} part ${part} of ${parts} is invalid`);
    }
    return msg.snapshot;
  },
  write({ id, part, parts }, buf, at) {
    let p = writeU32(buf, field.putOptionHead(buf, at, OptionCode.SNAPSHOT_PART, 8), id);
    p = writeU16(buf, p, part);
    return writeU16(buf, p, parts);
  },
  read(buf, v, _len, msg) {
    msg.snapshot = { id: readU32(buf, v), part: readU16(buf, v + 4), parts: readU16(buf, v + 6) };
    return undefined;
  },
};

/**
 * BINDING (11, repeatable): one binding, host IPv4 (4) + host IPv6 (16) + port set (4, as
 * PORT_SET); each occurrence is checked (unicast addresses, a valid port set).
 */
export const bindingOption: DstmOptionSpec<{ binding: WireBinding; host6: Uint8Array }[]> = {
  code: OptionCode.BINDING,
  name: "BINDING",
  minLength: 24,
  maxLength: 24,
  repeatable: true,
  encodingLength: (msg) => 26 * (msg.bindings?.length ?? 0),
  prepare(msg) {
    const list = msg.bindings?.map((binding) => {
      field.checkIPv4("binding host4", binding.host4);
      field.checkPortSet(binding.portSet);
      return { binding, host6: field.parseUnicastIPv6("binding host6", binding.host6) };
    });
    return list && list.length > 0 ? list : undefined;
  },
  write(list, buf, at) {
    let p = at;
    for (const { binding, host6 } of list) {
      p = writeU32(buf, field.putOptionHead(buf, p, OptionCode.BINDING, 24), binding.host4);
      p = field.putBytes(buf, p, host6);
      p = field.putPortSet(buf, p, binding.portSet);
    }
    return p;
  },
  read(buf, v, _len, msg) {
    const host4 = readU32(buf, v);
    if (
      host4 === 0 ||
      host4 === 0xffffffff ||
      buf[v + 4] === 0xff ||
      field.isZero(buf, v + 4, 16)
    ) {
      return { code: "bad-address", message: "BINDING holds an unusable address" };
    }
    const portSet = field.readPortSet(buf, v + 20);
    if (typeof portSet === "string") return { code: "bad-port-set", message: `BINDING ${portSet}` };
    const binding: WireBinding = { host4, host6: formatIPv6(buf, v + 4), portSet };
    msg.bindings = msg.bindings ? [...msg.bindings, binding] : [binding];
    return undefined;
  },
};

/**
 * SNAPSHOT_MISSING (0x81, extension, SYNC only): snapshot id (4), parts (2), then 1 to
 * {@link SNAPSHOT_MISSING_MAX_RANGES} ranges of first part (2), last part (2). A value of
 * another length (not 6 + 4n, n ≥ 1) is `bad-option-length`, a second occurrence
 * `duplicate-option`. Only the shape is checked here, on both sides: whether the ranges make
 * sense (first ≤ last < parts, ascending) is the server's to judge, so that a TEP's faulty
 * request costs that request, not its SYNC (lib/server/tep_snapshot_keep.ts).
 */
export const snapshotMissingOption: DstmExtensionSpec<WireSnapshotMissing> = {
  code: OptionCode.SNAPSHOT_MISSING,
  name: "SNAPSHOT_MISSING",
  minLength: 10,
  maxLength: 6 + 4 * SNAPSHOT_MISSING_MAX_RANGES,
  repeatable: false,
  onlyIn: [MessageType.SYNC],
  encodingLength: (msg) =>
    msg.snapshotMissing === undefined ? 0 : 8 + 4 * msg.snapshotMissing.ranges.length,
  prepare(msg) {
    const request = msg.snapshotMissing;
    if (request === undefined) return undefined;
    const { id, parts, ranges } = request;
    const n = ranges.length;
    if (!field.isUint32(id) || !field.isUint16(parts) || n < 1 || n > SNAPSHOT_MISSING_MAX_RANGES)
      throw new RangeError(
        `snapshotMissing of snapshot ${id} (${parts} parts, ${n} ranges) is invalid`,
      );
    for (const { first, last } of ranges) {
      if (!field.isUint16(first) || !field.isUint16(last))
        throw new RangeError(`snapshotMissing range ${first}-${last} is not 16-bit`);
    }
    return request;
  },
  write({ id, parts, ranges }, buf, at) {
    const head = field.putOptionHead(buf, at, OptionCode.SNAPSHOT_MISSING, 6 + 4 * ranges.length);
    let p = writeU16(buf, writeU32(buf, head, id), parts);
    for (const { first, last } of ranges) p = writeU16(buf, writeU16(buf, p, first), last);
    return p;
  },
  read(buf, v, len, msg) {
    if ((len - 6) % 4 !== 0)
      return {
        code: "bad-option-length",
        message: `SNAPSHOT_MISSING has length ${len}, not 6 + 4n`,
      };
    if (msg.snapshotMissing)
      return { code: "duplicate-option", message: "SNAPSHOT_MISSING appears twice" };
    const ranges: WirePartRange[] = [];
    for (let p = v + 6; p < v + len; p += 4)
      ranges.push({ first: readU16(buf, p), last: readU16(buf, p + 2) });
    msg.snapshotMissing = { id: readU32(buf, v), parts: readU16(buf, v + 4), ranges };
    return undefined;
  },
};

/** Largest GENERATION: 2^53 − 1, the largest integer a JavaScript number holds exactly. */
export const GENERATION_MAX = Number.MAX_SAFE_INTEGER;

/**
 * GENERATION (0x82, extension, BIND / UNBIND / SNAPSHOT): 8 bytes, an unsigned big-endian
 * integer ≤ {@link GENERATION_MAX} (docs/protocol.md, "Generations"). A larger value is
 * `bad-generation`, a second occurrence `duplicate-option`, another length
 * `bad-option-length`. Inside the message, so the AUTH MAC covers it.
 */
export const generationOption: DstmExtensionSpec<number> = {
  code: OptionCode.GENERATION,
  name: "GENERATION",
  minLength: 8,
  maxLength: 8,
  repeatable: false,
  onlyIn: [MessageType.BIND, MessageType.UNBIND, MessageType.SNAPSHOT],
  encodingLength: (msg) => (msg.generation === undefined ? 0 : 10),
  prepare(msg) {
    const g = msg.generation;
    if (g === undefined) return undefined;
    if (!Number.isInteger(g) || g < 0 || g > GENERATION_MAX)
      throw new RangeError(`generation ${g} is not an integer from 0 to 2^53 - 1`);
    return g;
  },
  write(g, buf, at) {
    const p = field.putOptionHead(buf, at, OptionCode.GENERATION, 8);
    writeU32(buf, p, Math.floor(g / 2 ** 32));
    return writeU32(buf, p + 4, g >>> 0);
  },
  read(buf, v, _len, msg) {
    if (msg.generation !== undefined)
      return { code: "duplicate-option", message: "GENERATION appears twice" };
    const high = readU32(buf, v);
    if (high >= 2 ** 21) return { code: "bad-generation", message: "GENERATION is 2^53 or more" };
    msg.generation = high * 2 ** 32 + readU32(buf, v + 4);
    return undefined;
  },
};
