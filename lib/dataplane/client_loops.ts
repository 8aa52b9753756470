/**
 * The DSTM client's two forwarding loops (run in Workers by forwarder_worker.ts):
 *
 * - out: DTI → [queue while on-demand and no lease] → translate (placeholder, port set) →
 *   clientEncap → raw IPv6 socket to the TEP;
 * - in: raw IPv6 socket → clientDecap → translate back → DTI.
 *
 * The lease comes from the main thread through ClientState; each loop rebuilds its context
 * when the state's generation changes. Nothing is allocated per packet.
 *
 * @module
 */
import { IPv4Problem, validateIPv4 } from "../net/ipv4.ts";
import { Errno } from "../sys/libc.ts";
import type { Raw6Socket } from "../sys/raw6.ts";
import type { TunDevice } from "../sys/tun_linux.ts";
import type { WorkerContext } from "../sys/worker.ts";
import { ClientState } from "../tunnel/client_state.ts";
import { Counter } from "../tunnel/counters.ts";
import { ClientTranslator, NaptTable, Translation } from "../tunnel/napt.ts";
import { type ClientContext, clientDecap, clientEncap, Verdict } from "../tunnel/pipeline.ts";
import { PathMtuTable } from "../tunnel/pmtu.ts";
import {
  applicationError,
  countTranslation,
  type Lease,
  QUEUE_PACKET_BYTES,
  QUEUE_PACKETS,
  refreshLease,
} from "./client_lease.ts";
import type { ForwarderInit, ForwarderStats } from "./forwarder.ts";
import { nowSeconds, TunnelErrors } from "./tunnel_errors.ts";

/** What a read returns once the device was closed (stop): −EBADF. */
const EBADF = -Errno.EBADF;

const QUEUED = Counter["client-queued"];
const QUEUE_FULL = Counter["client-drop-queue-full"];
const NO_LEASE = Counter["client-drop-no-lease"];
const ENCAP_MALFORMED = Counter["client-encap-drop-malformed"];

const refresh = refreshLease;

/** DTI → TEP. */
export function clientOut(
  init: ForwarderInit,
  ctx: WorkerContext,
  counters: Float64Array,
  tun: TunDevice,
  raw: Raw6Socket,
  stats: ForwarderStats,
): ForwarderStats {
  const state = ClientState.attach(init.clientState!);
  const translator = new ClientTranslator(NaptTable.attach(init.napt!), { counters });
  const onDemand = init.onDemand === true;
  const buf = new Uint8Array(65536);
  const replay = new Uint8Array(65536);
  const lease: Lease = { generation: -1, context: null, translate: false };
  const queue = Array.from({ length: QUEUE_PACKETS }, () => new Uint8Array(QUEUE_PACKET_BYTES));
  const queued = new Int32Array(QUEUE_PACKETS);
  let queueLength = 0;
  let askedFor = -1;
  const post = (globalThis as unknown as { postMessage(m: unknown): void }).postMessage;
  const pathMtu = init.client?.pathMtu ? PathMtuTable.attach(init.client.pathMtu) : null;
  const options = { client: init.client, pathMtu };

  const toApplication = (reply: Uint8Array, length: number, now: number): void => {
    if (lease.translate && translator.inbound(reply, 0, length, now) !== Translation.OK) return;
    const w = tun.write(reply, 0, length);
    if (w < 0) {
      stats.writeErrors++;
      stats.lastError = w;
    }
  };

  const send = (packet: Uint8Array, n: number): void => {
    const context = lease.context!;
    // The translator reads the headers, so it needs them checked first; without translation
    // clientEncap checks them (once).
    if (lease.translate && validateIPv4(packet, 0, n) !== IPv4Problem.NONE) {
      counters[ENCAP_MALFORMED]! += 1;
      return;
    }
    const nowMs = Date.now();
    const now = (nowMs / 1000) | 0;
    if (lease.translate) {
      const result = translator.outbound(packet, 0, n, now, nowMs);
      if (result !== Translation.OK) {
        countTranslation(counters, result);
        // No port free: tell the application (a RST or ICMPv4 3/13) rather than stay silent.
        if (translator.replyLength > 0) {
          const w = tun.write(translator.reply, 0, translator.replyLength);
          if (w < 0) {
            stats.writeErrors++;
            stats.lastError = w;
          }
        }
        return;
      }
    }
    const verdict = clientEncap(context, packet, 0, n);
    if (verdict === Verdict.ICMP) {
      // "Fragmentation needed" for the application (RFC 2473 §7.1), translated back like any
      // packet from the tunnel.
      toApplication(context.reply, context.replyLength, now);
      return;
    }
    if (verdict !== Verdict.FORWARD) return;
    const w = raw.sendTo(
      packet,
      0,
      context.length,
      context.tep6,
      0,
      context.trafficClass,
      context.flowLabel,
    );
    if (w < 0) {
      stats.writeErrors++;
      stats.lastError = w;
    }
    state.touch(now);
  };

  while (!ctx.stopRequested) {
    if (state.generation !== lease.generation)
      refresh(lease, state, translator, counters, onDemand, true, options);
    if (lease.context && queueLength > 0) {
      for (let i = 0; i < queueLength; i++) send(queue[i]!, queued[i]!);
      queueLength = 0;
    }
    const n = tun.read(buf, 0);
    if (n < 0) {
      stats.readErrors++;
      stats.lastError = n;
      if (n === EBADF) break;
      continue;
    }
    if (n === 0) continue;
    // The lease may have arrived while we were blocked in read().
    if (state.generation !== lease.generation)
      refresh(lease, state, translator, counters, onDemand, true, options);
    if (lease.context) {
      send(buf, n);
      // Fragments that came before their first fragment (fragments.ts) go now.
      for (let m = translator.outFragments.popReleased(replay, 0, null, 0); m > 0; ) {
        send(replay, m);
        m = translator.outFragments.popReleased(replay, 0, null, 0);
      }
      continue;
    }
    if (!onDemand) {
      counters[NO_LEASE]! += 1;
      continue;
    }
    if (queueLength < QUEUE_PACKETS && n <= QUEUE_PACKET_BYTES) {
      queue[queueLength]!.set(buf.subarray(0, n));
      queued[queueLength++] = n;
      counters[QUEUED]! += 1;
    } else counters[QUEUE_FULL]! += 1;
    if (askedFor !== lease.generation) {
      askedFor = lease.generation;
      post({ kind: "dstm-need-lease" });
    }
  }
  return stats;
}

