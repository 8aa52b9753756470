/**
 * The TEP's control plane: receives BIND / UNBIND / SNAPSHOT from its DSTM server, applies
 * them to the binding table the data plane reads, acknowledges, and reports its state in
 * SYNC at start and every SYNC_INTERVAL_MS (docs/protocol.md, "TEP synchronisation").
 *
 * Only the configured server may change the table: what control_gate.ts lets through (the
 * server's address *and* port, `--server`, `--server-port`; with a key, a fresh MAC in the
 * `tep` domain); everything else is dropped, counted and logged there (docs/security.md).
 * BIND and UNBIND are applied and answered by ./binding_messages.ts: an UNBIND removes a
 * binding only when its HOST_IPV6 and port set are the binding's: a late UNBIND for the
 * address's previous holder is counted `unbind-stale` and leaves the new holder's binding alone;
 * with a GENERATION, BIND and UNBIND of one binding are taken in the order of the lease's
 * versions in the servers' shared store, whichever server sent them (./binding_order.ts).
 * A SNAPSHOT with a cut generation keeps what the TEP learned after its cut (./tep_bindings.ts).
 *
 * The TEP never learns bindings from data packets: what is not bound here is dropped by the
 * data plane. Static bindings (`--binding V4=V6`, `--binding-file`) are kept apart from the
 * server's (tep_bindings.ts), so a snapshot never removes them and the digest covers only
 * what the server manages.
 *
 * @module
 */
import { KeyRing } from "../control/key_ring.ts";
import type { Logger } from "../control/log.ts";
import { logMessage } from "../control/message_log.ts";
import type { Metrics } from "../control/metrics.ts";
import { WarnLimit } from "../control/warn_limit.ts";
import { canonicalIPv6 } from "../net/addr.ts";
import { bindUdp, type UdpEndpoint } from "../sys/udp.ts";
import { type AuthKey, signMessage } from "../wire/auth.ts";
import { encodeMessage } from "../wire/dstm.ts";
import { DSTM_PORT, type DstmMessage, MessageType, type WireBinding } from "../wire/dstm_types.ts";
import { BindingMessages } from "./binding_messages.ts";
import { ControlGate } from "./control_gate.ts";
import { ServerWatch } from "./server_watch.ts";
import { SnapshotAssemblies } from "./snapshot_assembly.ts";
import { SnapshotFlapWatch } from "./snapshot_flaps.ts";
import type { StaticChange } from "./static_reload.ts";
import { type BindingWriter, TepBindings } from "./tep_bindings.ts";

/**
 * `snapshot-refused` of one server at most this often (ms): a server whose snapshot the table
 * cannot hold sends it again after every SYNC (every 2 s, 1,800 error lines an hour); the
 * counter still counts every refusal, and the next line says how many were left out.
 */
const REFUSED_LINE_EVERY_MS = 60_000;
/** Servers remembered for that at most (a forged sender's address is one more). */
const REFUSED_LINES_KEYS = 64;

export type { BindingWriter } from "./tep_bindings.ts";

export interface TepControlOptions {
  /** Address and port to receive server messages on (the TEP's IPv6 address, port 4608). */
  readonly listen: { readonly address: string; readonly port: number };
  /** The DSTM server. */
  readonly server: { readonly address: string; readonly port?: number };
  /**
   * Further DSTM servers sharing the first one's lease database (docs/scale-out.md): each is
   * sent SYNC and may BIND / UNBIND / SNAPSHOT here, on the same port as `server`.
   */
  readonly moreServers?: readonly string[];
  readonly tep6: string;
  readonly tep4?: number;
  /** The server ⇄ TEP key (the server's `--tep-key`); absent: unauthenticated channel. */
  readonly key?: AuthKey;
  readonly table: BindingWriter;
  readonly staticBindings?: readonly WireBinding[];
  readonly syncIntervalMs?: number;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly now?: () => number;
  /**
   * Called when the managed bindings are known to be the server's: a snapshot was applied, or
   * the server's SYNC answer has this table's count and digest. Until then (a TEP just started,
   * its table empty) "no binding" may only mean "not loaded yet", so the data plane tells no
   * host its binding is gone (ICMPv6 1/5, lib/tunnel/pipeline.ts).
   */
  readonly onInSync?: () => void;
}

