/**
 * `dstm lease reservations` against a real `dstm server` on its control socket (loopback,
 * nothing in the root namespace's interfaces touched): two pools, one whole and one shared by
 * port sets (RFC 7597 PSIDs); the table shows a PSID only for the shared pool's reservation,
 * `--json` is the control API's own JSON and round-trips (removed, added again from it, listed
 * the same). And `lease ls` / `lease export --state reserved` point to the command.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runDstm, spawnDstm } from "./helpers/process.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-reservations-"));
const control = join(dir, "server.sock");
const config = join(dir, "server.toml");
writeFileSync(
  config,
  `tep = "2001:db8::1,192.0.2.1"
db = "memory"
listen = "[::1]:0"
control = "${control}"

[[pool]]
prefixes = ["198.51.100.0/28"]

[[pool]]
prefixes = ["203.0.113.0/28"]
share = 4
`,
);
const server = spawnDstm(["server", "--config", config]);
afterAll(async () => {
  server.proc.kill();
  await server.exited;
  rmSync(dir, { recursive: true, force: true });
});

const lease = (...args: string[]) => runDstm(["lease", ...args, "--control", control]);

interface Reservation {
  hostIPv6: string;
  hostIPv4: string;
  psid: number;
  shared: boolean;
  createdAt: string;
}

/** The `--json` output, sorted by host (the API's order is not promised). */
async function listed(): Promise<Reservation[]> {
  const r = await lease("reservations", "--json");
  expect([r.code, r.stderr]).toEqual([0, ""]);
  const body = JSON.parse(r.stdout) as { reservations: Reservation[] };
  return body.reservations.sort((a, b) => a.hostIPv6.localeCompare(b.hostIPv6));
}

/** The table's rows as cells (columns are two or more spaces apart). */
const cells = (table: string) =>
  table
    .trimEnd()
    .split("\n")
    .map((line) => line.split(/ {2,}/));

test("two reservations listed (PSID only for the shared pool's), JSON round-trips", async () => {
  await server.waitFor(/ start listen=/, 60_000);
  const empty = await lease("reservations");
  expect([empty.code, empty.stdout, empty.stderr]).toEqual([0, "no reservations\n", ""]);

  const a = await lease("add", "--host6", "2001:db8:1::a", "--ipv4", "198.51.100.5", "--reserve");
  expect([a.code, a.stderr]).toEqual([0, ""]);
  // Unshared only: no PSID column at all.
  const one = cells((await lease("reservations")).stdout);
  expect(one[0]).toEqual(["HOST IPv6", "IPv4", "CREATED"]);
  expect(one.slice(1).map((row) => row.slice(0, 2))).toEqual([["2001:db8:1::a", "198.51.100.5"]]);

  const b = await lease(
    "add",
    ...["--host6", "2001:db8:1::b", "--ipv4", "203.0.113.6", "--psid", "2", "--reserve"],
  );
  expect([b.code, b.stderr]).toEqual([0, ""]);
  const json = await listed();
  expect(json.map(({ createdAt: _, ...r }) => r)).toEqual([
    { hostIPv6: "2001:db8:1::a", hostIPv4: "198.51.100.5", psid: 0, shared: false },
    { hostIPv6: "2001:db8:1::b", hostIPv4: "203.0.113.6", psid: 2, shared: true },
  ]);
  for (const r of json) expect(Number.isNaN(Date.parse(r.createdAt))).toBe(false);

  // The CLI's JSON is the control API's.
  const api = await fetch("http://localhost/v1/reservations", { unix: control });
  const apiBody = (await api.json()) as { reservations: Reservation[] };
  expect(apiBody.reservations.sort((x, y) => x.hostIPv6.localeCompare(y.hostIPv6))).toEqual(json);

  const table = cells((await lease("reservations")).stdout);
  expect(table[0]).toEqual(["HOST IPv6", "IPv4", "PSID", "CREATED"]);
  const rows = table.slice(1).sort((x, y) => (x[0] as string).localeCompare(y[0] as string));
  expect(rows).toEqual(
    json.map((r) => [r.hostIPv6, r.hostIPv4, r.shared ? String(r.psid) : "-", r.createdAt]),
  );

  // Round trip: remove both, add them again from the JSON, list the same (but when created).
  for (const r of json) expect((await lease("unreserve", r.hostIPv6)).code).toBe(0);
  expect((await lease("reservations")).stdout).toBe("no reservations\n");
  for (const r of json) {
    const psid = r.shared ? ["--psid", String(r.psid)] : [];
    const again = await lease(
      "add",
      "--host6",
      r.hostIPv6,
      "--ipv4",
      r.hostIPv4,
      ...psid,
      "--reserve",
    );
    expect([again.code, again.stderr]).toEqual([0, ""]);
  }
  const strip = (list: Reservation[]) => list.map(({ createdAt: _, ...r }) => r);
  expect(strip(await listed())).toEqual(strip(json));
});

test("lease ls / export --state reserved: exit 2, pointing to dstm lease reservations", async () => {
  for (const command of ["ls", "export"]) {
    const r = await lease(command, "--state", "reserved");
    expect([command, r.code, r.stdout]).toEqual([command, 2, ""]);
    expect(r.stderr).toContain("Allowed choices are active, released, expired, all");
    expect(r.stderr).toContain("list them with dstm lease reservations");
  }
  // Other bad values keep commander's message alone.
  const foo = await lease("ls", "--state", "foo");
  expect(foo.code).toBe(2);
  expect(foo.stderr).not.toContain("reservations");
});
