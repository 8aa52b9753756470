/**
 * `ping -c1` stand-in (no ping binary on these machines): one ICMP echo request to argv[2]
 * over a raw IPv4 ICMP socket, waits up to argv[3] ms (default 2000) for the matching reply.
 * Prints {"ok":bool,"rttMs":number,"from":string}.
 */
import * as libc from "../../lib/sys/libc.ts";
import { formatV4, internetChecksum } from "../helpers/packets.ts";

const dst = process.argv[2] ?? "192.0.2.99";
const waitMs = Number(process.argv[3] ?? 2000);
const fd = libc.socket(libc.AF_INET, libc.SOCK_RAW | libc.SOCK_NONBLOCK, 1);
if (fd < 0) throw new Error(`socket: ${libc.errnoName(fd)}`);
const id = process.pid & 0xffff;
const req = new Uint8Array(8 + 32);
req[0] = 8;
req[4] = id >> 8;
req[5] = id & 0xff;
req[7] = 1;
for (let i = 8; i < req.length; i++) req[i] = i;
const c = internetChecksum(req, 0, req.length);
req[2] = c >> 8;
req[3] = c & 0xff;
const sa = new Uint8Array(16); // sockaddr_in
sa[0] = libc.AF_INET;
sa.set(dst.split(".").map(Number), 4);
const start = performance.now();
const sent = libc.sendto(fd, req, 0, req.length, 0, sa, 16);
if (sent < 0) throw new Error(`sendto: ${libc.errnoName(sent)}`);
const pollfd = new Uint8Array(8);
new DataView(pollfd.buffer).setInt32(0, fd, true);
pollfd[4] = libc.POLLIN;
const buf = new Uint8Array(2048);
let result = { ok: false, rttMs: -1, from: "" };
while (performance.now() - start < waitMs) {
  libc.poll(pollfd, 1, Math.max(1, Math.ceil(waitMs - (performance.now() - start))));
  const n = libc.recvfrom(fd, buf, 0, buf.length, 0, null, null);
  if (n <= 0) continue;
  const ihl = (buf[0]! & 0x0f) * 4; // a raw IPv4 socket delivers the IP header too
  const isReply = buf[ihl] === 0 && ((buf[ihl + 4]! << 8) | buf[ihl + 5]!) === id;
  if (isReply && formatV4(buf, 12) === dst) {
    result = { ok: true, rttMs: performance.now() - start, from: formatV4(buf, 12) };
    break;
  }
}
libc.close(fd);
console.log(JSON.stringify(result));