/**
 * Receive buffer of the control socket (bytes): 4 MiB holds about 1,800 SNAPSHOT datagrams
 * (half a second of a snapshot's pace, lib/server/tep_snapshot.ts) while the control thread is
 * busy; a lost part is asked for again at the next SYNC (./snapshot_assembly.ts).
 */
export const CONTROL_RECEIVE_BUFFER = 4 << 20;

export class TepControl {
  readonly #o: TepControlOptions;
  readonly #now: () => number;
  /** Per server: when `snapshot-refused` may be said again, and the refusals left unsaid. */
  readonly #refusedLines = new Map<string, { nextAt: number; suppressed: number }>();
  readonly #bindings: TepBindings;
  readonly #gate: ControlGate;
  readonly #keys: KeyRing;
  /** The servers' addresses (canonical); the first is `server`. */
  readonly #servers: readonly string[];
  readonly #serverPort: number;
  readonly #warn: WarnLimit;
  readonly #flaps: SnapshotFlapWatch;
  #endpoint!: UdpEndpoint;
  #timer: ReturnType<typeof setInterval> | undefined;
  /** Snapshots being received, by server address: two servers may each be sending one. */
  readonly #snapshots: SnapshotAssemblies;
  /** BIND and UNBIND, applied and answered (./binding_messages.ts). */
  readonly #bindingMessages: BindingMessages;
  /** Whether each server hears this TEP, by server address. */
  readonly #serverWatches: ReadonlyMap<string, ServerWatch>;
  #xid = (Math.random() * 2 ** 32) >>> 0;

