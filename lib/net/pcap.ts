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
