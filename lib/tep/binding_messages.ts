/**
 * The TEP's BIND and UNBIND handling (./control.ts takes the messages its gate let through):
 * a BIND installs the binding in the table and the managed set, an UNBIND removes it only
 * when its HOST_IPV6 and port set are the binding's (a late UNBIND for the address's previous
 * holder is counted `unbind-stale` and leaves the new holder's binding alone); both are
 * acknowledged with BIND_ACK. An address bound statically (`--binding`, `--binding-file`) is
 * never changed by the server: counted `refused-static`, a BIND answered NAK ADDRESS_IN_USE.
 * A BIND the table cannot hold is answered NAK SERVER_ERROR (`refused-table`). Each change is
 * noted in the snapshot being received, so it is applied again on top of it
 * (./snapshot_assembly.ts). Counted in `dstm_tep_control_total{kind,result}`
 * (docs/protocol.md, "TEP synchronisation").
 *
 * With a GENERATION (docs/protocol.md, "Generations"; ./binding_order.ts), BIND and UNBIND of
 * one binding are applied in the order of the lease's versions in the servers' shared store,
 * whichever server sent them and in whatever order they arrive: an UNBIND older than the
 * binding held is counted `unbind-superseded`, a BIND older than the binding held
 * `bind-superseded`, a BIND not newer than the UNBIND that last freed the slot `bind-unbound`;
 * each is acknowledged (the sender stops retrying) and changes nothing.
 *
 * @module
 */
import type { Logger } from "../control/log.ts";
import type { Metrics } from "../control/metrics.ts";
import { formatIPv4 } from "../net/addr.ts";
import { type DstmMessage, MessageType, Status, type WireBinding } from "../wire/dstm_types.ts";
import type { SnapshotAssemblies } from "./snapshot_assembly.ts";
import type { TepBindings } from "./tep_bindings.ts";

export interface BindingMessagesOptions {
  /** The static and server-managed bindings (./tep_bindings.ts). */
  readonly bindings: TepBindings;
  /** Snapshots being received: told of every change (./snapshot_assembly.ts). */
  readonly snapshots: SnapshotAssemblies;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** Sends an answer (BIND_ACK, NAK) to `address`:`port`, signed when the channel has a key. */
  readonly send: (message: DstmMessage, address: string, port: number) => void;
}

/** Applies BIND / UNBIND from a server and answers it (see the module doc). */
export class BindingMessages {
  readonly #o: BindingMessagesOptions;

  constructor(options: BindingMessagesOptions) {
    this.#o = options;
  }

  /** BIND or UNBIND: applied unless the address is static, then acknowledged (BIND_ACK). */
  handle(message: DstmMessage, kind: string, address: string, port: number): void {
    const m = this.#o.metrics;
    const portSet = message.portSet ?? { offset: 0, psidLength: 0, psid: 0 };
    const binding: WireBinding = { host4: message.host4!, host6: message.host6!, portSet };
    const gen = message.generation;
    if (this.#o.bindings.isStatic(binding.host4)) {
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
      const order = this.#o.bindings.bindOrder(binding, gen);
      if (order !== "apply") {
        // Older than what the TEP knows of this slot (a late BIND of a lease since freed or
        // granted again, possibly by another server): acknowledged, ignored.
        this.#superseded(`bind-${order}`, kind, binding, gen);
      } else {
        if (!this.#bind(message.xid, binding, gen, address, port)) return;
        this.#o.snapshots.changed(true, binding, gen);
      }
    } else if (this.#o.bindings.unbindOrder(binding, gen) === "superseded") {
      // An UNBIND of a lease older than the binding held (another server granted the slot
      // again, and its BIND came first): acknowledged, ignored.
      this.#superseded("unbind-superseded", kind, binding, gen);
    } else if (!this.#o.bindings.holds(binding)) {
      // A late or retransmitted UNBIND for the address's previous holder: the binding now
      // belongs to another host (or is gone). Acknowledged, so the server stops retrying.
      m.inc("dstm_tep_control_total", { kind, result: "unbind-stale" });
      this.#o.log.info("unbind-stale", {
        ipv4: formatIPv4(binding.host4),
        host6: binding.host6,
        generation: gen,
      });
      // Nothing held: a late BIND of the lease this UNBIND frees is still recognised.
      if (!this.#o.bindings.held(binding)) this.#o.bindings.markUnbound(binding, gen);
    } else {
      this.#o.bindings.unbind(binding, gen);
      this.#o.snapshots.changed(false, binding, gen);
      this.#o.log.info("unbind", {
        ipv4: formatIPv4(binding.host4),
        host6: binding.host6,
        generation: gen,
      });
    }
    this.#o.send(
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
  #bind(
    xid: number,
    binding: WireBinding,
    gen: number | undefined,
    address: string,
    port: number,
  ): boolean {
    try {
      this.#o.bindings.bind(binding, gen);
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
    const { portSet } = binding;
    this.#o.log.info("bind", {
      ipv4: formatIPv4(binding.host4),
      host6: binding.host6,
      psid: portSet.psidLength ? portSet.psid : undefined,
      generation: gen,
    });
    return true;
  }

  /**
   * A BIND or UNBIND older than what the TEP holds for its slot: counted as `result`, logged
   * (info: a race between servers the generations resolved, not a fault), changes nothing.
   */
  #superseded(result: string, kind: string, binding: WireBinding, gen: number | undefined): void {
    this.#o.metrics.inc("dstm_tep_control_total", { kind, result });
    this.#o.log.info(result, {
      ipv4: formatIPv4(binding.host4),
      host6: binding.host6,
      generation: gen,
      held: this.#o.bindings.generation(binding),
    });
  }

  /** NAK with `status` and `text` (cut to 200 characters) to the server that sent the message. */
  #refuse(
    xid: number,
    host4: number,
    status: Status,
    text: string,
    address: string,
    port: number,
  ): void {
    this.#o.send(
      { type: MessageType.NAK, xid, status, statusText: text.slice(0, 200), host4 },
      address,
      port,
    );
  }
}
