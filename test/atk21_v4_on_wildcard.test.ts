/**
 * Red team of the source check on the server's wildcard listener (`--listen [::]:4607`,
 * lib/sys/udp_pktinfo.ts): the socket was dual-stack (IPV6_V6ONLY off, the kernel's default
 * net.ipv6.bindv6only=0), so an IPv4 datagram to any IPv4 address of the server's machine
 * arrived from `::ffff:a.b.c.d`; a DISCOVER whose HOST_IPV6 is that IPv4-mapped address
 * passed the source check and leased a pool address bound to `::ffff:…` — a sender on any
 * IPv4 network that reaches the server took leases of an IPv6-only service (bounded only by
 * the ::/64 prefix's rate and lease caps, which all IPv4 senders share). Both protocols on
 * that socket are IPv6-only (the native one; DHCPv4-over-DHCPv6, RFC 7341), so the socket is
 * IPv6-only now. Real `dstm server` in namespaces of this run; root only.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { encodeMessage } from "../lib/wire/dstm.ts";
import { MessageType } from "../lib/wire/dstm_types.ts";
import {
  ATTACKER6,
  attackerLink,
  forgeUdp,
  hex,
  SERVER6,
  startServer,
} from "./helpers/attacker_link.ts";

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

describe("atk21: IPv4 senders and the server's [::] listener", () => {
  test.skipIf(process.getuid?.() !== 0)(
    "an IPv4 DISCOVER claiming its IPv4-mapped address gets no answer and no lease",
    async () => {
      const l = attackerLink(cleanup, "atk21-v4-");
      l.srv.addAddress("br0", "198.51.100.53/24");
      l.attacker.addAddress("eth0", "198.51.100.66/24");
      const s = await startServer(l, cleanup, [], "memory", "[::]:4607");
      const v4 = await forgeUdp(l.attacker, {
        ...{ from: "198.51.100.66", fromPort: 0, to: "198.51.100.53", toPort: 4607 },
        datagrams: [
          hex(encodeMessage({ type: MessageType.DISCOVER, xid: 1, host6: "::ffff:198.51.100.66" })),
        ],
        listenMs: 800,
      });
      expect(v4.sent).toBe(1);
      // The same sender over IPv6 is answered: the listener is up and the link works.
      const v6 = await forgeUdp(l.attacker, {
        ...{ from: ATTACKER6, fromPort: 0, to: SERVER6, toPort: 4607 },
        datagrams: [hex(encodeMessage({ type: MessageType.DISCOVER, xid: 2, host6: ATTACKER6 }))],
        listenMs: 800,
      });
      expect(v6.received).toBe(1);
      expect(v4.received).toBe(0);
      expect((await s.leases()).map((lease) => lease.hostIPv6)).toEqual([ATTACKER6]);
    },
  );
});
