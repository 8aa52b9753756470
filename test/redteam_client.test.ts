/**
 * Red team: the native client with a host key against a forged, unsigned answer.
 *
 * An on-link attacker that reads the link (docs/security.md: hub, Wi-Fi, mirrored port) sees
 * a host's signed REQUEST and its xid, and answers first from the server's address and port
 * (which it can put on its own interface). The stand-in for the attacker here is a UDP
 * socket on ::1 at the "server" address the transport talks to: it answers every REQUEST
 * with an unsigned NAK NOT_AUTHORISED, which needs no key.
 */
import { afterEach, describe, expect, test } from "bun:test";
import {
  DstmClient,
  DstmRefusedError,
  DstmTimeoutError,
  DstmTransport,
} from "../lib/client/protocol.ts";
import { bindUdp, type UdpEndpoint } from "../lib/sys/udp.ts";
import { generateKeyFileText, parseKeyFile } from "../lib/wire/auth.ts";
import { decodeMessage, encodeMessage } from "../lib/wire/dstm.ts";
import { MessageType, Status } from "../lib/wire/dstm_types.ts";

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanup.splice(0)) c();
});

function hostKey() {
  const parsed = parseKeyFile(generateKeyFileText(1));
  if (!parsed.ok) throw new Error(parsed.message);
  return parsed.keys[0]!;
}

/** The attacker on the server's address: an unsigned NAK NOT_AUTHORISED to every request. */
async function forger(): Promise<{ endpoint: UdpEndpoint; seen: number[] }> {
  const seen: number[] = [];
  let endpoint: UdpEndpoint | undefined;
  endpoint = await bindUdp("::1", 0, (data, address, port) => {
    const m = decodeMessage(data);
    if (!m.ok) return;
    seen.push(m.value.type);
    const nak = encodeMessage({
      type: MessageType.NAK,
      xid: m.value.xid,
      status: Status.NOT_AUTHORISED,
      statusText: "authentication failed: bad-mac",
    });
    endpoint?.send(nak, address, port);
  });
  cleanup.push(() => endpoint?.close());
  return { endpoint, seen };
}

describe("client with a host key against forged unsigned NAKs", () => {
  test("a renewal (REQUEST) or RELEASE is not refused by an unsigned NAK: it times out, so the lease is kept until it expires", async () => {
    const f = await forger();
    const transport = await DstmTransport.open({
      server: "::1",
      port: f.endpoint.port,
      bind: "::1",
      key: hostKey(),
      retry: { initialMs: 50, maxMs: 100, tries: 3 },
    });
    cleanup.push(() => transport.close());
    const client = new DstmClient(transport, "::1");
    // Before the fix: DstmRefusedError(NOT_AUTHORISED), and lib/client/node.ts dropped the
    // lease and took the DTI down on that ("lease-lost").
    const renew = await client.request(0xcb007101).then(
      () => "acked",
      (error: unknown) => error,
    );
    expect(renew).toBeInstanceOf(DstmTimeoutError);
    expect(renew).not.toBeInstanceOf(DstmRefusedError);
    expect(String((renew as Error).message)).toMatch(/unsigned NAK NOT_AUTHORISED/);
    const release = await client.release(0xcb007101).then(
      () => "acked",
      (error: unknown) => error,
    );
    expect(release).toBeInstanceOf(DstmTimeoutError);
    // Every try went out and was answered by the forger; none was believed.
    expect(f.seen.filter((t) => t === MessageType.REQUEST).length).toBe(3);
    expect(transport.ignored).toBeGreaterThanOrEqual(6);
  });

  test("a DISCOVER (no lease to lose) still reports an unsigned NAK NOT_AUTHORISED at once: a wrong key is told", async () => {
    const f = await forger();
    const transport = await DstmTransport.open({
      server: "::1",
      port: f.endpoint.port,
      bind: "::1",
      key: hostKey(),
      retry: { initialMs: 50, maxMs: 100, tries: 3 },
    });
    cleanup.push(() => transport.close());
    const refused = await new DstmClient(transport, "::1").discover().then(
      () => "acked",
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(DstmRefusedError);
    expect((refused as DstmRefusedError).status).toBe(Status.NOT_AUTHORISED);
  });
});
