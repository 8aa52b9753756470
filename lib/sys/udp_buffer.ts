/**
 * A larger receive buffer for a socket of Bun's UDP API (./udp.ts), which has no option for it
 * and does not expose its file descriptor.
 *
 * Why: a TEP receives a snapshot of 1,000,000 bindings as 22,728 SNAPSHOT datagrams in 7 s,
 * read on its main thread; the default buffer (net.core.rmem_default, 208 KiB: about 90 such
 * datagrams with the kernel's bookkeeping) overflows whenever that thread is busy for ~30 ms,
 * and one lost part loses the whole snapshot (docs/benchmarks.md "One million leases").
 *
 * How: the socket's inode from the table of UDP sockets (`/proc/net/udp6`, `/proc/net/udp`:
 * local address and port, inode) matched with this process's descriptors (`/proc/self/fd/N` →
 * `socket:[INODE]`, proc(5)), then SO_RCVBUFFORCE (root) or SO_RCVBUF (socket(7)).
 *
 * @module
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { parseIPv4, parseIPv6 } from "../net/addr.ts";
import * as libc from "./libc.ts";
import { setSocketBuffer } from "./socket_abi.ts";

/**
 * Sets the receive buffer of this process's UDP socket bound to local `port` to `bytes`
 * (beyond net.core.rmem_max as root). `address`: the socket's local address (IPv4 or IPv6
 * text, as the socket reports it), which picks it among this process's UDP sockets on `port`
 * at other addresses (absent: the first socket on `port` of the descriptor table; before, the
 * port alone was matched, so a listener bound after another socket on its port number kept
 * the default buffer, test/atk21_listen_buffer_same_port.test.ts). Returns the size the
 * kernel reports now (bytes, doubled for bookkeeping), or 0 when no such socket was found.
 * Throws {@link SysError} when the kernel refuses.
 *
 * @example raiseUdpReceiveBuffer(endpoint.port, 4 << 20) // 8388608
 */
export function raiseUdpReceiveBuffer(port: number, bytes: number, address?: string): number {
  const inodes = new Set<string>();
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  const local = address === undefined ? undefined : _procAddresses(address);
  for (const [table, v6] of [
    ["/proc/net/udp6", true],
    ["/proc/net/udp", false],
  ] as const) {
    let text = "";
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    const want = local === undefined ? undefined : v6 ? local.udp6 : local.udp;
    if (want === null) continue;
    for (const line of text.split("\n").slice(1)) {
      // sl local_address rem_address st tx_queue:rx_queue tr:when retrnsmt uid timeout inode …
      const f = line.trim().split(/\s+/);
      if (f.length <= 9 || f[1] === undefined) continue;
      const [hexAddress, linePort] = f[1].split(":");
      if (linePort !== hexPort || (want !== undefined && hexAddress !== want)) continue;
      inodes.add(f[9] as string);
    }
  }
  if (inodes.size === 0) return 0;
  for (const name of readdirSync("/proc/self/fd")) {
    let target = "";
    try {
      target = readlinkSync(`/proc/self/fd/${name}`);
    } catch {
      continue; // closed meanwhile
    }
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    if (inode === undefined || !inodes.has(inode)) continue;
    const fd = Number(name);
    setSocketBuffer(fd, libc.SO_RCVBUFFORCE, libc.SO_RCVBUF, bytes, "SO_RCVBUF");
    return libc.getsockoptInt(fd, libc.SOL_SOCKET, libc.SO_RCVBUF);
  }
  return 0;
}

/**
 * `address` (IPv4 or IPv6 text, a zone ignored) as the local_address column of /proc/net/udp6
 * and /proc/net/udp prints it (proc(5): each 32-bit word of the address as it lies in memory,
 * in hex, upper case: on this little-endian host its bytes reversed); `null` for a table
 * where no socket can have it (an IPv6 address that is not IPv4-mapped in /proc/net/udp).
 * Undefined when it does not parse: then the port alone is matched.
 */
function _procAddresses(address: string): { udp6: string; udp: string | null } | undefined {
  const percent = address.indexOf("%");
  const text = percent < 0 ? address : address.slice(0, percent);
  const v4 = parseIPv4(text);
  let bytes: Uint8Array | null;
  if (v4 !== null) {
    bytes = new Uint8Array(16);
    bytes[10] = 0xff;
    bytes[11] = 0xff;
    new DataView(bytes.buffer).setUint32(12, v4);
  } else bytes = parseIPv6(text);
  if (bytes === null) return undefined;
  const word = (at: number) => {
    let hex = "";
    for (let i = at + 3; i >= at; i--) hex += (bytes[i] as number).toString(16).padStart(2, "0");
    return hex.toUpperCase();
  };
  let mapped = true;
  for (let i = 0; i < 12; i++) if (bytes[i] !== (i < 10 ? 0 : 0xff)) mapped = false;
  return { udp6: word(0) + word(4) + word(8) + word(12), udp: mapped ? word(12) : null };
}
