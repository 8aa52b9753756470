/**
 * Classic pcap files (the libpcap format Wireshark and tcpdump read) as bytes, with link type
 * LINKTYPE_RAW (101): each record is a bare IPv4 or IPv6 packet, which is what a TUN device and
 * a raw socket carry. Writing the file is the caller's business (this layer does no I/O).
 *
 * @module
 */

/** LINKTYPE_RAW: the packet begins with an IPv4 or IPv6 header. */
export const LINKTYPE_RAW = 101;

/** One captured packet; `timeMs` is milliseconds since the Unix epoch (or since any origin). */
export interface PcapRecord {
  readonly timeMs: number;
  readonly data: Uint8Array;
}

/**
 * Encodes a pcap file: 24-byte global header (magic a1b2c3d4, version 2.4, snaplen 65535,
 * little-endian), then a 16-byte record header and the bytes of each packet.
 *
 * @example await Bun.write("out.pcap", encodePcap([{ timeMs: 0, data: packet }]))
 */
export function encodePcap(records: readonly PcapRecord[]): Uint8Array {
  let size = 24;
  for (const r of records) size += 16 + r.data.length;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint32(0, 0xa1b2c3d4, true);
  view.setUint16(4, 2, true);
  view.setUint16(6, 4, true);
  view.setUint32(16, 65535, true);
  view.setUint32(20, LINKTYPE_RAW, true);
  let at = 24;
  for (const r of records) {
    const seconds = Math.floor(r.timeMs / 1000);
    view.setUint32(at, seconds, true);
    view.setUint32(at + 4, Math.round((r.timeMs - seconds * 1000) * 1000), true);
    view.setUint32(at + 8, r.data.length, true);
    view.setUint32(at + 12, r.data.length, true);
    out.set(r.data, at + 16);
    at += 16 + r.data.length;
  }
  return out;
}

/** LINKTYPE_IPV4 (228) and LINKTYPE_IPV6 (229): bare packets of one version, read like RAW. */
const RAW_LINKTYPES: ReadonlySet<number> = new Set([LINKTYPE_RAW, 228, 229]);

/**
 * Decodes a classic pcap file of bare IP packets (link type 101 RAW, 228 IPv4 or 229 IPv6),
 * either byte order, microsecond (a1b2c3d4) or nanosecond (a1b23c4d) timestamps, into records
 * with `timeMs` in milliseconds. Throws a RangeError naming the problem for anything else
 * (pcapng, Ethernet captures, a truncated record).
 *
 * @example const records = decodePcap(await Bun.file("in.pcap").bytes());
 */
export function decodePcap(bytes: Uint8Array): PcapRecord[] {
  if (bytes.length < 24) throw new RangeError("not a pcap file: shorter than its 24-byte header");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magicLE = view.getUint32(0, true);
  const magicBE = view.getUint32(0, false);
  const known = [0xa1b2c3d4, 0xa1b23c4d];
  const little = known.includes(magicLE);
  if (!little && !known.includes(magicBE)) {
    throw new RangeError(
      `not a classic pcap file (magic ${magicLE.toString(16)}); pcapng? convert with editcap -F pcap`,
    );
  }
  const nanos = (little ? magicLE : magicBE) === 0xa1b23c4d;
  const linkType = view.getUint32(20, little) & 0xffff;
  if (!RAW_LINKTYPES.has(linkType)) {
    throw new RangeError(
      `pcap link type ${linkType} is not raw IP (101, 228 or 229); capture on a TUN device or with -y RAW`,
    );
  }
  const records: PcapRecord[] = [];
  for (let at = 24; at < bytes.length; ) {
    if (at + 16 > bytes.length)
      throw new RangeError(`pcap record ${records.length}: truncated header`);
    const seconds = view.getUint32(at, little);
    const fraction = view.getUint32(at + 4, little);
    const captured = view.getUint32(at + 8, little);
    if (at + 16 + captured > bytes.length) {
      throw new RangeError(`pcap record ${records.length}: truncated data`);
    }
    records.push({
      timeMs: seconds * 1000 + (nanos ? fraction / 1e6 : fraction / 1e3),
      data: bytes.slice(at + 16, at + 16 + captured),
    });
    at += 16 + captured;
  }
  return records;
}
