/**
 * Named packet counters: one per reason a step forwards or drops a packet (the Snabb lwAFTR
 * habit), so that "why did my packet vanish" is answered by a counter, not a debugger.
 *
 * The counters live in a SharedArrayBuffer so the control thread can read them while the
 * Workers count. Each Worker owns one slice (a Float64Array view) and is its only writer, so
 * an increment is a plain `slice[i]++` with no atomics and no allocation; `snapshot` sums the
 * slices. Float64 counts are exact up to 2^53 (285 years at a million packets a second).
 * Slices are padded to 64 bytes so two Workers never write the same cache line.
 *
 * The list of names is declared once, here; the pipeline uses the indexes of `Counter`.
 *
 * @module
 */

/** Every counter, in slice order. `*-bytes` counters add IPv4 total lengths. */
export const COUNTER_NAMES = [
  // TEP, IPv6 → IPv4 (decapsulation)
  "decap-forward",
  "decap-forward-bytes",
  "decap-hairpin", // forwarded, and the destination is another tunnelled host (also in decap-forward)
  "decap-drop-malformed",
  "decap-drop-no-binding",
  "decap-drop-spoofed-source", // outer IPv6 source is not the binding's host
  "decap-drop-bad-port", // shared address, source port in no bound port set (or no port)
  "decap-drop-hairpin-disabled",
  "decap-icmp-source-policy", // ICMPv6 1/5 sent to the outer source of a packet dropped for its source (RFC 4443 §3.1)
  // TEP, IPv4 → IPv6 (encapsulation)
  "encap-forward",
  "encap-forward-bytes",
  "encap-fragmented", // forwarded above the tunnel MTU, DF clear: the outer IPv6 is fragmented
  "encap-fragmented-inner", // the same with --fragment inner: the IPv4 packet was cut instead (RFC 4459 §3.4)
  "encap-drop-malformed",
  "encap-drop-no-binding",
  "encap-drop-too-big", // above the tunnel MTU with DF set (whether or not an ICMP error went back)
  "encap-icmp-too-big", // ICMPv4 3/4 sent back
  "encap-icmp-host-unreachable", // ICMPv4 3/1 sent back (only when enabled)
  "icmp-rate-limited", // an ICMP error the rate limiter suppressed
  // DSTM client (DTI), IPv4 → IPv6
  "client-encap-forward",
  "client-encap-forward-bytes",
  "client-encap-drop-malformed",
  "client-encap-drop-wrong-source", // source is not the leased address
  "client-encap-drop-bad-port", // shared lease, source port outside the leased port set
  // DSTM client (DTI), IPv6 → IPv4
  "client-decap-forward",
  "client-decap-forward-bytes",
  "client-decap-drop-malformed",
  "client-decap-drop-wrong-tep", // outer IPv6 source is not the TEP
  "client-decap-drop-wrong-destination", // inner destination is not the leased address
  "client-decap-drop-local-source", // inner source is the leased or another local address (lib/tunnel/local_sources.ts)
  // DSTM client translations (shared leases, on-demand mode)
  "client-queued", // on-demand: held while the lease is being obtained
  "client-drop-queue-full", // on-demand: the queue was full
  "client-drop-no-lease", // no lease (and not on-demand, or inbound)
  "client-napt-drop-no-port", // shared lease: every port of the set is in use
  "client-napt-drop-no-mapping", // shared lease: inbound to a port no flow uses
  "client-napt-drop-no-ports", // shared lease: a packet without ports (other protocols, ICMP types without identifier)
  "client-napt-drop-closed", // shared lease: a late TCP segment (not a SYN) of a closed connection whose port a new SYN took over
  // Fragments of shared-address flows (lib/tunnel/fragments.ts), per direction: datagrams
  // tracked, fragments held until their first fragment came, held fragments dropped because it
  // never came, fragments dropped (or first fragments left untracked) for want of room.
  "decap-frag-tracked",
  "decap-frag-held",
  "decap-frag-drop-timeout",
  "decap-frag-drop-no-room",
  "encap-frag-tracked",
  "encap-frag-held",
  "encap-frag-drop-timeout",
  "encap-frag-drop-no-room",
  "client-out-frag-tracked",
  "client-out-frag-held",
  "client-out-frag-drop-timeout",
  "client-out-frag-drop-no-room",
  "client-in-frag-tracked",
  "client-in-frag-held",
  "client-in-frag-drop-timeout",
  "client-in-frag-drop-no-room",
  // NAPT (lib/tunnel/napt.ts): answers to the host when no port of the set is free
  "client-napt-no-port-rst", // TCP SYN answered with a RST
  "client-napt-no-port-icmp", // UDP / ICMP echo answered with ICMPv4 3/13
  "client-napt-no-port-rate-limited", // no answer: the rate limiter had no token
  "client-napt-tcp-reuse-closed", // a new SYN took the port of a closed (FIN both ways / RST) mapping
  // Path MTU, ICMPv6 errors about tunnel packets, ECN, MSS (TEP and client; docs/tunnel.md)
  "pmtu-learned", // a Packet Too Big lowered (or set) a host's path MTU (RFC 8201 §4)
  "encap-too-big-path-mtu", // above the learned path MTU − 40 (DF: ICMPv4 3/4; else outer fragments)
  "tunnel-error-too-big", // ICMPv6 Packet Too Big about a packet we tunnelled
  "tunnel-error-unreachable", // ICMPv6 Destination Unreachable about a packet we tunnelled
  "tunnel-error-time-exceeded", // ICMPv6 Time Exceeded about a packet we tunnelled
  "tunnel-error-parameter-problem", // ICMPv6 Parameter Problem about a packet we tunnelled
  "tunnel-error-other", // an error-queue entry that is no ICMPv6 error (local errors)
  "tunnel-error-not-relayed", // no ICMPv4 error may or need be sent about the quoted packet
  "tunnel-error-not-ours", // quotes a packet we did not send to that host (spoofed?): ignored
  "tunnel-error-source-policy", // client: ICMPv6 1/5 from its TEP about its leased source: renew now
  "tunnel-error-source-policy-not-tep", // client: ICMPv6 1/5 about its lease from another address than its TEP: ignored
  "icmp-relay-frag-needed", // ICMPv4 3/4 (path MTU − 40) sent to the inner source (RFC 2473 §8.3)
  "icmp-relay-host-unreachable", // ICMPv4 3/1 sent to the inner source
  "icmp-relay-admin-prohibited", // ICMPv4 3/13 sent to the inner source
  "decap-drop-ecn", // outer CE over an inner Not-ECT packet (RFC 6040 §4.2)
  "decap-ecn-ce", // outer CE copied into an ECN-capable inner packet (RFC 6040 §4.2)
  "client-decap-drop-ecn",
  "client-decap-ecn-ce",
  "encap-mss-clamped", // TEP: a SYN(-ACK) towards a host had its MSS lowered (RFC 4459 §3.2)
  "decap-mss-clamped", // TEP: a SYN from a host had its MSS lowered
  "client-encap-mss-clamped",
  "client-decap-mss-clamped",
  "client-encap-drop-too-big", // client: DF packet above the path MTU − 40 (ICMPv4 3/4 to the application)
  // Checksums a kernel sender left to the hardware (CHECKSUM_PARTIAL), completed before forwarding
  "decap-csum-completed", // TEP, IPv6 → IPv4 (also in decap-forward)
  "client-decap-csum-completed", // DSTM client, IPv6 → IPv4 (also in client-decap-forward)
  "decap-tcp-segmented", // TEP: a kernel sender's TSO packet above the tunnel MTU, cut into segments
  // TEP with --rx-ring (lib/sys/packet_ring.ts): packets read from the ring (a long one's
  // from the socket's queue, in ring order), and those lost there (the ring or the queue full)
  "decap-ring", // packets taken from the ring (also in decap-forward once forwarded)
  "decap-ring-long", // of those, longer than a frame: taken from the socket's queue
  "decap-ring-lost", // dropped by the kernel with the ring full, or long with the queue full
  // DSTM client with --kernel-encap (lib/dataplane/client_kernel_encap.ts): checked IPv4
  // handed back to the kernel through the DTI, for it to encapsulate (seg6) and segment
  "client-kernel-encap", // packets written back (a super-packet counts once)
  "client-kernel-encap-segments", // the packets they become on the wire (a super-packet's segments)
  "client-kernel-encap-bytes", // their IPv4 total lengths
  "client-netlink-foreign", // an rtnetlink notification not sent by the kernel (sender port id ≠ 0), dropped unread (lib/sys/netlink_events.ts)
  "client-dti-route-restored", // a route of the DTI (and --kernel-encap's table 4608 route) put back after the DTI was set down and up (lib/client/dti_routes.ts)
] as const;

