/**
 * Run inside a host namespace: lease churn for the TEP-key rotation test
 * (test/tep_key_rotation.test.ts): hosts BASE:i::1 (i < HOSTS) each DISCOVER then RELEASE,
 * round after round, so that the server sends a BIND (answered by a BIND_ACK) and an UNBIND
 * to its TEP for each. Stops when the file STOP exists, after 2,000 rounds or 5 minutes.
 * Every failed exchange prints one JSON line `{"host6","op","error"}`; each round prints
 * `round N`; the last line is `{"ok":N,"failed":M}`.
 *
 *   bun dstm_churn.ts SERVER PORT BASE HOSTS STOP
 */
import { existsSync } from "node:fs";
import { DstmClient, DstmTransport } from "../../lib/client/protocol.ts";

const [server, portText, base, hostsText, stop] = process.argv.slice(2);
const hosts = Math.min(16, Number(hostsText));
const transport = await DstmTransport.open({
  server: server as string,
  port: Number(portText),
  retry: { initialMs: 1000, tries: 4 },
});
const clients = Array.from(
  { length: hosts },
  (_, i) => new DstmClient(transport, `${base}:${i.toString(16)}::1`),
);
let ok = 0;
let failed = 0;
const until = Date.now() + 300_000;
for (let round = 0; round < 2000 && Date.now() < until && !existsSync(stop as string); round++) {
  await Promise.all(
    clients.map(async (client, i) => {
      const host6 = `${base}:${i.toString(16)}::1`;
      try {
        const lease = await client.discover();
        ok++;
        try {
          await client.release(lease.ipv4);
          ok++;
        } catch (error) {
          failed++;
          console.log(JSON.stringify({ host6, op: "release", error: String(error) }));
        }
      } catch (error) {
        failed++;
        console.log(JSON.stringify({ host6, op: "discover", error: String(error) }));
      }
    }),
  );
  console.log(`round ${round}`);
}
console.log(JSON.stringify({ ok, failed }));
transport.close();
