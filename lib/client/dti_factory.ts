/**
 * Builds the node's real DTI for `NodeConfig.dtiMode` (./dti.ts {@link DtiMode}): the
 * userspace TUN DTI (./kernel_dti.ts), or the kernel tunnel (./tunnel_dti.ts) with the TUN
 * DTI behind it for shared leases.
 *
 * @module
 */
import type { DtiHooks } from "./dti.ts";
import { KernelDti, type KernelDtiOptions } from "./kernel_dti.ts";
import { kernelEncapRefusal } from "./kernel_encap.ts";
import type { NodeConfig } from "./node_config.ts";
import { kernelDtiRefusal, TunnelDti } from "./tunnel_dti.ts";

export interface DtiFactoryOptions extends KernelDtiOptions {
  readonly config: KernelDtiOptions["config"] & Pick<NodeConfig, "dtiMode" | "log">;
}

/** The DTI the settings ask for; throws the refusal when the kernel tunnel cannot do them. */
export function createDti(options: DtiFactoryOptions): DtiHooks {
  const tun = new KernelDti({ ...options, log: options.config.log });
  const mode = options.config.dtiMode ?? "tun";
  const encapRefusal = kernelEncapRefusal(options.config);
  if (encapRefusal) throw new Error(encapRefusal);
  if (mode === "tun") return tun;
  const refusal = kernelDtiRefusal(mode, options.config);
  if (refusal) throw new Error(refusal);
  return new TunnelDti({
    mode,
    ifname: options.ifname,
    config: options.config,
    host6: options.host6,
    leaseState: options.leaseState,
    fallback: tun,
    log: options.config.log,
    counters: options.counters,
  });
}
