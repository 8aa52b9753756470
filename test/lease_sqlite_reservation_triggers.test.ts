/**
 * The SQLite store's reservation triggers exist exactly while a reservation does
 * (lib/lease/sqlite_reservations.ts `guardReservations`): a server with no reservation pays no
 * trigger per lease written (issue 12 item 5), and a slot reserved for one host is refused to
 * every other host by the database from the commit that reserves it on, also after a reopen.
 */

import { Database } from "bun:sqlite";
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Lease, LeaseStoreError, WHOLE_ADDRESS } from "../lib/lease/lease.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-resv-trig-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function lease(host6: string, ipv4: number): Lease {
  return {
    ipv4,
    portSet: WHOLE_ADDRESS,
    host6,
    tep4: 0xc6336401,
    tep6: "2001:db8::1",
    pool: "192.0.2.0/24",
    state: "active",
    grantedAt: 1_700_000_000_000,
    expiresAt: 1_700_000_600_000,
  };
}

/** The names of the triggers on `leases`, read by a connection of its own. */
function triggers(path: string): string[] {
  const db = new Database(path, { readonly: true });
  try {
    const rows = db
      .query("SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name")
      .all() as { name: string }[];
    return rows.map((r) => r.name);
  } finally {
    db.close();
  }
}

const BOTH = ["leases_reserved_insert", "leases_reserved_update"];

test("no reservation, no trigger; the first reservation brings them, the last one's delete takes them", async () => {
  const path = join(dir, "a.db");
  let store = SqliteLeaseStore.open(path);
  try {
    expect(triggers(path)).toEqual([]);
    const r = { host6: "2001:db8::a", ipv4: 0xc0000201, psid: 0, createdAt: 1 };
    await store.writeReservation({ op: "put", reservation: r });
    expect(triggers(path)).toEqual(BOTH);
    // Another host on the reserved slot: refused by the database, nothing stored.
    await expect(
      store.write([{ op: "put", lease: lease("2001:db8::b", r.ipv4) }]),
    ).rejects.toBeInstanceOf(LeaseStoreError);
    expect(await store.loadAll()).toEqual([]);
    // Also as an update of a row stored before the reservation moved there.
    await store.write([
      { op: "put", lease: { ...lease("2001:db8::b", 0xc0000202), state: "released" } },
    ]);
    const moved = { ...r, ipv4: 0xc0000202, createdAt: 2 };
    await store.writeReservation({ op: "put", reservation: moved });
    await expect(
      store.write([{ op: "put", lease: lease("2001:db8::b", 0xc0000202) }]),
    ).rejects.toBeInstanceOf(LeaseStoreError);
    // A second reservation, then deleting one of two: the triggers stay.
    const s = { host6: "2001:db8::c", ipv4: 0xc0000203, psid: 0, createdAt: 3 };
    await store.writeReservation({ op: "put", reservation: s });
    await store.writeReservation({ op: "delete", host6: r.host6 });
    expect(triggers(path)).toEqual(BOTH);
    // A reopen keeps them while a reservation is stored.
    await store.close();
    store = SqliteLeaseStore.open(path);
    expect(triggers(path)).toEqual(BOTH);
    await expect(
      store.write([{ op: "put", lease: lease("2001:db8::b", s.ipv4) }]),
    ).rejects.toBeInstanceOf(LeaseStoreError);
    // The last one deleted: gone, and the slot is anyone's.
    await store.writeReservation({ op: "delete", host6: s.host6 });
    expect(triggers(path)).toEqual([]);
    await store.write([{ op: "put", lease: lease("2001:db8::b", s.ipv4) }]);
    expect((await store.loadAll()).map((l) => [l.host6, l.state])).toEqual([
      ["2001:db8::b", "released"],
      ["2001:db8::b", "active"],
    ]);
    // And a new reservation brings them back.
    await store.writeReservation({ op: "put", reservation: { ...r, ipv4: 0xc0000204 } });
    expect(triggers(path)).toEqual(BOTH);
    await expect(
      store.write([{ op: "put", lease: lease("2001:db8::d", 0xc0000204) }]),
    ).rejects.toBeInstanceOf(LeaseStoreError);
  } finally {
    await store.close();
  }
});

test("a file whose triggers an older dstm made, with no reservation, loses them at open", async () => {
  const path = join(dir, "b.db");
  let store = SqliteLeaseStore.open(path);
  await store.writeReservation({
    op: "put",
    reservation: { host6: "2001:db8::a", ipv4: 0xc0000201, psid: 0, createdAt: 1 },
  });
  await store.close();
  // The reservation removed behind the store's back (as `sqlite3` could), triggers left.
  const db = new Database(path);
  db.run("DELETE FROM reservations");
  db.close();
  expect(triggers(path)).toEqual(BOTH);
  store = SqliteLeaseStore.open(path);
  try {
    expect(triggers(path)).toEqual([]);
    await store.write([{ op: "put", lease: lease("2001:db8::b", 0xc0000201) }]);
    expect((await store.loadAll()).length).toBe(1);
  } finally {
    await store.close();
  }
});