  private constructor(options: TepControlOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#keys = new KeyRing(options.key);
    this.#servers = [
      ...new Set(
        [options.server.address, ...(options.moreServers ?? [])].map((a) => canonicalIPv6(a) ?? a),
      ),
    ];
    this.#serverPort = options.server.port ?? DSTM_PORT;
    this.#warn = new WarnLimit(options.log, { now: this.#now });
    this.#gate = new ControlGate({
      servers: this.#servers,
      port: this.#serverPort,
      tep6: options.tep6,
      keys: this.#keys,
      warn: this.#warn,
      metrics: options.metrics,
      now: this.#now,
    });
    this.#bindings = new TepBindings(options.table, options.staticBindings ?? [], this.#now);
    this.#snapshots = new SnapshotAssemblies({ metrics: options.metrics, now: this.#now });
    this.#bindingMessages = new BindingMessages({
      bindings: this.#bindings,
      snapshots: this.#snapshots,
      log: options.log,
      metrics: options.metrics,
      send: (message, address, port) => this.#send(message, address, port),
    });
    this.#flaps = new SnapshotFlapWatch({
      intervalMs: options.syncIntervalMs ?? 2000,
      log: options.log,
      metrics: options.metrics,
      now: this.#now,
    });
    this.#serverWatches = new Map(
      this.#servers.map((server) => [
        server,
        new ServerWatch({
          server,
          port: this.#serverPort,
          intervalMs: options.syncIntervalMs ?? 2000,
          warn: this.#warn,
          metrics: options.metrics,
          now: this.#now,
          keyed: options.key !== undefined,
        }),
      ]),
    );
    const m = options.metrics;
    m.counter(
      "dstm_tep_control_total",
      "Control messages from the DSTM server, by kind and result",
      ["kind", "result"],
    );
    m.counter(
      "dstm_tep_control_by_server_total",
      "Control messages accepted, by server address and kind (sync, bind, unbind, snapshot)",
      ["server", "kind"],
    );
    m.gauge("dstm_tep_bindings", "Bindings held, by origin (server, static)");
    m.onCollect(() => {
      m.set("dstm_tep_bindings", { origin: "server" }, this.#bindings.managedCount);
      m.set("dstm_tep_bindings", { origin: "static" }, this.#bindings.staticCount);
    });
  }

  /** Binds the control socket, installs static bindings and sends the first SYNC. */
  static async start(options: TepControlOptions): Promise<TepControl> {
    const control = new TepControl(options);
    control.#endpoint = await bindUdp(
      options.listen.address,
      options.listen.port,
      (data, address, port) => control.#onDatagram(data, address, port),
      { receiveBuffer: CONTROL_RECEIVE_BUFFER },
    );
    control.#apply();
    control.sync();
    control.#timer = setInterval(() => control.sync(), options.syncIntervalMs ?? 2000);
    return control;
  }

  /**
   * Each `--server`: whether it answers this TEP's SYNC (heard within 3 SYNC periods) and how
   * long ago it was last heard, in seconds (since the start when never).
   */
  servers(): { server: string; connected: boolean; lastHeardS: number }[] {
    return [...this.#serverWatches.values()].map((w) => w.status());
  }

  /** Server-managed bindings held now. */
  get count(): number {
    return this.#bindings.managedCount;
  }

  /** Static bindings (`--binding`, `--binding-file`), installed at start, changed by a reload. */
  get staticCount(): number {
    return this.#bindings.staticCount;
  }

  /**
   * Reload of the static bindings (./static_reload.ts): the table holds `bindings` and the
   * server-managed bindings from now on. Throws, changing nothing, when one of `bindings`
   * takes an address the server has bound, or the table cannot hold them all.
   */
  replaceStatic(bindings: readonly WireBinding[]): StaticChange {
    return this.#bindings.replaceStatic(bindings);
  }

  /** The digest of the server-managed bindings, as SYNC reports it. */
  get digest(): number {
    return this.#bindings.digest;
  }

  get port(): number {
    return this.#endpoint.port;
  }

  /** Sends SYNC (count, digest; parts of a snapshot still lacked) to every server now. */
  sync(): void {
    this.#flaps.tick();
    for (const server of this.#servers) {
      this.#serverWatches.get(server)?.check();
      this.#send(
        {
          type: MessageType.SYNC,
          xid: this.#nextXid(),
          tep6: this.#o.tep6,
          tep4: this.#o.tep4,
          syncCount: this.#bindings.managedCount,
          syncDigest: this.#bindings.digest,
          snapshotMissing: this.#snapshots.request(server),
        },
        server,
        this.#serverPort,
      );
    }
  }

  /**
   * Reload: signs SYNC with `key` from now on and accepts it at once; the key it replaces is
   * still accepted from the server for `overlapMs` (lib/control/key_ring.ts). Only a TEP
   * started with a key can rotate it (turning authentication on or off needs a restart).
   */
  rotateKey(key: AuthKey, overlapMs: number): AuthKey | undefined {
    if (!this.#keys.signing) throw new Error("this TEP runs without a key");
    return this.#keys.rotate(key, overlapMs);
  }

  close(): void {
    this.#keys.close();
    if (this.#timer) clearInterval(this.#timer);
    this.#endpoint?.close();
  }

  #onDatagram(data: Uint8Array, address: string, port: number): void {
    const accepted = this.#gate.accept(data, address, port);
    if (accepted === undefined) return;
    this.#serverWatches.get(canonicalIPv6(address) ?? address)?.heard();
    const { message, kind } = accepted;
    this.#o.metrics.inc("dstm_tep_control_by_server_total", {
      server: canonicalIPv6(address) ?? address,
      kind,
    });
    logMessage(this.#o.log, "received", message, address);
    if (message.type === MessageType.SYNC) {
      // The server's answer: it hears us, and says what it holds for this TEP.
      if (
        message.syncDigest === this.#bindings.digest &&
        message.syncCount === this.#bindings.managedCount
      )
        this.#o.onInSync?.();
      return;
    }
    if (message.type === MessageType.SNAPSHOT) this.#onSnapshot(message, address);
    else this.#bindingMessages.handle(message, kind, address, port);
  }

  /**
   * A SNAPSHOT part from `server`. When the last part of a snapshot has come, the managed
   * bindings become exactly its bindings, then every BIND / UNBIND applied since its first part
   * came is applied again on top (the server cut the snapshot when it started and sent later
   * changes as BIND / UNBIND): the table ends as the server's, however long the parts took.
   * A snapshot the table cannot hold (full, or a port-set layout that clashes) is refused
   * whole: nothing changes, `snapshot-refused` says why (not `snapshot`, which says it was
   * applied), and it is counted `dstm_tep_control_total{kind="snapshot",result="refused-table"}`.
   */
  #onSnapshot(message: DstmMessage, from: string): void {
    const server = canonicalIPv6(from) ?? from;
    const snapshot = this.#snapshots.add(server, message);
    if (!snapshot) return;
    let refused: number;
    try {
      refused = this.#bindings.loadSnapshot(snapshot);
    } catch (error) {
      // The table holds what it held; SYNC keeps reporting the drift, so the server sends again.
      this.#o.metrics.inc("dstm_tep_control_total", { kind: "snapshot", result: "refused-table" });
      // The server sends it again after every SYNC (2 s): one line a minute per server.
      const now = this.#now();
      const seen = this.#refusedLines.get(server);
      if (seen && now < seen.nextAt) {
        seen.suppressed++;
        return;
      }
      if (!seen && this.#refusedLines.size >= REFUSED_LINES_KEYS) this.#refusedLines.clear();
      this.#refusedLines.set(server, { nextAt: now + REFUSED_LINE_EVERY_MS, suppressed: 0 });
      this.#o.log.error("snapshot-refused", {
        server,
        parts: snapshot.parts,
        reason: "table",
        detail: `${(error as Error).message}; the bindings held are kept (${this.#bindings.managedCount} from the server, ${this.#bindings.staticCount} static)`,
        "suppressed-repeats": seen?.suppressed || undefined,
        "every-s": seen?.suppressed ? REFUSED_LINE_EVERY_MS / 1000 : undefined,
      });
      return;
    }
    if (refused > 0) {
      this.#o.metrics.inc(
        "dstm_tep_control_total",
        { kind: "snapshot", result: "refused-static" },
        refused,
      );
      this.#o.log.warn("snapshot-conflict", { refused, reason: "statically-bound addresses" });
    }
    this.#o.onInSync?.();
    this.#flaps.applied(server);
    this.#o.log.info("snapshot", {
      bindings: this.#bindings.managedCount,
      parts: snapshot.parts,
      server,
      "applied-after": snapshot.changes.length || undefined,
    });
  }

  /**
   * At start: makes the data plane's table exactly the static bindings (no server's yet). A
   * table that cannot hold them applies none (`static-bindings-refused`).
   */
  #apply(): void {
    try {
      this.#bindings.apply();
    } catch (error) {
      this.#o.metrics.inc("dstm_tep_control_total", { kind: "snapshot", result: "refused-table" });
      this.#o.log.error("static-bindings-refused", {
        bindings: this.#bindings.staticCount + this.#bindings.managedCount,
        detail: (error as Error).message,
      });
    }
  }

  #send(message: DstmMessage, address: string, port: number): void {
    logMessage(this.#o.log, "sent", message, address);
    const key = this.#keys.signing;
    const bytes = key
      ? signMessage(message, key, this.#now(), undefined, "tep")
      : encodeMessage(message);
    this.#endpoint.send(bytes, address, port);
  }

  #nextXid(): number {
    this.#xid = (this.#xid + 1) >>> 0;
    return this.#xid;
  }
}
