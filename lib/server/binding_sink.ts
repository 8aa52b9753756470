/**
 * What the protocol handlers (./handler.ts, ./dhcp4o6.ts, ./lease_admin.ts) need of the TEPs:
 * install a lease's binding before the host's ACK leaves, remove it after a release or an
 * expiry. ./tep_sync.ts implements it (docs/protocol.md, "TEP synchronisation").
 *
 * @module
 */
import type { Lease } from "../lease/lease.ts";
import type { DstmMessage } from "../wire/dstm_types.ts";

/**
 * The 16 bytes of a host's IPv6 address that a caller already holds (a request's HOST_IPV6
 * value, at `offset` of `bytes`), with `text`, the canonical text they were decoded to
 * (lib/net/addr.ts formatIPv6). Given to {@link BindingSink.install} and
 * {@link BindingSink.remove}, they spare the TEP's digest (./tep_state.ts) parsing the
 * lease's `host6` back to bytes; they are used only for a binding whose `host6` is `text`.
 * Read at once, never kept: `bytes` may be a received datagram's buffer.
 */
export interface Host6Bytes {
  readonly text: string;
  readonly bytes: Uint8Array;
  readonly offset: number;
}

/**
 * What the protocol handler needs: install before answering, remove after release/expiry.
 *
 * `generation`: the shared store's version of the write that granted (install) or freed
 * (remove) the lease — the engine's `EngineResult.generation`, an expiry's or an
 * administrator's `generations[i]` (lib/alloc/engine_types.ts) — sent as the GENERATION of the
 * BIND / UNBIND (docs/protocol.md, "Generations"). Undefined: none sent (a store with one
 * writer, SQLite or memory, numbers nothing).
 */
export interface BindingSink {
  /**
   * True when the TEP has the binding (or the TEP is not yet connected and not required);
   * a plain boolean when that is decided at once (no exchange with the TEP: the caller's
   * answer need not wait a turn of the event loop), else a promise of it.
   */
  install(lease: Lease, generation?: number, host6?: Host6Bytes): boolean | Promise<boolean>;
  remove(lease: Lease, generation?: number, host6?: Host6Bytes): void;
  /** The install still in progress for this lease's binding, if any (a retransmitted request waits for it). */
  pending(lease: Lease): Promise<boolean> | undefined;
  /**
   * A SYNC, BIND_ACK or NAK arrived at the server socket (`raw`: the message's bytes, decoded
   * as `message`; `local`: the server address it was sent to); it is checked here (configured
   * TEP, port, TEP key) and counted when refused.
   */
  onTepMessage(
    raw: Uint8Array,
    message: DstmMessage,
    from: string,
    port: number,
    local?: string,
  ): void;
}
