/**
 * The server's side of TEP synchronisation (docs/protocol.md, "TEP synchronisation").
 *
 * For every TEP the server keeps the bindings it should hold (from the active leases) and a
 * running digest of them. A new lease is BIND-ed and acknowledged before the host's ACK
 * leaves; a released or expired one is UNBIND-ed. Each TEP reports its own count and digest
 * in SYNC every few seconds; when they differ from ours (a TEP that restarted reports 0) the
 * TEP gets the full table as SNAPSHOT parts. A TEP the server has never heard from is not
 * waited for (unless `requireTep`): it receives everything in its first SNAPSHOT.
 *
 * @module
 */
import { DstmTransport } from "../client/protocol.ts";
import type { Logger } from "../control/log.ts";
import type { Metrics } from "../control/metrics.ts";
import { type Lease, leaseKey } from "../lease/lease.ts";
import { formatIPv4, parseIPv6 } from "../net/addr.ts";
import { type AuthKey, signMessage } from "../wire/auth.ts";
import { bindingHash } from "../wire/digest.ts";
import { encodeMessage } from "../wire/dstm.ts";
import {
  type DstmMessage,
  MessageType,
  SNAPSHOT_MAX_BINDINGS,
  type WireBinding,
} from "../wire/dstm_types.ts";

/** Default UDP port a TEP listens on for BIND/UNBIND/SNAPSHOT. */
export const TEP_CONTROL_PORT = 4608;

/** How often a TEP sends SYNC (ms); the server calls a TEP gone after 3 missed periods. */
export const SYNC_INTERVAL_MS = 2000;

/** What the protocol handler needs: install before answering, remove after release/expiry. */
export interface BindingSink {
  /** Resolves true when the TEP has the binding (or the TEP is not yet connected and not required). */
  install(lease: Lease): Promise<boolean>;
  remove(lease: Lease): void;
  /** The install still in progress for this lease's binding, if any (a retransmitted request waits for it). */
  pending(lease: Lease): Promise<boolean> | undefined;
  /** A TEP reported its state; `local`: the server address the SYNC was sent to. */
  onSync(message: DstmMessage, from: string, port: number, local?: string): void;
}

interface TepState {
  readonly tep6: string;
  readonly bindings: Map<number, WireBinding & { hash: number }>;
  digest: number;
  /** Last SYNC (ms), 0 = never. */
  lastSync: number;
  /**
   * The server address this TEP talks to (where its SYNC arrived): BIND / UNBIND / SNAPSHOT
   * leave from it, since the TEP accepts only its `--server` address.
   */
  local?: string;
  transport?: DstmTransport;
  snapshotId: number;
}

export interface TepSyncOptions {
  readonly key?: AuthKey;
  readonly tepPort?: number;
  /** Refuse leases (TEP_UNAVAILABLE) for a TEP that has not synced yet. */
  readonly requireTep?: boolean;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** Sends a datagram from the server's socket (for SNAPSHOT), from `source` when given. */
  readonly send: (data: Uint8Array, address: string, port: number, source?: string) => boolean;
  /**
   * Source address of BIND / UNBIND (`--tep-source`, or the listen address when it is not
   * `::`); default: the address the TEP's SYNC was sent to.
   */
  readonly source?: string;
  readonly now?: () => number;
}

export class TepSync implements BindingSink {
  readonly #teps = new Map<string, TepState>();
  readonly #pending = new Map<number, Promise<boolean>>();
  readonly #o: TepSyncOptions;
  readonly #now: () => number;

