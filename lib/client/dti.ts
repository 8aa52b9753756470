/**
 * The DTI as the client's lease state machine (lib/client/node.ts) sees it: brought up with
 * an address, taken down. By default the node builds the real one (a TUN device with the
 * address, MTU and IPv4 routes, a raw IPv6 socket and the forwarding Workers; root needed);
 * `NodeConfig.dti` replaces it, so the state machine (acquire, renew at T/2, lose, release on
 * stop, on-demand) runs in tests without root.
 *
 * @module
 */

export interface DtiHooks {
  /**
   * Brings the DTI up with `address` (an IPv4 address as an unsigned 32-bit number; the
   * placeholder 192.0.0.2 in on-demand mode), tunnelling to `tep6` (16 bytes; undefined while
   * on-demand has no lease). `onNeedLease` is called when on-demand traffic finds no lease.
   * Resolves with the DTI's MTU in bytes; rejects when the DTI cannot be made.
   */
  up(
    address: number,
    tep6: Uint8Array | undefined,
    onNeedLease: (why?: "binding-lost") => void,
  ): Promise<number>;
  /** Takes the DTI down if it is up (its address and routes go with it). Never rejects. */
  down(): Promise<void>;
  /**
   * Which DTI carries the traffic now, undefined while none is up (`dstm client status`,
   * ./node_status.ts). Optional: stand-ins in tests may leave it out (then status says null).
   */
  inUse?(): DtiInUse | undefined;
}

/**
 * The DTI that is up: `tun` (the userspace one, whose counters are the Workers'), `ip6tnl` or
 * `seg6` (the kernel's: its counters are in `ip -s link`). `fallback` says why it is not the
 * one asked for (a shared lease on the TUN, seg6 for `kernel` without ip6tnl).
 */
export interface DtiInUse {
  readonly mode: "tun" | "ip6tnl" | "seg6";
  readonly fallback?: string;
  /** The TUN DTI hands checked packets to the kernel to encapsulate (`--kernel-encap`). */
  readonly kernelEncap?: boolean;
}

/**
 * The DTI could not be brought up (no root, name taken, a kernel without ip6tnl, a source
 * address the kernel would not use…): what `DtiHooks.up` rejects with, so that the client
 * says `dti-failed` rather than blaming the server. The message says what to do.
 */
export class DtiError extends Error {
  override name = "DtiError";
  /**
   * True when no retry can succeed (`--dti ip6tnl` on a kernel without ip6tnl, a fixed --dscp
   * once `kernel` settled on seg6): the client releases the lease and exits 2 with the
   * message. False (transient: the address not there yet, EBUSY…): retried with back-off.
   */
  readonly permanent: boolean;

  constructor(message: string, options?: ErrorOptions & { permanent?: boolean }) {
    super(message, options);
    this.permanent = options?.permanent === true;
  }
}

/**
 * Which DTI the client brings up (`dstm client --dti`): `tun`, the userspace one (a TUN device
 * and the forwarding Workers, ./kernel_dti.ts; the default); `ip6tnl` or `seg6`, the kernel's
 * own IPv4-in-IPv6 (./tunnel_dti.ts); `kernel`, ip6tnl where the kernel has it, else seg6.
 */
export type DtiMode = "tun" | "kernel" | "ip6tnl" | "seg6";

/** The DTI modes, for the CLI and the config file. */
export const DTI_MODES: readonly DtiMode[] = ["tun", "kernel", "ip6tnl", "seg6"];
