/**
 * Run inside a host namespace (test/id18_dhcp4o6_one_link.test.ts): one standard
 * DHCPv4-over-DHCPv6 client (link-local source, port 546, to ff02::1:2%IFNAME) whose every
 * query reaches the server COPIES times (heard directly and through a relay, or through two
 * relays of its link). It sends a DISCOVER, waits for COPIES answers (3 s at most), REQUESTs
 * the first OFFER's address, waits for COPIES answers again, and prints one line of JSON: every
 * answer's type and yiaddr, in arrival order.
 *
 *   bun id18_4o6_copies.ts IFNAME LAST COPIES
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
import { dhcp4Message } from "../helpers/dhcp4.ts";
import { eventually } from "../helpers/wait.ts";

const [ifname = "", last = "1", copiesText = "2"] = process.argv.slice(2);
const copies = Number(copiesText);
const chaddr = Uint8Array.of(0x02, 0, 0x5e, 0x18, 0, Number(last));
const received: Dhcp4Message[] = [];
const ep = await bindUdp("::", 546, (data) => {
  const r = decodeDhcp4o6(data);
  if (r.ok) received.push(r.value.dhcp4);
});
const to = `ff02::1:2%${ifname}`;

function send(type: Dhcp4MessageType, xid: number, extra: Partial<Dhcp4Options> = {}): void {
  const dhcp4 = dhcp4Message(
    type,
    { clientId: Uint8Array.of(1, ...chaddr), ...extra },
    { xid, chaddr },
  );
  ep.send(encodeDhcp4o6({ type: Dhcp6MessageType.DHCPV4_QUERY, flags: 0, dhcp4 }), to, 547);
}

/** The answers to `xid`, once COPIES of them came (or after 3 s, what came). */
async function answers(xid: number): Promise<Dhcp4Message[]> {
  const mine = () => received.filter((m) => m.xid === xid);
  await eventually(() => mine().length >= copies, { timeoutMs: 3000, intervalMs: 20 });
  return mine();
}

const summary = (m: Dhcp4Message) => ({
  type: dhcp4MessageTypeName(m.options.messageType),
  yiaddr: formatIPv4(m.yiaddr ?? 0),
});
const xid = 0x18180000 + Number(last) * 16;
send(Dhcp4MessageType.DISCOVER, xid);
const offers = await answers(xid);
let acks: Dhcp4Message[] = [];
const first = offers.find((m) => m.options.messageType === Dhcp4MessageType.OFFER);
if (first) {
  send(Dhcp4MessageType.REQUEST, xid + 1, {
    requestedIp: first.yiaddr,
    serverId: first.options.serverId,
  });
  acks = await answers(xid + 1);
}
console.log(JSON.stringify({ offers: offers.map(summary), acks: acks.map(summary) }));
ep.close();
process.exit(0);
