/**
 * Holds a server's datagrams to the TEP back and delivers them later, as a network that delays
 * them would (test/scaleout18_*.test.ts): the TEP's namespace rewrites the server's datagrams
 * to its control port to HOLD_PORT (nftables), where `hold` receives them instead of the TEP;
 * `replay` later sends chosen ones from the server's address to the TEP, and nftables makes
 * their source port the server's (4607). The bytes are the server's own, never re-signed.
 *
 *   bun test/sys_scripts/g18_hold.ts hold LISTEN6 HOLD_PORT DIR
 *     In the TEP's namespace: receives on [LISTEN6]:HOLD_PORT; each datagram is written to
 *     DIR/N.bin (N from 0) and said as one JSON line {"n", "type", "host4", "host6",
 *     "generation", "snapshot"} (type: BIND, UNBIND, SNAPSHOT, SYNC …). Runs until killed.
 *
 *   bun test/sys_scripts/g18_hold.ts replay FROM6 FROM_PORT TO6 DIR N[,N…]
 *     In the server's namespace: sends DIR/N.bin from [FROM6]:FROM_PORT to [TO6]:4608, in the
 *     order given; prints `replayed COUNT`.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { formatIPv4 } from "../../lib/net/addr.ts";
import { bindUdp } from "../../lib/sys/udp.ts";
import { decodeMessage, messageTypeName } from "../../lib/wire/dstm.ts";

const [mode = "", ...rest] = process.argv.slice(2);

if (mode === "hold") {
  const [listen = "", port = "", dir = ""] = rest;
  let n = 0;
  await bindUdp(listen, Number(port), (data) => {
    const i = n++;
    writeFileSync(join(dir, `${i}.bin`), data);
    const d = decodeMessage(data);
    const m = d.ok ? d.value : undefined;
    console.log(
      JSON.stringify({
        n: i,
        type: m ? messageTypeName(m.type) : "?",
        host4: m?.host4 === undefined ? undefined : formatIPv4(m.host4),
        host6: m?.host6,
        generation: m?.generation,
        snapshot: m?.snapshot,
      }),
    );
  });
  console.log("holding");
  await new Promise(() => {});
} else if (mode === "replay") {
  const [from = "", fromPort = "", to = "", dir = "", list = ""] = rest;
  const ep = await bindUdp(from, Number(fromPort), () => {});
  const ns = list.split(",").map(Number);
  for (const i of ns) ep.send(readFileSync(join(dir, `${i}.bin`)), to, 4608);
  // Sends are queued on the socket: give the event loop a turn before closing it.
  await new Promise((resolve) => setImmediate(resolve));
  ep.close();
  console.log(`replayed ${ns.length}`);
} else {
  console.error("usage: g18_hold.ts hold LISTEN6 PORT DIR | replay FROM6 PORT TO6 DIR N[,N]");
  process.exit(2);
}
