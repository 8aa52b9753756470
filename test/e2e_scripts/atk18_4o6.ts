/**
 * Run inside a namespace (test/atk18_dhcp4o6_link_names.test.ts): one DHCPv4-over-DHCPv6
 * message exchange of the link-local client fe80::10 with hardware address
 * 02:00:5e:18:00:LAST, sent either as the client itself (direct: from its link-local address,
 * port 546, to ff02::1:2%IFNAME) or as a RELAY-FORW crafted by a relay (or by an attacker posing
 * as one) to the server's unicast address on port 547, with the given link-address,
 * Interface-ID (hex, optional) and peer-address. Prints one line of JSON: the answer's type and
 * yiaddr (null when none came within 3 s).
 *
 *   bun atk18_4o6.ts SPEC VERB LAST [IPV4 SERVER_ID]
 *     SPEC  {"direct":"eth0"} or {"server":"2001:db8:…","link":"2001:db8:…","ifid":"01","peer":"fe80::10"}
 *     VERB  lease (DISCOVER, REQUEST of the offer: prints the REQUEST's answer and the offer),
 *           discover (the OFFER), renew (REQUEST with ciaddr IPV4), release (ciaddr IPV4,
 *           option 54 SERVER_ID; no answer: prints {"sent":true})
 */
import { formatIPv4, parseIPv4 } from "../../lib/net/addr.ts";
import { bindUdp } from "../../lib/sys/udp.ts";
import { Dhcp4MessageType, type Dhcp4Options, dhcp4MessageTypeName } from "../../lib/wire/dhcp4.ts";
import { Dhcp6MessageType, decodeDhcp4o6, encodeDhcp4o6 } from "../../lib/wire/dhcp4o6.ts";
import { Dhcp6RelayType, encodeDhcp6Relay, unwrapRelays } from "../../lib/wire/dhcp6_relay.ts";
import { dhcp4Message } from "../helpers/dhcp4.ts";
import { eventually } from "../helpers/wait.ts";

interface Spec {
  readonly direct?: string;
  readonly server?: string;
  readonly link?: string;
  readonly ifid?: string;
  readonly peer?: string;
}
const [specText = "{}", verb = "lease", last = "1", ipv4 = "", serverId = ""] =
  process.argv.slice(2);
const spec = JSON.parse(specText) as Spec;
const chaddr = Uint8Array.of(0x02, 0, 0x5e, 0x18, 0, Number(last));
let xid = (0x18180000 + Number(last) * 256 + (Date.now() % 256)) >>> 0;
const received: Uint8Array[] = [];
const ep = await bindUdp("::", spec.direct ? 546 : 547, (data) => {
  const inner = spec.direct ? data : unwrapRelays(data, Dhcp6RelayType.RELAY_REPL);
  if (inner instanceof Uint8Array) received.push(inner);
  else if (inner.ok) received.push(inner.value.inner);
});

function send(type: Dhcp4MessageType, extra: Partial<Dhcp4Options> = {}, ciaddr = 0): void {
  const dhcp4 = dhcp4Message(
    type,
    { clientId: Uint8Array.of(1, ...chaddr), ...extra },
    { xid, chaddr, ciaddr },
  );
  const query = encodeDhcp4o6({ type: Dhcp6MessageType.DHCPV4_QUERY, flags: 0, dhcp4 });
  if (spec.direct) {
    ep.send(query, `ff02::1:2%${spec.direct}`, 547);
    return;
  }
  const raw = encodeDhcp6Relay({
    type: Dhcp6RelayType.RELAY_FORW,
    hopCount: 0,
    linkAddress: spec.link ?? "::",
    peerAddress: spec.peer ?? "fe80::10",
    relayMessage: query,
    ...(spec.ifid !== undefined ? { interfaceId: Buffer.from(spec.ifid, "hex") } : {}),
  });
  ep.send(raw, spec.server ?? "", 547);
}

async function answer() {
  const find = () => {
    for (const data of received) {
      const r = decodeDhcp4o6(data);
      if (r.ok && r.value.dhcp4.xid === xid) return r.value.dhcp4;
    }
    return null;
  };
  await eventually(() => find() !== null, { timeoutMs: 3000, intervalMs: 20 });
  const m = find();
  return m && { type: dhcp4MessageTypeName(m.options.messageType), yiaddr: formatIPv4(m.yiaddr) };
}

let out: unknown;
if (verb === "release") {
  send(Dhcp4MessageType.RELEASE, { serverId: parseIPv4(serverId)! }, parseIPv4(ipv4)!);
  out = { sent: true };
} else if (verb === "renew") {
  send(Dhcp4MessageType.REQUEST, {}, parseIPv4(ipv4)!);
  out = await answer();
} else {
  send(Dhcp4MessageType.DISCOVER);
  const offer = await answer();
  out = offer;
  if (verb === "lease" && offer) {
    xid++;
    send(Dhcp4MessageType.REQUEST, {
      requestedIp: parseIPv4(offer.yiaddr)!,
      serverId: parseIPv4("203.0.113.53")!,
    });
    out = { offer, ack: await answer() };
  }
}
console.log(JSON.stringify(out));
ep.close();
process.exit(0);