export type CounterName = (typeof COUNTER_NAMES)[number];

/** Index of each counter within a slice: `slice[Counter["decap-forward"]]++`. */
export const Counter: { readonly [K in CounterName]: number } = Object.freeze(
  Object.fromEntries(COUNTER_NAMES.map((name, i) => [name, i])) as Record<CounterName, number>,
);

/** Counters shared by name although a client counts them too (the rest of `encap-` is the TEP's). */
const _CLIENT_ALSO: ReadonlySet<string> = new Set(["encap-too-big-path-mtu"]);

/**
 * The counters a `tep` or a `client` process counts, in declaration order: the layout is
 * shared, but a TEP never counts `client-*` and a client never counts the TEP's `decap-*` /
 * `encap-*`; both count the rest (path MTU, tunnel errors, ICMP relay). For display and JSON.
 */
export function counterNamesOf(role: "tep" | "client"): readonly CounterName[] {
  return role === "tep" ? _TEP_NAMES : _CLIENT_NAMES;
}

/** `snapshot` restricted to {@link counterNamesOf}(`role`), in declaration order. */
export function countersOf(
  role: "tep" | "client",
  snapshot: Record<CounterName, number>,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of counterNamesOf(role)) out[name] = snapshot[name];
  return out;
}

const _TEP_NAMES = COUNTER_NAMES.filter((n) => !n.startsWith("client-"));
const _CLIENT_NAMES = COUNTER_NAMES.filter(
  (n) => _CLIENT_ALSO.has(n) || !(n.startsWith("decap-") || n.startsWith("encap-")),
);

