/**
 * Red team of the lease store on a full disk, from the renewing host's side: a renewal the
 * server cannot store must not cost the host its address. The stored lease is still the
 * host's until its stored expiry, so:
 * - DHCPv4-over-DHCPv6: the server does not answer (a DHCPNAK would make an RFC 2131 client
 *   stop using the address at once, §4.4.5), counts `store-failed` and warns; the client's
 *   retries are ACKed once space is freed;
 * - native DSTM: the server answers NAK SERVER_ERROR, and `dstm client` keeps the lease and
 *   retries (lib/client/lease_life.ts), as after a timeout.
 * A real `dstm server` whose database is on a 2 MiB tmpfs of the test's own mount namespace.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterFailedRenewal } from "../lib/client/lease_life.ts";
import {
  type ClientLease,
  DstmClient,
  DstmRefusedError,
  DstmTransport,
} from "../lib/client/protocol.ts";
import { bindUdp } from "../lib/sys/udp.ts";
import { type Dhcp4Message, Dhcp4MessageType } from "../lib/wire/dhcp4.ts";
import {
  DHCP4O6_FLAG_UNICAST,
  Dhcp6MessageType,
  decodeDhcp4o6,
  encodeDhcp4o6,
  encodeDhcp6,
} from "../lib/wire/dhcp4o6.ts";
import { Status } from "../lib/wire/dstm_types.ts";
import { dhcp4Message } from "./helpers/dhcp4.ts";
import { exchange4o6 } from "./helpers/dhcp4o6_exchange.ts";
import { PrivateTmpfs } from "./helpers/private_tmpfs.ts";
import { listenPort, loopbackServerArgs, spawnDstm } from "./helpers/process.ts";
import { activeInDb, activeInServer, metric, metricsWhere } from "./helpers/storage_checks.ts";
import { waitUntil } from "./helpers/wait.ts";

const sockets = mkdtempSync(join(tmpdir(), "dstm-rtrenew-ctl-"));
afterAll(() => rmSync(sockets, { recursive: true, force: true }));

const isRoot = process.getuid?.() === 0 && Bun.which("unshare") !== null;

const CHADDR = Uint8Array.from([0x02, 0, 0x5e, 0, 0, 0x4f]);

/** A DHCPv4 message of this test's client (chaddr CHADDR, xid `xid`). */
function query(
  type: Dhcp4MessageType,
  xid: number,
  fields: Partial<Dhcp4Message> = {},
  options = {},
) {
  return dhcp4Message(type, options, { xid, chaddr: CHADDR, ...fields });
}

/**
 * Sends a 4o6 query that must get no answer; once `handled()` says the server dealt with it,
 * a marker (INFORMATION-REQUEST for option 88, always answered) from the same socket. Resolves
 * with what arrived before the marker's REPLY (an answer to the query would have come first:
 * it was sent before the marker, and datagrams on loopback arrive in order).
 */
async function unanswered(
  port: number,
  dhcp4: Dhcp4Message,
  handled: () => Promise<boolean>,
  flags = 0,
): Promise<Uint8Array[]> {
  const received: Uint8Array[] = [];
  const ep = await bindUdp("::1", 0, (data) => {
    received.push(data);
  });
  try {
    ep.send(encodeDhcp4o6({ type: Dhcp6MessageType.DHCPV4_QUERY, flags, dhcp4 }), "::1", port);
    await waitUntil(handled, { what: "the server to handle the query", timeoutMs: 10_000 });
    ep.send(encodeDhcp6({ type: 11, xid: 0x6d6b72, oro: [88], elapsedTime: 0 }), "::1", port);
    const isMarkerReply = (d: Uint8Array) => d[0] === Dhcp6MessageType.REPLY;
    await waitUntil(() => received.some(isMarkerReply), { what: "the marker's REPLY" });
    return received.slice(0, received.findIndex(isMarkerReply));
  } finally {
    ep.close();
  }
}

