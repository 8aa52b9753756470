/**
 * A 4over6 packet with a Destination Options header before the IPv4 packet — what a Linux
 * ip6tnl peer sends by default (`ip -6 tunnel add … mode ipip6`, encaplimit 4: a Tunnel
 * Encapsulation Limit option, RFC 2473 §4.1.1, next header 60 then 4) — reaches the IPv4
 * network through `dstm tep`, with and without its receive ring (which takes only next header
 * 4 directly and leaves the rest to the raw socket). As root in namespaces (verification round
 * 17; held: a regression test, since this kernel has no ip6_tunnel module to be the peer, the
 * host's packets are built with a raw socket and IPV6_DSTOPTS).
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { vethPair } from "../lib/sys/netns.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { processScope } from "./helpers/process_scope.ts";
import { tepArgv, tepCounters } from "./helpers/tep_argv.ts";
import { waitUntil } from "./helpers/wait.ts";

const skip = netnsSkipReason() ?? (Bun.which("python3") ? null : "needs python3");
announceSkip("ver17_tep_dest_options", skip);
const scope = processScope("dstm-v17o-", "v17o-");

/** Python: one UDP datagram 198.51.100.10:1234 → 192.0.2.80:9999 in IPv4-in-IPv6 to the TEP. */
const SEND = `
import socket, struct, sys
def csum(b):
    if len(b) % 2: b += b"\\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
src, dst = socket.inet_aton("198.51.100.10"), socket.inet_aton("192.0.2.80")
data = sys.argv[1].encode()
udp = struct.pack("!HHHH", 1234, 9999, 8 + len(data), 0) + data
udp = udp[:6] + struct.pack("!H", csum(src + dst + struct.pack("!BBH", 0, 17, len(udp)) + udp)) + udp[8:]
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, src, dst)
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 4)
s.bind(("2001:db8:1::11", 0))
if sys.argv[2] == "dstopts":
    # IPV6_DSTOPTS (59): next header, length 0, Tunnel Encapsulation Limit (type 4, length 1,
    # limit 4), PadN of one byte.
    s.setsockopt(socket.IPPROTO_IPV6, 59, bytes([0, 0, 4, 1, 4, 1, 1, 0]))
s.sendto(ip + udp, ("2001:db8:1::1", 0))
`;

/** Python: prints each datagram to 192.0.2.80:9999 as it comes. */
const SINK = `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("192.0.2.80", 9999))
print("listening", flush=True)
while True: print(s.recv(100).decode(), flush=True)
`;

describe.skipIf(skip !== null)("dstm tep and the Tunnel Encapsulation Limit option", () => {
  test.each([[[] as string[]], [["--rx-ring"]]])(
    "an ip6tnl-style packet (Destination Options, then IPv4) is forwarded %p",
    async (extra) => {
      const host = scope.ns();
      const tep = scope.ns();
      const web = scope.ns();
      vethPair(host, "h0", tep, "t0");
      vethPair(tep, "t1", web, "w0");
      host.addAddress("h0", "2001:db8:1::11/64");
      tep.addAddress("t0", "2001:db8:1::1/64");
      tep.addAddress("t1", "192.0.2.1/24");
      web.addAddress("w0", "192.0.2.80/24");
      web.addRoute("default", "via", "192.0.2.1");
      const socket = join(scope.dir, `tep${extra.length}.sock`);
      const tepProc = scope.spawnIn(tep, [
        ...tepArgv({
          staticBinding: { binding: "198.51.100.10=2001:db8:1::11", stats: socket },
        }),
        ...extra,
      ]);
      await tepProc.waitFor(/tep-start/, 20_000);
      const sink = scope.track(web.spawn(["python3", "-c", SINK], { timeoutMs: 60_000 }));
      const seen: string[] = [];
      void (async () => {
        const decoder = new TextDecoder();
        for await (const chunk of sink.stdout) seen.push(...decoder.decode(chunk).split("\n"));
      })();
      await waitUntil(() => seen.includes("listening"), { timeoutMs: 10_000, what: "the sink" });
      // Plain next header 4 first (neighbours resolved), then with the option; resent until
      // each arrives (the first may wait for neighbour discovery).
      for (const kind of ["plain", "dstopts"]) {
        await waitUntil(
          () => {
            host.exec(["python3", "-c", SEND, kind, kind]);
            return seen.includes(kind);
          },
          { timeoutMs: 10_000, intervalMs: 200, what: `the ${kind} datagram at the web server` },
        );
      }
      expect(tepCounters(tep, socket)["decap-drop-malformed"] ?? 0).toBe(0);
    },
    60_000,
  );
});
