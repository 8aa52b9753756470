/**
 * Run inside a host namespace (test/ver17_relay_link_local.test.ts): one DHCPv4-over-DHCPv6
 * client, as a standard one (link-local source, port 546, to ff02::1:2%IFNAME), takes a lease
 * (DISCOVER → OFFER, REQUEST → ACK) with the hardware address 02:00:5e:10:00:LAST and keeps
 * it (no RELEASE). Prints, last, one line of JSON: the OFFER's and the ACK's type and yiaddr
 * (null when no answer came within 3 s).
 *
 *   bun ver17_4o6_lease.ts IFNAME LAST
 *   bun ver17_4o6_lease.ts IFNAME LAST release IPV4 SERVER_ID
 *     RELEASE of IPV4 (ciaddr) to the server SERVER_ID (option 54) instead; prints {"sent":true}.
 */
import { formatIPv4, parseIPv4 } from "../../lib/net/addr.ts";
import { bindUdp } from "../../lib/sys/udp.ts";
import { Dhcp4MessageType, type Dhcp4Options, dhcp4MessageTypeName } from "../../lib/wire/dhcp4.ts";
import { Dhcp6MessageType, decodeDhcp4o6, encodeDhcp4o6 } from "../../lib/wire/dhcp4o6.ts";
import { dhcp4Message } from "../helpers/dhcp4.ts";
import { eventually } from "../helpers/wait.ts";

const [ifname = "", last = "1", verb = "lease", ipv4 = "", serverId = ""] = process.argv.slice(2);
const chaddr = Uint8Array.of(0x02, 0, 0x5e, 0x10, 0, Number(last));
const xid = 0x17170000 + Number(last);
const received: Uint8Array[] = [];
const ep = await bindUdp("::", 546, (data) => {
  received.push(data);
});
const to = `ff02::1:2%${ifname}`;

function send(type: Dhcp4MessageType, extra: Partial<Dhcp4Options> = {}, ciaddr = 0): void {
  const dhcp4 = dhcp4Message(
    type,
    { clientId: Uint8Array.of(1, ...chaddr), ...extra },
    { xid, chaddr, ciaddr },
  );
  ep.send(encodeDhcp4o6({ type: Dhcp6MessageType.DHCPV4_QUERY, flags: 0, dhcp4 }), to, 547);
}

async function answer(type: number) {
  const find = () => {
    for (const data of received) {
      const r = decodeDhcp4o6(data);
      if (r.ok && r.value.dhcp4.xid === xid && r.value.dhcp4.options.messageType === type)
        return r.value.dhcp4;
    }
    return null;
  };
  await eventually(() => find() !== null, { timeoutMs: 3000, intervalMs: 20 });
  return find();
}

if (verb === "release") {
  send(Dhcp4MessageType.RELEASE, { serverId: parseIPv4(serverId)! }, parseIPv4(ipv4)!);
  console.log(JSON.stringify({ sent: true }));
  process.exit(0);
}
send(Dhcp4MessageType.DISCOVER);
const offer = await answer(Dhcp4MessageType.OFFER);
let ack = null;
if (offer) {
  send(Dhcp4MessageType.REQUEST, {
    requestedIp: offer.yiaddr,
    serverId: offer.options.serverId,
  });
  ack = (await answer(Dhcp4MessageType.ACK)) ?? (await answer(Dhcp4MessageType.NAK));
}
const summary = (m: typeof offer) =>
  m && {
    type: dhcp4MessageTypeName(m.options.messageType),
    yiaddr: formatIPv4(m.yiaddr ?? 0),
  };
console.log(JSON.stringify({ offer: summary(offer), ack: summary(ack) }));
ep.close();
process.exit(0);
