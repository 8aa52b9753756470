/**
 * The TEP's control plane: receives BIND / UNBIND / SNAPSHOT from its DSTM server, applies
 * them to the binding table the data plane reads, acknowledges, and reports its state in
 * SYNC at start and every SYNC_INTERVAL_MS (docs/protocol.md, "TEP synchronisation").
 *
 * Only the configured server may change the table: a message is accepted when it comes from
 * the server's address *and* port (`--server`, `--server-port`) and, with a key (the server ⇄
 * TEP key, never the hosts' key), carries a MAC in the `tep` domain that is fresh and not a
 * replay. Everything else is dropped, counted in `dstm_tep_control_total` by reason and
 * logged at warn, rate-limited (docs/security.md). An UNBIND removes a binding only when its
 * HOST_IPV6 and port set are the binding's: a late UNBIND for the address's previous holder
 * is counted `unbind-stale` and leaves the new holder's binding alone.
 *
 * The TEP never learns bindings from data packets: what is not bound here is dropped by the
 * data plane. Static bindings (`--binding V4=V6`, `--binding-file`) are kept apart from the
 * server's, so a snapshot never removes them and the digest covers only what the server
 * manages.
 *
 * @module
 */
import { KeyRing } from "../control/key_ring.ts";
import type { Logger } from "../control/log.ts";
import { logMessage } from "../control/message_log.ts";
import type { Metrics } from "../control/metrics.ts";
import { WarnLimit } from "../control/warn_limit.ts";
import { canonicalIPv6, formatIPv4, parseIPv6 } from "../net/addr.ts";
import { bindingKey } from "../net/portset.ts";
import { bindUdp, type UdpEndpoint } from "../sys/udp.ts";
import { type AuthKey, ReplayGuard, signMessage, verifyMessage } from "../wire/auth.ts";
import { bindingHash } from "../wire/digest.ts";
import { decodeMessage, encodeMessage } from "../wire/dstm.ts";
import {
  DSTM_PORT,
  type DstmMessage,
  MessageType,
  Status,
  type WireBinding,
  type WirePortSet,
} from "../wire/dstm_types.ts";
import { ServerWatch } from "./server_watch.ts";
import { SnapshotAssemblies } from "./snapshot_assembly.ts";
import { type StaticChange, staticChange } from "./static_reload.ts";

/** What the control plane needs from the data plane's binding table (single writer). */
export interface BindingWriter {
  set(ipv4: number, portSet: WirePortSet, host6: Uint8Array): void;
  delete(ipv4: number, psid: number): void;
  /** Atomically (for readers: entry by entry, never a torn entry) makes the table exactly `entries`. */
  replaceAll(entries: readonly { ipv4: number; portSet: WirePortSet; host6: Uint8Array }[]): void;
}

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
}

interface Entry {
  readonly binding: WireBinding;
  readonly host6: Uint8Array;
  readonly hash: number;
}

/**
 * Receive buffer of the control socket (bytes): 4 MiB holds about 1,800 SNAPSHOT datagrams
 * (half a second of a snapshot's pace, lib/server/tep_snapshot.ts) while the control thread is
 * busy; one lost part loses the whole snapshot (docs/benchmarks.md "One million leases").
 */
export const CONTROL_RECEIVE_BUFFER = 4 << 20;

