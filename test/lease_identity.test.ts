/**
 * The 4o6 client identity of a lease (`--dhcp4o6-identity chaddr|client-id`, stored as the
 * lease's `identity`) is visible wherever leases are: the control API JSON (`/v1/leases`,
 * `/v1/leases/{ipv4}`), the export (NDJSON and CSV), `dstm lease ls` (IDENTITY column, JSON)
 * and `dstm lease show`; and `lease ls --identity` / `?identity=` select one client's leases.
 * A real server object with its real control socket, two 4o6 clients behind one IPv6 address
 * (::1), and the real `dstm lease` CLI.
 */
import { afterEach, expect, test } from "bun:test";
import { join } from "node:path";
import type { LeaseJson } from "../lib/control/lease_view.ts";
import { formatIPv4 } from "../lib/net/addr.ts";
import { Dhcp4MessageType } from "../lib/wire/dhcp4.ts";
import { dhcp4Message } from "./helpers/dhcp4.ts";
import { exchange4o6 } from "./helpers/dhcp4o6_exchange.ts";
import { BUN, ROOT } from "./helpers/process.ts";
import { SERVER_ID_4O6, start4o6Server } from "./helpers/server_4o6.ts";

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

/** The chaddr of client `n` (a documentation-range MAC, RFC 7042 §2.1.2). */
const chaddr = (n: number) => Uint8Array.of(0x02, 0x00, 0x5e, 0x10, 0x00, n);
const identityOf = (n: number) => `hw:1:02005e1000${n.toString(16).padStart(2, "0")}`;

/** DISCOVER + REQUEST for client `n` from ::1; the address it was given. */
async function lease(port: number, n: number): Promise<number> {
  const fields = { xid: 0x51000000 + n, chaddr: chaddr(n) };
  const offer = await exchange4o6(port, dhcp4Message(Dhcp4MessageType.DISCOVER, {}, fields));
  const address = offer.dhcp4.yiaddr;
  const ack = await exchange4o6(
    port,
    dhcp4Message(
      Dhcp4MessageType.REQUEST,
      { requestedIp: address, serverId: SERVER_ID_4O6 },
      fields,
    ),
  );
  expect(ack.dhcp4.options.messageType).toBe(Dhcp4MessageType.ACK);
  return address;
}

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const proc = Bun.spawn([BUN, join(ROOT, "mod.ts"), ...args], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, out, err };
}

test("a lease's 4o6 identity: shown in the API, export, ls and show; ls --identity selects it", async () => {
  const { server, control } = await start4o6Server("dstm-identity-", cleanup, {
    identity: "chaddr",
  });
  const a = await lease(server.dhcp4o6Port, 1);
  const b = await lease(server.dhcp4o6Port, 2);
  expect(a).not.toBe(b);

  const get = async (path: string) => {
    const response = await fetch(`http://localhost${path}`, { unix: control });
    return { status: response.status, text: await response.text() };
  };
  // Control API: every lease names its holder; ?identity= selects one client's.
  const all = JSON.parse((await get("/v1/leases")).text) as { leases: LeaseJson[] };
  expect(all.leases.map((l) => [l.hostIPv4, l.hostIPv6, l.identity])).toEqual([
    [formatIPv4(a), "::1", identityOf(1)],
    [formatIPv4(b), "::1", identityOf(2)],
  ]);
  const one = JSON.parse((await get(`/v1/leases?identity=${identityOf(2).toUpperCase()}`)).text);
  expect(one.leases.map((l: LeaseJson) => l.hostIPv4)).toEqual([formatIPv4(b)]);
  const bad = await get("/v1/leases?identity=02005e100001");
  expect(bad.status).toBe(400);
  expect(bad.text).toContain("not a 4o6 client identity");
  const shown = JSON.parse((await get(`/v1/leases/${formatIPv4(a)}`)).text);
  expect(shown.leases[0].identity).toBe(identityOf(1));

  // Export: NDJSON carries the field, CSV a column.
  const ndjson = (await get("/v1/leases/export")).text
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  expect(ndjson.map((l: LeaseJson) => l.identity)).toEqual([identityOf(1), identityOf(2)]);
  const csv = (await get("/v1/leases/export?format=csv")).text.trim().split("\n");
  const column = csv[0]!.split(",").indexOf("identity");
  expect(column).toBeGreaterThan(-1);
  expect(csv.slice(1).map((row) => row.split(",")[column])).toEqual([identityOf(1), identityOf(2)]);

  // The CLI: the IDENTITY column, --identity, --json and show.
  const table = await cli("lease", "ls", "--control", control);
  expect(table.code).toBe(0);
  const [header, ...rows] = table.out.trim().split("\n");
  const at = header!.split(/ {2,}/).indexOf("IDENTITY");
  expect(at).toBeGreaterThan(-1);
  expect(rows.map((row) => row.split(/ {2,}/)[at])).toEqual([identityOf(1), identityOf(2)]);
  const filtered = await cli("lease", "ls", "--control", control, "--identity", identityOf(1));
  expect(filtered.code).toBe(0);
  expect(
    filtered.out
      .trim()
      .split("\n")
      .slice(1)
      .map((row) => row.split(/ +/)[0]),
  ).toEqual([formatIPv4(a)]);
  const json = await cli(
    "lease",
    "ls",
    "--control",
    control,
    "--json",
    "--identity",
    identityOf(2),
  );
  expect(JSON.parse(json.out).leases.map((l: LeaseJson) => [l.hostIPv4, l.identity])).toEqual([
    [formatIPv4(b), identityOf(2)],
  ]);
  const badFlag = await cli("lease", "ls", "--control", control, "--identity", "nobody");
  expect(badFlag.code).not.toBe(0);
  expect(badFlag.err).toContain("not a 4o6 client identity");
  const show = await cli("lease", "show", formatIPv4(b), "--control", control);
  expect(show.code).toBe(0);
  expect(show.out).toContain(identityOf(2));
});
