/**
 * The Linux kernel as the TEP of a `dstm client` (test/kernel_peers.test.ts,
 * test/kernel_peers_udp.test.ts): host (the client, `c0` 2001:db8:2::10/64) ── ktep (`k0`
 * 2001:db8:2::2/64; `k1` 192.0.2.1/24 towards an IPv4 web server at 192.0.2.80). The kernel
 * decapsulates what the client sends to the SID 2001:db8:2::1 (seg6local End.DX4, RFC 8986
 * §4.6) and sends the pool 198.51.100.0/28 back in seg6 `encap.red` (plain IPv4-in-IPv6, RFC
 * 2473); a `dstm server` on 2001:db8:2::53 in the TEP's namespace leases from that pool.
 */
import type { Netns } from "../../lib/sys/netns.ts";
import type { DstmProcess } from "./process.ts";
import { seg6EncapRed, seg6EndDx4 } from "./seg6_host.ts";

/** Starts `args` (a dstm command line) inside a namespace. */
export type SpawnIn = (where: Netns, args: readonly string[]) => DstmProcess;

/**
 * Makes `ktep` the kernel TEP in front of `host` and starts the dstm server there; resolves
 * once it listens. Throws when `ip` fails or the server does not start within 20 s.
 */
export async function kernelTepWithServer(host: Netns, ktep: Netns, spawn: SpawnIn): Promise<void> {
  if (Bun.which("ethtool")) ktep.exec(["ethtool", "-K", "k0", "tx", "on"]);
  ktep.addAddress("k0", "2001:db8:2::53/128");
  ktep.exec(["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
  // seg6 encap of a forwarded packet sends the new IPv6 packet through ip6_forward.
  ktep.exec(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
  host.addRoute("2001:db8:2::1/128", "via", "2001:db8:2::2");
  ktep.ip("sr", "tunsrc", "set", "2001:db8:2::1");
  seg6EndDx4(ktep, "2001:db8:2::1", "k0");
  seg6EncapRed(ktep, "add", "198.51.100.0/28", "2001:db8:2::10", "k0");
  const server = spawn(ktep, [
    "server",
    "--listen",
    "[2001:db8:2::53]:4607",
    "--pool",
    "198.51.100.0/28",
    "--tep",
    "2001:db8:2::1,192.0.2.1",
    // Its own database: the machine's /var/lib/dstm/leases.db belongs to whatever else runs.
    "--db",
    "memory",
    "--no-control",
  ]);
  await server.waitFor(/ start /, 20_000);
}

/**
 * {@link kernelTepWithServer}, then the client on `host` (control
 * socket `control`, route 192.0.2.0/24 through the DTI, then `clientArgs`), and resolves to the leased IPv4
 * address once the client is bound. The links and their addresses are the caller's (see the
 * module text). Throws when `ip` fails or a process does not start within 20 s.
 */
export async function clientBehindKernelTep(
  host: Netns,
  ktep: Netns,
  spawn: SpawnIn,
  control: string,
  clientArgs: readonly string[] = [],
): Promise<string> {
  await kernelTepWithServer(host, ktep, spawn);
  const client = spawn(host, [
    "client",
    "--server",
    "2001:db8:2::53",
    "--route",
    "192.0.2.0/24",
    "--control",
    control,
    ...clientArgs,
  ]);
  const bound = await client.waitFor(/ bound /, 20_000);
  return /ipv4=([\d.]+)/.exec(bound)![1]!;
}
