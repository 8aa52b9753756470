/**
 * Whether another `dstm client` holds the DTI name now, asked read-only (for `dstm client
 * --check`, which must refuse what a start would refuse, exit 2): its control socket answers
 * (the start could not serve its own there), or a process holds a TUN of that name open
 * (TUNSETIFF would fail with EBUSY). A TUN file's fdinfo names its interface (`iff:\tNAME`,
 * Linux drivers/net/tun.c tun_chr_show_fdinfo); it is read only when /sys/class/net/NAME is a
 * TUN, so a host without one pays a stat.
 *
 * @module
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { unixAlive } from "../sys/http.ts";

/** Most /proc/PID/fdinfo files read (bounded on a host with very many open files). */
const MAX_FDINFO_READS = 200_000;

/**
 * Why a client with DTI `ifname` and control socket `socket` could not start now, in one line
 * (the exit-2 message of `--check`); undefined when nothing holds them.
 */
export async function dtiInUse(ifname: string, socket: string): Promise<string | undefined> {
  if (existsSync(socket) && (await unixAlive(socket)))
    return `DTI ${ifname}: another dstm client runs with it (its control socket ${socket} answers); a start would exit 2: stop that client, or give this one another --ifname`;
  const pid = tunHolder(ifname);
  if (pid !== undefined)
    return `DTI ${ifname}: process ${pid} holds the TUN ${ifname} open (another dstm client?); a start would exit 2: stop it, or give this one another --ifname`;
  return undefined;
}

/** The PID of a process holding the TUN `ifname` open, if it is a TUN and one does. */
export function tunHolder(ifname: string): number | undefined {
  if (!existsSync(`/sys/class/net/${ifname}/tun_flags`)) return undefined;
  const needle = `iff:\t${ifname}\n`;
  let reads = 0;
  for (const pid of list("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    for (const fd of list(`/proc/${pid}/fdinfo`)) {
      if (++reads > MAX_FDINFO_READS) return undefined;
      let text: string;
      try {
        text = readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8");
      } catch {
        continue; // gone, or not ours to read
      }
      if (text.includes(needle)) return Number(pid);
    }
  }
  return undefined;
}

function list(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
