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
import { parseIPv6 } from "../lib/net/addr.ts";
import { Errno } from "../lib/sys/libc.ts";
import { Udp6MultiSource } from "../lib/sys/udp6_multisource.ts";
import { Dhcp4MessageType } from "../lib/wire/dhcp4.ts";
import { DHCP6_CLIENT_PORT, DHCP6_SERVER_PORT, Dhcp6MessageType } from "../lib/wire/dhcp4o6.ts";
import { dhcp4Message, dhcp4o6Query } from "../test/helpers/dhcp4.ts";
import { parseBenchArgs } from "./bench_args.ts";

/** Option 55 of dstm's 4o6 client: mask, routers, DNS, lease time, server id, T1, T2, 159. */
const PARAMETER_REQUEST_LIST = [1, 3, 6, 51, 54, 58, 59, 159];

/** One run: the server, the hosts' prefix, how many hosts, how many in flight, how long. */
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

/** What a run measured (counts of hosts and answers, seconds, ms). */
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
  const run = new _DoraRun(o);
  const cpu = process.cpuUsage();
  const started = performance.now();
  run.loop(started);
  const wallSeconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  run.close();
  return run.result(started, wallSeconds, (used.user + used.system) / 1e6);
}

/**
 * One run's state and its steps: {@link _DoraRun.start} starts hosts up to the concurrency,
 * {@link _DoraRun.expire} times out queries past their deadline, {@link _DoraRun.answer}
 * takes one DHCPV4-RESPONSE (an OFFER sends the host's REQUEST; an ACK or NAK ends it).
 * Per-host state lives in typed arrays indexed by host - first; nothing is allocated per packet.
 */
class _DoraRun {
  readonly #o: Dhcp4o6LoadOptions;
  readonly #first: number;
  readonly #discover = _template(Dhcp4MessageType.DISCOVER);
  readonly #request = _template(Dhcp4MessageType.REQUEST);
  readonly #sock: Udp6MultiSource;
  readonly #phase: Uint8Array;
  readonly #startedAt: Float64Array;
  readonly #latency: Float64Array;
  // Each query gets a deadline; they are sent in time order with one timeout, so a FIFO of
  // (host, phase) is in deadline order. A host answered meanwhile is skipped by its phase.
  readonly #fifoHost: Int32Array;
  readonly #fifoPhase: Uint8Array;
  readonly #fifoAt: Float64Array;
  #fifoHead = 0;
  #fifoTail = 0;
  /** The source address of the next query: the prefix, then the host number. */
  readonly #source = new Uint8Array(16);
  readonly #rx = new Uint8Array(2048);
  readonly #to6 = new Uint8Array(16);
  readonly #addresses = new Set<number>();
  #next = 0;
  #inFlight = 0;
  #offers = 0;
  #acked = 0;
  #naks = 0;
  #lost = 0;
  #misdirected = 0;
  #sendErrors = 0;
  #lastAck = 0;