export class TepControl {
  readonly #o: TepControlOptions;
  readonly #now: () => number;
  readonly #managed = new Map<number, Entry>();
  #static: Entry[];
  /** IPv4 addresses with a static binding: the server's messages may not touch them. */
  #staticAddresses: Set<number>;
  readonly #guard: ReplayGuard;
  /** This TEP's IPv6 address, 16 bytes: MAC-ed into every server message for it. */
  readonly #audience: Uint8Array | undefined;
  readonly #keys: KeyRing;
  /** The servers' addresses (canonical); the first is `server`. */
  readonly #servers: readonly string[];
  readonly #serverPort: number;
  readonly #warn: WarnLimit;
  #digest = 0;
  #endpoint!: UdpEndpoint;
  #timer: ReturnType<typeof setInterval> | undefined;
  /** Snapshots being received, by server address: two servers may each be sending one. */
  readonly #snapshots = new SnapshotAssemblies();
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
    // Nothing stamped before this start: what was captured before a restart is refused.
    this.#guard = new ReplayGuard({ notBefore: this.#now() });
    this.#audience = parseIPv6(options.tep6) ?? undefined;
    this.#static = (options.staticBindings ?? []).map((b) => entry(b));
    this.#staticAddresses = new Set(this.#static.map((e) => e.binding.host4));
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
        }),
      ]),
    );
    const m = options.metrics;
    m.counter(
      "dstm_tep_control_total",
      "Control messages from the DSTM server, by kind and result",
    );
    m.counter(
      "dstm_tep_control_by_server_total",
      "Control messages accepted, by server address and kind (sync, bind, unbind, snapshot)",
    );
    m.gauge("dstm_tep_bindings", "Bindings held, by origin (server, static)");
    m.onCollect(() => {
      m.set("dstm_tep_bindings", { origin: "server" }, this.#managed.size);
      m.set("dstm_tep_bindings", { origin: "static" }, this.#static.length);
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

  /** Server-managed bindings held now. */
  /**
   * Each `--server`: whether it answers this TEP's SYNC (heard within 3 SYNC periods) and how
   * long ago it was last heard, in seconds (since the start when never).
   */
  servers(): { server: string; connected: boolean; lastHeardS: number }[] {
    return [...this.#serverWatches.values()].map((w) => w.status());
  }

  get count(): number {
    return this.#managed.size;
  }

  /** Static bindings (`--binding`, `--binding-file`), installed at start, changed by a reload. */
  get staticCount(): number {
    return this.#static.length;
  }

  /**
   * Reload of the static bindings (./static_reload.ts): the table holds `bindings` and the
   * server-managed bindings from now on. Throws, changing nothing, when one of `bindings`
   * takes an address the server has bound, or the table cannot hold them all.
   */
  replaceStatic(bindings: readonly WireBinding[]): StaticChange {
    const managed = [...this.#managed.values()];
    const change = staticChange(
      this.#static.map((e) => e.binding),
      bindings,
      managed.map((e) => e.binding),
    );
    const next = bindings.map((b) => entry(b));
    this.#o.table.replaceAll(
      [...next, ...managed].map((e) => ({
        ipv4: e.binding.host4,
        portSet: e.binding.portSet,
        host6: e.host6,
      })),
    );
    this.#static = next;
    this.#staticAddresses = new Set(next.map((e) => e.binding.host4));
    return change;
  }

  get digest(): number {
    return this.#digest;
  }

  get port(): number {
    return this.#endpoint.port;
  }

  /** Sends SYNC (count and digest of the server-managed bindings) to every server now. */
  sync(): void {
    for (const server of this.#servers) {
      this.#serverWatches.get(server)?.check();
      this.#send(
        {
          type: MessageType.SYNC,
          xid: this.#nextXid(),
          tep6: this.#o.tep6,
          tep4: this.#o.tep4,
          syncCount: this.#managed.size,
          syncDigest: this.#digest,
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
    const accepted = this.#accept(data, address, port);
    if (accepted === undefined) return;
    this.#serverWatches.get(canonicalIPv6(address) ?? address)?.heard();
    const { message, kind } = accepted;
    this.#o.metrics.inc("dstm_tep_control_by_server_total", {
      server: canonicalIPv6(address) ?? address,
      kind,
    });
    logMessage(this.#o.log, "received", message, address);
    if (message.type === MessageType.SYNC) return; // the server's answer: it hears us
    if (message.type === MessageType.SNAPSHOT) this.#onSnapshot(message, address);
    else this.#onBinding(message, kind, address, port);
  }

  /**
   * The server's message in `data` when it comes from the server's address and port, decodes,
   * is a BIND, UNBIND or SNAPSHOT and (with a key) carries a valid fresh MAC; undefined when
   * refused (counted and logged by #refused).
   */
  #accept(
    data: Uint8Array,
    address: string,
    port: number,
  ): { message: DstmMessage; kind: "bind" | "unbind" | "snapshot" | "sync" } | undefined {
    if (!this.#servers.includes(canonicalIPv6(address) ?? address)) {
      this.#refused("any", "drop-not-server", address, port);
      return undefined;
    }
    if (port !== this.#serverPort) {
      // The server sends every BIND/UNBIND/SNAPSHOT from its listening port: another port on
      // the server's address is another program (a local user), not the server.
      this.#refused("any", "drop-not-server-port", address, port);
      return undefined;
    }
    const decoded = decodeMessage(data);
    if (!decoded.ok) {
      this.#refused("any", "drop-malformed", address, port);
      return undefined;
    }
    const message = decoded.value;
    const kind =
      message.type === MessageType.BIND
        ? "bind"
        : message.type === MessageType.UNBIND
          ? "unbind"
          : message.type === MessageType.SNAPSHOT
            ? "snapshot"
            : message.type === MessageType.SYNC
              ? "sync"
              : "other";
    if (kind === "other") {
      this.#refused(kind, "drop-unexpected", address, port);
      return undefined;
    }
    if (this.#keys.signing) {
      const outcome = verifyMessage(
        data.subarray(0, decoded.offset),
        message,
        this.#keys.accepted,
        this.#guard,
        this.#now(),
        "tep",
        this.#audience,
      );
      if (outcome !== "ok") {
        this.#refused(kind, `drop-auth-${outcome}`, address, port);
        return undefined;
      }
    }
    this.#o.metrics.inc("dstm_tep_control_total", { kind, result: "ok" });
    return { message, kind };
  }

  /** BIND or UNBIND: applied unless the address is static, then acknowledged (BIND_ACK). */
  #onBinding(message: DstmMessage, kind: string, address: string, port: number): void {
    const m = this.#o.metrics;
    const portSet = message.portSet ?? { offset: 0, psidLength: 0, psid: 0 };
    const binding: WireBinding = { host4: message.host4!, host6: message.host6!, portSet };
    if (this.#staticAddresses.has(binding.host4)) {
      // Static bindings own their addresses: the server may not bind or unbind them here.
      m.inc("dstm_tep_control_total", { kind, result: "refused-static" });
      this.#o.log.warn("reject", {
        reason: "statically-bound",
        type: kind,
        ipv4: formatIPv4(binding.host4),
        host6: binding.host6,
      });
      if (message.type === MessageType.BIND) {
        this.#refuse(
          message.xid,
          binding.host4,
          Status.ADDRESS_IN_USE,
          "address is statically bound at this TEP",
          address,
          port,
        );
        return;
      }
    } else if (message.type === MessageType.BIND) {
      if (!this.#bind(message.xid, binding, address, port)) return;
      this.#snapshots.changed(true, binding);
    } else if (!this.#holds(binding)) {
      // A late or retransmitted UNBIND for the address's previous holder: the binding now
      // belongs to another host (or is gone). Acknowledged, so the server stops retrying.
      m.inc("dstm_tep_control_total", { kind, result: "unbind-stale" });
      this.#o.log.info("unbind-stale", { ipv4: formatIPv4(binding.host4), host6: binding.host6 });
    } else {
      this.#drop(binding.host4, portSet.psid);
      this.#o.table.delete(binding.host4, portSet.psid);
      this.#snapshots.changed(false, binding);
      this.#o.log.info("unbind", { ipv4: formatIPv4(binding.host4), host6: binding.host6 });
    }
    this.#send(
      { type: MessageType.BIND_ACK, xid: message.xid, host4: binding.host4 },
      address,
      port,
    );
  }

  /**
   * Installs a BIND's binding in the table and the managed set; false (counted, logged, NAK
   * SERVER_ERROR sent) when the table refuses it: full, or a port-set layout that clashes with
   * the address's other bindings.
   */
  #bind(xid: number, binding: WireBinding, address: string, port: number): boolean {
    const { portSet } = binding;
    try {
      this.#o.table.set(binding.host4, portSet, parseIPv6(binding.host6)!);
    } catch (error) {
      this.#o.metrics.inc("dstm_tep_control_total", { kind: "bind", result: "refused-table" });
      this.#o.log.error("bind-failed", {
        ipv4: formatIPv4(binding.host4),
        detail: (error as Error).message,
      });
      this.#refuse(
        xid,
        binding.host4,
        Status.SERVER_ERROR,
        (error as Error).message,
        address,
        port,
      );
      return false;
    }
    this.#put(entry(binding));
    this.#o.log.info("bind", {
      ipv4: formatIPv4(binding.host4),
      host6: binding.host6,
      psid: portSet.psidLength ? portSet.psid : undefined,
    });
    return true;
  }

  /**
   * A SNAPSHOT part from `server`. When the last part of a snapshot has come, the managed
   * bindings become exactly its bindings, then every BIND / UNBIND applied since its first part
   * came is applied again on top (the server cut the snapshot when it started and sent later
   * changes as BIND / UNBIND): the table ends as the server's, however long the parts took.
   */
  #onSnapshot(message: DstmMessage, from: string): void {
    const server = canonicalIPv6(from) ?? from;
    const snapshot = this.#snapshots.add(server, message);
    if (!snapshot) return;
    this.#managed.clear();
    this.#digest = 0;
    let refused = 0;
    for (const list of snapshot.bindings) {
      for (const b of list) {
        if (this.#staticAddresses.has(b.host4)) refused++;
        else this.#put(entry(b));
      }
    }
    for (const change of snapshot.changes) {
      if (change.bind) this.#put(entry(change.binding));
      else if (this.#holds(change.binding))
        this.#drop(change.binding.host4, change.binding.portSet.psid);
    }
    if (refused > 0) {
      this.#o.metrics.inc(
        "dstm_tep_control_total",
        { kind: "snapshot", result: "refused-static" },
        refused,
      );
      this.#o.log.warn("snapshot-conflict", { refused, reason: "statically-bound addresses" });
    }
    this.#apply();
    this.#o.log.info("snapshot", {
      bindings: this.#managed.size,
      parts: snapshot.parts,
      server,
      "applied-after": snapshot.changes.length || undefined,
    });
  }

  /** Makes the data plane's table exactly static + managed. */
  #apply(): void {
    const all = [...this.#static, ...this.#managed.values()].map((e) => ({
      ipv4: e.binding.host4,
      portSet: e.binding.portSet,
      host6: e.host6,
    }));
    try {
      this.#o.table.replaceAll(all);
    } catch (error) {
      // The table applies nothing of a snapshot it cannot hold; SYNC keeps reporting the drift.
      this.#o.metrics.inc("dstm_tep_control_total", { kind: "snapshot", result: "refused-table" });
      this.#o.log.error("snapshot-failed", {
        bindings: all.length,
        detail: (error as Error).message,
      });
    }
  }

  #refuse(
    xid: number,
    host4: number,
    status: Status,
    text: string,
    address: string,
    port: number,
  ): void {
    this.#send(
      { type: MessageType.NAK, xid, status, statusText: text.slice(0, 200), host4 },
      address,
      port,
    );
  }

  /** True when the server-managed binding of `b`'s address and PSID is exactly `b` (host IPv6, port set). */
  #holds(b: WireBinding): boolean {
    const held = this.#managed.get(bindingKey(b.host4, b.portSet.psid))?.binding;
    return (
      held !== undefined &&
      (canonicalIPv6(held.host6) ?? held.host6) === (canonicalIPv6(b.host6) ?? b.host6) &&
      held.portSet.offset === b.portSet.offset &&
      held.portSet.psidLength === b.portSet.psidLength &&
      held.portSet.psid === b.portSet.psid
    );
  }

  /** Counts a refused datagram and logs it at warn (rate-limited). */
  #refused(kind: string, result: string, address: string, port: number): void {
    this.#o.metrics.inc("dstm_tep_control_total", { kind, result });
    this.#warn.warn("reject", { reason: result, type: kind, from: address, port });
  }

  #put(e: Entry): void {
    this.#drop(e.binding.host4, e.binding.portSet.psid);
    this.#managed.set(bindingKey(e.binding.host4, e.binding.portSet.psid), e);
    this.#digest = (this.#digest + e.hash) >>> 0;
  }

  #drop(ipv4: number, psid: number): void {
    const key = bindingKey(ipv4, psid);
    const old = this.#managed.get(key);
    if (!old) return;
    this.#managed.delete(key);
    this.#digest = (this.#digest - old.hash) >>> 0;
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

function entry(binding: WireBinding): Entry {
  const host6 = parseIPv6(binding.host6)!;
  const { offset, psidLength, psid } = binding.portSet;
  return { binding, host6, hash: bindingHash(binding.host4, host6, offset, psidLength, psid) };
}
