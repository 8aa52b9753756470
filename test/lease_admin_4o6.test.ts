/**
 * A lease an administrator deletes (`DELETE /v1/leases/{ipv4}` on the control socket) is
 * refused at the host's next DHCPv4-over-DHCPv6 renewal with a DHCPNAK (RFC 2131 §4.3.2: the
 * client must start over with DHCPDISCOVER), and the host's DISCOVER then works again. A real
 * server object with its real control socket; the 4o6 client is a stand-in on ::1.
 */
import { afterEach, expect, test } from "bun:test";
import { type LeaseJson, renderLeaseTable } from "../lib/control/lease_view.ts";
import { formatIPv4 } from "../lib/net/addr.ts";
import { type Dhcp4Message, Dhcp4MessageType } from "../lib/wire/dhcp4.ts";
import { DHCP4O6_FLAG_UNICAST } from "../lib/wire/dhcp4o6.ts";
import { dhcp4Message } from "./helpers/dhcp4.ts";
import { exchange4o6 } from "./helpers/dhcp4o6_exchange.ts";
import { SERVER_ID_4O6, start4o6Server } from "./helpers/server_4o6.ts";

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

const exchange = exchange4o6;

const query = (type: Dhcp4MessageType, fields: Partial<Dhcp4Message> = {}, options = {}) =>
  dhcp4Message(type, options, { xid: 0x2468ace0, ...fields });

test("a deleted lease: the host's 4o6 renewal gets DHCPNAK, its DISCOVER starts over", async () => {
  const { server, control } = await start4o6Server("dstm-admin-4o6-", cleanup);
  const port = server.dhcp4o6Port;
  const offer = await exchange(port, query(Dhcp4MessageType.DISCOVER));
  const address = offer.dhcp4.yiaddr;
  const ack = await exchange(
    port,
    query(Dhcp4MessageType.REQUEST, {}, { requestedIp: address, serverId: SERVER_ID_4O6 }),
  );
  expect(ack.dhcp4.options.messageType).toBe(Dhcp4MessageType.ACK);
  const renew = () =>
    exchange(port, query(Dhcp4MessageType.REQUEST, { ciaddr: address }), DHCP4O6_FLAG_UNICAST);
  expect((await renew()).dhcp4.options.messageType).toBe(Dhcp4MessageType.ACK);

  const deleted = await fetch(`http://localhost/v1/leases/${formatIPv4(address)}`, {
    method: "DELETE",
    unix: control,
  });
  expect(deleted.status).toBe(200);
  expect(server.engine.lookupHost("::1")).toBeUndefined();

  const nak = await renew();
  expect(nak.dhcp4.options.messageType).toBe(Dhcp4MessageType.NAK);
  expect(server.engine.lookupHost("::1")).toBeUndefined();
  // Starting over works: DISCOVER is offered an address again.
  const again = await exchange(port, query(Dhcp4MessageType.DISCOVER));
  expect(again.dhcp4.options.messageType).toBe(Dhcp4MessageType.OFFER);
});

test("an OFFER held in memory is listed as offered (JSON, export, table), not as a stored lease; the REQUEST makes it one", async () => {
  const { server, control } = await start4o6Server("dstm-admin-4o6-", cleanup);
  const port = server.dhcp4o6Port;
  const offer = await exchange(port, query(Dhcp4MessageType.DISCOVER));
  const address = formatIPv4(offer.dhcp4.yiaddr);
  const listed = async () => {
    const page = (await (await fetch("http://localhost/v1/leases", { unix: control })).json()) as {
      leases: LeaseJson[];
    };
    const exported = (
      await (await fetch("http://localhost/v1/leases/export", { unix: control })).text()
    )
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as LeaseJson);
    const shown = (await (
      await fetch(`http://localhost/v1/leases/${address}`, { unix: control })
    ).json()) as {
      leases: LeaseJson[];
    };
    return [page.leases, exported, shown.leases].map((ls) =>
      ls.find((l) => l.hostIPv4 === address),
    );
  };
  for (const lease of await listed()) {
    expect(lease?.state).toBe("active");
    expect(lease?.offered).toBe(true);
    expect(renderLeaseTable([lease!], Date.now())).toMatch(/\soffered\s/);
  }
  const ack = await exchange(
    port,
    query(
      Dhcp4MessageType.REQUEST,
      {},
      { requestedIp: offer.dhcp4.yiaddr, serverId: SERVER_ID_4O6 },
    ),
  );
  expect(ack.dhcp4.options.messageType).toBe(Dhcp4MessageType.ACK);
  for (const lease of await listed()) {
    expect(lease?.state).toBe("active");
    expect(lease?.offered).toBeUndefined();
    expect(renderLeaseTable([lease!], Date.now())).not.toMatch(/offered/);
  }
});
