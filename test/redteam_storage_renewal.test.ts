/**
 * Red team of the lease store on a full disk, from the hosts' side: a renewal the server
 * cannot store must not cost the host its address, and a host must not be told its address
 * is wrong when it is only the disk that is full.
 *
 * - A renewal whose write fails is answered with the lease the store holds for the host, its
 *   expiry unchanged (lib/alloc/lease_writer.ts #stored): native REQUEST_ACK / DHCPACK with
 *   the time left, counted in `dstm_store_renewals_unextended_total`. A host restarting
 *   (DISCOVER while it holds a lease) gets its address back the same way.
 * - A new lease that cannot be stored: native NAK SERVER_ERROR, which `dstm client` takes
 *   as "retry" for a renewal, not as a lost lease (lib/client/lease_life.ts); DHCPv4-over-
 *   DHCPv6 gets no answer at all, never a DHCPNAK (RFC 2131 §4.4.5: a client that gets one
 *   stops using its address at once), counted `store-failed` and warned.
 * A real `dstm server` whose database is on a 2 MiB tmpfs of the test's own mount namespace;
 * checkpoints held off (DSTM_WAL_CHECKPOINT_MS) so that no write fits in WAL space already
 * allocated: on the full disk every write fails.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterFailedRenewal } from "../lib/client/lease_life.ts";
import { DstmClient, DstmRefusedError, DstmTransport } from "../lib/client/protocol.ts";
import { bindUdp } from "../lib/sys/udp.ts";
import { type Dhcp4Message, Dhcp4MessageType } from "../lib/wire/dhcp4.ts";
import {
  DHCP4O6_FLAG_UNICAST,
  Dhcp6MessageType,
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

const CLIENT_A = Uint8Array.from([0x02, 0, 0x5e, 0, 0, 0x4a]);
const CLIENT_B = Uint8Array.from([0x02, 0, 0x5e, 0, 0, 0x4b]);

/** A DHCPv4 message of the 4o6 client `chaddr`. */
function query(
  type: Dhcp4MessageType,
  chaddr: Uint8Array,
  xid: number,
  fields: Partial<Dhcp4Message> = {},
  options = {},
): Dhcp4Message {
  return dhcp4Message(type, options, { xid, chaddr, ...fields });
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
): Promise<Uint8Array[]> {
  const received: Uint8Array[] = [];
  const ep = await bindUdp("::1", 0, (data) => {
    received.push(data);
  });
  try {
    ep.send(encodeDhcp4o6({ type: Dhcp6MessageType.DHCPV4_QUERY, flags: 0, dhcp4 }), "::1", port);
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
  "full disk: renewals and a restarting host get the stored lease (time left, not extended); a new 4o6 lease gets no DHCPNAK; native SERVER_ERROR is not a lost lease",
  async () => {
    const fs = await PrivateTmpfs.open("dstm-rtrenew-", 2 * 1024 * 1024);
    const db = join(fs.dir, "leases.db");
    const control = join(sockets, "renew.sock");
    const server = spawnDstm(
      loopbackServerArgs(
        db,
        [
          ...["--metrics", "[::1]:0", "--control", control],
          ...["--dhcp4o6", "--dhcp4o6-listen", "[::1]:0", "--dhcp4o6-identity", "chaddr"],
        ],
        "198.51.100.0/22",
      ),
      { DSTM_WAL_CHECKPOINT_MS: "60000" },
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
      // 4o6 client A: DISCOVER → OFFER, REQUEST (selecting) → ACK.
      const offer = (await exchange4o6(port4o6, query(Dhcp4MessageType.DISCOVER, CLIENT_A, 1)))
        .dhcp4;
      const serverId = offer.options.serverId as number;
      const selecting = (chaddr: Uint8Array, xid: number, address: number) =>
        query(Dhcp4MessageType.REQUEST, chaddr, xid, {}, { serverId, requestedIp: address });
      const ack = (await exchange4o6(port4o6, selecting(CLIENT_A, 2, offer.yiaddr))).dhcp4;
      expect(ack.options.messageType).toBe(Dhcp4MessageType.ACK);
      const leaseTime4o6 = ack.options.leaseTime as number;
      // A native host.
      const nativeHost = "2001:db8:e::1";
      const native = new DstmClient(t, nativeHost);
      const leaseNative = await native.discover();
      const stored = await activeInDb(fs, db);

      expect(await fs.fill()).toBe(0);
      const unextended = () =>
        metric(metrics, "dstm_store_renewals_unextended_total", { reason: "disk-full" });

      // Renewals: ACKed with the lease the store holds, for the time it has left.
      const renewed = await native.request(leaseNative.ipv4);
      expect(renewed.ipv4).toBe(leaseNative.ipv4);
      expect(renewed.leaseTime).toBeLessThanOrEqual(leaseNative.leaseTime);
      expect(await unextended()).toBe(1);
      // A host restarting (its DISCOVER while it holds the lease): its address back.
      const restarted = await new DstmClient(t, nativeHost).discover();
      expect(restarted.ipv4).toBe(leaseNative.ipv4);
      expect(await unextended()).toBe(2);
      const renewing = query(Dhcp4MessageType.REQUEST, CLIENT_A, 3, { ciaddr: ack.yiaddr });
      const ack4o6 = (await exchange4o6(port4o6, renewing, DHCP4O6_FLAG_UNICAST)).dhcp4;
      expect(ack4o6.options.messageType).toBe(Dhcp4MessageType.ACK);
      expect(ack4o6.yiaddr).toBe(ack.yiaddr);
      expect(ack4o6.options.leaseTime as number).toBeLessThanOrEqual(leaseTime4o6);
      expect(await unextended()).toBe(3);

      // A new native lease: NAK SERVER_ERROR, which the client's lease life takes as "retry".
      const refused = await new DstmClient(t, "2001:db8:e::2").discover().catch((e) => e);
      expect(refused).toBeInstanceOf(DstmRefusedError);
      expect((refused as DstmRefusedError).status).toBe(Status.SERVER_ERROR);
      expect(afterFailedRenewal(refused, leaseNative, leaseNative.obtainedAt + 1000).lost).toBe(
        false,
      );
      // A new 4o6 lease (client B): the OFFER needs no write; its REQUEST gets no answer.
      const offerB = (await exchange4o6(port4o6, query(Dhcp4MessageType.DISCOVER, CLIENT_B, 4)))
        .dhcp4;
      const storeFailed = () =>
        metric(metrics, "dstm_dhcp4o6_messages_total", { type: "request", result: "store-failed" });
      const naks = () =>
        metric(metrics, "dstm_dhcp4o6_messages_total", { type: "request", result: "nak" });
      const handled = async () => (await storeFailed()) + (await naks()) > 0;
      expect(await unanswered(port4o6, selecting(CLIENT_B, 5, offerB.yiaddr), handled)).toEqual([]);
      expect(await storeFailed()).toBe(1);
      // Counted at once, its line written at the next turn of the server's event loop and read
      // through a pipe: waited for, not read at once.
      expect(
        await server.waitFor(/ WARN reject reason=store-failed protocol=dhcp4o6 /, 5_000),
      ).toBeDefined();
      // Nothing changed in the database; the server's memory says the same.
      expect(await activeInDb(fs, db)).toEqual(stored);
      expect(await activeInServer(control)).toEqual(stored);

      // Space back: renewals extend again, client B gets its lease.
      await fs.free();
      const again = await native.request(leaseNative.ipv4);
      expect(again.ipv4).toBe(leaseNative.ipv4);
      const ackB = (await exchange4o6(port4o6, selecting(CLIENT_B, 6, offerB.yiaddr))).dhcp4;
      expect(ackB.options.messageType).toBe(Dhcp4MessageType.ACK);
      expect(await activeInServer(control)).toEqual(await activeInDb(fs, db));
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
