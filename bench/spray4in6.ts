/**
 * Sends 64-byte UDP payloads in IPv4-in-IPv6 straight to a TEP, as many as it can for a
 * while, with the inner source walking over many bindings: a DSTM client's traffic without
 * the client, so that every packet can hit another binding. Run inside a node's namespace
 * (bench/bindings.ts does); the outer source is the node's own IPv6 address, which the
 * bindings must name.
 *
 *   bun bench/spray4in6.ts --tep6 2001:db8:1::1 --dst 192.0.2.99 --base 198.18.0.0 \
 *     --addresses 16384 --rule 6/2 [--psids 4] [--first-psid 0] [--seconds 4]
 *
 * Keys are (address, PSID): `--addresses` consecutive addresses from `--base` × `--psids`
 * PSIDs from `--first-psid` under the port-set rule OFFSET/PSIDLEN (RFC 7597 §5.1; `0/0`
 * for whole addresses). It prebuilds 65,536 packets whatever the number of keys (one key:
 * 65,536 packets of that binding, ports varying inside its set), in a shuffled order, and
 * sends them round and round, so that the work per packet here is the same for one key and
 * for 65,536. Prints one line of JSON: packets sent, send errors, seconds.
 *
 * Bounded: stops after `--seconds` (at most 60).
 */
import { parseIPv4, parseIPv6 } from "../lib/net/addr.ts";
import { IpProtocol, writeIPv4Header } from "../lib/net/ipv4.ts";
import { psidOfPort } from "../lib/net/portset.ts";
import { Raw6Socket } from "../lib/sys/raw6.ts";
import { parseBenchArgs } from "./bench_args.ts";

const PACKETS = 1 << 16;
const PAYLOAD = 64;
const SIZE = 20 + 8 + PAYLOAD;

const { values } = parseBenchArgs(import.meta.path, {
  options: {
    tep6: { type: "string" },
    dst: { type: "string" },
    "dst-port": { type: "string", default: "9" },
    base: { type: "string" },
    addresses: { type: "string", default: "1" },
    rule: { type: "string", default: "0/0" },
    psids: { type: "string", default: "1" },
    "first-psid": { type: "string", default: "0" },
    seconds: { type: "string", default: "4" },
  },
});
const tep6 = parseIPv6(values.tep6 ?? "");
const dst = parseIPv4(values.dst ?? "");
const base = parseIPv4(values.base ?? "");
const [offset, psidLength] = values.rule.split("/").map(Number) as [number, number];
const addresses = Number(values.addresses);
const psids = Number(values.psids);
const firstPsid = Number(values["first-psid"]);
const seconds = Number(values.seconds);
const dstPort = Number(values["dst-port"]);
if (
  !tep6 ||
  dst === null ||
  base === null ||
  !(seconds > 0 && seconds <= 60) ||
  !(addresses >= 1 && psids >= 1 && addresses * psids <= PACKETS) ||
  !(offset + psidLength <= 16 && firstPsid + psids <= 2 ** psidLength)
) {
  console.error("spray4in6: bad arguments (see the comment at the top)");
  process.exit(2);
}

/** A port of PSID `psid` (varying with `i`): A in 1..2^a−1, j in 0..2^m−1 (RFC 7597 §5.1). */
function portOf(psid: number, i: number): number {
  if (psidLength === 0) return 1024 + (i % 60000);
  const m = 16 - offset - psidLength;
  const A = offset === 0 ? 0 : 1 + (i % (2 ** offset - 1));
  const port = (A << (16 - offset)) | (psid << m) | (Math.imul(i, 7) & (2 ** m - 1));
  if (psidOfPort(port, offset, psidLength) !== psid) throw new Error(`port ${port} not in ${psid}`);
  return port;
}

// Key k = address (k / psids), PSID firstPsid + k % psids; packet p carries key order[p] % keys.
const keys = addresses * psids;
const order = new Uint32Array(PACKETS);
for (let p = 0; p < PACKETS; p++) order[p] = p;
let seed = 2544;
for (let p = PACKETS - 1; p > 0; p--) {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  const q = seed % (p + 1);
  [order[p], order[q]] = [order[q]!, order[p]!];
}
const buf = new Uint8Array(PACKETS * SIZE);
for (let p = 0; p < PACKETS; p++) {
  const k = order[p]! % keys;
  const src = (base + Math.floor(k / psids)) >>> 0;
  const port = portOf(firstPsid + (k % psids), p);
  const at = p * SIZE;
  writeIPv4Header(buf, at, SIZE, p & 0xffff, 0, 64, IpProtocol.UDP, src, dst);
  buf[at + 20] = port >>> 8;
  buf[at + 21] = port & 0xff;
  buf[at + 22] = dstPort >>> 8;
  buf[at + 23] = dstPort & 0xff;
  buf[at + 24] = 0;
  buf[at + 25] = 8 + PAYLOAD;
  // UDP checksum 0: none (RFC 768), the payload stays zero.
}

const raw = Raw6Socket.open({ sendBuffer: 4 << 20 });
let sent = 0;
let errors = 0;
let lastError = 0;
const started = performance.now();
const deadline = started + seconds * 1000;
for (let i = 0; ; i++) {
  if ((i & 1023) === 0 && performance.now() >= deadline) break;
  const n = raw.sendTo(buf, (i & (PACKETS - 1)) * SIZE, SIZE, tep6, 0);
  if (n < 0) {
    errors++;
    lastError = n;
  } else sent++;
}
const elapsed = (performance.now() - started) / 1000;
raw.close();
console.log(JSON.stringify({ sent, errors, lastError, seconds: elapsed }));
