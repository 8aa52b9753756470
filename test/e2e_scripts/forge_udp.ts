/**
 * Run inside the attacker's namespace: sends crafted UDP datagrams from a chosen source
 * address and port (possibly one the attacker put on its loopback: the DSTM server's, to
 * spoof it), then listens for answers. Prints one JSON line:
 * `{ sent, sentBytes, received, receivedBytes }`.
 *
 * usage: bun forge_udp.ts SPEC_JSON
 *   SPEC = { from, fromPort, to, toPort, listenMs,
 *            datagrams?: hex[], rounds?: n, intervalMs?: n,       — the same datagrams, `rounds` times
 *            syncFlood?: { count, keyHex, keyId } }                — SYNCs naming `count` TEP addresses, signed with that (host) key
 */
import { bindUdp } from "../../lib/sys/udp.ts";
import { signMessage } from "../../lib/wire/auth.ts";
import { MessageType } from "../../lib/wire/dstm_types.ts";

interface Spec {
  from: string;
  fromPort: number;
  to: string;
  toPort: number;
  listenMs: number;
  datagrams?: string[];
  rounds?: number;
  intervalMs?: number;
  syncFlood?: { count: number; keyHex: string; keyId: number };
}

const spec = JSON.parse(process.argv[2] ?? "{}") as Spec;
const fromHex = (hex: string) =>
  Uint8Array.from(hex.match(/../g) ?? [], (byte) => Number.parseInt(byte, 16));
let received = 0;
let receivedBytes = 0;
const socket = await bindUdp(spec.from, spec.fromPort, (data) => {
  received++;
  receivedBytes += data.length;
});
let sent = 0;
let sentBytes = 0;
/** Sends one datagram; when the socket buffer is full, waits a little and tries again (bounded). */
const send = async (bytes: Uint8Array) => {
  for (let tries = 0; tries < 100; tries++) {
    if (socket.send(bytes, spec.to, spec.toPort)) {
      sent++;
      sentBytes += bytes.length;
      return;
    }
    await Bun.sleep(1);
  }
};
const datagrams = (spec.datagrams ?? []).map(fromHex);
const rounds = Math.min(spec.rounds ?? 1, 10_000);
for (let round = 0; round < rounds && datagrams.length > 0; round++) {
  for (const d of datagrams) await send(d);
  if (round + 1 < rounds) await Bun.sleep(spec.intervalMs ?? 100);
}
if (spec.syncFlood) {
  const key = { id: spec.syncFlood.keyId, secret: fromHex(spec.syncFlood.keyHex) };
  const count = Math.min(spec.syncFlood.count, 1_000_000);
  for (let i = 0; i < count; i++) {
    const tep6 = `2001:db8:${((i >>> 16) + 0x100).toString(16)}::${(i & 0xffff).toString(16)}`;
    await send(
      signMessage(
        { type: MessageType.SYNC, xid: i, tep6, syncCount: 1, syncDigest: i },
        key,
        Date.now(),
      ),
    );
    // About 20,000 a second: enough to show the effect, without overflowing socket buffers.
    if (i % 100 === 99) await Bun.sleep(5);
  }
}
await Bun.sleep(spec.listenMs);
socket.close();
console.log(JSON.stringify({ sent, sentBytes, received, receivedBytes }));
