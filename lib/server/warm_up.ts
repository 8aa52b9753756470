/**
 * The request paths run before the listeners open, so that the first hosts a fresh server
 * answers wait no longer than the later ones. JavaScriptCore compiles a function to machine
 * code only after it has run many times (LLInt, then the baseline, DFG and FTL tiers), and
 * parses and links some modules only on first use: measured, the first 64 DHCPv4-over-DHCPv6
 * DORAs of a fresh `dstm server` took 44–58 ms each against 4–5 ms later, and half of the
 * 200 slowest of 20,000 were among the first 500 (docs/benchmarks.md). After a restart or a
 * failover every host's retransmission comes at once: exactly when that matters.
 *
 * What runs: {@link warmUp} decodes, allocates and encodes synthetic exchanges through the
 * same handler classes as the listeners (native DSTM_DISCOVER, and DHCPv4-over-DHCPv6
 * DISCOVER + REQUEST when that service is on), on a scratch allocation engine over a memory
 * store, with scratch metrics and a logger that drops its lines. Nothing is sent, nothing
 * reaches the lease store, the TEPs or the metrics of the server; the scratch pool is
 * 198.18.0.0/20 (RFC 2544's benchmarking range) with the first configured pool's port
 * sharing, the synthetic hosts 2001:db8:ffff::/64 (RFC 3849). Bounded in count and time.
 *
 * @module
 */
import { AllocationEngine } from "../alloc/engine.ts";
import type { PoolConfig } from "../alloc/engine_types.ts";
import { Logger, type LogLevel } from "../control/log.ts";
import { Metrics } from "../control/metrics.ts";
import { MemoryLeaseStore } from "../lease/memory.ts";
import { type Dhcp4Message, Dhcp4MessageType, Dhcp4Op } from "../wire/dhcp4.ts";
import { decodeDhcp4o6, encodeDhcp4o6 } from "../wire/dhcp4o6.ts";
import { encodeMessage } from "../wire/dstm.ts";
import { MessageType } from "../wire/dstm_types.ts";
import { Dhcp4o6Handler } from "./dhcp4o6.ts";
import { DstmHandler } from "./handler.ts";
import type { ServerConfig } from "./server_config.ts";

/** Exchanges and time a warm-up may take at most (defaults of `dstm server`). */
export interface WarmUpLimits {
  readonly exchanges: number;
  /** ms */
  readonly maxMs: number;
}

/**
 * {@link warmUp} with the server's log level, said at info (`warm-up`: exchanges,
 * scratch-leases, ms, store=scratch). The lease counts are named as the scratch engine's:
 * `leased=2000` on a 254-address pool read as the operator's own leases (newcomer).
 */
export async function warmUpLogged(config: ServerConfig): Promise<void> {
  const r = await warmUp(config, config.logLevel ?? "info");
  config.log.info("warm-up", {
    exchanges: r.exchanges,
    "scratch-leases": r.leased,
    "scratch-leases-4o6": config.dhcp4o6 ? r.leased4o6 : undefined,
    ms: r.ms,
    store: "scratch (memory, 198.18.0.0/20; not your pools)",
  });
}

export const WARM_UP_DEFAULTS: WarmUpLimits = { exchanges: 2000, maxMs: 400 };

/**
 * What a warm-up did: exchanges run (each a native DISCOVER, and a 4o6 DORA if on), how many
 * were answered with a lease (DISCOVER_ACK; a 4o6 ACK), ms taken.
 */
export interface WarmUpResult {
  readonly exchanges: number;
  readonly leased: number;
  readonly leased4o6: number;
  readonly ms: number;
}

/**
 * Runs up to `limits.exchanges` synthetic exchanges, stopping early after `limits.maxMs`;
 * `level`: the server's log level (the log calls then cost what they will). Never throws: a
 * failing exchange ends the warm-up (the server starts all the same).
 */
export async function warmUp(
  config: Pick<ServerConfig, "pools" | "leaseTime" | "maxLeaseTime" | "dhcp4o6">,
  level: LogLevel,
  limits: WarmUpLimits = WARM_UP_DEFAULTS,
): Promise<WarmUpResult> {
  const started = performance.now();
  let done = 0;
  let leased = 0;
  let leased4o6 = 0;
  try {
    const first = config.pools[0];
    const pool: PoolConfig = {
      ...first,
      name: "warm-up",
      prefixes: ["198.18.0.0/20"],
      exclude: [],
      links: undefined,
      tep6: "2001:db8:ffff::1",
      tep4: 0,
    } as PoolConfig;
    const engine = new AllocationEngine({
      pools: [pool],
      store: new MemoryLeaseStore(),
      leaseTime: config.leaseTime,
      maxLeaseTime: config.maxLeaseTime,
    });
    await engine.start();
    const parts = { engine, metrics: new Metrics(), log: new Logger({ sink: () => {}, level }) };
    const native = new DstmHandler({ ...parts, sourceCheck: false });
    const c = config.dhcp4o6;
    const v4o6 = c ? new Dhcp4o6Handler({ ...parts, serverId: c.serverId }) : undefined;
    for (; done < limits.exchanges && performance.now() - started < limits.maxMs; done++) {
      const host6 = `2001:db8:ffff::${(0x1000 + done).toString(16)}`;
      const query = encodeMessage({ type: MessageType.DISCOVER, xid: done, host6 });
      const answer = await native.handle(query, host6, 546, "::1");
      if (answer?.[1] === MessageType.DISCOVER_ACK) leased++;
      if (v4o6 && c && (await _dora(v4o6, host6, done, c.serverId))) leased4o6++;
    }
  } catch {
    // A warm-up is an optimisation: whatever failed will be said by the real request.
  }
  return { exchanges: done, leased, leased4o6, ms: Math.round(performance.now() - started) };
}

/** One DHCPv4-over-DHCPv6 DISCOVER, then the REQUEST for the address offered; true when ACKed. */
async function _dora(
  handler: Dhcp4o6Handler,
  host6: string,
  n: number,
  serverId: number,
): Promise<boolean> {
  const chaddr = Uint8Array.of(
    0x02,
    0,
    (n >>> 24) & 0xff,
    (n >>> 16) & 0xff,
    (n >>> 8) & 0xff,
    n & 0xff,
  );
  const offer = await handler.handle(
    _query(chaddr, n, { messageType: Dhcp4MessageType.DISCOVER }),
    host6,
  );
  const offered = offer ? decodeDhcp4o6(offer) : undefined;
  if (!offered?.ok) return false;
  const yiaddr = offered.value.dhcp4.yiaddr;
  const ack = await handler.handle(
    _query(chaddr, n, { messageType: Dhcp4MessageType.REQUEST, requestedIp: yiaddr, serverId }),
    host6,
  );
  const acked = ack ? decodeDhcp4o6(ack) : undefined;
  return acked?.ok === true && acked.value.dhcp4.options.messageType === Dhcp4MessageType.ACK;
}

/** A DHCPV4-QUERY (RFC 7341 §6.1) carrying a BOOTREQUEST with `options`. */
function _query(chaddr: Uint8Array, xid: number, options: Dhcp4Message["options"]): Uint8Array {
  const dhcp4: Dhcp4Message = {
    op: Dhcp4Op.BOOTREQUEST,
    htype: 1,
    hops: 0,
    xid,
    secs: 0,
    flags: 0,
    ciaddr: 0,
    yiaddr: 0,
    siaddr: 0,
    giaddr: 0,
    chaddr,
    options,
  };
  return encodeDhcp4o6({ type: 20, flags: 0, dhcp4 });
}
