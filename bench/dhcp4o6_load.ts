/**
 * DHCPv4-over-DHCPv6 (RFC 7341) load generator: N simulated hosts, each its own IPv6 source
 * address, each doing a full DORA (DISCOVER → OFFER, REQUEST → ACK) inside DHCPV4-QUERY /
 * DHCPV4-RESPONSE, with C hosts in flight (closed loop, like bench/alloc.ts). Reports completed
 * ACKs per second (first DISCOVER to last ACK, so the wait for the last timeouts does not count)
 * and loss (a host whose OFFER or ACK did not come within --timeout of the query; no
 * retransmission).
 *
 *   ip netns exec GEN bun bench/dhcp4o6_load.ts --server 2001:db8:d::547 --prefix 2001:db8:ff:: \
 *       --hosts 30000 --concurrency 64 [--json]
 *
 * Run it in a namespace where the host prefix is local (an AnyIP route, `ip -6 route add local
 * 2001:db8:ff::/64 dev lo`) and routed back from the server: see lib/sys/udp6_multisource.ts.
 * Host n (n = --first-host + i) is PREFIX::n (the low 32 bits), chaddr 02:00:n (32 bits),
 * client identifier 01 + chaddr, DHCPv4 xid n; its queries leave from [PREFIX::n]:546 and the
 * answers must come back to that address (counted as `misdirected` otherwise). The queries are
 * the ones dstm's own 4o6 client sends (lib/client/dhcp4o6_client.ts): option 55, option 61,
 * and in the REQUEST options 50 and 54 from the OFFER.
 *
 * The loop is synchronous (FFI sendmsg / recvmsg / poll on one socket), sleeps in poll(2) when
 * nothing is due, and allocates nothing per packet. Bounded: stops starting hosts after
 * --hosts or --duration seconds, and returns at most --timeout later.
 */
import { parseArgs } from "node:util";
import { parseIPv6 } from "../lib/net/addr.ts";
import { Errno } from "../lib/sys/libc.ts";
import { Udp6MultiSource } from "../lib/sys/udp6_multisource.ts";
import { Dhcp4MessageType } from "../lib/wire/dhcp4.ts";
import { DHCP6_CLIENT_PORT, DHCP6_SERVER_PORT, Dhcp6MessageType } from "../lib/wire/dhcp4o6.ts";
import { dhcp4Message, dhcp4o6Query } from "../test/helpers/dhcp4.ts";

/** Option 55 of dstm's 4o6 client: mask, routers, DNS, lease time, server id, T1, T2, 159. */
const PARAMETER_REQUEST_LIST = [1, 3, 6, 51, 54, 58, 59, 159];

export interface Dhcp4o6LoadOptions {
  /** The 4o6 server's IPv6 address (unicast). */
  server: string;
  port?: number;
  /** The hosts' /64 (or longer) prefix, e.g. `2001:db8:ff::`; host n is PREFIX + n. */
  prefix: string;
  hosts: number;
  concurrency: number;
  durationS: number;
  timeoutMs: number;
  /** First host number (default 1). */
  firstHost?: number;
}

export interface Dhcp4o6LoadResult {
  /** Hosts started (DISCOVER sent). */
  sent: number;
  offers: number;
  acked: number;
  naks: number;
  /** Hosts with no OFFER or no ACK within the timeout. */
  lost: number;
  /** Answers that came to another address than the host's own (must be 0). */
  misdirected: number;
  /** Distinct IPv4 addresses in the ACKs (= acked when every host got its own address). */
  distinctAddresses: number;
  /** First DISCOVER → last ACK: the window the rate is measured over. */
  seconds: number;
  /** The whole run, including the wait for the last timeouts. */
  wallSeconds: number;
  /** Completed DORAs (ACKs) per second, over `seconds`. */
  perSecond: number;
  lossPercent: number;
  /** DISCOVER sent → ACK received. */
  p50ms: number;
  p99ms: number;
  /** CPU time of this generator during the run (user + system). */
  generatorCpuSeconds: number;
}

/** Where the fields to patch per host sit in a query template. */
interface _Template {
  readonly bytes: Uint8Array;
  readonly xid: number;
  readonly chaddr: number;
  readonly clientId: number;
  readonly requestedIp: number;
  readonly serverId: number;
}

function _template(type: Dhcp4MessageType): _Template {
  const chaddr = new Uint8Array(6);
  const dhcp4 = dhcp4Message(
    type,
    {
      clientId: Uint8Array.of(1, ...chaddr),
      parameterRequestList: PARAMETER_REQUEST_LIST,
      ...(type === Dhcp4MessageType.REQUEST ? { requestedIp: 1, serverId: 1 } : {}),
    },
    { xid: 0, chaddr },
  );
  const bytes = dhcp4o6Query(dhcp4);
  const at = _option6(bytes, bytes.length, 87);
  if (at < 0) throw new Error("template without OPTION_DHCPV4_MSG");
  return {
    bytes,
    xid: at + 4,
    chaddr: at + 28,
    clientId: _option4(bytes, at, bytes.length, 61),
    requestedIp: _option4(bytes, at, bytes.length, 50),
    serverId: _option4(bytes, at, bytes.length, 54),
  };
}