  constructor(o: Dhcp4o6LoadOptions) {
    const server = parseIPv6(o.server);
    const prefix = parseIPv6(o.prefix);
    if (!server || !prefix) throw new Error(`bad --server ${o.server} or --prefix ${o.prefix}`);
    this.#o = o;
    this.#first = o.firstHost ?? 1;
    if (this.#first < 1 || this.#first + o.hosts > 2 ** 32)
      throw new Error("host numbers must fit 32 bits");
    this.#sock = Udp6MultiSource.open({
      port: DHCP6_CLIENT_PORT,
      receiveBuffer: 4 << 20,
      sendBuffer: 4 << 20,
    });
    this.#sock.setDestination(server, o.port ?? DHCP6_SERVER_PORT);
    const n = o.hosts;
    this.#phase = new Uint8Array(n);
    this.#startedAt = new Float64Array(n);
    this.#latency = new Float64Array(n);
    this.#fifoHost = new Int32Array(2 * n);
    this.#fifoPhase = new Uint8Array(2 * n);
    this.#fifoAt = new Float64Array(2 * n);
    this.#source.set(prefix.subarray(0, 12));
  }

  /**
   * Until every started host is done and no more may start (all started, or `--duration`
   * over), or `--timeout` + 1 s after the duration: start, expire, then drain the answers,
   * sleeping in poll(2) until one comes or the next deadline.
   */
  loop(started: number): void {
    const deadline = started + this.#o.durationS * 1000;
    const hardStop = deadline + this.#o.timeoutMs + 1000;
    let now = started;
    for (;;) {
      if (now < deadline) this.start(now);
      this.expire(now);
      if (this.#inFlight === 0 && (this.#next >= this.#o.hosts || now >= deadline)) break;
      if (now > hardStop) break;
      const len = this.#sock.receive(this.#rx, this.#to6);
      if (len === -Errno.EAGAIN) {
        const head = this.#fifoHead < this.#fifoTail ? this.#fifoAt[this.#fifoHead]! : now + 50;
        this.#sock.wait(Math.min(50, Math.max(1, head - now)));
        now = performance.now();
        continue;
      }
      now = performance.now();
      if (len > 0) this.answer(len, now);
    }
  }

  /** Starts hosts (a DISCOVER each) up to the concurrency and the host count. */
  start(now: number): void {
    while (this.#inFlight < this.#o.concurrency && this.#next < this.#o.hosts) {
      const i = this.#next++;
      const host = this.#first + i;
      _stamp(this.#discover, host);
      _put32(this.#source, 12, host);
      this.#phase[i] = DISCOVERING;
      this.#startedAt[i] = now;
      this.#inFlight++;
      this.#transmit(this.#discover, i, now, DISCOVERING);
    }
  }

  /** Ends the hosts whose query is past its deadline and still unanswered: lost. */
  expire(now: number): void {
    while (this.#fifoHead < this.#fifoTail && this.#fifoAt[this.#fifoHead]! <= now) {
      const i = this.#fifoHost[this.#fifoHead]!;
      if (this.#phase[i] === this.#fifoPhase[this.#fifoHead]) {
        this.#phase[i] = DONE;
        this.#inFlight--;
        this.#lost++;
      }
      this.#fifoHead++;
    }
  }

  /**
   * The answer in `rx[0, len)`: a DHCPV4-RESPONSE carrying a BOOTREPLY whose xid and chaddr
   * name a started host (else ignored); counted as misdirected when it came to another
   * address than the host's. An OFFER to a discovering host sends its REQUEST (options 50 and
   * 54 from the OFFER); an ACK or NAK to a requesting host ends it.
   */
  answer(len: number, now: number): void {
    const rx = this.#rx;
    if (rx[0] !== Dhcp6MessageType.DHCPV4_RESPONSE) return;
    const at = _option6(rx, len, 87);
    if (at < 0 || at + 240 > len || rx[at] !== 2) return;
    const host = _u32(rx, at + 4);
    const i = host - this.#first;
    if (i < 0 || i >= this.#next) return;
    if (_u32(rx, at + 30) !== host) return; // chaddr 02:00:host
    const to6 = this.#to6;
    const source = this.#source;
    if (
      _u32(to6, 12) !== host ||
      _u32(to6, 8) !== _u32(source, 8) ||
      _u32(to6, 4) !== _u32(source, 4) ||
      _u32(to6, 0) !== _u32(source, 0)
    )
      this.#misdirected++;
    const typeAt = _option4(rx, at, len, 53);
    if (typeAt < 0) return;
    const type = rx[typeAt]!;
    const phase = this.#phase;
    if (type === Dhcp4MessageType.OFFER && phase[i] === DISCOVERING) {
      this.#offers++;
      const request = this.#request;
      const serverIdAt = _option4(rx, at, len, 54);
      _stamp(request, host);
      _put32(request.bytes, request.requestedIp, _u32(rx, at + 16));
      _put32(request.bytes, request.serverId, serverIdAt < 0 ? 0 : _u32(rx, serverIdAt));
      _put32(source, 12, host);
      phase[i] = REQUESTING;
      this.#transmit(request, i, now, REQUESTING);
    } else if (
      phase[i] === REQUESTING &&
      (type === Dhcp4MessageType.ACK || type === Dhcp4MessageType.NAK)
    ) {
      phase[i] = DONE;
      this.#inFlight--;
      if (type === Dhcp4MessageType.ACK) {
        this.#latency[this.#acked++] = now - this.#startedAt[i]!;
        this.#lastAck = now;
        this.#addresses.add(_u32(rx, at + 16));
      } else this.#naks++;
    }
  }

  close(): void {
    this.#sock.close();
  }

  /** The figures of the run that began at `started` (ms) and took `wallSeconds`. */
  result(started: number, wallSeconds: number, cpuSeconds: number): Dhcp4o6LoadResult {
    const acked = this.#acked;
    const next = this.#next;
    const seconds = acked ? (this.#lastAck - started) / 1000 : wallSeconds;
    const done = this.#latency.subarray(0, acked).sort();
    const pct = (p: number) => done[Math.min(done.length - 1, Math.floor(done.length * p))] ?? 0;
    if (this.#sendErrors > 0) console.error(`${this.#sendErrors} sendmsg failures`);
    return {
      sent: next,
      offers: this.#offers,
      acked,
      naks: this.#naks,
      lost: this.#lost,
      misdirected: this.#misdirected,
      distinctAddresses: this.#addresses.size,
      seconds,
      wallSeconds,
      perSecond: acked / seconds,
      lossPercent: next ? (100 * (next - acked)) / next : 0,
      p50ms: pct(0.5),
      p99ms: pct(0.99),
      generatorCpuSeconds: cpuSeconds,
    };
  }

  /** Sends template `t` from the current source (retrying on EAGAIN) and queues its deadline. */
  #transmit(t: _Template, i: number, now: number, p: number): void {
    const sock = this.#sock;
    let r = sock.send(t.bytes, 0, t.bytes.length, this.#source);
    for (let tries = 0; r === -Errno.EAGAIN && tries < 100; tries++) {
      Bun.sleepSync(1); // the socket buffer is full: let the kernel drain it
      r = sock.send(t.bytes, 0, t.bytes.length, this.#source);
    }
    if (r < 0) {
      this.#sendErrors++;
      if (this.#sendErrors === 1) console.error(`sendmsg: errno ${-r}`);
    }
    this.#fifoHost[this.#fifoTail] = i;
    this.#fifoPhase[this.#fifoTail] = p;
    this.#fifoAt[this.#fifoTail++] = now + this.#o.timeoutMs;
  }
}

/** Writes host `host`'s xid, chaddr (02:00:host) and client identifier (01 + chaddr) into `t`. */
function _stamp(t: _Template, host: number): void {
  const b = t.bytes;
  _put32(b, t.xid, host);
  b[t.chaddr] = 0x02;
  b[t.chaddr + 1] = 0;
  _put32(b, t.chaddr + 2, host);
  b[t.clientId] = 1;
  b[t.clientId + 1] = 0x02;
  b[t.clientId + 2] = 0;
  _put32(b, t.clientId + 3, host);
}

if (import.meta.main) {
  const { values } = parseBenchArgs(import.meta.path, {
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
