/**
 * One rtnetlink request and its ACK (netlink(7); layouts from include/uapi/linux/netlink.h):
 * `NetlinkMessage` builds the request, `exchange` opens a NETLINK_ROUTE socket, sends it with
 * NLM_F_ACK, waits (bounded, 5 s) for the kernel's answer and closes. A refusal is a
 * {@link SysError} carrying the kernel's extended-ACK text, or a hint for the usual errnos.
 * netlink.ts builds the link, address and route requests on top.
 *
 * @module
 */
import * as libc from "./libc.ts";
import { Errno, SysError } from "./libc.ts";

const NETLINK_ROUTE = 0;
const SOL_NETLINK = 270;
const NETLINK_CAP_ACK = 10;
const NETLINK_EXT_ACK = 11;

const NLMSG_ERROR = 2;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_CAPPED = 0x100;
const NLM_F_ACK_TLVS = 0x200;
const NLMSGERR_ATTR_MSG = 1;

const ANSWER_TIMEOUT_MS = 5000;

let _sequence = Math.floor(Date.now() / 1000) >>> 0;

/**
 * Sends `m` with NLM_F_ACK and waits for the kernel's ACK; throws a SysError naming `op` on
 * an error answer or when none comes within 5 s.
 */
export function exchange(op: string, m: NetlinkMessage): void {
  _sequence = (_sequence + 1) >>> 0;
  const seq = _sequence;
  const request = m.finish(seq);
  const fd = libc.socket(
    libc.AF_NETLINK,
    libc.SOCK_RAW | libc.SOCK_CLOEXEC | libc.SOCK_NONBLOCK,
    NETLINK_ROUTE,
  );
  if (fd < 0) throw new SysError(`${op}: netlink socket`, fd);
  try {
    libc.setsockoptInt(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1);
    libc.setsockoptInt(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1);
    const kernel = new Uint8Array(12); // struct sockaddr_nl { family, pad, pid 0, groups 0 }
    kernel[0] = libc.AF_NETLINK;
    const sent = libc.sendto(fd, request, 0, request.length, 0, kernel, kernel.length);
    if (sent < 0) throw new SysError(op, sent, _hint(-sent, op));
    _awaitAck(fd, seq, op);
  } finally {
    libc.close(fd);
  }
}

function _awaitAck(fd: number, seq: number, op: string): void {
  const buf = new Uint8Array(16384);
  const view = new DataView(buf.buffer);
  const pollfd = new Uint8Array(8);
  new DataView(pollfd.buffer).setInt32(0, fd, true);
  pollfd[4] = libc.POLLIN;
  const deadline = Date.now() + ANSWER_TIMEOUT_MS;
  for (let round = 0; round < 64 && Date.now() < deadline; round++) {
    const ready = libc.poll(pollfd, 1, Math.max(1, deadline - Date.now()));
    if (ready === 0) break;
    if (ready < 0 && ready !== -Errno.EINTR) throw new SysError(`${op}: poll`, ready);
    const n = libc.recvfrom(fd, buf, 0, buf.length, 0, null, null);
    if (n === -Errno.EAGAIN || n === -Errno.EINTR) continue;
    if (n < 0) throw new SysError(`${op}: netlink recv`, n);
    for (let at = 0; at + 16 <= n; ) {
      const length = view.getUint32(at, true);
      if (length < 16 || at + length > n) break;
      const type = view.getUint16(at + 4, true);
      if (type === NLMSG_ERROR && view.getUint32(at + 8, true) === seq) {
        const error = view.getInt32(at + 16, true);
        if (error === 0) return;
        const flags = view.getUint16(at + 6, true);
        const kernelText = _extAckMessage(buf, view, at, length, flags);
        throw new SysError(op, error, kernelText ?? _hint(-error, op));
      }
      at += (length + 3) & ~3;
    }
  }
  throw new SysError(op, Errno.ETIMEDOUT, "the kernel did not answer the netlink request");
}

