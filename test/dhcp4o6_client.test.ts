/**
 * The DHCPv4-over-DHCPv6 client against a fake 4o6 server on ::1 (no root: ephemeral ports
 * on both sides). The server answers like Kea: it copies the query's flags into the response.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { Dhcp4o6Client, type Dhcp4o6ClientOptions } from "../lib/client/dhcp4o6_client.ts";
import { DstmRefusedError, DstmTimeoutError } from "../lib/client/protocol.ts";
import { Logger } from "../lib/control/log.ts";
import { parseIPv4 } from "../lib/net/addr.ts";
import {
  DHCP4_INFINITE_LEASE,
  type Dhcp4Message,
  Dhcp4MessageType,
  Dhcp4Op,
  type Dhcp4Options,
} from "../lib/wire/dhcp4.ts";
import {
  DHCP4O6_FLAG_UNICAST,
  type Dhcp4o6Message,
  decodeDhcp4o6,
  encodeDhcp4o6,
} from "../lib/wire/dhcp4o6.ts";
import { runDstm } from "./helpers/process.ts";

const ip = (text: string) => parseIPv4(text) as number;
const MAC = Uint8Array.of(0x02, 0x00, 0x5e, 0x10, 0x00, 0x01);
const SERVER_ID = ip("203.0.113.67");
const LEASED = ip("198.51.100.200");
const TEP6 = "2001:db8:2::99";
const FAST = { initialMs: 60, maxMs: 120, tries: 3 };

interface Seen {
  readonly query: Dhcp4o6Message;
  readonly from: string;
  readonly port: number;
}

/** What the fake server answers to one query: options and header of the reply, or silence. */
type Answer = (
  q: Dhcp4Message,
) => { type: Dhcp4MessageType; options?: Partial<Dhcp4Options> } | null;

/** A fake 4o6 server on ::1 that records every query and answers with `answer`. */
async function fakeServer(answer: Answer) {
  const seen: Seen[] = [];
  let xidOverride: number | undefined;
  let chaddrOverride: Uint8Array | undefined;
  const socket = await Bun.udpSocket({
    hostname: "::1",
    port: 0,
    binaryType: "uint8array",
    socket: {
      data(sock, data, port, address) {
        const r = decodeDhcp4o6(data);
        if (!r.ok) throw new Error(`fake server got an undecodable query: ${r.error.message}`);
        seen.push({ query: r.value, from: address, port });
        const q = r.value.dhcp4;
        const a = answer(q);
        if (a === null) return;
        const reply: Dhcp4Message = {
          ...q,
          op: Dhcp4Op.BOOTREPLY,
          xid: xidOverride ?? q.xid,
          chaddr: chaddrOverride ?? q.chaddr,
          yiaddr:
            a.type === Dhcp4MessageType.NAK ? 0 : (q.options.requestedIp ?? q.ciaddr) || LEASED,
          options: { messageType: a.type, serverId: SERVER_ID, ...a.options },
        };
        // Like Kea: the response carries the query's flags.
        sock.send(encodeDhcp4o6({ type: 21, flags: r.value.flags, dhcp4: reply }), port, address);
      },
    },
  });
  return {
    port: socket.port,
    seen,
    /** Answer with another xid or chaddr (a reply meant for someone else). */
    mislabel(xid?: number, chaddr?: Uint8Array) {
      xidOverride = xid;
      chaddrOverride = chaddr;
    },
    close: () => socket.close(),
  };
}

/** Kea-like: OFFER to DISCOVER, ACK to REQUEST, lease 120 s, T1 60, T2 105. */
const KEA: Answer = (q) => {
  const lease = { leaseTime: 120, renewalTime: 60, rebindingTime: 105 };
  if (q.options.messageType === Dhcp4MessageType.DISCOVER)
    return { type: Dhcp4MessageType.OFFER, options: lease };
  if (q.options.messageType === Dhcp4MessageType.REQUEST)
    return { type: Dhcp4MessageType.ACK, options: lease };
  return null;
};

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanups.splice(0)) f();
});

