/**
 * Run inside a namespace: the same RFC 2131 / RFC 7341 / RFC 8415 inputs to any 4o6 server
 * (dstm's or Kea's), printed as JSON observations the test compares.
 *
 *   bun dhcp4o6_conformance.ts direct IFNAME
 *     A standard DHCPv6 client: from the link-local address, port 546, to ff02::1:2%IFNAME:
 *     DISCOVER → OFFER, REQUEST → ACK, INFORM → ACK, DECLINE (no answer), DISCOVER → OFFER
 *     of another address.
 *   bun dhcp4o6_conformance.ts privacy SERVER6 ADDR1 ADDR2
 *     One DHCPv4 client (same client identifier) from two IPv6 addresses of the host in turn
 *     (RFC 8981 temporary addresses): DISCOVER/REQUEST from ADDR1, then from ADDR2.
 *   bun dhcp4o6_conformance.ts relay SERVER6
 *     A relay agent (port 547) to SERVER6: the client's DISCOVER and REQUEST inside two nested
 *     RELAY-FORWs (interface-id on the inner one); records the RELAY-REPL chain.
 *
 * Every wait is bounded (3 s per answer); an answer that does not come is recorded as null.
 */
import { formatIPv4 } from "../../lib/net/addr.ts";
import { bindUdp } from "../../lib/sys/udp.ts";
import {
  type Dhcp4Message,
  Dhcp4MessageType,
  type Dhcp4Options,
  dhcp4MessageTypeName,
} from "../../lib/wire/dhcp4.ts";
import { Dhcp6MessageType, decodeDhcp4o6, encodeDhcp4o6 } from "../../lib/wire/dhcp4o6.ts";
import {
  type Dhcp6RelayMessage,
  decodeDhcp6Relay,
  encodeDhcp6Relay,
  unwrapRelays,
} from "../../lib/wire/dhcp6_relay.ts";
import { dhcp4Message } from "../helpers/dhcp4.ts";
import { eventually } from "../helpers/wait.ts";

const [mode = "", target = ""] = process.argv.slice(2);
const WAIT_MS = 3000;

interface Seen {
  data: Uint8Array;
  from: string;
  port: number;
}
const received: Seen[] = [];
const [addr1 = "::", addr2 = "::"] = process.argv.slice(4);
const ep = await bindUdp(
  mode === "privacy" ? addr1 : "::",
  mode === "relay" ? 547 : 546,
  (data, from, port) => {
    received.push({ data, from, port });
  },
);

function message(
  chaddr: Uint8Array,
  xid: number,
  options: Dhcp4Options,
  fields: Partial<Dhcp4Message> = {},
): Dhcp4Message {
  return dhcp4Message(
    options.messageType,
    { clientId: Uint8Array.of(1, ...chaddr), ...options },
    { xid, chaddr, ...fields },
  );
}

/**
 * The DHCPv4 answer with `xid` (and, when `types` are given, one of those message types)
 * inside whatever came, relayed or not; waited for up to `waitMs`, then null.
 */
async function answerTo(xid: number, waitMs = WAIT_MS, types: readonly number[] = []) {
  const find = () => {
    for (const seen of received) {
      const opened = unwrapRelays(seen.data, 13);
      if (!opened.ok) continue;
      const r = decodeDhcp4o6(opened.value.inner);
      if (!r.ok || r.value.dhcp4.xid !== xid) continue;
      if (types.length > 0 && !types.includes(r.value.dhcp4.options.messageType)) continue;
      return { seen, relays: opened.value.relays, r: r.value };
    }
    return null;
  };
  await eventually(() => find() !== null, { timeoutMs: waitMs, intervalMs: 20 });
  return find();
}

/** What the test compares: the DHCPv4 answer's type and the fields RFC 2131 table 3 governs. */
function summary(a: Awaited<ReturnType<typeof answerTo>>) {
  if (!a) return null;
  const m = a.r.dhcp4;
  return {
    dhcp6: a.r.type,
    type: dhcp4MessageTypeName(m.options.messageType),
    yiaddr: m.yiaddr ? formatIPv4(m.yiaddr) : "0.0.0.0",
    ciaddr: m.ciaddr ? formatIPv4(m.ciaddr) : "0.0.0.0",
    serverId: m.options.serverId !== undefined,
    leaseTime: m.options.leaseTime !== undefined,
    // RFC 6842: the client identifier comes back unaltered (every query here sends one).
    clientId:
      Buffer.from(m.options.clientId ?? []).toString("hex") ===
      `01${Buffer.from(m.chaddr).toString("hex")}`,
    to: a.seen.port,
  };
}

function query(dhcp4: Dhcp4Message, flags = 0): Uint8Array {
  return encodeDhcp4o6({ type: Dhcp6MessageType.DHCPV4_QUERY, flags, dhcp4 });
}

