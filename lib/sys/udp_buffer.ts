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
 * local port, inode) matched with this process's descriptors (`/proc/self/fd/N` →
 * `socket:[INODE]`, proc(5)), then SO_RCVBUFFORCE (root) or SO_RCVBUF (socket(7)).
 *
 * @module
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import * as libc from "./libc.ts";
import { setSocketBuffer } from "./socket_abi.ts";

/**
 * Sets the receive buffer of this process's UDP socket bound to local `port` to `bytes`
 * (beyond net.core.rmem_max as root). Returns the size the kernel reports now (bytes, doubled
 * for bookkeeping), or 0 when no such socket was found. Throws {@link SysError} when the
 * kernel refuses.
 *
 * @example raiseUdpReceiveBuffer(endpoint.port, 4 << 20) // 8388608
 */
export function raiseUdpReceiveBuffer(port: number, bytes: number): number {
  const inodes = new Set<string>();
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  for (const table of ["/proc/net/udp6", "/proc/net/udp"]) {
    let text = "";
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      // sl local_address rem_address st tx_queue:rx_queue tr:when retrnsmt uid timeout inode …
      const f = line.trim().split(/\s+/);
      if (f.length > 9 && f[1]?.endsWith(`:${hexPort}`)) inodes.add(f[9] as string);
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
