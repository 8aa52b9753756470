/**
 * The server ⇄ TEP channel under an attacker on the link: the pieces test/tep_attack.test.ts
 * and test/redteam_tep.test.ts share. Their link is a hub (./hub.ts) holding the DSTM server,
 * the TEP, host A and the attacker; the attacker has the server's IPv6 address on its loopback
 * so it can send from the server's address and port.
 *
 * - {@link CHANNEL_NET}: the addresses (documentation prefixes) and the pool;
 * - {@link dstmArgv}, {@link channelServerArgs}, {@link channelTepArgs}: the argument lists of
 *   `dstm server` (memory database, host key, TEP key) and `dstm tep` (TEP key or none);
 * - `forgeUdp` (./attacker_link.ts, re-exported): the attacker's crafter in a namespace;
 * - {@link metricsAt}, {@link tepConnected}, {@link controlCount}: what the control sockets
 *   say (Prometheus text, ./daemon.ts's `metric`), polled with a deadline;
 * - {@link signedDiscover}, {@link hex}, {@link leaseByForge}: a host's DISCOVER as a crafted
 *   datagram, and host A leasing with it;
 * - {@link controlCaptureArgv}: dumpcap recording the server → TEP channel (as the attacker).
 */
import { join } from "node:path";
import type { Netns } from "../../lib/sys/netns.ts";
import { parseKeyFile, signMessage } from "../../lib/wire/auth.ts";
import { MessageType } from "../../lib/wire/dstm_types.ts";
import { type ForgeResult, forgeUdp, hex } from "./attacker_link.ts";
import { metric, until } from "./daemon.ts";
import { BUN, ROOT } from "./process.ts";

export { type ForgeResult, forgeUdp, hex } from "./attacker_link.ts";

/** The link's addresses: server, TEP, host A, the attacker; the TEP's IPv4 side and the pool. */
export const CHANNEL_NET = {
  server6: "2001:db8:1::53",
  tep6: "2001:db8:1::1",
  a6: "2001:db8:1::a",
  evil6: "2001:db8:1::e",
  tep4: "192.0.2.1",
  web4: "192.0.2.80",
  pool: "198.51.100.0/28",
} as const;

/** `bun mod.ts ...args`: a dstm command from source. */
export function dstmArgv(args: readonly string[]): string[] {
  return [BUN, join(ROOT, "mod.ts"), ...args];
}

/**
 * `dstm server` on [server6]:4607 for {@link CHANNEL_NET}'s pool and TEP: memory database,
 * control socket `control`, hosts signing with `hostKey`, the channel with `tepKey` (files).
 */
export function channelServerArgs(o: { hostKey: string; tepKey: string; control: string }) {
  const { server6, tep6, tep4, pool } = CHANNEL_NET;
  return [
    ...["server", "--pool", pool, "--tep", `${tep6},${tep4}`, "--listen", `[${server6}]:4607`],
    ...["--db", "memory", "--control", o.control, "--key", o.hostKey, "--tep-key", o.tepKey],
  ];
}

/**
 * `dstm tep` for {@link CHANNEL_NET} (each default overridable): `--ipv6 tep6 --ipv4 tep4
 * --server server6 --route pool`, then `--key` when given, then `extra` (e.g. `--stats FILE`,
 * or `--ifname tepx --tep-port 4609 --control FILE` for a second TEP beside the first).
 */
export function channelTepArgs(
  o: {
    tep6?: string;
    tep4?: string;
    server?: string;
    route?: string;
    key?: string;
    extra?: readonly string[];
  } = {},
): string[] {
  const n = CHANNEL_NET;
  return [
    ...["tep", "--ipv6", o.tep6 ?? n.tep6, "--ipv4", o.tep4 ?? n.tep4],
    ...["--server", o.server ?? n.server6, "--route", o.route ?? n.pool],
    ...(o.key === undefined ? [] : ["--key", o.key]),
    ...(o.extra ?? []),
  ];
}

/** The Prometheus page of the control or stats socket at `socket` (a path). */
export async function metricsAt(socket: string): Promise<string> {
  return (await fetch("http://localhost/metrics", { unix: socket })).text();
}

/** Whether the server at `serverSocket` reports `tep6` connected, polled (20 s at most). */
export function tepConnected(serverSocket: string, tep6: string): Promise<boolean> {
  return until(
    async () => metric(await metricsAt(serverSocket), "dstm_tep_connected", { tep: tep6 }) === 1,
  );
}

/** The TEP's count of control messages of `kind` with `result` (dstm_tep_control_total). */
export async function controlCount(socket: string, kind: string, result: string) {
  return metric(await metricsAt(socket), "dstm_tep_control_total", { kind, result });
}

/** A DISCOVER of `host6` signed with the first key of `hostKeyText` (a key file), as hex. */
export function signedDiscover(hostKeyText: string, host6: string): string {
  const parsed = parseKeyFile(hostKeyText);
  if (!parsed.ok) throw new Error(parsed.message);
  const discover = { type: MessageType.DISCOVER, xid: 1, host6 };
  return hex(signMessage(discover, parsed.keys[0]!, Date.now()));
}

/**
 * Host A (in `nsA`) leases: a DISCOVER signed with `hostKeyText` sent by the crafter to the
 * server, whose answer it waits for (1.5 s). `received` is 1 when the server answered.
 */
export function leaseByForge(nsA: Netns, hostKeyText: string): Promise<ForgeResult> {
  const { a6, server6 } = CHANNEL_NET;
  return forgeUdp(nsA, {
    ...{ from: a6, fromPort: 0, to: server6, toPort: 4607 },
    datagrams: [signedDiscover(hostKeyText, a6)],
    listenMs: 1500,
  });
}

/**
 * dumpcap (`-P`: pcap) on eth0 writing every datagram to the TEP control port 4608 (to `tep6`
 * only, when given) into `pcap`: how the attacker records the server's BINDs.
 */
export function controlCaptureArgv(pcap: string, tep6?: string): string[] {
  const filter =
    tep6 === undefined ? "udp dst port 4608" : `udp dst port 4608 and dst host ${tep6}`;
  return ["dumpcap", "-q", "-P", "-i", "eth0", "-f", filter, "-w", pcap];
}
