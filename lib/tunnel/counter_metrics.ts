/**
 * The packet counters of ./counters.ts as Prometheus series (docs/metrics.md): each counter
 * name becomes one metric and its labels, following the Prometheus conventions (counters end
 * in `_total`, packets and bytes are separate metrics, the reason is a label):
 *
 * | counter                         | metric                                                  |
 * | ------------------------------- | ------------------------------------------------------- |
 * | `decap-forward`                 | `dstm_tep_packets_total{direction="decap",result="forward"}` |
 * | `decap-forward-bytes`           | `dstm_tep_bytes_total{direction="decap"}`               |
 * | `decap-drop-no-binding`         | `dstm_tep_packets_total{direction="decap",result="drop",reason="no-binding"}` |
 * | `decap-frag-drop-timeout`       | `…{direction="decap",result="drop",reason="frag-timeout"}` |
 * | `decap-hairpin` (and the rest)  | `dstm_tep_events_total{event="decap-hairpin"}`          |
 * | `client-kernel-encap-bytes`     | `dstm_client_kernel_encap_bytes_total`                  |
 *
 * A byte count is never an event: a `*-bytes` counter that is not a forward one gets a
 * `_bytes_total` metric of its own (its help in {@link _BYTES_HELP}). `client-kernel-encap-bytes`
 * is not put under `dstm_client_bytes_total{direction="encap"}`: that series counts what the
 * Worker sends itself, and kept apart the two show a host firewall dropping what the kernel
 * was handed (docs/kernel-dti.md).
 *
 * and the same for the client (`client-encap-forward` → `dstm_client_packets_total{direction=
 * "encap",result="forward"}`, …). Only the role's own counters are mapped (a TEP never counts
 * `client-*`, a client never the TEP's `decap-*` / `encap-*`): no series that cannot move.
 *
 * @module
 */
import { type CounterName, counterNamesOf } from "./counters.ts";

/** One counter as a Prometheus series: metric name and labels. */
export interface CounterSeries {
  readonly counter: CounterName;
  readonly metric: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** Help texts of the byte counters that are not forward ones (each its own metric). */
const _BYTES_HELP: Readonly<Record<string, string>> = {
  "client-kernel-encap-bytes":
    "IPv4 bytes (total lengths) the client checked and handed to the kernel to encapsulate (--kernel-encap)",
};

/** The metric families the series of `role` use, with their help text. */
export function counterFamilies(role: "tep" | "client"): readonly { name: string; help: string }[] {
  const who = role === "tep" ? "TEP" : "client";
  const bytes = counterSeries(role)
    .filter((s) => s.metric !== `dstm_${role}_bytes_total` && s.metric.endsWith("_bytes_total"))
    .map((s) => ({ name: s.metric, help: _BYTES_HELP[s.counter] ?? `IPv4 bytes (${s.counter})` }));
  return [
    {
      name: `dstm_${role}_packets_total`,
      help: `Packets the ${who} forwarded or dropped, by direction (encap: IPv4 into the tunnel, decap: out of it), result and drop reason`,
    },
    {
      name: `dstm_${role}_bytes_total`,
      help: `IPv4 bytes (total lengths) the ${who} forwarded, by direction`,
    },
    {
      name: `dstm_${role}_events_total`,
      help: `Other per-packet events at the ${who} (hairpin, ICMP errors sent, fragments tracked, path MTU, MSS clamped, ...), by event`,
    },
    ...bytes,
  ];
}

/** Every counter of `role` with its metric and labels, in declaration order. */
export function counterSeries(role: "tep" | "client"): readonly CounterSeries[] {
  return role === "tep" ? _TEP : _CLIENT;
}

// client-* counters whose direction the name does not say.
const _CLIENT_DIRECTION: Readonly<Record<string, string>> = {
  "client-drop-queue-full": "encap",
  "client-drop-no-lease": "any",
  "client-napt-drop-no-port": "encap",
  "client-napt-drop-no-mapping": "decap",
  "client-napt-drop-no-ports": "any",
};

function seriesOf(role: "tep" | "client", counter: CounterName): CounterSeries {
  const prefix = `dstm_${role}_`;
  const name = role === "client" ? counter.replace(/^client-/, "") : counter;
  const forward = /^(encap|decap)-forward(-bytes)?$/.exec(name);
  if (forward) {
    const direction = forward[1]!;
    return forward[2]
      ? { counter, metric: `${prefix}bytes_total`, labels: { direction } }
      : { counter, metric: `${prefix}packets_total`, labels: { direction, result: "forward" } };
  }
  // A byte count of its own: `kernel-encap-bytes` → dstm_client_kernel_encap_bytes_total.
  if (name.endsWith("-bytes"))
    return { counter, metric: `${prefix}${name.replaceAll("-", "_")}_total`, labels: {} };
  // encap-drop-too-big, decap-frag-drop-timeout, out-frag-drop-no-room, napt-drop-no-port …
  const drop = /^(encap|decap|out|in|napt)?-?(frag-)?drop-(.+)$/.exec(name);
  if (drop) {
    const where = drop[1];
    const direction =
      _CLIENT_DIRECTION[counter] ??
      (where === "out" ? "encap" : where === "in" ? "decap" : (where ?? "any"));
    const reason = `${where === "napt" ? "napt-" : ""}${drop[2] ? "frag-" : ""}${drop[3]}`;
    return {
      counter,
      metric: `${prefix}packets_total`,
      labels: { direction, result: "drop", reason },
    };
  }
  return { counter, metric: `${prefix}events_total`, labels: { event: name } };
}

const _TEP = counterNamesOf("tep").map((c) => seriesOf("tep", c));
const _CLIENT = counterNamesOf("client").map((c) => seriesOf("client", c));
