/**
 * Red team, a defence that holds: with a TEP key, no forged answer makes the server believe a
 * binding is installed. A real server (in-process, UDP on ::1) whose TEP is a socket the test
 * holds: it syncs with the TEP key, then never acknowledges the server's BIND itself; the
 * attacker answers it — unsigned, signed with the host key (in either domain), signed with the
 * TEP key from another port, and a stale copy of an earlier genuine BIND_ACK. The host must get
 * NAK TEP_UNAVAILABLE and keep no lease.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { Logger } from "../lib/control/log.ts";
import { DstmServer } from "../lib/server/server.ts";
import { bindUdp, type UdpEndpoint } from "../lib/sys/udp.ts";
import { type AuthKey, signMessage } from "../lib/wire/auth.ts";
import { decodeMessage, encodeMessage } from "../lib/wire/dstm.ts";
import { type DstmMessage, MessageType, Status } from "../lib/wire/dstm_types.ts";
import { eventually } from "./helpers/wait.ts";

const TEP_KEY: AuthKey = { id: 1, secret: new Uint8Array(32).fill(0x71) };
const HOST_KEY: AuthKey = { id: 1, secret: new Uint8Array(32).fill(0x42) };
const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

/** Polls `check` for up to `ms`; whether it held (./helpers/wait.ts). */
const until = (check: () => boolean, ms = 5000) => eventually(check, { timeoutMs: ms });

async function socket(onMessage: (m: DstmMessage, raw: Uint8Array) => void = () => {}) {
  const received: DstmMessage[] = [];
  const ep: UdpEndpoint = await bindUdp("::1", 0, (data) => {
    const decoded = decodeMessage(data);
    if (!decoded.ok) return;
    received.push(decoded.value);
    onMessage(decoded.value, data);
  });
  cleanup.push(() => ep.close());
  return { ep, received };
}

describe("server with a TEP key: forged answers to its BIND", () => {
  test("unsigned, host-key-signed, wrong-port and replayed BIND_ACKs install nothing; the host gets TEP_UNAVAILABLE", async () => {
    let forge: ((bind: DstmMessage) => void) | undefined;
    const tep = await socket((m) => {
      if (m.type === MessageType.BIND) forge?.(m);
    });
    const other = await socket();
    const server = await DstmServer.start({
      pools: [{ prefixes: ["198.51.100.0/28"], tep6: "::1" }],
      leaseTime: 600,
      listen: { address: "::1", port: 0 },
      keys: [HOST_KEY],
      tepKeys: [TEP_KEY],
      sourceCheck: false,
      tepPort: tep.ep.port,
      log: new Logger({ sink: () => {} }),
    });
    cleanup.push(() => server.stop());
    const port = server.listening.port;
    const sign = (m: DstmMessage, key: AuthKey, domain: "host" | "tep") =>
      signMessage(m, key, Date.now(), undefined, domain);
    const sync = () =>
      tep.ep.send(
        sign(
          { type: MessageType.SYNC, xid: 9, tep6: "::1", syncCount: 0, syncDigest: 0 },
          TEP_KEY,
          "tep",
        ),
        "::1",
        port,
      );
    sync();
    expect(await until(() => server.tepSync!.view("::1").connected)).toBe(true);
    // A genuine BIND_ACK for an earlier BIND, captured: the first host's lease is acknowledged.
    let captured: Uint8Array | undefined;
    forge = (bind) => {
      captured = sign(
        { type: MessageType.BIND_ACK, xid: bind.xid, host4: bind.host4 },
        TEP_KEY,
        "tep",
      );
      tep.ep.send(captured, "::1", port);
    };
    const host = await socket();
    host.ep.send(
      sign({ type: MessageType.DISCOVER, xid: 1, host6: "2001:db8:1::a" }, HOST_KEY, "host"),
      "::1",
      port,
    );
    expect(await until(() => host.received.some((m) => m.type === MessageType.DISCOVER_ACK))).toBe(
      true,
    );
    // Now the attacker answers every BIND, and the TEP stays silent.
    forge = (bind) => {
      const ack = { type: MessageType.BIND_ACK, xid: bind.xid, host4: bind.host4 } as DstmMessage;
      tep.ep.send(encodeMessage(ack), "::1", port);
      tep.ep.send(sign(ack, HOST_KEY, "host"), "::1", port);
      tep.ep.send(sign(ack, HOST_KEY, "tep"), "::1", port);
      other.ep.send(sign(ack, TEP_KEY, "tep"), "::1", port);
      if (captured) tep.ep.send(captured, "::1", port);
    };
    sync(); // still connected
    host.ep.send(
      sign({ type: MessageType.DISCOVER, xid: 2, host6: "2001:db8:1::b" }, HOST_KEY, "host"),
      "::1",
      port,
    );
    expect(await until(() => host.received.some((m) => m.xid === 2))).toBe(true);
    const answer = host.received.find((m) => m.xid === 2)!;
    expect(answer.type).toBe(MessageType.NAK);
    expect(answer.status).toBe(Status.TEP_UNAVAILABLE);
    expect(server.engine.leases({ state: "active" }).map((l) => l.host6)).toEqual([
      "2001:db8:1::a",
    ]);
    const refused = (reason: string) =>
      server.metrics.get("dstm_tep_refused_total", { reason }) ?? 0;
    // Three tries of the BIND, each answered by five forgeries.
    expect(refused("auth-missing")).toBeGreaterThanOrEqual(1);
    expect(refused("auth-bad-mac")).toBeGreaterThanOrEqual(2);
    expect(refused("wrong-port")).toBeGreaterThanOrEqual(1);
    expect(refused("auth-replayed")).toBeGreaterThanOrEqual(1);
  });
});