test.skipIf(!isRoot)(
  "a renewal on a full disk keeps the host's address: 4o6 gets no DHCPNAK (counted store-failed), native SERVER_ERROR is not a lost lease; both renew once space is freed",
  async () => {
    const fs = await PrivateTmpfs.open("dstm-rtrenew-", 2 * 1024 * 1024);
    const db = join(fs.dir, "leases.db");
    const control = join(sockets, "renew.sock");
    const server = spawnDstm(
      loopbackServerArgs(
        db,
        ["--metrics", "[::1]:0", "--control", control, "--dhcp4o6", "--dhcp4o6-listen", "[::1]:0"],
        "198.51.100.0/22",
      ),
      {},
      fs.inside([]),
    );
    let transport: DstmTransport | undefined;
    try {
      const start = await server.waitFor(/ start /, 20_000);
      const metrics = metricsWhere(start);
      const port4o6 = listenPort(await server.waitFor(/ dhcp4o6 listen=/));
      transport = await DstmTransport.open({
        server: "::1",
        port: listenPort(start),
        retry: { initialMs: 500, tries: 4 },
      });
      const t = transport;
      // The 4o6 host ::1: DISCOVER → OFFER, REQUEST (selecting) → ACK.
      const offer = (await exchange4o6(port4o6, query(Dhcp4MessageType.DISCOVER, 1))).dhcp4;
      const serverId = offer.options.serverId as number;
      const ack = await exchange4o6(
        port4o6,
        query(Dhcp4MessageType.REQUEST, 2, {}, { serverId, requestedIp: offer.yiaddr }),
      );
      expect(ack.dhcp4.options.messageType).toBe(Dhcp4MessageType.ACK);
      const ipv4of4o6 = ack.dhcp4.yiaddr;
      /** RFC 2131 §4.3.2 RENEWING: ciaddr, no server id or requested address, unicast. */
      const renewing = (xid: number) => query(Dhcp4MessageType.REQUEST, xid, { ciaddr: ipv4of4o6 });
      const requestsHandled = async () =>
        (await metric(metrics, "dstm_dhcp4o6_messages_total", {
          type: "request",
          result: "store-failed",
        })) +
        (await metric(metrics, "dstm_dhcp4o6_messages_total", { type: "request", result: "nak" })) +
        (await metric(metrics, "dstm_dhcp4o6_messages_total", { type: "request", result: "ack" }));
      const nativeHost = "2001:db8:e::1";
      const native = new DstmClient(t, nativeHost);
      const leaseNative = await native.discover();

      expect(await fs.fill()).toBe(0);
      // Until the WAL has no room left (space it already holds is used first, legitimately):
      // new hosts' DISCOVERs until one is refused, then both renewals.
      let renewed4o6: Uint8Array[] = [];
      let renewedNative: ClientLease | Error | undefined;
      let fresh = 0;
      for (let round = 0; round < 40; round++) {
        let refused = false;
        for (let i = 0; i < 200 && !refused; i++) {
          refused = await new DstmClient(t, `2001:db8:d::${(++fresh).toString(16)}`)
            .discover()
            .then(
              () => false,
              (error: Error) => {
                expect(error).toBeInstanceOf(DstmRefusedError);
                return true;
              },
            );
        }
        expect(refused).toBe(true);
        renewedNative = await native.request(leaseNative.ipv4).catch((error: Error) => error);
        const before = await requestsHandled();
        const failedBefore = await metric(metrics, "dstm_dhcp4o6_messages_total", {
          type: "request",
          result: "store-failed",
        });
        renewed4o6 = await unanswered(
          port4o6,
          renewing(100 + round),
          async () => (await requestsHandled()) > before,
          DHCP4O6_FLAG_UNICAST,
        );
        const storeFailed4o6 =
          (await metric(metrics, "dstm_dhcp4o6_messages_total", {
            type: "request",
            result: "store-failed",
          })) > failedBefore;
        // Stored after all (room in the WAL): an ACK; try again, a new host first.
        if (
          renewedNative instanceof Error &&
          (storeFailed4o6 || (renewed4o6.length > 0 && !isAck(renewed4o6)))
        )
          break;
      }
      // 4o6: no DHCPNAK, no answer at all (the client retransmits), counted and warned.
      expect(renewed4o6).toEqual([]);
      expect(
        await metric(metrics, "dstm_dhcp4o6_messages_total", {
          type: "request",
          result: "store-failed",
        }),
      ).toBeGreaterThanOrEqual(1);
      expect(
        server.lines.some((l) => / WARN reject reason=store-failed protocol=dhcp4o6 /.test(l)),
      ).toBe(true);
      // Native: NAK SERVER_ERROR, which the client's lease life takes as "retry", not "lost".
      expect(renewedNative).toBeInstanceOf(DstmRefusedError);
      expect((renewedNative as DstmRefusedError).status).toBe(Status.SERVER_ERROR);
      const next = afterFailedRenewal(renewedNative, leaseNative, leaseNative.obtainedAt + 1000);
      expect(next.lost).toBe(false);
      // Both leases are still stored, for their hosts, as the server's memory says.
      const inDb = await activeInDb(fs, db);
      expect(inDb.get("::1")).toBeDefined();
      expect(inDb.get(nativeHost)).toBeDefined();
      expect(await activeInServer(control)).toEqual(inDb);

      await fs.free();
      const again4o6 = await exchange4o6(port4o6, renewing(999), DHCP4O6_FLAG_UNICAST);
      expect(again4o6.dhcp4.options.messageType).toBe(Dhcp4MessageType.ACK);
      expect(again4o6.dhcp4.yiaddr).toBe(ipv4of4o6);
      const againNative = await native.request(leaseNative.ipv4);
      expect(againNative.ipv4).toBe(leaseNative.ipv4);
      const after = await activeInDb(fs, db);
      expect(await activeInServer(control)).toEqual(after);
      expect(server.lines.some((l) => / ERROR /.test(l))).toBe(false);
    } finally {
      transport?.close();
      server.proc.kill("SIGKILL");
      await server.exited;
      await fs.close();
    }
  },
  120_000,
);

/** Whether the answers are one DHCPACK (a renewal stored after all). */
function isAck(answers: Uint8Array[]): boolean {
  const r = answers.length === 1 ? decodeDhcp4o6(answers[0] as Uint8Array) : undefined;
  return r?.ok === true && r.value.dhcp4.options.messageType === Dhcp4MessageType.ACK;
}
