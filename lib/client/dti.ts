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
  up(address: number, tep6: Uint8Array | undefined, onNeedLease: () => void): Promise<number>;
  /** Takes the DTI down if it is up (its address and routes go with it). Never rejects. */
  down(): Promise<void>;
}
