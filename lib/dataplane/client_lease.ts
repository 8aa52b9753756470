/**
 * What the DSTM client's forwarding loops share, one packet at a time (client_loops.ts) or in
 * batches (client_batch.ts): the per-lease context each loop rebuilds when the lease's
 * generation changes, and the counting of the NAPT's refusals.
 *
 * @module
 */

import { equalIPv6 } from "../net/addr.ts";
import { l4SourcePort } from "../net/l4.ts";
import { psidOfPort } from "../net/portset.ts";
import type { ClientState } from "../tunnel/client_state.ts";
import { Counter } from "../tunnel/counters.ts";
import { clientSentTo, relayTunnelError, type TunnelError } from "../tunnel/icmp_relay.ts";
import type { LocalSources } from "../tunnel/local_sources.ts";
import { ClientTranslator, type NaptTable, PLACEHOLDER_IPV4, Translation } from "../tunnel/napt.ts";
import { ClientContext } from "../tunnel/pipeline.ts";
import type { PathMtuTable } from "../tunnel/pmtu.ts";
import type { ForwarderInit } from "./forwarder.ts";

/** On-demand: packets held while the first lease is being obtained (a TCP SYN or a DNS query or two). */
export const QUEUE_PACKETS = 64;
export const QUEUE_PACKET_BYTES = 2048;

/** The counters both client loops keep about the lease and the packets they hold or refuse. */
export const QUEUED = Counter["client-queued"];
export const QUEUE_FULL = Counter["client-drop-queue-full"];
export const NO_LEASE = Counter["client-drop-no-lease"];
export const ENCAP_MALFORMED = Counter["client-encap-drop-malformed"];

const NAPT_NO_PORT = Counter["client-napt-drop-no-port"];
const NAPT_NO_MAPPING = Counter["client-napt-drop-no-mapping"];
const NAPT_NO_PORTS = Counter["client-napt-drop-no-ports"];
const NAPT_CLOSED = Counter["client-napt-drop-closed"];

/** A loop's view of the lease: the context of `generation` (null: no lease). */
export interface Lease {
  generation: number;
  context: ClientContext | null;
  translate: boolean;
}

/** The settings a loop builds its contexts from. */
export interface LeaseOptions {
  client?: ForwarderInit["client"];
  pathMtu: PathMtuTable | null;
  /** The host's IPv4 addresses the inbound path refuses as sources (--kernel-encap). */
  localSources?: LocalSources;
}

/** Counts a refusal of the translator (held and no-room fragments are counted by the fragment table). */
export function countTranslation(counters: Float64Array, result: Translation): void {
  if (result === Translation.HELD || result === Translation.FRAGMENT_NO_ROOM) return;
  if (result === Translation.NO_PORT) counters[NAPT_NO_PORT]! += 1;
  else if (result === Translation.NO_MAPPING) counters[NAPT_NO_MAPPING]! += 1;
  else if (result === Translation.CLOSED) counters[NAPT_CLOSED]! += 1;
  else counters[NAPT_NO_PORTS]! += 1;
}

/** Follows the state: a new generation means a new context (and, for the writer, a clean NAPT table). */
export function refreshLease(
  lease: Lease,
  state: ClientState,
  translator: ClientTranslator,
  counters: Float64Array,
  onDemand: boolean,
  writer: boolean,
  options: LeaseOptions,
): void {
  lease.generation = state.generation;
  if (!state.hasLease) {
    lease.context = null;
    return;
  }
  const portSet = state.portSet;
  const tep6 = state.tep6(new Uint8Array(16));
  const o = options;
  lease.context = new ClientContext({
    counters,
    leasedIPv4: state.ipv4,
    portSet,
    tep6,
    tunnelMtu: o.client?.tunnelMtu,
    pathMtu: o.pathMtu ?? undefined,
    mssClamp: o.client?.mssClamp,
    dscp: o.client?.dscp,
    ecnNormal: o.client?.ecnNormal,
    flowLabel: o.client?.flowLabel,
    localSources: o.localSources,
  });
  translator.configure(state.ipv4, onDemand ? PLACEHOLDER_IPV4 : 0, portSet);
  if (writer) translator.table.clear();
  lease.translate = onDemand || portSet.psidLength > 0;
}

/** What a client loop is built from (the Worker attaches the shared tables). */
export interface ClientLoopInit {
  state: ClientState;
  napt: NaptTable;
  counters: Float64Array;
  onDemand: boolean;
  client?: ForwarderInit["client"];
  pathMtu: PathMtuTable | null;
  /** See LeaseOptions.localSources. */
  localSources?: LocalSources;
}

/** One loop's lease and translator, following the main thread's ClientState. */
export class LeaseFollower {
  readonly lease: Lease = { generation: -1, context: null, translate: false };
  readonly translator: ClientTranslator;
  readonly #init: ClientLoopInit;
  readonly #options: LeaseOptions;
  readonly #writer: boolean;

