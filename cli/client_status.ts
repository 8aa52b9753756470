/**
 * `dstm client status` (split from ./client.ts): asks the running client on its control
 * socket and prints what it says.
 *
 * @module
 */
import { type Command, Option } from "@commander-js/extra-typings";
import type { AcquireStatus } from "../lib/client/acquire_state.ts";
import type { NodeDtiStatus } from "../lib/client/node_config.ts";
import { dtiText } from "../lib/client/node_status.ts";
import { runtimeSocketDoc } from "../lib/config/common_schema.ts";
import { runtimeDir } from "../lib/config/paths.ts";
import { getUnix, unixPermissionProblem } from "../lib/sys/http.ts";
import { RuntimeError } from "./errors.ts";

/** Control socket of the client running the DTI `ifname`. */
export function clientSocket(ifname: string): string {
  return `${runtimeDir()}/client-${ifname}.sock`;
}

/**
 * `dstm client status`: asks the running client on its control socket (`/v1/status`) and
 * prints its lease, TEP, expiry and counters (or the JSON). Throws a RuntimeError (exit 1)
 * when no client answers or it reports an error.
 */
export function addStatusCommand(client: Command): void {
  client
    .command("status")
    .description("show a running client's lease, TEP, expiry and traffic counters")
    .addOption(new Option("--ifname <name>", "DTI of the client to ask").default("dti0", "dti0"))
    .option(
      "--control <path>",
      `status socket (default: ${runtimeSocketDoc("client-IFNAME.sock")})`,
    )
    .option("--json", "print JSON")
    .addHelpText(
      "after",
      "\nExamples:\n  dstm client status\n  dstm client status --ifname dti1 --json",
    )
    .action(async (flags) => {
      const socket = flags.control ?? clientSocket(flags.ifname);
      let status: Record<string, unknown>;
      try {
        status = (await (await getUnix(socket, "/v1/status")).json()) as Record<string, unknown>;
      } catch (error) {
        throw new RuntimeError(
          unixPermissionProblem(socket, error) ??
            // --control PATH named the socket: --ifname played no part in it.
            `no dstm client answers on ${socket}; is it running${flags.control === undefined ? ` (for --ifname ${flags.ifname})` : ""}? (use --ifname NAME or --control PATH)`,
        );
      }
      if (typeof status.error === "string")
        throw new RuntimeError(`the dstm client on ${socket} answers: ${status.error}`);
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
        return;
      }
      const counters = status.counters as Record<string, number>;
      const dti = dtiText(status.dti as Partial<NodeDtiStatus> | undefined);
      process.stdout.write(
        [
          `state     ${status.state} (${status.mode})`,
          ...acquireLines(status.acquire as AcquireStatus | null | undefined),
          `dti       ${status.ifname} (mtu ${status.mtu ?? "-"}${status.pathMtu ? `, path MTU ${status.pathMtu}` : ""}${dti ? `, ${dti}` : ""})${status.dtiLinkUp === false ? " DOWN: set down by hand? its routes come back when it is up again" : ""}`,
          `ipv4      ${status.ipv4 ?? "-"}${status.ports && status.ports !== "all" ? ` ports ${status.ports}` : ""}`,
          `host ipv6 ${status.host6}`,
          `tep       ${status.tep6 ?? "-"}${status.tep4 ? ` (${status.tep4})` : ""}`,
          `expires   ${status.expiresAt ?? "-"}`,
          `sent      ${counters["client-encap-forward"]} packets, ${counters["client-encap-forward-bytes"]} bytes`,
          ...((counters["client-kernel-encap"] ?? 0) > 0
            ? [
                `kernel    ${counters["client-kernel-encap"]} packets (${counters["client-kernel-encap-segments"]} on the wire), ${counters["client-kernel-encap-bytes"]} bytes checked and handed to the kernel to encapsulate (--kernel-encap)`,
              ]
            : []),
          `received  ${counters["client-decap-forward"]} packets, ${counters["client-decap-forward-bytes"]} bytes`,
          ...naptLines(status.napt as Record<string, number> | null, counters),
          `path MTU  ${counters["pmtu-learned"] ?? 0} learned, ${counters["client-encap-drop-too-big"] ?? 0} too big (ICMPv4 3/4 to the application)`,
          `relayed   ${counters["icmp-relay-frag-needed"] ?? 0} frag-needed, ${counters["icmp-relay-host-unreachable"] ?? 0} host-unreachable, ${counters["icmp-relay-admin-prohibited"] ?? 0} admin-prohibited (ICMPv6 errors from the path)`,
          `ecn       ${counters["client-decap-ecn-ce"] ?? 0} CE marked, ${counters["client-decap-drop-ecn"] ?? 0} dropped (outer CE, inner Not-ECT)`,
          `mss       ${(counters["client-encap-mss-clamped"] ?? 0) + (counters["client-decap-mss-clamped"] ?? 0)} SYNs clamped`,
          "",
        ].join("\n"),
      );
    });
}

/** While acquiring fails: why, since when, and the next try (lib/client/acquire_state.ts). */
function acquireLines(acquire: AcquireStatus | null | undefined): string[] {
  if (!acquire) return [];
  return [
    `acquiring ${acquire.failing} since ${acquire.since} (${acquire.tries} tries, next at ${acquire.nextTry}): ${acquire.detail}`,
  ];
}

/** Status lines for a shared lease: mappings by state, fragments, no-port answers. */
function naptLines(napt: Record<string, number> | null, c: Record<string, number>): string[] {
  if (!napt) return [];
  const frag = (d: string) =>
    `${c[`client-${d}-frag-tracked`]} tracked, ${c[`client-${d}-frag-held`]} held, dropped ${c[`client-${d}-frag-drop-timeout`]} timeout / ${c[`client-${d}-frag-drop-no-room`]} no room`;
  return [
    `napt tcp  ${napt.tcpEstablished} established, ${napt.tcpHalfOpen} half-open, ${napt.tcpClosing} closing, ${napt.tcpClosed} closed`,
    `napt      ${napt.udp} udp, ${napt.icmp} icmp echo mappings`,
    `no port   ${c["client-napt-drop-no-port"]} dropped: ${c["client-napt-no-port-rst"]} RST, ${c["client-napt-no-port-icmp"]} ICMP 3/13 sent, ${c["client-napt-no-port-rate-limited"]} rate limited; ${c["client-napt-tcp-reuse-closed"]} closed TCP ports reused (${c["client-napt-drop-closed"]} late segments of their old connections dropped)`,
    `frag out  ${frag("out")}`,
    `frag in   ${frag("in")}`,
  ];
}
