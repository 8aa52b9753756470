/**
 * Red team of the source check's shortcut (lib/server/handler.ts: a source spelled as
 * HOST_IPV6's canonical text is accepted without canonicalizing it; docs/security.md), with a
 * real `dstm server` on a bridged link and an attacker on it, in namespaces of this run. The
 * attacker claims addresses that are not its datagrams' source: the host's, the server's, an
 * IPv4-mapped one, its own link-local address without its zone (a link-local source arrives
 * as `fe80::…%IFINDEX`, never the text of a HOST_IPV6), the host's from its link-local
 * address. Each must be refused (`dstm_auth_failures_total{reason="source-mismatch"}`) and
 * lease nothing, on a listener of one address (Bun's socket names the source) and on `[::]`
 * (IPV6_PKTINFO worker, lib/sys/udp_pktinfo.ts AddressCache names it); its own global address
 * is leased (the server does answer it). Root only.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { encodeMessage } from "../lib/wire/dstm.ts";
import { MessageType } from "../lib/wire/dstm_types.ts";
import {
  ATTACKER6,
  attackerLink,
  forgeUdp,
  HOST6,
  hex,
  type Link,
  SERVER6,
  startServer,
} from "./helpers/attacker_link.ts";
import { eventually } from "./helpers/wait.ts";

const ATTACKER_LL = "fe80::66";

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

/** The helper's bridged link, plus link-local addresses for the server and the attacker. */
function link(): Link {
  const l = attackerLink(cleanup, "atk21-src-");
  l.srv.addAddress("br0", "fe80::53/64");
  l.attacker.addAddress("eth0", `${ATTACKER_LL}/64`);
  return l;
}

const discover = (host6: string, xid: number) =>
  hex(encodeMessage({ type: MessageType.DISCOVER, xid, host6 }));

const root = process.getuid?.() === 0;

describe("atk21: the source check against an on-link attacker", () => {
  // `toLocal`: where the attacker's link-local datagrams go (the server's link-local address
  // reaches only the listener on [::]).
  for (const [name, listen, toLocal] of [
    ["one address", `[${SERVER6}]:4607`, SERVER6],
    ["[::] (IPV6_PKTINFO)", "[::]:4607", "fe80::53%eth0"],
  ] as const) {
    test.skipIf(!root)(`listener on ${name}: claims of other addresses are refused`, async () => {
      const l = link();
      const s = await startServer(l, cleanup, [], "memory", listen);
      const global = await forgeUdp(l.attacker, {
        from: ATTACKER6,
        fromPort: 0,
        to: SERVER6,
        toPort: 4607,
        listenMs: 300,
        datagrams: [
          discover(HOST6, 1),
          discover(SERVER6, 2),
          discover("::ffff:203.0.113.9", 3),
          discover(ATTACKER6, 4),
        ],
      });
      expect(global.sent).toBe(4);
      // From its link-local address (zone eth0).
      const local = await forgeUdp(l.attacker, {
        from: `${ATTACKER_LL}%eth0`,
        fromPort: 0,
        to: toLocal,
        toPort: 4607,
        listenMs: 300,
        datagrams: [discover(ATTACKER_LL, 5), discover(HOST6, 6)],
      });
      expect(local.sent).toBe(2);
      const refused = () => s.metric("dstm_auth_failures_total", 'reason="source-mismatch"');
      expect(await eventually(async () => (await refused()) === 5, { timeoutMs: 5_000 })).toBe(
        true,
      );
      // Every answer came back (4 NAKs and 1 ACK): nothing was lost on the way.
      expect(global.received + local.received).toBe(6);
      const leases = await s.leases();
      expect(leases.map((x) => x.hostIPv6)).toEqual([ATTACKER6]);
    });
  }
});
