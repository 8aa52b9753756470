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
 * With a shared lease store, BIND and UNBIND carry the generation of the write that granted or
 * freed the lease (the engine hands it back with the write's result: {@link install},
 * {@link remove}) and a SNAPSHOT its cut (GENERATION, docs/protocol.md "Generations"), so that
 * a TEP orders the messages of several servers for one binding as the database ordered the
 * writes.
 *
 * Only the configured TEPs (the pools' `--tep`) have state here, and only they are heard or
 * sent to: {@link TepChannel} decides what counts as a TEP's message. A snapshot always goes
 * to the TEP's configured address and control port, never to where a SYNC came from; on an
 * unauthenticated channel (no `--tep-key`) at most {@link UNAUTH_SNAPSHOT_BURST} snapshots
 * and then one per {@link UNAUTH_SNAPSHOT_INTERVAL_MS} go to a TEP, so forged SYNCs cannot
 * turn the server into an amplifier against it (docs/security.md).
 *
 * Parts: the per-TEP table, digest and liveness in ./tep_state.ts, the snapshot that brings a
 * TEP back in step in ./tep_resync.ts (chunked by ./tep_snapshot.ts; the parts a TEP lost sent
 * again from the cut kept by ./tep_snapshot_keep.ts), the channel's checks in
 * ./tep_channel.ts, and the interface the protocol handlers use in ./binding_sink.ts.
 *
 * @module
 */
import type { Pool } from "../alloc/pool.ts";
import type { Logger } from "../control/log.ts";
import type { CounterSeries, Metrics } from "../control/metrics.ts";
import { WarnLimit } from "../control/warn_limit.ts";
import { type Lease, leaseKey } from "../lease/lease.ts";
import { formatIPv4 } from "../net/addr.ts";
import type { AuthKey } from "../wire/auth.ts";
import { type DstmMessage, MessageType } from "../wire/dstm_types.ts";
import type { BindingSink, Host6Bytes } from "./binding_sink.ts";
import { TepChannel } from "./tep_channel.ts";
import { type ResyncContext, resyncTep } from "./tep_resync.ts";
import { SNAPSHOT_PACING, type SnapshotPacing } from "./tep_snapshot.ts";
import { liveCut } from "./tep_snapshot_keep.ts";
import {
  addBinding,
  newTepState,
  removeBinding,
  SYNC_INTERVAL_MS,
  type TepState,
  tepConnected,
} from "./tep_state.ts";

export type { BindingSink } from "./binding_sink.ts";
export {
  SYNC_INTERVAL_MS,
  UNAUTH_SNAPSHOT_BURST,
  UNAUTH_SNAPSHOT_INTERVAL_MS,
} from "./tep_state.ts";

/**
 * Least time (ms) between two catch-ups with the shared store for one TEP's SYNCs (a
 * quarter of the SYNC period): bounds the database reads forged SYNCs can cause.
 */
export const CATCH_UP_GAP_MS = SYNC_INTERVAL_MS / 4;

/** Default UDP port a TEP listens on for BIND/UNBIND/SNAPSHOT. */
export const TEP_CONTROL_PORT = 4608;

export interface TepSyncOptions {
  /** Server ⇄ TEP keys (`--tep-key`, never a host key); the first signs. Absent: unauthenticated. */
  readonly keys?: readonly AuthKey[];
  /** The hosts' keys in force (`--key`): only to name a TEP that signs with one (./tep_channel.ts). */
  readonly hostKeys?: () => Iterable<AuthKey>;
  /** The configured TEPs' IPv6 addresses (the pools' `--tep`): the only TEPs heard. */
  readonly teps: Iterable<string>;
  readonly tepPort?: number;
  /** Refuse leases (TEP_UNAVAILABLE) for a TEP that has not synced yet. */
  readonly requireTep?: boolean;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** Sends a datagram from the server's listening socket (all TEP traffic leaves from there), from `source` when given. */
  readonly send: (data: Uint8Array, address: string, port: number, source?: string) => boolean;
  /**
   * Source address of BIND / UNBIND / SNAPSHOT (`--tep-source`, or the listen address when it
   * is not `::`); default: the address the TEP's SYNC was sent to (the TEP's `--server`).
   */
  readonly source?: string;
  /**
   * The pools at start (the engine's): bindings of their slots are kept in slot-indexed pages,
   * others (pools added by a reload) in a Map. Absent: all in a Map.
   */
  readonly pools?: readonly Pool[];
  /**
   * Shared lease store (docs/scale-out.md): takes in the rows the other servers committed so
   * far (the engine's `caughtUp`), resolving once they are in this view (`adopt` / `forget`).
   * Given only for a shared store: a SYNC that differs from this view is judged again after
   * it, at most one catch-up per {@link CATCH_UP_GAP_MS} (`#onSync`). Never rejects.
   */
  readonly catchUp?: () => Promise<void>;
  /**
   * Shared lease store: the version every change up to which is in this view (the engine's
   * `watchedThrough`), sent as the GENERATION of a snapshot cut now. Absent or undefined:
   * none sent (the TEP takes the snapshot as before).
   */
  readonly watchedThrough?: () => number | undefined;
  /** Chunks of a large snapshot (default {@link SNAPSHOT_PACING}). */
  readonly snapshotPacing?: SnapshotPacing;
  readonly now?: () => number;
}

export class TepSync implements BindingSink {
  readonly #teps = new Map<string, TepState>();
  readonly #pending = new Map<number, Promise<boolean>>();
  /** `dstm_tep_messages_total{kind="bind_deferred"}`, once counted. */
  #bindDeferred: CounterSeries | undefined;
  readonly #o: TepSyncOptions;
  readonly #now: () => number;
  readonly #channel: TepChannel;
  readonly #warn: WarnLimit;
  readonly #watch: ReturnType<typeof setInterval>;
  readonly #startedAt: number;
  readonly #resync: ResyncContext;
  /**
   * TEPs whose differing SYNC waits for the catch-up with the shared store, and the latest
   * SYNC each sent meanwhile (judged when it ends). Bounded by the configured TEPs.
   */
  readonly #catchingUp = new Map<TepState, DstmMessage>();
  /** When each TEP's last catch-up started (ms): see CATCH_UP_GAP_MS. Bounded by the TEPs. */
  readonly #caughtUpAt = new Map<TepState, number>();
  #closed = false;

  constructor(options: TepSyncOptions, activeLeases: Iterable<Lease>) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#channel = new TepChannel({
      teps: options.teps,
      port: options.tepPort ?? TEP_CONTROL_PORT,
      keys: options.keys ?? [],
      hostKeys: options.hostKeys,
      send: options.send,
      log: options.log,
      metrics: options.metrics,
      now: this.#now,
    });
    options.metrics.counter(
      "dstm_tep_messages_total",
      "Server-TEP synchronisation messages, by kind",
      ["kind"],
    );
    options.metrics.gauge("dstm_tep_connected", "1 when the TEP has sent SYNC within 3 periods");
    options.metrics.counter(
      "dstm_tep_disconnects_total",
      "Times a TEP that had synced stopped sending SYNC for 3 periods, by TEP",
      ["tep"],
    );
    this.#warn = new WarnLimit(options.log, { now: this.#now });
    this.#resync = {
      channel: this.#channel,
      metrics: options.metrics,
      log: options.log,
      warn: this.#warn,
      pacing: options.snapshotPacing ?? SNAPSHOT_PACING,
      now: this.#now,
      watchedThrough: options.watchedThrough,
    };
    // A TEP that stops syncing is said at once (warn), not only when a lease needs it.
    this.#startedAt = this.#now();
    this.#watch = setInterval(() => this.watch(), SYNC_INTERVAL_MS);
    this.#watch.unref?.();
    options.metrics.onCollect(() => {
      for (const tep of this.#teps.values())
        options.metrics.set("dstm_tep_connected", { tep: tep.tep6 }, this.#connected(tep) ? 1 : 0);
    });
    for (const tep6 of this.#channel.teps) this.#tep(tep6);
    for (const lease of activeLeases) addBinding(this.#tep(lease.tep6), lease);
  }

  /** Number of TEPs the server keeps state for (the configured ones, and any an old lease names). */
  get tepCount(): number {
    return this.#teps.size;
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

  /**
   * The install still running for the binding of `lease` (same address and PSID), if any:
   * a retransmitted request waits for it instead of sending a second BIND. Undefined when
   * none is in progress. Never rejects.
   */
  pending(lease: Lease): Promise<boolean> | undefined {
    return this.#pending.get(leaseKey(lease.ipv4, lease.portSet.psid));
  }

  /**
   * Adds the binding of `lease` (host IPv4 [+ port set] ⇄ host IPv6) to its TEP's table and
   * digest, and BINDs it at that TEP (docs/protocol.md, "TEP synchronisation"). The handler
   * calls it after the lease is committed and answers the host only once it resolves:
   * - true: the TEP acknowledged (BIND_ACK), or has never sent SYNC and `requireTep` is off
   *   (it will get the binding in its first SNAPSHOT);
   * - false: the TEP refused or did not answer (3 tries, 250 ms apart), or it never synced and
   *   `requireTep` is on. The binding is taken out again; the caller NAKs TEP_UNAVAILABLE.
   * Concurrent calls for one binding share one exchange. Never rejects. `generation`: of the
   * grant's write, sent as the BIND's GENERATION (absent: none, see {@link BindingSink}).
   * `host6`: the bytes of the host's address when the caller has them ({@link Host6Bytes}).
   */
  install(lease: Lease, generation?: number, host6?: Host6Bytes): boolean | Promise<boolean> {
    const key = leaseKey(lease.ipv4, lease.portSet.psid);
    const running = this.#pending.get(key);
    if (running) return running;
    const tep = this.#tep(lease.tep6);
    addBinding(tep, lease, host6);
    // A TEP not in sync is decided at once: no exchange, so nothing pending to share.
    if (!this.#connected(tep)) {
      if (!this.#o.requireTep) {
        this.#deferred(tep, lease);
        return true;
      }
      removeBinding(tep, lease, host6);
      return false;
    }
    const done = this.#install(tep, lease, generation).finally(() => this.#pending.delete(key));
    this.#pending.set(key, done);
    return done;
  }

  async #install(tep: TepState, lease: Lease, generation: number | undefined): Promise<boolean> {
    const ok = await this.#exchange(tep, {
      type: MessageType.BIND,
      host4: lease.ipv4,
      host6: lease.host6,
      portSet: lease.portSet.psidLength === 0 ? undefined : lease.portSet,
      generation,
    });
    if (!ok) removeBinding(tep, lease);
    return ok;
  }

  /**
   * Takes the binding of `lease` out of its TEP's table and digest (after a release or an
   * expiry) and, when the TEP is connected, sends UNBIND without waiting: a lost UNBIND shows
   * as a digest mismatch at the TEP's next SYNC, which gets a SNAPSHOT. Unknown leases and
   * TEPs are ignored. `generation`: of the write that freed it (the release, expiry or
   * administrator's end), sent as the UNBIND's GENERATION (absent: none, see {@link BindingSink}).
   * `host6`: as {@link install}'s.
   */
  remove(lease: Lease, generation?: number, host6?: Host6Bytes): void {
    const tep = this.#teps.get(lease.tep6);
    if (!tep) return;
    removeBinding(tep, lease, host6);
    if (!this.#connected(tep)) return;
    // Best effort: a lost UNBIND shows up as a digest mismatch at the next SYNC. Not sent
    // again once the binding is back (the same host granted the address again, by this or
    // another server, which BIND-ed it): the TEP cannot tell this UNBIND from one of the new
    // binding and would remove it (test/redteam_scaleout17_race.test.ts).
    const key = leaseKey(lease.ipv4, lease.portSet.psid);
    const boundAgain = () => tep.bindings.get(key)?.host6 === lease.host6;
    void this.#exchange(
      tep,
      {
        type: MessageType.UNBIND,
        host4: lease.ipv4,
        host6: lease.host6,
        portSet: lease.portSet.psidLength === 0 ? undefined : lease.portSet,
        // The version of the write that freed it: a TEP holding a later grant's BIND (from
        // any server) ignores this UNBIND however late it comes (docs/protocol.md).
        generation,
      },
      boundAgain,
    );
  }

  /**
   * Another server sharing the lease database granted `lease` (its row came in by NOTIFY):
   * the binding joins this server's view and digest, so that a SNAPSHOT from here is whole,
   * but no BIND is sent: the granting server sends it (docs/scale-out.md, "TEPs").
   */
  adopt(lease: Lease): void {
    addBinding(this.#tep(lease.tep6), lease);
  }

  /**
   * Another server released or reclaimed `lease`: out of this server's view and digest, no
   * UNBIND (the server that freed it sends that). Unknown leases and TEPs are ignored.
   */
  forget(lease: Lease): void {
    const tep = this.#teps.get(lease.tep6);
    if (tep) removeBinding(tep, lease);
  }

  onTepMessage(
    raw: Uint8Array,
    message: DstmMessage,
    from: string,
    port: number,
    local?: string,
  ): void {
    const accepted = this.#channel.receive(raw, message, from, port);
    if (accepted) this.#onSync(accepted.sync, accepted.tep6, from, local);
  }

  /** An accepted SYNC from the configured TEP `tep6`, sent to our address `local`. */
  #onSync(message: DstmMessage, tep6: string, from: string, local?: string): void {
    const tep = this.#teps.get(tep6);
    if (!tep) return;
    // The TEP accepts only its `--server` address: talk to it from where it talks to us.
    const source = this.#o.source ?? local;
    if (source !== undefined) this.#channel.setSource(tep6, source);
    const wasConnected = this.#connected(tep);
    const now = this.#now();
    tep.lastSync = now;
    this.#o.metrics.inc("dstm_tep_messages_total", { kind: "sync" });
    if (!wasConnected) this.#onConnected(tep, from, message.syncCount ?? 0);
    this.#answerSync(tep, now);
    if (this.#catchingUp.has(tep)) {
      this.#catchingUp.set(tep, message); // judged once the catch-up is in
      return;
    }
    if (this.#inStep(tep, message)) return;
    // Shared store: this view may lag the database (the other servers' rows come by NOTIFY).
    // The TEP may already hold what another server granted or freed since: a snapshot cut
    // from this view now would drop those bindings of live leases (or bring back freed ones).
    // Take in the rows committed so far first, then judge the TEP's latest SYNC.
    if (!this.#o.catchUp) {
      this.#resyncIfBehind(tep, message);
      return;
    }
    this.#catchingUp.set(tep, message);
    // At most one catch-up per CATCH_UP_GAP_MS per TEP: forged SYNCs (an unauthenticated
    // channel) cannot turn into a stream of database reads; a SYNC waits that long at most.
    const wait = (this.#caughtUpAt.get(tep) ?? Number.NEGATIVE_INFINITY) + CATCH_UP_GAP_MS - now;
    if (wait <= 0) this.#catchUp(tep);
    else setTimeout(() => this.#catchUp(tep), wait).unref?.();
  }

  /** Catches up with the shared store, then judges the latest SYNC `tep` sent meanwhile. */
  #catchUp(tep: TepState): void {
    if (this.#closed) return;
    this.#caughtUpAt.set(tep, this.#now());
    const done = this.#o.catchUp?.() ?? Promise.resolve();
    void bounded(done, SYNC_INTERVAL_MS).then(() => {
      const latest = this.#catchingUp.get(tep);
      this.#catchingUp.delete(tep);
      if (!this.#closed && latest && !this.#inStep(tep, latest)) this.#resyncIfBehind(tep, latest);
    });
  }

  /** Whether `message` (the TEP's SYNC) reports this view's count and digest. */
  #inStep(tep: TepState, message: DstmMessage): boolean {
    if (message.syncCount !== tep.bindings.size || message.syncDigest !== tep.digest) return false;
    tep.kept = undefined; // in step: no part of the last snapshot will be asked for again
    return true;
  }

  /**
   * Behind (a TEP that restarted reports 0), or ahead: the parts it asks for again (a
   * snapshot it is still missing parts of), else its whole table; unless busy.
   */
  #resyncIfBehind(tep: TepState, message: DstmMessage): void {
    resyncTep(tep, this.#resync, message.snapshotMissing);
  }

  /** Reload of `--tep-key`: see {@link TepChannel.rotateKeys}. */
  rotateKeys(
    keys: readonly AuthKey[],
    overlapMs: number,
    onRetired?: (keys: readonly AuthKey[]) => void,
  ): AuthKey[] {
    return this.#channel.rotateKeys(keys, overlapMs, onRetired);
  }

  close(): void {
    this.#closed = true;
    for (const tep of this.#teps.values()) tep.snapshot?.cancel();
    clearInterval(this.#watch);
    this.#channel.close();
  }

  /**
   * A TEP synced for the first time (info; `since-start-s` when it was late enough to
   * be said `tep-not-synced`), or after it was reported gone (warn, `down-s`): docs/metrics.md.
   */
  #onConnected(tep: TepState, from: string, bindings: number): void {
    if (tep.downSince === 0) {
      const late = tep.notSyncedSaid;
      tep.notSyncedSaid = false;
      this.#o.log.info("tep-connected", {
        tep6: tep.tep6,
        from,
        bindings,
        "since-start-s": late ? Math.round((this.#now() - this.#startedAt) / 1000) : undefined,
      });
      return;
    }
    const down = Math.round((this.#now() - tep.downSince) / 1000);
    tep.downSince = 0;
    this.#warn.warn("tep-connected", { tep6: tep.tep6, from, bindings, "down-s": down });
  }

  /**
   * Says (warn, once per loss) which configured TEPs stopped syncing, 3 periods without SYNC
   * (`tep-disconnected`), or have not synced in the first 3 periods since the server started
   * (`tep-not-synced`, once), and drops the cuts of
   * snapshots kept past SNAPSHOT_KEEP_MS (./tep_snapshot_keep.ts). Runs every SYNC period (on
   * its own timer; callable by tests).
   */
  watch(): void {
    const now = this.#now();
    for (const tep of this.#teps.values()) {
      tep.kept = liveCut(tep.kept, now); // a snapshot's cut is kept for a bounded time
      if (tep.downSince !== 0 || this.#connected(tep)) continue;
      if (tep.lastSync === 0) {
        // Never synced: only a configured TEP is expected to (an old lease may name another).
        // Not a disconnection (it never was connected): its own event, said once; its first
        // SYNC is then an ordinary first tep-connected (info).
        if (
          tep.notSyncedSaid ||
          !this.#channel.teps.has(tep.tep6) ||
          now - this.#startedAt < 3 * SYNC_INTERVAL_MS
        )
          continue;
        tep.notSyncedSaid = true;
        this.#warn.warn("tep-not-synced", {
          tep6: tep.tep6,
          "silent-s": Math.round((now - this.#startedAt) / 1000),
          bindings: tep.bindings.size,
          detail: "has not synced since the server started: is it running, with this --server?",
        });
        continue;
      }
      tep.downSince = tep.lastSync;
      this.#o.metrics.inc("dstm_tep_disconnects_total", { tep: tep.tep6 });
      this.#warn.warn("tep-disconnected", {
        tep6: tep.tep6,
        "silent-s": Math.round((this.#now() - tep.lastSync) / 1000),
        bindings: tep.bindings.size,
        detail: "no SYNC for 3 periods: new leases for it get no BIND until it syncs again",
      });
    }
  }

  /**
   * Answers a SYNC with the server's own view of that TEP (its count and digest), so the TEP
   * knows the server hears it (docs/protocol.md). At most one answer per half period per TEP:
   * forged SYNCs cannot make the server send more than the TEP's own would.
   */
  #answerSync(tep: TepState, now: number): void {
    if (now - tep.answeredAt < SYNC_INTERVAL_MS / 2) return;
    tep.answeredAt = now;
    this.#channel.send(tep.tep6, {
      type: MessageType.SYNC,
      xid: 0,
      tep6: tep.tep6,
      syncCount: tep.bindings.size,
      syncDigest: tep.digest,
    });
  }

  /**
   * A lease granted while its TEP is not in sync with this server (never synced, or silent
   * for 3 periods): its BIND waits for the TEP's next SYNC (a SNAPSHOT then carries it), so
   * until then the host has no IPv4 path. Counted (`bind_deferred`) and said (warn,
   * rate-limited), since a TEP that runs but cannot be heard — a wrong `--server`, keys that
   * do not match — looks exactly like this.
   */
  #deferred(tep: TepState, lease: Lease): void {
    // The series kept from its first count: a deferred BIND is counted per lease.
    if (this.#bindDeferred) this.#bindDeferred.value++;
    else {
      const labels = { kind: "bind_deferred" };
      this.#bindDeferred = this.#o.metrics.incSeries("dstm_tep_messages_total", labels);
    }
    // Rate-limited: past the limit (a TEP down under load) no fields are built per lease.
    if (this.#warn.drop()) return;
    this.#warn.warn("tep-bind-deferred", {
      tep6: tep.tep6,
      ipv4: formatIPv4(lease.ipv4),
      host6: lease.host6,
      detail:
        tep.lastSync === 0
          ? "the TEP has not synced with this server: the host gets no IPv4 path until it does (is the TEP running with this --server, and do its --key and this server's --tep-key match?); --require-tep refuses such leases instead"
          : "the TEP stopped syncing: the host gets no IPv4 path until it syncs again; --require-tep refuses such leases instead",
    });
  }

  /**
   * BIND or UNBIND, 3 tries 250 ms apart; `superseded`, asked before each retransmission,
   * ends it early (counted `<kind>_superseded`, false) when the message no longer holds.
   */
  async #exchange(
    tep: TepState,
    message: Omit<DstmMessage, "xid">,
    superseded?: () => boolean,
  ): Promise<boolean> {
    const kind = message.type === MessageType.BIND ? "bind" : "unbind";
    let dropped = false;
    const keepGoing = superseded
      ? () => {
          dropped = superseded();
          return !dropped;
        }
      : undefined;
    const answer = await this.#channel.exchange(tep.tep6, message, {
      tries: 3,
      intervalMs: 250,
      keepGoing,
    });
    if (dropped) {
      this.#o.metrics.inc("dstm_tep_messages_total", { kind: `${kind}_superseded` });
      return false;
    }
    if (answer === null) {
      this.#o.metrics.inc("dstm_tep_messages_total", { kind: `${kind}_timeout` });
      this.#warn.warn("tep-unreachable", {
        tep6: tep.tep6,
        message: kind,
        ipv4: message.host4 === undefined ? undefined : formatIPv4(message.host4),
        detail: `no answer from TEP [${tep.tep6}]:${this.#o.tepPort ?? TEP_CONTROL_PORT} after 3 tries: ${this.#channel.noAnswerHint(tep.tep6)}`,
      });
      return false;
    }
    const ok = answer.type === MessageType.BIND_ACK;
    this.#o.metrics.inc("dstm_tep_messages_total", { kind: ok ? kind : `${kind}_refused` });
    return ok;
  }

  #connected(tep: TepState): boolean {
    return tepConnected(tep, this.#now());
  }

  #tep(tep6: string): TepState {
    let tep = this.#teps.get(tep6);
    if (!tep) {
      tep = newTepState(tep6, this.#o.pools ?? [], this.#now());
      this.#teps.set(tep6, tep);
    }
    return tep;
  }
}

/** `promise`, or after `ms` whichever comes first (a database that hangs holds no SYNC longer). */
function bounded(promise: Promise<void>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}