/** TEP → DTI. `routePathMtu` tells the kernel's path MTU towards an address (or -errno). */
export function clientIn(
  init: ForwarderInit,
  ctx: WorkerContext,
  counters: Float64Array,
  tun: TunDevice,
  raw: Raw6Socket,
  stats: ForwarderStats,
  routePathMtu: (dst6: Uint8Array) => number = () => -1,
): ForwarderStats {
  const state = ClientState.attach(init.clientState!);
  const translator = new ClientTranslator(NaptTable.attach(init.napt!), { counters });
  const onDemand = init.onDemand === true;
  const buf = new Uint8Array(65536);
  const replay = new Uint8Array(65536);
  const from6 = new Uint8Array(16);
  const lease: Lease = { generation: -1, context: null, translate: false };
  const pathMtu = init.client?.pathMtu ? PathMtuTable.attach(init.client.pathMtu) : null;
  const options = { client: init.client, pathMtu };
  // ICMPv6 errors about what the outbound Worker sent (RFC 2473 §8.3): relayed to the
  // application as ICMPv4 errors from the inner destination, written into the DTI.
  const errors = new TunnelErrors(raw, counters, (info, host6, inner, length) => {
    if (!applicationError(lease, translator, counters, info, host6, inner, length, nowSeconds()))
      return;
    const context = lease.context!;
    const w = tun.write(context.reply, 0, context.replyLength);
    if (w < 0) {
      stats.writeErrors++;
      stats.lastError = w;
    }
  });
  // A new lease (maybe a new TEP): start from what the kernel already knows of the path, e.g.
  // from a Packet Too Big an earlier process got (this Worker is the table's only writer).
  const seed = (): void => {
    const context = lease.context;
    if (!pathMtu || !context) return;
    const mtu = routePathMtu(context.tep6);
    if (mtu >= 1280 && mtu - 40 < context.tunnelMtu)
      pathMtu.learn(context.tep6, 0, mtu, nowSeconds());
  };
  /** Decapsulates, translates (shared lease) and writes one packet into the DTI. */
  const deliver = (
    context: ClientContext,
    packet: Uint8Array,
    n: number,
    trafficClass: number,
  ): void => {
    if (clientDecap(context, packet, 0, n, from6, 0, trafficClass) !== Verdict.FORWARD) return;
    const nowMs = Date.now();
    const now = (nowMs / 1000) | 0;
    if (lease.translate) {
      const result = translator.inbound(packet, 0, context.length, now, nowMs);
      if (result !== Translation.OK) {
        countTranslation(counters, result);
        return;
      }
    }
    const w = tun.write(packet, 0, context.length);
    if (w < 0) {
      stats.writeErrors++;
      stats.lastError = w;
    }
    state.touch(now);
  };
  while (!ctx.stopRequested) {
    errors.poll(pathMtu);
    if (state.generation !== lease.generation) {
      refresh(lease, state, translator, counters, onDemand, false, options);
      seed();
    }
    const n = raw.recvFrom(buf, 0, from6, 0);
    if (n < 0) {
      stats.readErrors++;
      stats.lastError = n;
      if (n === EBADF) break;
      continue;
    }
    if (n === 0) continue;
    if (state.generation !== lease.generation) {
      refresh(lease, state, translator, counters, onDemand, false, options);
      seed();
    }
    const context = lease.context;
    if (!context) {
      counters[NO_LEASE]! += 1;
      continue;
    }
    deliver(context, buf, n, raw.trafficClass);
    // Fragments that came before their first fragment (fragments.ts) go now; their outer
    // traffic class is gone, so no CE mark is carried for them.
    for (let m = translator.inFragments.popReleased(replay, 0, null, 0); m > 0; ) {
      deliver(context, replay, m, 0);
      m = translator.inFragments.popReleased(replay, 0, null, 0);
    }
  }
  return stats;
}
