/**
 * The packet device interfaces of the tunnel loops. They live in lib/net/device.ts, below both
 * lib/tunnel and lib/sys (which implements them), so that neither layer imports the other;
 * re-exported here for the tunnel's own modules.
 *
 * @module
 */
export type { BatchDevice, PacketDevice, TunnelBatchSocket } from "../net/device.ts";
