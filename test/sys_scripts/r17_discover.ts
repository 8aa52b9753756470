/**
 * One host's DISCOVER to one server, retransmitted patiently (500 ms doubling, 8 tries): for a
 * server that is paused when it is sent (test/redteam_scaleout17_race.repro.ts). Prints
 * `sent`, then one JSON line {"ipv4": dotted}.
 *
 *   bun test/sys_scripts/r17_discover.ts SERVER HOST6
 */
import { DstmClient, DstmTransport } from "../../lib/client/protocol.ts";
import { formatIPv4 } from "../../lib/net/addr.ts";

const [server = "", host6 = ""] = process.argv.slice(2);
const transport = await DstmTransport.open({
  server,
  port: 4607,
  retry: { initialMs: 500, tries: 8 },
});
console.log("sent");
const lease = await new DstmClient(transport, host6).discover();
console.log(JSON.stringify({ ipv4: formatIPv4(lease.ipv4) }));
transport.close();
