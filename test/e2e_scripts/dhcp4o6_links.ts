/**
 * Run inside a namespace that acts as relays on several links (and as a client): the same
 * DHCPv4-over-DHCPv6 queries to any 4o6 server (dstm's or Kea's), to see which subnet / pool
 * each link's clients get (RFC 8415 §13.1, RFC 7341).
 *
 *   bun dhcp4o6_links.ts SERVER6 CASES_JSON
 *     CASES_JSON: [{ name, source, client, relays: [{ linkAddress, peerAddress, interfaceId? }] }]
 *     with `relays` outermost first (empty: a direct query from `source`, port 546; relayed:
 *     sent from `source`, port 547). Each case: DISCOVER, and REQUEST of the offered address;
 *     a case with `release: "IPV4"` sends only a RELEASE of that address (no answer expected).
 *     Prints { NAME: { offer: "IPV4" | null, ack: "IPV4" | "NAK" | null } } as JSON.
 *
 * Every wait is bounded (3 s per answer); an answer that does not come is recorded as null.
 */
import { formatIPv4, parseIPv4 } from "../../lib/net/addr.ts";
import { bindUdp, type UdpEndpoint } from "../../lib/sys/udp.ts";
import { type Dhcp4Message, Dhcp4MessageType } from "../../lib/wire/dhcp4.ts";
import { Dhcp6MessageType, decodeDhcp4o6, encodeDhcp4o6 } from "../../lib/wire/dhcp4o6.ts";
import { encodeDhcp6Relay, unwrapRelays } from "../../lib/wire/dhcp6_relay.ts";
import { dhcp4Message } from "../helpers/dhcp4.ts";
import { eventually } from "../helpers/wait.ts";

interface Case {
  name: string;
  source: string;
  client: number;
  relays: { linkAddress: string; peerAddress: string; interfaceId?: string }[];
  release?: string;
}

const [server = "", casesText = "[]"] = process.argv.slice(2);
const cases = JSON.parse(casesText) as Case[];
const WAIT_MS = 3000;
const received: Uint8Array[] = [];
const endpoints = new Map<string, UdpEndpoint>();

async function endpoint(source: string, port: number): Promise<UdpEndpoint> {
  const key = `${source} ${port}`;
  let ep = endpoints.get(key);
  if (!ep) {
    ep = await bindUdp(source, port, (data) => {
      received.push(data);
    });
    endpoints.set(key, ep);
  }
  return ep;
}

function wrap(c: Case, dhcp4: Dhcp4Message): Uint8Array {
  let raw = encodeDhcp4o6({ type: Dhcp6MessageType.DHCPV4_QUERY, flags: 0, dhcp4 });
  for (let i = c.relays.length - 1; i >= 0; i--) {
    const r = c.relays[i]!;
    raw = encodeDhcp6Relay({
      type: 12,
      hopCount: c.relays.length - 1 - i,
      linkAddress: r.linkAddress,
      peerAddress: r.peerAddress,
      ...(r.interfaceId ? { interfaceId: new TextEncoder().encode(r.interfaceId) } : {}),
      relayMessage: raw,
    });
  }
  return raw;
}

/** The DHCPv4 answer with `xid` and one of `types`, once it is there, or null after WAIT_MS. */
async function answer(xid: number, ...types: number[]): Promise<Dhcp4Message | null> {
  let found: Dhcp4Message | null = null;
  await eventually(
    () => {
      for (const data of received) {
        const opened = unwrapRelays(data, 13);
        if (!opened.ok) continue;
        const r = decodeDhcp4o6(opened.value.inner);
        if (r.ok && r.value.dhcp4.xid === xid && types.includes(r.value.dhcp4.options.messageType))
          found = r.value.dhcp4;
      }
      return found !== null;
    },
    { timeoutMs: WAIT_MS, intervalMs: 20 },
  );
  return found;
}

const out: Record<string, { offer: string | null; ack: string | null }> = {};
for (const c of cases) {
  const ep = await endpoint(c.source, c.relays.length > 0 ? 547 : 546);
  const chaddr = Uint8Array.of(0x02, 0, 0x5e, 0x10, 0x4c, c.client);
  const xid = 0x4c4c0000 + c.client;
  const ask = (options: Partial<Dhcp4Message["options"]>, type: Dhcp4MessageType, ciaddr = 0) =>
    ep.send(
      wrap(
        c,
        dhcp4Message(
          type,
          { clientId: Uint8Array.of(1, ...chaddr), ...options },
          { xid, chaddr, ciaddr },
        ),
      ),
      server,
      547,
    );
  if (c.release) {
    ask({ serverId: undefined }, Dhcp4MessageType.RELEASE, parseIPv4(c.release) ?? 0);
    out[c.name] = { offer: null, ack: null };
    continue;
  }
  ask({}, Dhcp4MessageType.DISCOVER);
  const offer = await answer(xid, Dhcp4MessageType.OFFER);
  let ack: string | null = null;
  if (offer) {
    ask({ requestedIp: offer.yiaddr, serverId: offer.options.serverId }, Dhcp4MessageType.REQUEST);
    const a = await answer(xid, Dhcp4MessageType.ACK, Dhcp4MessageType.NAK);
    ack =
      a === null
        ? null
        : a.options.messageType === Dhcp4MessageType.NAK
          ? "NAK"
          : formatIPv4(a.yiaddr);
  }
  out[c.name] = { offer: offer ? formatIPv4(offer.yiaddr) : null, ack };
}
for (const ep of endpoints.values()) ep.close();
console.log(JSON.stringify(out));
