/**
 * Run inside a host namespace: native DSTM exchanges for one or many hosts, each answer
 * printed as one JSON line, for the lease administration tests (test/lease_admin.test.ts).
 *
 *   bun dstm_hosts.ts SERVER PORT '{"ops":[{"op":"discover","host6":"2001:db8:1::a"},
 *                                        {"op":"request","host6":"…","ipv4":"198.51.100.5"}]}'
 *   bun dstm_hosts.ts SERVER PORT '{"spray":{"base":"2001:db8:100","first":0,"count":2500}}'
 *
 * An op prints `{"op","host6","ok":true,"ipv4"}` or `{"op","host6","ok":false,"status","text"}`;
 * a spray (DISCOVER for hosts BASE:i::1, 32 at a time, bounded by count ≤ 10000) prints
 * `leased N` every 500 and `{"leased":N,"refused":M}` last.
 */
import { DstmClient, DstmRefusedError, DstmTransport } from "../../lib/client/protocol.ts";
import { formatIPv4, parseIPv4 } from "../../lib/net/addr.ts";
import { statusName } from "../../lib/wire/dstm.ts";

const [server, portText, specText] = process.argv.slice(2);
const spec = JSON.parse(specText ?? "{}") as {
  ops?: { op: "discover" | "request"; host6: string; ipv4?: string }[];
  spray?: { base: string; first: number; count: number };
};
const transport = await DstmTransport.open({
  server: server as string,
  port: Number(portText),
  retry: { initialMs: 500, tries: 6 },
});
try {
  for (const op of spec.ops ?? []) {
    const client = new DstmClient(transport, op.host6);
    try {
      const lease =
        op.op === "discover"
          ? await client.discover()
          : await client.request(parseIPv4(op.ipv4 ?? "") as number);
      console.log(JSON.stringify({ ...op, ok: true, ipv4: formatIPv4(lease.ipv4) }));
    } catch (error) {
      if (!(error instanceof DstmRefusedError)) throw error;
      console.log(
        JSON.stringify({
          ...op,
          ok: false,
          status: statusName(error.status),
          text: error.statusText,
        }),
      );
    }
  }
  if (spec.spray) {
    const { base, first, count } = spec.spray;
    if (!(count >= 0 && count <= 10_000)) throw new Error("spray count must be 0–10000");
    let leased = 0;
    let refused = 0;
    for (let i = first; i < first + count; i += 32) {
      const batch = [];
      for (let j = i; j < Math.min(first + count, i + 32); j++)
        batch.push(new DstmClient(transport, `${base}:${j.toString(16)}::1`).discover());
      for (const result of await Promise.allSettled(batch)) {
        if (result.status === "fulfilled") leased++;
        else refused++;
      }
      if (
        Math.floor((leased + refused) / 500) !== Math.floor((leased + refused - batch.length) / 500)
      )
        console.log(`leased ${leased}`);
    }
    console.log(JSON.stringify({ leased, refused }));
  }
} finally {
  transport.close();
}