async function setup(answer: Answer, extra: Partial<Dhcp4o6ClientOptions> = {}) {
  const server = await fakeServer(answer);
  const sent: { flags: number; to: string; msg: Dhcp4o6Message }[] = [];
  const client = await Dhcp4o6Client.open({
    server: "::1",
    host6: "::1",
    tep6: TEP6,
    tep4: ip("192.0.2.1"),
    chaddr: MAC,
    clientPort: 0,
    serverPort: server.port,
    retry: FAST,
    onSend: (payload, to) => {
      const r = decodeDhcp4o6(payload);
      if (r.ok) sent.push({ flags: r.value.flags, to, msg: r.value });
    },
    ...extra,
  });
  cleanups.push(() => client.close(), server.close);
  return { server, client, sent };
}

describe("Dhcp4o6Client against a fake 4o6 server", () => {
  test("DISCOVER → OFFER → REQUEST → ACK gives the lease, with the TEP given to the client", async () => {
    let t = 1_000_000;
    const { server, client } = await setup(
      (q) => {
        const a = KEA(q);
        return (
          a && {
            ...a,
            options: { ...a.options, portParams: { offset: 6, psidLength: 6, psid: 17 } },
          }
        );
      },
      { now: () => t },
    );
    const lease = await client.discover();
    expect(lease).toEqual({
      ipv4: LEASED,
      host6: "::1",
      tep6: TEP6,
      tep4: ip("192.0.2.1"),
      portSet: { offset: 6, psidLength: 6, psid: 17 },
      leaseTime: 120,
      obtainedAt: t,
      expiresAt: t + 120_000,
      // T1 is the server's option 58 (60 s), the time the client service starts renewing.
      renewAt: t + 60_000,
    });
    expect(server.seen.length).toBe(2);
    const [discover, request] = server.seen.map((s) => s.query);
    // DISCOVER: U clear, no ciaddr, PRL with 159, client id 1 + chaddr, no server id.
    expect(discover!.type).toBe(20);
    expect(discover!.flags).toBe(0);
    const d = discover!.dhcp4;
    expect(d.options.messageType).toBe(Dhcp4MessageType.DISCOVER);
    expect([d.htype, d.hops, d.flags, d.ciaddr, d.giaddr]).toEqual([1, 0, 0, 0, 0]);
    expect(d.chaddr).toEqual(MAC);
    expect(d.options.parameterRequestList).toEqual([1, 3, 6, 51, 54, 58, 59, 159]);
    expect(d.options.clientId).toEqual(Uint8Array.of(1, ...MAC));
    expect(d.options.serverId).toBeUndefined();
    expect(d.options.requestedIp).toBeUndefined();
    // Selecting REQUEST: the OFFER's xid, requested IP and server id, U clear, no ciaddr.
    expect(request!.flags).toBe(0);
    const r = request!.dhcp4;
    expect(r.options.messageType).toBe(Dhcp4MessageType.REQUEST);
    expect(r.xid).toBe(d.xid);
    expect(r.ciaddr).toBe(0);
    expect(r.options.requestedIp).toBe(LEASED);
    expect(r.options.serverId).toBe(SERVER_ID);
    expect(r.options.clientId).toEqual(Uint8Array.of(1, ...MAC));
    expect(client.binding).toMatchObject({ ipv4: LEASED, serverId: SERVER_ID, t1: 60, t2: 105 });
    t += 1000;
  });

  test("renewing before T2: REQUEST with ciaddr, U flag, unicast, no server id or requested IP; a new xid", async () => {
    let t = 5_000_000;
    const { server, client, sent } = await setup(KEA, { now: () => t });
    const lease = await client.discover();
    t += 61_000; // past T1, before T2
    const renewed = await client.request(lease.ipv4);
    expect(renewed.ipv4).toBe(LEASED);
    expect(renewed.obtainedAt).toBe(t);
    expect(renewed.expiresAt).toBe(t + 120_000);
    const renew = server.seen.at(-1)!.query;
    expect(renew.flags).toBe(DHCP4O6_FLAG_UNICAST);
    expect(sent.at(-1)!.to).toBe("::1");
    const m = renew.dhcp4;
    expect(m.options.messageType).toBe(Dhcp4MessageType.REQUEST);
    expect(m.ciaddr).toBe(LEASED);
    expect(m.options.serverId).toBeUndefined();
    expect(m.options.requestedIp).toBeUndefined();
    expect(m.options.clientId).toEqual(Uint8Array.of(1, ...MAC));
    expect(m.xid).not.toBe(server.seen[0]!.query.dhcp4.xid);
  });

  test("the lease counts from when the REQUEST was sent, not when the ACK came (RFC 2131 §4.4.1)", async () => {
    const t0 = 7_000_000;
    let t = t0;
    // The server takes 700 ms (on the fake clock) over each REQUEST.
    const slow: Answer = (q) => {
      if (q.options.messageType === Dhcp4MessageType.REQUEST) t += 700;
      return KEA(q);
    };
    const { client } = await setup(slow, { now: () => t });
    const lease = await client.discover();
    expect(t).toBe(t0 + 700);
    expect(lease.obtainedAt).toBe(t0);
    expect(lease.expiresAt).toBe(t0 + 120_000);
    t = t0 + 61_000; // past T1
    const renewed = await client.request(lease.ipv4);
    expect(renewed.obtainedAt).toBe(t0 + 61_000);
    expect(renewed.expiresAt).toBe(t0 + 181_000);
  });

  test("an ACK to the rebinding REQUEST counts from that REQUEST (sent at T2), not from the renewing one (RFC 2131 §4.4.5)", async () => {
    // The client's clock runs with the real one, 40 ms before T2 when the renewal starts:
    // the renewing REQUEST (unicast lost here) goes out before T2, the rebinding one at T2.
    let skew = 0;
    const now = () => Date.now() + skew;
    let renewals = 0;
    const { client, sent } = await setup(
      (q) => (q.ciaddr !== 0 && renewals++ === 0 ? null : KEA(q)),
      { now, servers: ["::1"] },
    );
    const lease = await client.discover();
    const t2 = lease.obtainedAt + 105_000;
    skew += t2 - 40 - now();
    const renewed = await client.request(lease.ipv4);
    const [renewing, rebinding] = sent.slice(2).map((s) => s.msg.dhcp4);
    expect(sent.slice(2).map((s) => s.flags)).toEqual([DHCP4O6_FLAG_UNICAST, 0]);
    // The lease counts from T2 or later (the rebinding REQUEST), not from before T2: from the
    // renewing REQUEST, the new T1 would have been past already when the ACK came.
    expect(renewed.obtainedAt).toBeGreaterThanOrEqual(t2);
    expect(renewed.obtainedAt).toBeLessThanOrEqual(now());
    expect(renewed.renewAt).toBe(renewed.obtainedAt + 60_000);
    expect(renewed.expiresAt).toBe(renewed.obtainedAt + 120_000);
    // Each state has its own xid, so the ACK says which REQUEST it answers.
    expect(rebinding!.xid).not.toBe(renewing!.xid);
  });

  test("a late ACK to the renewing REQUEST, come while rebinding, counts from the renewing REQUEST", async () => {
    let skew = 0;
    const now = () => Date.now() + skew;
    let renewingXid: number | undefined;
    const { server, client } = await setup(
      (q) => {
        if (q.ciaddr === 0) return KEA(q);
        if (renewingXid === undefined) {
          // The renewing REQUEST: its ACK comes late, as the answer to the rebinding one.
          renewingXid = q.xid;
          server.mislabel(q.xid);
          return null;
        }
        return KEA(q);
      },
      { now, servers: ["::1"] },
    );
    const lease = await client.discover();
    const t2 = lease.obtainedAt + 105_000;
    skew += t2 - 40 - now();
    const asked = now();
    const renewed = await client.request(lease.ipv4);
    expect(renewingXid).toBeDefined();
    expect(renewed.obtainedAt).toBeGreaterThanOrEqual(asked);
    expect(renewed.obtainedAt).toBeLessThan(t2);
  });

  test("rebinding from T2: the same REQUEST without the U flag, to the option-88 servers", async () => {
    let t = 9_000_000;
    const { server, client, sent } = await setup(KEA, {
      now: () => t,
      servers: ["::1", "0:0:0:0:0:0:0:1"],
    });
    const lease = await client.discover();
    t += 106_000; // past T2 (105 s)
    await client.request(lease.ipv4);
    const rebind = sent.filter((s) => s.msg.dhcp4.ciaddr === LEASED);
    expect(rebind.map((s) => s.to)).toEqual(["::1", "0:0:0:0:0:0:0:1"]);
    expect(rebind.every((s) => s.flags === 0)).toBe(true);
    expect(server.seen.at(-1)!.query.dhcp4.options.serverId).toBeUndefined();
    // The new ACK restarts the clock: the next one renews (U set) again.
    t += 1000;
    await client.request(lease.ipv4);
    expect(sent.at(-1)!.flags).toBe(DHCP4O6_FLAG_UNICAST);
  });

  test("RFC 2131 §4.4.5 with unicast lost: RENEWING (U, unicast) until T2, REBINDING (no U, option-88 servers) until the lease ends, then DstmTimeoutError at once", async () => {
    // Lease 3 s, T1 1 s, T2 2 s: the 60 s minimum wait is cut at each state's end, so one
    // renewing REQUEST (at T1) and one rebinding REQUEST (at T2) go out, then the lease ends.
    const short = { leaseTime: 3, renewalTime: 1, rebindingTime: 2 };
    let acks = 0;
    const { client, sent } = await setup(
      (q) => {
        if (q.options.messageType === Dhcp4MessageType.DISCOVER)
          return { type: Dhcp4MessageType.OFFER, options: short };
        if (q.ciaddr !== 0) return null; // every renewal and rebinding is lost
        acks++;
        return { type: Dhcp4MessageType.ACK, options: short };
      },
      { servers: ["0:0:0:0:0:0:0:1"] },
    );
    const lease = await client.discover();
    expect(acks).toBe(1);
    // The client service starts renewing at T1, not at half the lease.
    expect(lease.renewAt! - lease.obtainedAt).toBe(1000);
    // The wait is the behaviour under test: the renewal goes out at T1, so T1 must pass.
    await Bun.sleep(Math.max(0, lease.renewAt! - Date.now()));
    const error = await client.request(lease.ipv4).catch((e: unknown) => e);
    const ended = Date.now();
    expect(error).toBeInstanceOf(DstmTimeoutError);
    expect((error as Error).message).toContain("stop using it");
    // Never before the lease's end (timers do not fire early).
    expect(ended).toBeGreaterThanOrEqual(lease.expiresAt);
    const renewals = sent.filter((s) => s.msg.dhcp4.ciaddr === LEASED);
    expect(renewals.map((s) => [s.flags, s.to])).toEqual([
      [DHCP4O6_FLAG_UNICAST, "::1"],
      [0, "0:0:0:0:0:0:0:1"],
    ]);
    expect(client.binding).toBeUndefined();
  });

  test("with ff02::1:2 as the server and option-88 servers known, DISCOVER goes to those", async () => {
    const { client, sent } = await setup(KEA, {
      server: "ff02::1:2",
      ifname: "lo",
      servers: ["::1"],
    });
    await client.discover();
    expect(sent.map((s) => s.to)).toEqual(["::1", "::1"]);
    // Renewals go to the server that answered.
    await client.request(LEASED);
    expect(sent.at(-1)).toMatchObject({ to: "::1", flags: DHCP4O6_FLAG_UNICAST });
  });

  test("without T1/T2 in the ACK they default to 1/2 and 7/8 of the lease; an infinite lease is capped", async () => {
    const { client } = await setup((q) =>
      q.options.messageType === Dhcp4MessageType.DISCOVER
        ? { type: Dhcp4MessageType.OFFER, options: { leaseTime: 800 } }
        : { type: Dhcp4MessageType.ACK, options: { leaseTime: 800 } },
    );
    await client.discover();
    expect(client.binding).toMatchObject({ leaseTime: 800, t1: 400, t2: 700 });
    const { client: forever } = await setup((q) =>
      q.options.messageType === Dhcp4MessageType.DISCOVER
        ? { type: Dhcp4MessageType.OFFER, options: { leaseTime: DHCP4_INFINITE_LEASE } }
        : { type: Dhcp4MessageType.ACK, options: { leaseTime: DHCP4_INFINITE_LEASE } },
    );
    const lease = await forever.discover();
    // The client service arms setTimeout(leaseTime × 500): it must stay below 2^31 ms.
    expect(lease.leaseTime * 500).toBeLessThan(2 ** 31);
    expect(lease.leaseTime).toBeGreaterThan(40 * 86400);
  });

  test("a NAK to the selecting REQUEST is DstmRefusedError with the server's message", async () => {
    const { client } = await setup((q) =>
      q.options.messageType === Dhcp4MessageType.DISCOVER
        ? KEA(q)
        : { type: Dhcp4MessageType.NAK, options: { message: "address in use" } },
    );
    const error = await client.discover().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DstmRefusedError);
    expect((error as Error).message).toContain("DHCPNAK to REQUEST: address in use");
    expect(client.binding).toBeUndefined();
  });

  test("a NAK to a renewal is DstmRefusedError and forgets the binding", async () => {
    let nak = false;
    const { client } = await setup((q) => (nak ? { type: Dhcp4MessageType.NAK } : KEA(q)));
    const lease = await client.discover();
    nak = true;
    await expect(client.request(lease.ipv4)).rejects.toBeInstanceOf(DstmRefusedError);
    expect(client.binding).toBeUndefined();
  });

  test("no answer: DstmTimeoutError after every try, saying what and where", async () => {
    const lines: string[] = [];
    const log = new Logger({ sink: (text) => lines.push(...text.trimEnd().split("\n")) });
    const { server, client } = await setup(() => null, { log });
    const error = await client.discover().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DstmTimeoutError);
    const message = (error as Error).message;
    expect(message).toContain("no DHCPv4-over-DHCPv6 answer to DISCOVER");
    expect(message).toContain(`[::1]:${server.port}`);
    expect(message).toContain("after 3 tries");
    expect(server.seen.length).toBe(3);
    // Retransmissions keep the xid.
    expect(new Set(server.seen.map((s) => s.query.dhcp4.xid)).size).toBe(1);
    expect(client.retransmissions).toBe(2);
    // The first retransmission is said at warn, with what a silent 4o6 server usually lacks;
    // the next ones at debug (not a warning per retransmission).
    log.flush();
    const warned = lines.filter((l) => / WARN no-answer /.test(l));
    expect(warned.length).toBe(1);
    expect(warned[0]).toContain("--dhcp4o6-allow");
    expect(warned[0]).toContain("logged at debug until the server answers");
  });

  test("no-answer warns once per silence: quiet while the server stays silent, news again after an answer", async () => {
    const lines: string[] = [];
    const log = new Logger({
      level: "debug",
      sink: (text) => lines.push(...text.trimEnd().split("\n")),
    });
    let silent = true;
    const { client } = await setup((q) => (silent ? null : KEA(q)), { log });
    const said = (level: string) => {
      log.flush();
      return lines.filter((l) => new RegExp(` ${level} no-answer `).test(l)).length;
    };
    await expect(client.discover()).rejects.toBeInstanceOf(DstmTimeoutError);
    await expect(client.discover()).rejects.toBeInstanceOf(DstmTimeoutError);
    expect(client.retransmissions).toBe(4);
    expect(said("WARN")).toBe(1);
    expect(said("DEBUG")).toBe(3);
    silent = false;
    await client.discover();
    silent = true;
    await expect(client.discover()).rejects.toBeInstanceOf(DstmTimeoutError);
    expect(said("WARN")).toBe(2);
  });

  test("an OFFER but no ACK: DstmTimeoutError for the REQUEST", async () => {
    const { client } = await setup((q) =>
      q.options.messageType === Dhcp4MessageType.DISCOVER ? KEA(q) : null,
    );
    await expect(client.discover()).rejects.toThrow(/answer to REQUEST/);
  });

  test("replies for another xid or another chaddr are ignored", async () => {
    const { server, client } = await setup(KEA);
    server.mislabel(12345);
    await expect(client.discover()).rejects.toBeInstanceOf(DstmTimeoutError);
    server.mislabel(undefined, Uint8Array.of(2, 0, 0, 0, 0, 9));
    await expect(client.discover()).rejects.toBeInstanceOf(DstmTimeoutError);
    expect(client.ignored).toBe(6);
  });

  test("RELEASE: ciaddr, server id, client id, U flag, unicast, sent once; the binding is gone", async () => {
    const { server, client, sent } = await setup(KEA);
    const lease = await client.discover();
    await client.release(lease.ipv4);
    // Sent once: a marker query whose replies never match (another xid) is sent and
    // retransmitted on the same retry schedule until it gives up (≥ 225 ms with FAST); a
    // retransmitted RELEASE, armed earlier with the first timeout (60 ± 15 ms), would be here.
    server.mislabel(12345);
    await expect(client.discover()).rejects.toBeInstanceOf(DstmTimeoutError);
    server.mislabel(undefined);
    const isRelease = (m: Dhcp4o6Message) =>
      m.dhcp4.options.messageType === Dhcp4MessageType.RELEASE;
    const release = server.seen.find((s) => isRelease(s.query))!.query;
    expect(release.flags).toBe(DHCP4O6_FLAG_UNICAST);
    expect(sent.filter((s) => isRelease(s.msg)).map((s) => s.to)).toEqual(["::1"]);
    const m = release.dhcp4;
    expect(m.options.messageType).toBe(Dhcp4MessageType.RELEASE);
    expect(m.ciaddr).toBe(LEASED);
    expect(m.yiaddr).toBe(0);
    expect(m.options.serverId).toBe(SERVER_ID);
    expect(m.options.clientId).toEqual(Uint8Array.of(1, ...MAC));
    expect(m.options.requestedIp).toBeUndefined();
    expect(m.options.parameterRequestList).toBeUndefined();
    expect(server.seen.filter((s) => s.query.dhcp4.options.messageType === 7).length).toBe(1);
    expect(client.binding).toBeUndefined();
    await expect(client.release(lease.ipv4)).rejects.toThrow(/no DHCPv4-over-DHCPv6 lease/);
  });

  test("close() ends a pending exchange at once", async () => {
    // The first timeout is 10 minutes: an exchange that close() did not end would outlive the
    // 30 s this test may take.
    const { client } = await setup(() => null, { retry: { initialMs: 600_000, tries: 2 } });
    const pending = client.discover();
    client.close();
    await expect(pending).rejects.toThrow(/client was closed/);
  }, 30_000);

  test("the default chaddr is stable for a host without a MAC, locally administered", async () => {
    const server = await fakeServer(KEA);
    cleanups.push(server.close);
    const open = () =>
      Dhcp4o6Client.open({
        server: "::1",
        host6: "::1",
        bind: "::1",
        tep6: TEP6,
        clientPort: 0,
        serverPort: server.port,
      });
    const a = await open();
    const b = await open();
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    expect(a.chaddr.length).toBe(6);
    expect(a.chaddr[0]).toBe(0x02);
    expect(a.chaddr).toEqual(b.chaddr);
  });

  test("ff02::1:2 needs an interface; other multicast addresses are refused", async () => {
    const base = { host6: "2001:db8::dead", bind: "::1", tep6: TEP6, clientPort: 0 };
    await expect(Dhcp4o6Client.open({ ...base, server: "ff02::1:2" })).rejects.toThrow(
      /name the interface/,
    );
    await expect(Dhcp4o6Client.open({ ...base, server: "ff05::1:3" })).rejects.toThrow(
      /only multicast address/,
    );
    await expect(Dhcp4o6Client.open({ ...base, server: "nonsense" })).rejects.toThrow(
      /not an IPv6 address/,
    );
  });
});

