/**
 * Run inside a namespace: a dstm server answering DHCPv4-over-DHCPv6 on [::1]:547 and a
 * client stand-in on port 546 doing DISCOVER/OFFER, REQUEST/ACK, a renewal with the U flag and
 * a RELEASE, with a shared pool so the ACK carries option 159. Prints the leased address as JSON.
 */
import { Logger } from "../../lib/control/log.ts";
import { formatIPv4, parseIPv4 } from "../../lib/net/addr.ts";
import { DstmServer } from "../../lib/server/server.ts";
import { bindUdp } from "../../lib/sys/udp.ts";
import { type Dhcp4Message, Dhcp4MessageType, type Dhcp4Options } from "../../lib/wire/dhcp4.ts";
import { DHCP4O6_FLAG_UNICAST, decodeDhcp4o6 } from "../../lib/wire/dhcp4o6.ts";
import { dhcp4Message, dhcp4o6Query } from "../helpers/dhcp4.ts";
import { eventually } from "../helpers/wait.ts";

const serverId = parseIPv4("192.0.2.1")!;
const server = await DstmServer.start({
  pools: [{ prefixes: ["198.51.100.0/30"], share: 4, tep6: "2001:db8::1", tep4: serverId }],
  leaseTime: 600,
  listen: { address: "::1", port: 0 },
  sourceCheck: true,
  dhcp4o6: { address: "::1", port: 547, interfaces: [], serverId },
  log: new Logger({ sink: () => {} }),
});
let answer: Uint8Array | null = null;
const client = await bindUdp("::1", 546, (data) => {
  answer = data;
});
const chaddr = Uint8Array.from([0x02, 0, 0, 0, 0, 0x42]);
async function ask(
  type: Dhcp4MessageType,
  fields: Partial<Dhcp4Message>,
  options: Partial<Dhcp4Options>,
  flags = 0,
) {
  answer = null;
  const dhcp4 = dhcp4Message(
    type,
    {
      clientId: Uint8Array.from([1, ...chaddr]),
      parameterRequestList: [1, 3, 51, 54, 159],
      ...options,
    },
    { xid: 0x2b2b0000 + type, chaddr, ...fields },
  );
  client.send(dhcp4o6Query(dhcp4, flags), "::1", 547);
  await eventually(() => answer !== null, { timeoutMs: 500 });
  if (!answer) return null;
  const decoded = decodeDhcp4o6(answer);
  return decoded.ok ? decoded.value.dhcp4 : null;
}
const offer = await ask(Dhcp4MessageType.DISCOVER, {}, {});
const ack = await ask(Dhcp4MessageType.REQUEST, {}, { requestedIp: offer!.yiaddr, serverId });
const renew = await ask(
  Dhcp4MessageType.REQUEST,
  { ciaddr: ack!.yiaddr },
  {},
  DHCP4O6_FLAG_UNICAST,
);
await ask(Dhcp4MessageType.RELEASE, { ciaddr: ack!.yiaddr }, { serverId });
client.close();
await server.stop();
console.log(
  JSON.stringify({
    offered: formatIPv4(offer!.yiaddr),
    acked: renew?.options.messageType === Dhcp4MessageType.ACK,
    portParams: ack!.options.portParams,
  }),
);
