/**
 * Run inside a namespace: crafted allocation requests, each from a source address of this
 * namespace (add them first, e.g. `ip addr add ... nodad`). Prints, last, one line of JSON.
 *
 *   bun alloc_attack.ts native SERVER PORT BASE COUNT [LEASE_S]
 *     one DSTM DISCOVER from each of BASE+0x1000 … BASE+0x1000+COUNT−1 (HOST_IPV6 = source),
 *     all at once; waits up to 3 s for the answers:
 *     {"sent":N,"acks":[{"host6","ipv4","leaseTime"}],"naks":{"STATUS":n},"silent":n}
 *     With COUNT 0, one DISCOVER from BASE itself (a whole address).
 *   bun alloc_attack.ts dhcp4o6 SERVER PORT SOURCE TYPE [REQUESTED_IPV4 SERVER_ID]
 *     one DHCPV4-QUERY (TYPE: discover|request) from SOURCE, any port, a made-up chaddr;
 *     waits up to 1.5 s: {"answer":null} or {"answer":{"type","yiaddr","leaseTime"}}
 */
import { formatIPv4, parseIPv4 } from "../../lib/net/addr.ts";
import { bindUdp, type UdpEndpoint } from "../../lib/sys/udp.ts";
import { Dhcp4MessageType, dhcp4MessageTypeName } from "../../lib/wire/dhcp4.ts";
import { decodeDhcp4o6 } from "../../lib/wire/dhcp4o6.ts";
import { decodeMessage, encodeMessage } from "../../lib/wire/dstm.ts";
import { MessageType, Status } from "../../lib/wire/dstm_types.ts";
import { dhcp4Message, dhcp4o6Query } from "../helpers/dhcp4.ts";
import { eventually } from "../helpers/wait.ts";

const [mode, server, portText, ...rest] = process.argv.slice(2);
const port = Number(portText);
const STATUS_NAMES = Object.fromEntries(Object.entries(Status).map(([k, v]) => [v, k]));

if (mode === "native") {
  const [base, countText, leaseText] = rest;
  const one = Number(countText) === 0;
  const count = one ? 1 : Number(countText);
  const sourceOf = (i: number) => (one ? base! : `${base}${(0x1000 + i).toString(16)}`);
  const acks: { host6: string; ipv4: string; leaseTime: number }[] = [];
  const naks: Record<string, number> = {};
  let answered = 0;
  const endpoints: UdpEndpoint[] = [];
  for (let i = 0; i < count; i++) {
    const host6 = sourceOf(i);
    const ep = await bindUdp(host6, 0, (data) => {
      const m = decodeMessage(data);
      if (!m.ok) return;
      answered++;
      if (m.value.type === MessageType.NAK) {
        const name = STATUS_NAMES[m.value.status ?? -1] ?? String(m.value.status);
        naks[name] = (naks[name] ?? 0) + 1;
      } else {
        acks.push({ host6, ipv4: formatIPv4(m.value.host4!), leaseTime: m.value.leaseTime ?? 0 });
      }
    });
    endpoints.push(ep);
  }
  for (let i = 0; i < count; i++) {
    const host6 = sourceOf(i);
    const leaseTime = leaseText === undefined ? undefined : Number(leaseText);
    endpoints[i]!.send(
      encodeMessage({ type: MessageType.DISCOVER, xid: 0x7000 + i, host6, leaseTime }),
      server!,
      port,
    );
  }
  // Every answer, or 3 s; the caller checks silence against the server's refusal counters.
  await eventually(() => answered >= count, { timeoutMs: 3000, intervalMs: 20 });
  // Answers still on the way when the rest is silent: a short grace (a count, not a check).
  await Bun.sleep(200);
  for (const ep of endpoints) ep.close();
  console.log(JSON.stringify({ sent: count, acks, naks, silent: count - answered }));
} else if (mode === "dhcp4o6") {
  const [source, type, requested, serverId] = rest;
  let answer: Uint8Array | null = null;
  const ep = await bindUdp(source!, 0, (data) => {
    answer = data;
  });
  const messageType = type === "request" ? Dhcp4MessageType.REQUEST : Dhcp4MessageType.DISCOVER;
  ep.send(
    dhcp4o6Query(
      dhcp4Message(
        messageType,
        {
          requestedIp: requested ? parseIPv4(requested)! : undefined,
          serverId: serverId ? parseIPv4(serverId)! : undefined,
        },
        { xid: 0x0bad0bad, chaddr: Uint8Array.from([0x02, 0xba, 0xdb, 0xad, 0, 1]) },
      ),
    ),
    server!,
    port,
  );
  await eventually(() => answer !== null, { timeoutMs: 1500, intervalMs: 20 });
  ep.close();
  const decoded = answer ? decodeDhcp4o6(answer) : null;
  const dhcp4 = decoded?.ok ? decoded.value.dhcp4 : null;
  console.log(
    JSON.stringify({
      answer: dhcp4
        ? {
            type: dhcp4MessageTypeName(dhcp4.options.messageType),
            yiaddr: formatIPv4(dhcp4.yiaddr),
            leaseTime: dhcp4.options.leaseTime ?? null,
          }
        : null,
    }),
  );
} else {
  console.error("usage: alloc_attack.ts native|dhcp4o6 …");
  process.exit(2);
}