if (mode === "direct") {
  const to = `ff02::1:2%${target}`;
  const chaddr = Uint8Array.of(0x02, 0, 0x5e, 0x10, 0, 0x11);
  ep.send(query(message(chaddr, 0x11110001, { messageType: Dhcp4MessageType.DISCOVER })), to, 547);
  const offer = await answerTo(0x11110001);
  const offered = offer?.r.dhcp4.yiaddr ?? 0;
  const serverId = offer?.r.dhcp4.options.serverId;
  ep.send(
    query(
      message(chaddr, 0x11110001, {
        messageType: Dhcp4MessageType.REQUEST,
        requestedIp: offered,
        serverId,
      }),
    ),
    to,
    547,
  );
  const ack = await answerOfType(0x11110001, Dhcp4MessageType.ACK, Dhcp4MessageType.NAK);
  ep.send(
    query(
      message(chaddr, 0x11110003, { messageType: Dhcp4MessageType.INFORM }, { ciaddr: offered }),
    ),
    to,
    547,
  );
  const inform = await answerTo(0x11110003);
  ep.send(
    query(
      message(chaddr, 0x11110004, {
        messageType: Dhcp4MessageType.DECLINE,
        requestedIp: offered,
        serverId,
      }),
    ),
    to,
    547,
  );
  ep.send(query(message(chaddr, 0x11110005, { messageType: Dhcp4MessageType.DISCOVER })), to, 547);
  const after = await answerTo(0x11110005);
  // Datagrams arrive in order: an answer to the DECLINE would have come before the OFFER.
  const declineAnswer = await answerTo(0x11110004, 0);
  console.log(
    JSON.stringify({
      from: offer?.seen.from ?? null,
      offer: summary(offer),
      ack: summary(ack),
      inform: summary(inform),
      decline: summary(declineAnswer),
      afterDecline: summary(after),
      sameAddressAfterDecline: after !== null && after.r.dhcp4.yiaddr === offered,
    }),
  );
} else if (mode === "privacy") {
  const ep2 = await bindUdp(addr2, 546, (data, from, port) => {
    received.push({ data, from, port });
  });
  const chaddr = Uint8Array.of(0x02, 0, 0x5e, 0x10, 0, 0x44);
  const dora = async (via: typeof ep, xid: number) => {
    via.send(query(message(chaddr, xid, { messageType: Dhcp4MessageType.DISCOVER })), target, 547);
    const offer = await answerTo(xid);
    via.send(
      query(
        message(chaddr, xid, {
          messageType: Dhcp4MessageType.REQUEST,
          requestedIp: offer?.r.dhcp4.yiaddr ?? 0,
          serverId: offer?.r.dhcp4.options.serverId,
        }),
      ),
      target,
      547,
    );
    const ack = await answerOfType(xid, Dhcp4MessageType.ACK, Dhcp4MessageType.NAK);
    return { offer: summary(offer), ack: summary(ack) };
  };
  const first = await dora(ep, 0x44440001);
  const second = await dora(ep2, 0x44440002);
  ep2.close();
  console.log(JSON.stringify({ first, second }));
} else if (mode === "relay") {
  const chaddr = Uint8Array.of(0x02, 0, 0x5e, 0x10, 0, 0x22);
  const relayed = (payload: Uint8Array): Uint8Array => {
    // The relay next to the client (hop 0) names the client's link and interface; the relay
    // next to the server (hop 1) has no link-address of the client's link (RFC 8415 §19.1.2).
    const inner: Dhcp6RelayMessage = {
      type: 12,
      hopCount: 0,
      linkAddress: "2001:db8:6::1",
      peerAddress: "fe80::200:5eff:fe10:22",
      interfaceId: new TextEncoder().encode("ge-0/0/7"),
      unknown: [{ code: 37, data: Uint8Array.of(0, 0, 0x0d, 0xe9, 0x61, 0x62) }],
      relayMessage: payload,
    };
    return encodeDhcp6Relay({
      type: 12,
      hopCount: 1,
      linkAddress: "::",
      peerAddress: "2001:db8:6::1",
      relayMessage: encodeDhcp6Relay(inner),
    });
  };
  ep.send(
    relayed(query(message(chaddr, 0x22220001, { messageType: Dhcp4MessageType.DISCOVER }))),
    target,
    547,
  );
  const offer = await answerTo(0x22220001);
  ep.send(
    relayed(
      query(
        message(chaddr, 0x22220001, {
          messageType: Dhcp4MessageType.REQUEST,
          requestedIp: offer?.r.dhcp4.yiaddr ?? 0,
          serverId: offer?.r.dhcp4.options.serverId,
        }),
      ),
    ),
    target,
    547,
  );
  const ack = await answerOfType(0x22220001, Dhcp4MessageType.ACK, Dhcp4MessageType.NAK);
  const chain = (a: Awaited<ReturnType<typeof answerTo>>) =>
    a?.relays.map((r) => ({
      type: r.type,
      hopCount: r.hopCount,
      linkAddress: r.linkAddress,
      peerAddress: r.peerAddress,
      interfaceId: r.interfaceId ? new TextDecoder().decode(r.interfaceId) : null,
    })) ?? null;
  const outer = offer ? decodeDhcp6Relay(offer.seen.data) : null;
  console.log(
    JSON.stringify({
      offer: summary(offer),
      ack: summary(ack),
      offerChain: chain(offer),
      ackChain: chain(ack),
      outerType: outer?.ok ? outer.value.type : null,
      fromPort: offer?.seen.port ?? null,
    }),
  );
} else {
  console.error(
    "usage: dhcp4o6_conformance.ts direct IFNAME | relay SERVER6 | privacy SERVER6 ADDR1 ADDR2",
  );
  process.exit(2);
}
ep.close();

/** The answer with `xid` whose DHCPv4 type is one of `types` (an OFFER shares the REQUEST's xid). */
function answerOfType(xid: number, ...types: number[]) {
  return answerTo(xid, WAIT_MS, types);
}