describe("dstm client --protocol dhcp4o6 (command line)", () => {
  const cases: [string, string[], RegExp][] = [
    ["no TEP", ["--server", "2001:db8::547"], /--tep V6 is required with --protocol dhcp4o6/],
    ["no server", ["--tep", "2001:db8::1"], /--server V6 is required \(the 4o6 server/],
    [
      "bad server",
      ["--server", "ff02::1:2:x", "--tep", "2001:db8::1"],
      /--server: .* is not an IPv6/,
    ],
    ["bad TEP4", ["--server", "2001:db8::547", "--tep", "2001:db8::1", "--tep4", "x"], /--tep4/],
    [
      "key",
      ["--server", "2001:db8::547", "--tep", "2001:db8::1", "--key", "/nonexistent"],
      /--key/,
    ],
    ["bad protocol", ["--protocol", "bootp"], /bootp/],
  ];
  for (const [name, args, pattern] of cases) {
    test(`usage error: ${name}`, async () => {
      const protocol = args[0] === "--protocol" ? [] : ["--protocol", "dhcp4o6"];
      const { code, stderr } = await runDstm(["client", ...protocol, ...args]);
      // Commander's own errors (a wrong choice) exit 2 like ours (issue 13 item 4).
      expect(code).toBe(2);
      expect(stderr).toMatch(pattern);
    });
  }

  test("--tep4 needs --protocol dhcp4o6", async () => {
    const { code, stderr } = await runDstm([
      "client",
      "--server",
      "2001:db8::53",
      "--tep4",
      "192.0.2.1",
    ]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/--tep4 is for --protocol dhcp4o6/);
  });
});
