/**
 * A steady, slow flow through a TEP and the times its packets arrive, for measuring pauses in
 * forwarding (bench/million_ops.ts). Two modes, each run inside a namespace:
 *
 *   bun bench/flow_probe.ts send --tep6 V6 --src6 V6 --src4 V4 --dst4 V4 --port N --out FILE
 *       [--interval-ms 1] [--seconds 300]
 *   bun bench/flow_probe.ts recv --port N --out FILE [--seconds 300]
 *
 * `send`: one IPv4-in-IPv6 packet (next header 4, RFC 2473) every `--interval-ms` from the
 * outer source `--src6` (bound, so the kernel cannot pick another of the namespace's
 * addresses) to the TEP, carrying UDP from `--src4` (an address bound to `--src6` at the TEP)
 * to `--dst4`:`--port`, with its sequence number in the payload: a host's own tunnelled
 * traffic without the client. `recv`: counts the UDP datagrams arriving on `--port`. Both
 * record the wall-clock time of every packet (ms since the epoch, `performance.timeOrigin +
 * performance.now()`, so the two files share a clock) and write them as float64 values to
 * `--out` when they stop: after `--seconds` (at most 600) or on SIGTERM / SIGINT. The sender's
 * own times tell a pause of the sender (the machine is shared) from one of the TEP.
 *
 * @module
 */
import { writeFileSync } from "node:fs";
import { parseIPv4, parseIPv6 } from "../lib/net/addr.ts";
import { IpProtocol, writeIPv4Header } from "../lib/net/ipv4.ts";
import { Raw6Socket } from "../lib/sys/raw6.ts";
import { parseBenchArgs } from "./bench_args.ts";

const { values, positionals } = parseBenchArgs(import.meta.path, {
  allowPositionals: true,
  options: {
    tep6: { type: "string" },
    src6: { type: "string" },
    src4: { type: "string" },
    dst4: { type: "string" },
    port: { type: "string", default: "9999" },
    out: { type: "string" },
    "interval-ms": { type: "string", default: "1" },
    seconds: { type: "string", default: "300" },
  },
});
const mode = positionals[0];
const seconds = Number(values.seconds);
const port = Number(values.port);
if (
  (mode !== "send" && mode !== "recv") ||
  !values.out ||
  !(seconds > 0 && seconds <= 600) ||
  !(port > 0 && port < 65536)
) {
  console.error("flow_probe: bad arguments (see the comment at the top)");
  process.exit(2);
}
const out = values.out;
const MAX = 1 << 21; // 2M packets: 600 s at 3,500 a second
const times = new Float64Array(MAX);
let count = 0;
let stopping = false;
const now = () => performance.timeOrigin + performance.now();
const deadline = performance.now() + seconds * 1000;
const stopped = Promise.withResolvers<void>();
for (const signal of ["SIGTERM", "SIGINT"] as const)
  process.once(signal, () => {
    stopping = true;
    stopped.resolve();
  });

if (mode === "send") {
  const tep6 = parseIPv6(values.tep6 ?? "");
  const src6 = parseIPv6(values.src6 ?? "");
  const src4 = parseIPv4(values.src4 ?? "");
  const dst4 = parseIPv4(values.dst4 ?? "");
  const interval = Number(values["interval-ms"]);
  if (!tep6 || !src6 || src4 === null || dst4 === null || !(interval >= 0.1)) {
    console.error("flow_probe send: bad addresses or interval");
    process.exit(2);
  }
  const SIZE = 20 + 8 + 16;
  const packet = new Uint8Array(SIZE);
  const raw = Raw6Socket.open();
  raw.bindAddress(src6);
  let errors = 0;
  for (let seq = 0; !stopping && count < MAX && performance.now() < deadline; seq++) {
    writeIPv4Header(packet, 0, SIZE, seq & 0xffff, 0, 64, IpProtocol.UDP, src4, dst4);
    packet[20] = 0xc0; // source port 49152: one flow
    packet[21] = 0;
    packet[22] = port >>> 8;
    packet[23] = port & 0xff;
    packet[24] = 0;
    packet[25] = SIZE - 20;
    packet[26] = 0; // UDP checksum 0: none (RFC 768)
    packet[27] = 0;
    new DataView(packet.buffer).setUint32(28, seq);
    if (raw.sendTo(packet, 0, SIZE, tep6, 0) < 0) errors++;
    else times[count++] = now();
    await Bun.sleep(interval);
  }
  raw.close();
  writeFileSync(out, times.subarray(0, count));
  console.log(JSON.stringify({ sent: count, errors }));
} else {
  const socket = await Bun.udpSocket({
    hostname: "0.0.0.0",
    port,
    socket: {
      data() {
        if (count < MAX) times[count++] = now();
      },
    },
  });
  await Promise.race([stopped.promise, Bun.sleep(Math.max(0, deadline - performance.now()))]);
  socket.close();
  writeFileSync(out, times.subarray(0, count));
  console.log(JSON.stringify({ received: count }));
}
process.exit(0);
