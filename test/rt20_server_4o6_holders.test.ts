/**
 * Red team (rt20) of the SQLite holder guard (lib/lease/sqlite_holders.ts) through the
 * DHCPv4-over-DHCPv6 server: an in-process `DstmServer` with `--db FILE`, identity mode
 * `client-id` (the holder is `id:HEX` of option 61), every client behind one IPv6 address
 * (::1), 16 of them with client identifiers whose holder hashes are equal two by two (found
 * in this process, whose keyed hash the server uses) and 8 plain ones, on a 4-way shared pool.
 * Clients DISCOVER/REQUEST and RELEASE at random; the server stops and starts again on the file
 * three times. After each life `dstm lease ls --db FILE --json`: no identity twice, no slot
 * twice, and every ACKed lease of the life that was not released is there.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { holderHash } from "../lib/lease/holder_index.ts";
import { formatIPv4 } from "../lib/net/addr.ts";
import { DstmServer } from "../lib/server/server.ts";
import { bindUdp } from "../lib/sys/udp.ts";
import { type Dhcp4Message, Dhcp4MessageType } from "../lib/wire/dhcp4.ts";
import { dhcp4Message, dhcp4o6Query } from "./helpers/dhcp4.ts";
import { exchange4o6 } from "./helpers/dhcp4o6_exchange.ts";
import { spawnDstm } from "./helpers/process.ts";
import { pairsWithOneHash, random } from "./helpers/rt20_guard_fuzz.ts";
import { config4o6, SERVER_ID_4O6 } from "./helpers/server_4o6.ts";

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

/**
 * 8 pairs of option-61 identities (type 01, 16 bytes) with one holderHash a pair, in this
 * process (the server runs in it): the hash is keyed per process, so a birthday search.
 */
const ID_PAIRS = pairsWithOneHash(
  8,
  (i) => `id:01${(2 * i).toString(16).padStart(32, "0")}`,
  (i) => `id:01${(2 * i + 1).toString(16).padStart(32, "0")}`,
);
/** Option 61 of client n: 16 in colliding pairs, then plain ones. */
function clientIdHex(n: number): string {
  if (n < 16) return ((ID_PAIRS[n >> 1] as [string, string])[n & 1] as string).slice(3);
  return `01${(0x1000 + n).toString(16).padStart(32, "0")}`;
}
const CLIENTS = 24;
const bytes = (hex: string) => Uint8Array.from(Buffer.from(hex, "hex"));

/** Sends `dhcp4` in a DHCPV4-QUERY to [::1]:`port`, expecting no answer. */
async function sendOnly(port: number, dhcp4: Dhcp4Message): Promise<void> {
  const ep = await bindUdp("::1", 0, () => {});
  try {
    ep.send(dhcp4o6Query(dhcp4), "::1", port);
  } finally {
    ep.close();
  }
}

async function leaseLs(db: string): Promise<Record<string, unknown>[]> {
  const ls = spawnDstm(["lease", "ls", "--db", db, "--json"]);
  const code = await ls.exited;
  if (code !== 0) throw new Error(`lease ls exited ${code}: ${await ls.stderr()}`);
  return (JSON.parse(ls.lines.join("\n")) as { leases: Record<string, unknown>[] }).leases;
}

test("4o6 clients with colliding identities, releases and restarts: one lease per identity, no slot twice", async () => {
  const ids = Array.from({ length: 16 }, (_, n) => `id:${clientIdHex(n)}`);
  expect(new Set(ids).size).toBe(16);
  for (let n = 0; n < 16; n += 2)
    expect(holderHash(ids[n] as string)).toBe(holderHash(ids[n + 1] as string));
  const dir = mkdtempSync(join(tmpdir(), "dstm-rt20-4o6-"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  const db = join(dir, "leases.db");
  const next = random(0x4064);
  let acks = 0;
  let releases = 0;
  for (let life = 0; life < 3; life++) {
    const base = config4o6();
    const server = await DstmServer.start({
      ...base,
      db,
      pools: [
        { ...(base.pools[0] as (typeof base.pools)[0]), prefixes: ["198.51.100.0/29"], share: 4 },
      ],
      admission: { maxLeasesPerPrefix: 0, maxLeasesPerSite: 0, ratePerSecond: 0 },
      dhcp4o6: { ...(base.dhcp4o6 as NonNullable<typeof base.dhcp4o6>), identity: "client-id" },
    });
    let stopped = false;
    cleanup.push(() => (stopped ? undefined : server.stop()));
    const port = server.dhcp4o6Port as number;
    /** identity → the address ACKed to it in this life (absent: none or released). */
    const held = new Map<string, number>();
    for (let step = 0; step < 120; step++) {
      const n = Math.floor(next() * CLIENTS);
      const id = `id:${clientIdHex(n)}`;
      const fields = { xid: 0x52000000 + step, chaddr: Uint8Array.of(2, 0, 0x5e, 0x20, 0, n) };
      const clientId = bytes(clientIdHex(n));
      const address = held.get(id);
      if (address !== undefined && next() < 0.3) {
        // A RELEASE gets no answer: sent, not awaited. The server reads its one socket in
        // order, so the next query (from any client) is handled after it.
        await sendOnly(
          port,
          dhcp4Message(
            Dhcp4MessageType.RELEASE,
            { serverId: SERVER_ID_4O6, clientId },
            { ...fields, ciaddr: address },
          ),
        );
        held.delete(id);
        releases++;
        continue;
      }
      const offer = await exchange4o6(
        port,
        dhcp4Message(Dhcp4MessageType.DISCOVER, { clientId }, fields),
      );
      if (offer.dhcp4.options.messageType !== Dhcp4MessageType.OFFER) continue; // pool full
      const ack = await exchange4o6(
        port,
        dhcp4Message(
          Dhcp4MessageType.REQUEST,
          { requestedIp: offer.dhcp4.yiaddr, serverId: SERVER_ID_4O6, clientId },
          fields,
        ),
      );
      if (ack.dhcp4.options.messageType === Dhcp4MessageType.ACK) {
        held.set(id, ack.dhcp4.yiaddr);
        acks++;
      }
    }
    await server.stop();
    stopped = true;
    const active = await leaseLs(db);
    const holders = active.map((l) => String(l.identity));
    const slots = active.map((l) => `${l.hostIPv4} ${l.portSet}`);
    expect({ life, twice: holders.filter((h, i) => holders.indexOf(h) !== i) }).toEqual({
      life,
      twice: [],
    });
    expect({ life, twice: slots.filter((s, i) => slots.indexOf(s) !== i) }).toEqual({
      life,
      twice: [],
    });
    const stored = new Map(active.map((l) => [String(l.identity), String(l.hostIPv4)]));
    const missing = [...held].filter(([id, a]) => stored.get(id) !== formatIPv4(a));
    expect({ life, missing }).toEqual({ life, missing: [] });
  }
  console.log({ acks, releases });
  expect(acks).toBeGreaterThan(100);
  expect(releases).toBeGreaterThan(10);
}, 120_000);