  /** `writer`: the outbound loop, the NAPT table's only writer of mappings (it clears it). */
  constructor(init: ClientLoopInit, writer: boolean) {
    this.#init = init;
    this.#options = {
      client: init.client,
      pathMtu: init.pathMtu,
      localSources: init.localSources,
    };
    this.#writer = writer;
    this.translator = new ClientTranslator(init.napt, { counters: init.counters });
  }

  /** Rebuilds the context when the lease's generation changed; true when it did. */
  follow(): boolean {
    const i = this.#init;
    if (i.state.generation === this.lease.generation) return false;
    refreshLease(
      this.lease,
      i.state,
      this.translator,
      i.counters,
      i.onDemand,
      this.#writer,
      this.#options,
    );
    return true;
  }
}

const SOURCE_POLICY = Counter["tunnel-error-source-policy"];
const NOT_OURS = Counter["tunnel-error-not-ours"];

/** The quoted packet's source port (as the TEP reads it: l4SourcePort) is in our port set. */
function sourcePortOurs(context: ClientContext, inner: Uint8Array, length: number): boolean {
  const port = l4SourcePort(inner, 0, length);
  return port >= 0 && psidOfPort(port, context.offset, context.psidLength) === context.psid;
}
const SOURCE_POLICY_NOT_TEP = Counter["tunnel-error-source-policy-not-tep"];
/** ICMPv6 Destination Unreachable, code 5: source address failed ingress/egress policy (RFC 4443 §3.1). */
const DEST_UNREACHABLE6 = 1;
const SOURCE_POLICY_CODE = 5;
/** A Worker tells the main thread that its binding is gone at most once per this many ms. */
const BINDING_LOST_NOTICE_MS = 1000;
let _lastBindingLostMs = Number.NEGATIVE_INFINITY;

/**
 * ICMPv6 1/5 about a packet from the leased address to the TEP: the TEP has no binding for
 * it (lease deleted, server database lost, TEP restarted without a snapshot: pipeline.ts).
 * From the TEP itself (the error's sender is the TEP address the lease names): counted
 * `tunnel-error-source-policy` and `bindingLost()` called, at most once a second, for the main
 * thread to renew at once (lib/client/node.ts, rate limited there too). From any other
 * address: counted `tunnel-error-source-policy-not-tep` and ignored, so a forged error can
 * neither make the client flood its server nor cut the application's flows.
 */
function sourcePolicyError(
  counters: Float64Array,
  tep6: Uint8Array,
  offender6: Uint8Array | undefined,
  bindingLost: (() => void) | undefined,
): void {
  if (!offender6 || !equalIPv6(offender6, 0, tep6, 0)) {
    counters[SOURCE_POLICY_NOT_TEP]! += 1;
    return;
  }
  counters[SOURCE_POLICY]! += 1;
  const now = Date.now();
  if (now - _lastBindingLostMs < BINDING_LOST_NOTICE_MS) return;
  _lastBindingLostMs = now;
  bindingLost?.();
}

/**
 * An ICMPv6 error about what the outbound loop sent (RFC 2473 §8.3), as an ICMPv4 error for
 * the application: true when `context.reply[0, replyLength)` holds it, translated back like
 * any packet from the tunnel (write it into the DTI); false when it is not ours or not relayed.
 * ICMPv6 1/5 (the TEP has no binding for the lease) is not relayed: it calls `bindingLost`
 * when it comes from the TEP ({@link sourcePolicyError}).
 */
export function applicationError(
  lease: Lease,
  translator: ClientTranslator,
  counters: Float64Array,
  info: TunnelError,
  host6: Uint8Array,
  inner: Uint8Array,
  length: number,
  now: number,
  bindingLost?: () => void,
): boolean {
  const context = lease.context;
  if (!context) return false;
  if (!clientSentTo(counters, context.leasedIPv4, context.tep6, inner, 0, length, host6, 0))
    return false;
  if (info.type === DEST_UNREACHABLE6 && info.code === SOURCE_POLICY_CODE) {
    // A shared address: we only ever send from our port set (the NAPT sees to it). A quote
    // from a port outside it (or with none) is a packet someone else sent with our address
    // and host address spoofed, which the TEP rightly refused: not about our binding.
    if (context.psidLength > 0 && !sourcePortOurs(context, inner, length)) {
      counters[NOT_OURS]! += 1;
      return false;
    }
    sourcePolicyError(counters, context.tep6, info.offender6, bindingLost);
    return false;
  }
  if (!relayTunnelError(context, info, host6, 0, inner, 0, length, 0, now)) return false;
  return !(
    lease.translate &&
    translator.inbound(context.reply, 0, context.replyLength, now) !== Translation.OK
  );
}
