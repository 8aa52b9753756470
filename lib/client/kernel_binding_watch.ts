/**
 * The binding-lost notice (ICMPv6 1/5 from the TEP, RFC 4443 §3.1; lib/tunnel/source_policy.ts
 * sends it) for the kernel DTIs (`--dti kernel|seg6|ip6tnl`). With the userspace DTI (and with
 * `--kernel-encap`) the Workers' raw socket for next header 4 gets the error on its error queue
 * (lib/dataplane/client_lease.ts); a kernel DTI has no such socket, so none of ours would see
 * it. A raw ICMPv6 socket passing only Destination Unreachable gets a copy of
 * each (lib/sys/icmp6_socket.ts), read every {@link KERNEL_BINDING_WATCH_MS} ms.
 *
 * Believed only when all of this holds, as the Workers' check: code 5; the sender is the TEP
 * the lease names; the quoted packet is an IPv6 packet from the host's address to that TEP
 * with next header 4 (IPv4) whose IPv4 source is the leased address. Then it counts
 * `tunnel-error-source-policy` and calls `onLost` (./node.ts renews, at most once per 10 s:
 * ./binding_lost.ts). The same error about our lease from any other sender counts
 * `tunnel-error-source-policy-not-tep` and does nothing; anything else is not ours and is left
 * alone (the kernel handles it as always: the copy is ours only).
 *
 * @module
 */
import { equalIPv6 } from "../net/addr.ts";
import { openIcmp6Listener } from "../sys/icmp6_socket.ts";
import type { Raw6Socket } from "../sys/raw6.ts";
import { Counter, type Counters } from "../tunnel/counters.ts";

/** How often the socket is read (ms): the longest a notice waits. */
export const KERNEL_BINDING_WATCH_MS = 250;
/** ICMPv6 Destination Unreachable and its code 5 (RFC 4443 §3.1). */
const DEST_UNREACHABLE = 1;
const SOURCE_POLICY = 5;
/** Messages read per tick at most (a flood of copies costs a bounded amount per tick). */
const PER_TICK = 64;

/** What the watch needs to know of the lease in force (null while there is none). */
export interface WatchedLease {
  /** The host's IPv6 address, the outer source of its tunnel packets (16 bytes). */
  readonly host6: Uint8Array;
  /** The TEP's IPv6 address (16 bytes). */
  readonly tep6: Uint8Array;
  /** The leased IPv4 address (unsigned 32-bit). */
  readonly ipv4: number;
}

/** What one ICMPv6 message (from its type field on) is to the watch. */
export type WatchVerdict = "lost" | "not-tep" | "not-ours";

/**
 * Classifies `msg[0, length)`, an ICMPv6 message from `from6` (see the module comment).
 * Pure; allocation-free.
 */
export function classifySourcePolicy(
  msg: Uint8Array,
  length: number,
  from6: Uint8Array,
  lease: WatchedLease,
): WatchVerdict {
  // type, code, checksum, 4 unused bytes, then the invoking packet: IPv6 (40) + IPv4 (20).
  if (length < 8 + 40 + 20 || msg[0] !== DEST_UNREACHABLE || msg[1] !== SOURCE_POLICY)
    return "not-ours";
  const q = 8;
  if (msg[q]! >>> 4 !== 6 || msg[q + 6] !== 4) return "not-ours";
  if (!equalIPv6(msg, q + 8, lease.host6, 0) || !equalIPv6(msg, q + 24, lease.tep6, 0))
    return "not-ours";
  const v4 = q + 40;
  if (msg[v4]! >>> 4 !== 4) return "not-ours";
  const src =
    ((msg[v4 + 12]! << 24) | (msg[v4 + 13]! << 16) | (msg[v4 + 14]! << 8) | msg[v4 + 15]!) >>> 0;
  if (src !== lease.ipv4 >>> 0) return "not-ours";
  return equalIPv6(from6, 0, lease.tep6, 0) ? "lost" : "not-tep";
}

export interface KernelBindingWatchOptions {
  /** The lease in force, or null. */
  readonly lease: () => WatchedLease | null;
  /** The TEP says the lease's binding is gone. */
  readonly onLost: () => void;
  readonly counters: Counters;
  /** The socket (tests); default {@link openIcmp6Listener}(1). */
  readonly socket?: Raw6Socket;
  /** Read interval (ms), default {@link KERNEL_BINDING_WATCH_MS}. */
  readonly intervalMs?: number;
}

/** See the module comment. `stop()` closes the socket. */
export class KernelBindingWatch {
  readonly #o: KernelBindingWatchOptions;
  readonly #sock: Raw6Socket;
  readonly #buf = new Uint8Array(1500);
  readonly #from = new Uint8Array(16);
  readonly #timer: ReturnType<typeof setInterval>;
  readonly #counters: Float64Array;

  /** Throws a SysError when the socket cannot be opened (no CAP_NET_RAW). */
  constructor(o: KernelBindingWatchOptions) {
    this.#o = o;
    // Slice 0, as the other rare events the control thread counts (./dti_routes.ts).
    this.#counters = o.counters.slice(0);
    this.#sock = o.socket ?? openIcmp6Listener(DEST_UNREACHABLE);
    this.#timer = setInterval(() => this.tick(), o.intervalMs ?? KERNEL_BINDING_WATCH_MS);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  /** Reads what is queued (at most {@link PER_TICK} messages). */
  tick(): void {
    const counters = this.#counters;
    for (let i = 0; i < PER_TICK; i++) {
      const n = this.#sock.recvFrom(this.#buf, 0, this.#from);
      if (n <= 0) return;
      const lease = this.#o.lease();
      if (!lease) continue;
      const verdict = classifySourcePolicy(this.#buf, n, this.#from, lease);
      if (verdict === "lost") {
        counters[Counter["tunnel-error-source-policy"]]! += 1;
        this.#o.onLost();
      } else if (verdict === "not-tep")
        counters[Counter["tunnel-error-source-policy-not-tep"]]! += 1;
    }
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#sock.close();
  }
}
