/**
 * What the client NAPT tells the host's application when no port of the lease's set is free
 * for a new flow, instead of silence (which leaves `connect()` to time out after about two
 * minutes of SYN retransmissions): a TCP RST for a SYN, so `connect()` fails at once with
 * ECONNREFUSED; ICMPv4 destination unreachable, code 13 "communication administratively
 * prohibited" (RFC 1812 §5.2.7.1, the code a filtering middlebox uses) for UDP and ICMP echo,
 * so a connected UDP socket gets EHOSTUNREACH. Rate limited by the caller (RFC 1812 §4.3.2.8).
 *
 * The answers come from the flow's remote address, as if from the far end: the host drops
 * packets from its own address arriving on an interface (a martian source), and the DTI has
 * no other IPv4 address. Both builders allocate nothing and write into the caller's buffer.
 *
 * @module
 */
import { checksumSum } from "../net/checksum.ts";
import { buildIcmpError, IcmpType } from "../net/icmp4.ts";
import { IPV4_DF, IpProtocol, writeIPv4Header } from "../net/ipv4.ts";

/** Bytes of the RST `buildTcpResetForSyn` writes. */
export const TCP_RESET_LENGTH = 40;

/** ICMPv4 type 3 code 13 (RFC 1812 §5.2.7.1). */
export const UNREACHABLE_ADMIN_PROHIBITED = 13;

/**
 * Writes at `out[outOff ..]` the RST+ACK the far end would send for the SYN at
 * `syn[off .. off+len)` (RFC 9293 §3.10.7.1: SEQ 0, ACK = SYN's SEQ + its length + 1).
 * Returns 40, or 0 when `syn` is not a whole TCP segment.
 *
 * @example const n = buildTcpResetForSyn(reply, 0, pkt, 0, len); if (n) tun.write(reply, 0, n);
 */
export function buildTcpResetForSyn(
  out: Uint8Array,
  outOff: number,
  syn: Uint8Array,
  off: number,
  len: number,
): number {
  const ihl = (syn[off]! & 0x0f) << 2;
  if (len < ihl + 20) return 0;
  const l4 = off + ihl;
  const dataOffset = (syn[l4 + 12]! >>> 4) << 2;
  const payload = Math.max(0, len - ihl - dataOffset);
  const src = _u32(syn, off + 16);
  const dst = _u32(syn, off + 12);
  writeIPv4Header(out, outOff, TCP_RESET_LENGTH, 0, IPV4_DF, 64, IpProtocol.TCP, src, dst);
  const t = outOff + 20;
  out[t] = syn[l4 + 2]!;
  out[t + 1] = syn[l4 + 3]!;
  out[t + 2] = syn[l4]!;
  out[t + 3] = syn[l4 + 1]!;
  for (let i = 4; i < 8; i++) out[t + i] = 0; // SEQ 0
  const ack = (_u32(syn, l4 + 4) + payload + 1) >>> 0;
  out[t + 8] = ack >>> 24;
  out[t + 9] = ack >>> 16;
  out[t + 10] = ack >>> 8;
  out[t + 11] = ack;
  out[t + 12] = 5 << 4;
  out[t + 13] = 0x14; // RST + ACK
  for (let i = 14; i < 20; i++) out[t + i] = 0; // window, checksum, urgent
  // Pseudo-header: source, destination, zero, protocol, TCP length.
  let sum = checksumSum(out, outOff + 12, 8);
  sum += IpProtocol.TCP + 20;
  sum = checksumSum(out, t, 20, sum);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  const c = ~sum & 0xffff;
  out[t + 16] = c >>> 8;
  out[t + 17] = c;
  return TCP_RESET_LENGTH;
}

/**
 * ICMPv4 3/13 about `pkt[off .. off+len)`, from its destination. Returns its length or 0
 * (see buildIcmpError). `out` needs ICMP_ERROR_MAX_LENGTH bytes.
 */
export function buildAdminProhibited(
  out: Uint8Array,
  outOff: number,
  pkt: Uint8Array,
  off: number,
  len: number,
): number {
  return buildIcmpError(
    out,
    outOff,
    IcmpType.DEST_UNREACHABLE,
    UNREACHABLE_ADMIN_PROHIBITED,
    0,
    _u32(pkt, off + 16),
    pkt,
    off,
    len,
  );
}

function _u32(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}