  constructor(options: TepSyncOptions, activeLeases: Iterable<Lease>) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    options.metrics.counter(
      "dstm_tep_messages_total",
      "Server-TEP synchronisation messages, by kind",
    );
    options.metrics.gauge("dstm_tep_connected", "1 when the TEP has sent SYNC within 3 periods");
    options.metrics.onCollect(() => {
      for (const tep of this.#teps.values())
        options.metrics.set("dstm_tep_connected", { tep: tep.tep6 }, this.#connected(tep) ? 1 : 0);
    });
    for (const lease of activeLeases) this.#add(this.#tep(lease.tep6), lease);
  }

  /** Bindings and digest the server holds for `tep6` (for tests and stats). */
  view(tep6: string): { count: number; digest: number; connected: boolean } {
    const tep = this.#teps.get(tep6);
    return {
      count: tep?.bindings.size ?? 0,
      digest: tep?.digest ?? 0,
      connected: tep ? this.#connected(tep) : false,
    };
  }

  pending(lease: Lease): Promise<boolean> | undefined {
    return this.#pending.get(leaseKey(lease.ipv4, lease.portSet.psid));
  }

  install(lease: Lease): Promise<boolean> {
    const key = leaseKey(lease.ipv4, lease.portSet.psid);
    const running = this.#pending.get(key);
    if (running) return running;
    const done = this.#install(lease).finally(() => this.#pending.delete(key));
    this.#pending.set(key, done);
    return done;
  }

  async #install(lease: Lease): Promise<boolean> {
    const tep = this.#tep(lease.tep6);
    this.#add(tep, lease);
    if (!this.#connected(tep)) {
      if (!this.#o.requireTep) return true;
      this.#remove(tep, lease);
      return false;
    }
    const ok = await this.#exchange(tep, {
      type: MessageType.BIND,
      host4: lease.ipv4,
      host6: lease.host6,
      portSet: lease.portSet.psidLength === 0 ? undefined : lease.portSet,
    });
    if (!ok) this.#remove(tep, lease);
    return ok;
  }

  remove(lease: Lease): void {
    const tep = this.#teps.get(lease.tep6);
    if (!tep) return;
    this.#remove(tep, lease);
    if (!this.#connected(tep)) return;
    // Best effort: a lost UNBIND shows up as a digest mismatch at the next SYNC.
    void this.#exchange(tep, {
      type: MessageType.UNBIND,
      host4: lease.ipv4,
      host6: lease.host6,
      portSet: lease.portSet.psidLength === 0 ? undefined : lease.portSet,
    });
  }

  /** A SYNC from a TEP arrived at the server socket (already decoded and authenticated). */
  onSync(message: DstmMessage, from: string, port: number, local?: string): void {
    const tep = this.#tep(message.tep6!);
    const source = this.#o.source ?? local;
    if (source !== undefined && source !== tep.local) {
      // The TEP (re)appeared at another of our addresses: talk to it from that one.
      tep.local = source;
      tep.transport?.close();
      tep.transport = undefined;
    }
    const wasConnected = this.#connected(tep);
    tep.lastSync = this.#now();
    this.#o.metrics.inc("dstm_tep_messages_total", { kind: "sync" });
    if (!wasConnected)
      this.#o.log.info("tep-connected", { tep6: tep.tep6, from, bindings: message.syncCount });
    if (message.syncCount === tep.bindings.size && message.syncDigest === tep.digest) return;
    this.#sendSnapshot(tep, from, port);
  }

  close(): void {
    for (const tep of this.#teps.values()) tep.transport?.close();
  }

  #sendSnapshot(tep: TepState, address: string, port: number): void {
    const all = [...tep.bindings.values()];
    const parts = Math.max(1, Math.ceil(all.length / SNAPSHOT_MAX_BINDINGS));
    tep.snapshotId = (tep.snapshotId + 1) >>> 0;
    for (let part = 0; part < parts; part++) {
      const bindings = all
        .slice(part * SNAPSHOT_MAX_BINDINGS, (part + 1) * SNAPSHOT_MAX_BINDINGS)
        .map(({ host4, host6, portSet }) => ({ host4, host6, portSet }));
      const message: DstmMessage = {
        type: MessageType.SNAPSHOT,
        xid: part,
        snapshot: { id: tep.snapshotId, part, parts },
        bindings,
      };
      const bytes = this.#o.key
        ? signMessage(message, this.#o.key, this.#now())
        : encodeMessage(message);
      this.#o.send(bytes, address, port, tep.local);
    }
    this.#o.metrics.inc("dstm_tep_messages_total", { kind: "snapshot" });
    this.#o.log.info("tep-snapshot", { tep6: tep.tep6, bindings: all.length, parts });
  }

  async #exchange(tep: TepState, message: Omit<DstmMessage, "xid">): Promise<boolean> {
    const kind = message.type === MessageType.BIND ? "bind" : "unbind";
    try {
      tep.transport ??= await DstmTransport.open({
        server: tep.tep6,
        port: this.#o.tepPort ?? TEP_CONTROL_PORT,
        bind: tep.local,
        key: this.#o.key,
        retry: { initialMs: 250, maxMs: 250, tries: 3 },
      });
      const answer = await tep.transport.exchange(message, MessageType.BIND_ACK);
      const ok = answer.type === MessageType.BIND_ACK;
      this.#o.metrics.inc("dstm_tep_messages_total", { kind: ok ? kind : `${kind}_refused` });
      return ok;
    } catch (error) {
      this.#o.metrics.inc("dstm_tep_messages_total", { kind: `${kind}_timeout` });
      this.#o.log.warn("tep-unreachable", {
        tep6: tep.tep6,
        message: kind,
        ipv4: message.host4 === undefined ? undefined : formatIPv4(message.host4),
        detail: (error as Error).message,
      });
      return false;
    }
  }

  #connected(tep: TepState): boolean {
    return tep.lastSync > 0 && this.#now() - tep.lastSync < 3 * SYNC_INTERVAL_MS;
  }

  #tep(tep6: string): TepState {
    let tep = this.#teps.get(tep6);
    if (!tep) {
      tep = {
        tep6,
        bindings: new Map(),
        digest: 0,
        lastSync: 0,
        snapshotId: (Math.random() * 2 ** 32) >>> 0,
      };
      this.#teps.set(tep6, tep);
    }
    return tep;
  }

  #add(tep: TepState, lease: Lease): void {
    const key = leaseKey(lease.ipv4, lease.portSet.psid);
    if (tep.bindings.has(key)) this.#remove(tep, lease);
    const { offset, psidLength, psid } = lease.portSet;
    const hash = bindingHash(lease.ipv4, parseIPv6(lease.host6)!, offset, psidLength, psid);
    tep.bindings.set(key, { host4: lease.ipv4, host6: lease.host6, portSet: lease.portSet, hash });
    tep.digest = (tep.digest + hash) >>> 0;
  }

  #remove(tep: TepState, lease: Lease): void {
    const key = leaseKey(lease.ipv4, lease.portSet.psid);
    const entry = tep.bindings.get(key);
    if (!entry) return;
    tep.bindings.delete(key);
    tep.digest = (tep.digest - entry.hash) >>> 0;
  }
}
