/**
 * Tiny IPv4 packet builders for the system-layer tests (a test-only stand-in for lib/net).
 */

/** The Internet checksum (RFC 1071) of `buf[from, to)`. */
export function internetChecksum(buf: Uint8Array, from: number, to: number): number {
  let sum = 0;
  for (let i = from; i + 1 < to; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  if ((to - from) % 2 === 1) sum += buf[to - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function _v4(text: string): number[] {
  return text.split(".").map(Number);
}

/** An IPv4 packet (20-byte header, valid checksum) carrying `payload` with protocol `proto`. */
export function ipv4Packet(
  src: string,
  dst: string,
  proto: number,
  payload: Uint8Array,
): Uint8Array {
  const total = 20 + payload.length;
  const p = new Uint8Array(total);
  p[0] = 0x45;
  p[2] = total >> 8;
  p[3] = total & 0xff;
  p[4] = 0x12;
  p[5] = 0x34;
  p[8] = 64;
  p[9] = proto;
  p.set(_v4(src), 12);
  p.set(_v4(dst), 16);
  const c = internetChecksum(p, 0, 20);
  p[10] = c >> 8;
  p[11] = c & 0xff;
  p.set(payload, 20);
  return p;
}

/** A UDP datagram inside IPv4 (UDP checksum 0: allowed for IPv4) with a patterned payload. */
export function udpPacket(src: string, dst: string, payloadLength: number, seed = 1): Uint8Array {
  const udp = new Uint8Array(8 + payloadLength);
  udp[0] = 0x30;
  udp[1] = 0x39; // 12345
  udp[2] = 0x10;
  udp[3] = 0xe1; // 4321
  udp[4] = udp.length >> 8;
  udp[5] = udp.length & 0xff;
  for (let i = 0; i < payloadLength; i++) udp[8 + i] = (i * 7 + seed) & 0xff;
  return ipv4Packet(src, dst, 17, udp);
}

/**
 * Turns an ICMP echo request (IPv4, header length 20) into its echo reply in place: swaps the
 * addresses, sets type 0 and recomputes both checksums. Returns false for anything else.
 */
export function echoRequestToReply(p: Uint8Array, length: number): boolean {
  if (length < 28 || p[0] !== 0x45 || p[9] !== 1 || p[20] !== 8) return false;
  for (let i = 0; i < 4; i++) {
    const t = p[12 + i]!;
    p[12 + i] = p[16 + i]!;
    p[16 + i] = t;
  }
  p[8] = 64;
  p[10] = 0;
  p[11] = 0;
  const c = internetChecksum(p, 0, 20);
  p[10] = c >> 8;
  p[11] = c & 0xff;
  p[20] = 0; // echo reply
  p[22] = 0;
  p[23] = 0;
  const ic = internetChecksum(p, 20, length);
  p[22] = ic >> 8;
  p[23] = ic & 0xff;
  return true;
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

export function fromHex(hex: string): Uint8Array {
  return new Uint8Array(Buffer.from(hex, "hex"));
}

/** An IPv4 address in dotted-quad form from 4 bytes at `offset`. */
export function formatV4(p: Uint8Array, offset: number): string {
  return `${p[offset]}.${p[offset + 1]}.${p[offset + 2]}.${p[offset + 3]}`;
}