/** Value offset of DHCPv6 option `code` in a 4o6 message of `length` bytes, or -1. */
function _option6(buf: Uint8Array, length: number, code: number): number {
  let p = 4;
  while (p + 4 <= length) {
    const c = (buf[p]! << 8) | buf[p + 1]!;
    const len = (buf[p + 2]! << 8) | buf[p + 3]!;
    if (p + 4 + len > length) return -1;
    if (c === code) return p + 4;
    p += 4 + len;
  }
  return -1;
}

/** Value offset of DHCPv4 option `code` in the message at `at` (options only), or -1. */
function _option4(buf: Uint8Array, at: number, end: number, code: number): number {
  let p = at + 240;
  while (p < end) {
    const c = buf[p]!;
    if (c === 0) {
      p++;
      continue;
    }
    if (c === 255 || p + 1 >= end) return -1;
    const len = buf[p + 1]!;
    if (c === code) return p + 2 <= end && p + 2 + len <= end ? p + 2 : -1;
    p += 2 + len;
  }
  return -1;
}

function _u32(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}

function _put32(buf: Uint8Array, at: number, v: number): void {
  buf[at] = v >>> 24;
  buf[at + 1] = v >>> 16;
  buf[at + 2] = v >>> 8;
  buf[at + 3] = v;
}

// Phase 0: not started yet.
const DISCOVERING = 1;
const REQUESTING = 2;
const DONE = 3;