/** The NLMSGERR_ATTR_MSG text of an extended ACK, if any. */
function _extAckMessage(
  buf: Uint8Array,
  view: DataView,
  at: number,
  length: number,
  flags: number,
): string | undefined {
  if ((flags & NLM_F_ACK_TLVS) === 0) return undefined;
  // struct nlmsgerr { int error; struct nlmsghdr msg; } then, when capped, the TLVs.
  const embedded = flags & NLM_F_CAPPED ? 16 : view.getUint32(at + 20, true);
  let tlv = at + 16 + 4 + ((embedded + 3) & ~3);
  while (tlv + 4 <= at + length) {
    const tlvLength = view.getUint16(tlv, true);
    const tlvType = view.getUint16(tlv + 2, true);
    if (tlvLength < 4) break;
    if (tlvType === NLMSGERR_ATTR_MSG) {
      const text = buf.subarray(tlv + 4, tlv + tlvLength);
      const end = text.indexOf(0);
      return new TextDecoder().decode(end < 0 ? text : text.subarray(0, end));
    }
    tlv += (tlvLength + 3) & ~3;
  }
  return undefined;
}

function _hint(errnoValue: number, op: string): string | undefined {
  switch (errnoValue) {
    case Errno.EPERM:
      return "changing interfaces, addresses and routes needs root or CAP_NET_ADMIN";
    case Errno.EEXIST:
      return op.startsWith("route") ? "the route already exists" : "the address is already there";
    case Errno.ESRCH:
      return "no such route";
    case Errno.EADDRNOTAVAIL:
      return "no such address on that interface";
    case Errno.ENETUNREACH:
    case Errno.EHOSTUNREACH:
      return "the next hop is not on a directly connected network (add an address or route for it first)";
    default:
      return undefined;
  }
}

/** A netlink request being built: header (filled by `finish`), fixed struct, attributes. */
export class NetlinkMessage {
  private readonly _buf = new Uint8Array(512);
  private readonly _view = new DataView(this._buf.buffer);
  private _at = 16;

  constructor(
    private readonly _type: number,
    private readonly _flags: number,
  ) {}

  u8(value: number): this {
    this._view.setUint8(this._at, value);
    this._at += 1;
    return this;
  }

  u16(value: number): this {
    this._view.setUint16(this._at, value, true);
    this._at += 2;
    return this;
  }

  u32(value: number): this {
    this._view.setUint32(this._at, value >>> 0, true);
    this._at += 4;
    return this;
  }

  /** struct rtattr { u16 len; u16 type; } + payload, padded to 4 bytes. */
  attr(type: number, payload: Uint8Array): this {
    this._view.setUint16(this._at, 4 + payload.length, true);
    this._view.setUint16(this._at + 2, type, true);
    this._buf.set(payload, this._at + 4);
    this._at += (4 + payload.length + 3) & ~3;
    return this;
  }

  attrU32(type: number, value: number): this {
    const payload = new Uint8Array(4);
    new DataView(payload.buffer).setUint32(0, value >>> 0, true);
    return this.attr(type, payload);
  }

  attrU8(type: number, value: number): this {
    return this.attr(type, new Uint8Array([value & 255]));
  }

  attrU16(type: number, value: number): this {
    const payload = new Uint8Array(2);
    new DataView(payload.buffer).setUint16(0, value, true);
    return this.attr(type, payload);
  }

  /**
   * A nested attribute (`type`, e.g. IFLA_LINKINFO): the attributes `fill` writes, with the
   * outer length covering them (padding included), as iproute2's addattr_nest/nest_end.
   */
  nest(type: number, fill: (m: this) => void): this {
    const at = this._at;
    this._at += 4;
    fill(this);
    this._view.setUint16(at, this._at - at, true);
    this._view.setUint16(at + 2, type, true);
    return this;
  }

  /** Writes struct nlmsghdr and returns the request bytes. */
  finish(seq: number): Uint8Array {
    this._view.setUint32(0, this._at, true);
    this._view.setUint16(4, this._type, true);
    this._view.setUint16(6, NLM_F_REQUEST | NLM_F_ACK | this._flags, true);
    this._view.setUint32(8, seq, true);
    this._view.setUint32(12, 0, true);
    return this._buf.subarray(0, this._at);
  }
}
