/**
 * Run inside a host namespace: sends one query to a server address and prints, as JSON, the
 * source address of every answer that came back within the wait (test/multihomed.test.ts).
 *
 *   bun answer_source.ts dstm    SERVER6 HOST6 [PORT]   DSTM_DISCOVER to UDP 4607
 *   bun answer_source.ts dhcp4o6 SERVER6 HOST6 [PORT]   DHCPv4-query (DISCOVER) to UDP 547
 *
 * The socket is bound to HOST6 port 0 (dstm) or 546 (dhcp4o6) and accepts answers from
 * anyone, so the output shows where the server answered from.
 */
import { parseIPv6 } from "../../lib/net/addr.ts";
import { bindUdp } from "../../lib/sys/udp.ts";
import { Dhcp4MessageType } from "../../lib/wire/dhcp4.ts";
import { encodeMessage } from "../../lib/wire/dstm.ts";
import { MessageType } from "../../lib/wire/dstm_types.ts";
import { dhcp4Message, dhcp4o6Query } from "../helpers/dhcp4.ts";
import { eventually } from "../helpers/wait.ts";

const [mode, server6, host6, portText] = process.argv.slice(2) as [string, string, string, string?];
if (!parseIPv6(server6) || !parseIPv6(host6)) throw new Error("usage: MODE SERVER6 HOST6 [PORT]");
const from: string[] = [];
const sock = await bindUdp(host6, mode === "dhcp4o6" ? 546 : 0, (_data, address) => {
  from.push(address);
});
let query: Uint8Array;
let port: number;
if (mode === "dstm") {
  query = encodeMessage({ type: MessageType.DISCOVER, xid: 0x5eed, host6 });
  port = Number(portText ?? 4607);
} else {
  const chaddr = Uint8Array.from([0x02, 0, 0, 0, 0, 0x43]);
  query = dhcp4o6Query(
    dhcp4Message(
      Dhcp4MessageType.DISCOVER,
      { clientId: Uint8Array.from([1, ...chaddr]) },
      { xid: 0x5eed, chaddr },
    ),
  );
  port = Number(portText ?? 547);
}
// Up to 3 tries, 1 s apart, until something answers.
for (let attempt = 0; attempt < 3 && from.length === 0; attempt++) {
  sock.send(query, server6, port);
  await eventually(() => from.length > 0, { timeoutMs: 1000 });
}
sock.close();
console.log(JSON.stringify({ from }));