/** Runs the closed-loop DORA load; returns when every started host is answered or timed out. */
export function runDhcp4o6Load(o: Dhcp4o6LoadOptions): Dhcp4o6LoadResult {
  const server = parseIPv6(o.server);
  const prefix = parseIPv6(o.prefix);
  if (!server || !prefix) throw new Error(`bad --server ${o.server} or --prefix ${o.prefix}`);
  const first = o.firstHost ?? 1;
  if (first < 1 || first + o.hosts > 2 ** 32) throw new Error("host numbers must fit 32 bits");
  const discover = _template(Dhcp4MessageType.DISCOVER);
  const request = _template(Dhcp4MessageType.REQUEST);
  const sock = Udp6MultiSource.open({
    port: DHCP6_CLIENT_PORT,
    receiveBuffer: 4 << 20,
    sendBuffer: 4 << 20,
  });
  sock.setDestination(server, o.port ?? DHCP6_SERVER_PORT);

  const n = o.hosts;
  const phase = new Uint8Array(n);
  const startedAt = new Float64Array(n);
  const latency = new Float64Array(n);
  // Each query gets a deadline; they are sent in time order with one timeout, so a FIFO of
  // (host, phase) is in deadline order. A host answered meanwhile is skipped by its phase.
  const fifoHost = new Int32Array(2 * n);
  const fifoPhase = new Uint8Array(2 * n);
  const fifoAt = new Float64Array(2 * n);
  let fifoHead = 0;
  let fifoTail = 0;
  const source = new Uint8Array(16);
  source.set(prefix.subarray(0, 12));
  const rx = new Uint8Array(2048);
  const to6 = new Uint8Array(16);
  const addresses = new Set<number>();
  let next = 0;
  let inFlight = 0;
  let offers = 0;
  let acked = 0;
  let naks = 0;
  let lost = 0;
  let misdirected = 0;
  let sendErrors = 0;
  let lastAck = 0;

  const setHost = (host: number) => _put32(source, 12, host);
  const stamp = (t: _Template, host: number) => {
    const b = t.bytes;
    _put32(b, t.xid, host);
    b[t.chaddr] = 0x02;
    b[t.chaddr + 1] = 0;
    _put32(b, t.chaddr + 2, host);
    b[t.clientId] = 1;
    b[t.clientId + 1] = 0x02;
    b[t.clientId + 2] = 0;
    _put32(b, t.clientId + 3, host);
  };
  const transmit = (t: _Template, i: number, now: number, p: number) => {
    let r = sock.send(t.bytes, 0, t.bytes.length, source);
    for (let tries = 0; r === -Errno.EAGAIN && tries < 100; tries++) {
      Bun.sleepSync(1);
      r = sock.send(t.bytes, 0, t.bytes.length, source);
    }
    if (r < 0) {
      sendErrors++;
      if (sendErrors === 1) console.error(`sendmsg: errno ${-r}`);
    }
    fifoHost[fifoTail] = i;
    fifoPhase[fifoTail] = p;
    fifoAt[fifoTail++] = now + o.timeoutMs;
  };

  const cpu = process.cpuUsage();
  const started = performance.now();
  const deadline = started + o.durationS * 1000;
  const hardStop = deadline + o.timeoutMs + 1000;
  let now = started;
  for (;;) {
    // Start hosts up to the concurrency.
    while (inFlight < o.concurrency && next < n && now < deadline) {
      const i = next++;
      const host = first + i;
      stamp(discover, host);
      setHost(host);
      phase[i] = DISCOVERING;
      startedAt[i] = now;
      inFlight++;
      transmit(discover, i, now, DISCOVERING);
    }
    // Expire queries past their deadline.
    while (fifoHead < fifoTail && fifoAt[fifoHead]! <= now) {
      const i = fifoHost[fifoHead]!;
      if (phase[i] === fifoPhase[fifoHead]) {
        phase[i] = DONE;
        inFlight--;
        lost++;
      }
      fifoHead++;
    }
    if (inFlight === 0 && (next >= n || now >= deadline)) break;
    if (now > hardStop) break;
    // Answers: drain what is there, else sleep until one comes or the next deadline.
    const len = sock.receive(rx, to6);
    if (len === -Errno.EAGAIN) {
      const wait = fifoHead < fifoTail ? fifoAt[fifoHead]! - now : 50;
      sock.wait(Math.min(50, Math.max(1, wait)));
      now = performance.now();
      continue;
    }
    now = performance.now();
    if (len < 0) continue;
    // DHCPV4-RESPONSE carrying a BOOTREPLY: xid = host number.
    if (rx[0] !== Dhcp6MessageType.DHCPV4_RESPONSE) continue;
    const at = _option6(rx, len, 87);
    if (at < 0 || at + 240 > len || rx[at] !== 2) continue;
    const host = _u32(rx, at + 4);
    const i = host - first;
    if (i < 0 || i >= next) continue;
    if (_u32(rx, at + 30) !== host) continue; // chaddr 02:00:host
    if (
      _u32(to6, 12) !== host ||
      _u32(to6, 8) !== _u32(source, 8) ||
      _u32(to6, 4) !== _u32(source, 4) ||
      _u32(to6, 0) !== _u32(source, 0)
    )
      misdirected++;
    const typeAt = _option4(rx, at, len, 53);
    if (typeAt < 0) continue;
    const type = rx[typeAt]!;
    if (type === Dhcp4MessageType.OFFER && phase[i] === DISCOVERING) {
      offers++;
      const serverIdAt = _option4(rx, at, len, 54);
      stamp(request, host);
      _put32(request.bytes, request.requestedIp, _u32(rx, at + 16));
      _put32(request.bytes, request.serverId, serverIdAt < 0 ? 0 : _u32(rx, serverIdAt));
      setHost(host);
      phase[i] = REQUESTING;
      transmit(request, i, now, REQUESTING);
    } else if (
      phase[i] === REQUESTING &&
      (type === Dhcp4MessageType.ACK || type === Dhcp4MessageType.NAK)
    ) {
      phase[i] = DONE;
      inFlight--;
      if (type === Dhcp4MessageType.ACK) {
        latency[acked++] = now - startedAt[i]!;
        lastAck = now;
        addresses.add(_u32(rx, at + 16));
      } else naks++;
    }
  }
  const wallSeconds = (performance.now() - started) / 1000;
  const seconds = acked ? (lastAck - started) / 1000 : wallSeconds;
  const used = process.cpuUsage(cpu);
  sock.close();
  const done = latency.subarray(0, acked).sort();
  const pct = (p: number) => done[Math.min(done.length - 1, Math.floor(done.length * p))] ?? 0;
  if (sendErrors > 0) console.error(`${sendErrors} sendmsg failures`);
  return {
    sent: next,
    offers,
    acked,
    naks,
    lost,
    misdirected,
    distinctAddresses: addresses.size,
    seconds,
    wallSeconds,
    perSecond: acked / seconds,
    lossPercent: next ? (100 * (next - acked)) / next : 0,
    p50ms: pct(0.5),
    p99ms: pct(0.99),
    generatorCpuSeconds: (used.user + used.system) / 1e6,
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      server: { type: "string" },
      port: { type: "string", default: String(DHCP6_SERVER_PORT) },
      prefix: { type: "string", default: "2001:db8:ff::" },
      hosts: { type: "string", default: "30000" },
      concurrency: { type: "string", default: "64" },
      duration: { type: "string", default: "60" },
      timeout: { type: "string", default: "2000" },
      "first-host": { type: "string", default: "1" },
      json: { type: "boolean", default: false },
    },
  });
  if (!values.server) {
    console.error("usage: bun bench/dhcp4o6_load.ts --server V6 [--prefix P] [--hosts N] ...");
    process.exit(2);
  }
  const result = runDhcp4o6Load({
    server: values.server,
    port: Number(values.port),
    prefix: values.prefix,
    hosts: Number(values.hosts),
    concurrency: Number(values.concurrency),
    durationS: Number(values.duration),
    timeoutMs: Number(values.timeout),
    firstHost: Number(values["first-host"]),
  });
  console.log(
    values.json
      ? JSON.stringify(result)
      : `${result.acked} DORA in ${result.seconds.toFixed(2)} s = ${Math.round(result.perSecond)}/s, loss ${result.lossPercent.toFixed(2)}%, p50 ${result.p50ms.toFixed(2)} ms p99 ${result.p99ms.toFixed(2)} ms, misdirected ${result.misdirected}, distinct ${result.distinctAddresses}`,
  );
}