/** Float64 elements per slice: the names rounded up to whole 64-byte lines. */
export const COUNTER_STRIDE = Math.ceil(COUNTER_NAMES.length / 8) * 8;

/**
 * The counters of one process: `slices` independent slices in one SharedArrayBuffer.
 *
 * @example
 * const counters = Counters.create({ slices: 2 });     // control thread
 * const mine = Counters.attach(buffer).slice(1);        // in Worker 1
 * mine[Counter["encap-forward"]]++;
 * counters.snapshot()["encap-forward"];                  // 1
 */
export class Counters {
  readonly buffer: SharedArrayBuffer;
  /** Number of slices (writers). */
  readonly slices: number;
  private readonly values: Float64Array;

  private constructor(buffer: SharedArrayBuffer) {
    const bytesPerSlice = COUNTER_STRIDE * 8;
    if (buffer.byteLength === 0 || buffer.byteLength % bytesPerSlice !== 0) {
      throw new TypeError("not a counters buffer of this version (made by Counters.create)");
    }
    this.buffer = buffer;
    this.values = new Float64Array(buffer);
    this.slices = buffer.byteLength / bytesPerSlice;
  }

  /** Zeroed counters with `slices` slices (one per writing thread; at least 1). */
  static create(options: { slices: number }): Counters {
    const { slices } = options;
    if (!Number.isInteger(slices) || slices < 1 || slices > 1024) {
      throw new RangeError(`slices ${slices} is not 1–1024`);
    }
    return new Counters(new SharedArrayBuffer(slices * COUNTER_STRIDE * 8));
  }

  /** A view of counters created on another thread. */
  static attach(buffer: SharedArrayBuffer): Counters {
    return new Counters(buffer);
  }

  /** Slice `index`, for its single writer to increment by `Counter` index. */
  slice(index: number): Float64Array {
    if (!Number.isInteger(index) || index < 0 || index >= this.slices) {
      throw new RangeError(`slice ${index} is not 0–${this.slices - 1}`);
    }
    return new Float64Array(this.buffer, index * COUNTER_STRIDE * 8, COUNTER_NAMES.length);
  }

  /** One counter summed over all slices. */
  get(name: CounterName): number {
    const i = Counter[name];
    let sum = 0;
    for (let s = 0; s < this.slices; s++) sum += this.values[s * COUNTER_STRIDE + i]!;
    return sum;
  }

  /** Every counter summed over all slices, in declaration order. */
  snapshot(): Record<CounterName, number> {
    const out = {} as Record<CounterName, number>;
    for (const name of COUNTER_NAMES) out[name] = this.get(name);
    return out;
  }

  /** Sets every counter of every slice to zero (tests; the Workers should be idle). */
  reset(): void {
    this.values.fill(0);
  }
}
