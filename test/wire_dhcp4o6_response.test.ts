// lib/wire/dhcp4o6_response.ts: the one-pass DHCPV4-RESPONSE writer gives exactly the bytes of
// the general encoder (encodeDhcp4o6 of the same BOOTREPLY, RFC 7341 §6.2, RFC 2131 Table 3),
// for the fast path and for what it leaves to the general one (values over 255 bytes, RFC
// 3396), and refuses (RangeError) what the general encoder refuses.
import { describe, expect, test } from "bun:test";
import {
  type Dhcp4Message,
  Dhcp4MessageType,
  Dhcp4Op,
  type Dhcp4Options,
} from "../lib/wire/dhcp4.ts";
import { Dhcp6MessageType, decodeDhcp4o6, encodeDhcp4o6 } from "../lib/wire/dhcp4o6.ts";
import { type Dhcp4ReplyOptions, encodeDhcp4Response } from "../lib/wire/dhcp4o6_response.ts";
import { dhcp4Message } from "./helpers/dhcp4.ts";
import { prng } from "./helpers/fuzz.ts";

/** What the server sent before the one-pass writer: the general encoder's bytes. */
function general(
  query: Dhcp4Message,
  ciaddr: number,
  yiaddr: number,
  options: Dhcp4ReplyOptions,
): Uint8Array {
  const clientId = query.options.clientId;
  const opts: Dhcp4Options = clientId ? { ...options, clientId } : options;
  return encodeDhcp4o6({
    type: Dhcp6MessageType.DHCPV4_RESPONSE,
    flags: 0,
    dhcp4: {
      op: Dhcp4Op.BOOTREPLY,
      htype: query.htype,
      hops: 0,
      xid: query.xid,
      secs: 0,
      flags: query.flags,
      ciaddr,
      yiaddr,
      siaddr: 0,
      giaddr: query.giaddr,
      chaddr: query.chaddr,
      options: opts,
    },
  });
}

function query(fields: Partial<Dhcp4Message>, options: Partial<Dhcp4Options> = {}): Dhcp4Message {
  return dhcp4Message(
    Dhcp4MessageType.REQUEST,
    { parameterRequestList: [1, 3, 6, 51, 54, 58, 59, 159], ...options },
    fields,
  );
}

describe("encodeDhcp4Response", () => {
  test("an ACK with every option the server sends is byte for byte the general encoder's", () => {
    const q = query(
      {
        xid: 0xdeadbeef,
        flags: 0x8000,
        ciaddr: 0xc6120001,
        giaddr: 0xc0000201,
        htype: 1,
        chaddr: Uint8Array.of(2, 0, 0, 0, 0, 7),
      },
      { clientId: Uint8Array.of(1, 2, 0, 0, 0, 0, 7) },
    );
    const options: Dhcp4ReplyOptions = {
      messageType: Dhcp4MessageType.ACK,
      serverId: 0xcb007144,
      leaseTime: 3600,
      renewalTime: 1800,
      rebindingTime: 3150,
      subnetMask: 0xffffffff,
      portParams: { offset: 6, psidLength: 6, psid: 17 },
    };
    const fast = encodeDhcp4Response(q, q.ciaddr, 0xc6120005, options);
    expect(fast).toEqual(general(q, q.ciaddr, 0xc6120005, options));
    const decoded = decodeDhcp4o6(fast);
    if (!decoded.ok) throw new Error(decoded.error.message);
    expect(decoded.value.type).toBe(Dhcp6MessageType.DHCPV4_RESPONSE);
    expect(decoded.value.dhcp4.yiaddr).toBe(0xc6120005);
    expect(decoded.value.dhcp4.options.clientId).toEqual(Uint8Array.of(1, 2, 0, 0, 0, 0, 7));
    expect(decoded.value.dhcp4.options.portParams).toEqual({ offset: 6, psidLength: 6, psid: 17 });
  });

  test("random OFFERs, ACKs, NAKs and INFORM ACKs equal the general encoder's bytes", () => {
    const rand = prng(0x4f6);
    const int = (n: number) => Math.floor(rand() * n);
    const u32 = () => (int(0x10000) * 0x10000 + int(0x10000)) >>> 0;
    for (let i = 0; i < 2000; i++) {
      const chaddr = Uint8Array.from({ length: int(17) }, () => int(256));
      const clientId =
        int(3) === 0 ? undefined : Uint8Array.from({ length: 2 + int(60) }, () => int(256));
      const q = query(
        {
          xid: u32(),
          flags: int(2) ? 0x8000 : 0,
          ciaddr: int(2) ? u32() : 0,
          giaddr: int(2) ? u32() : 0,
          htype: int(256),
          chaddr,
        },
        clientId ? { clientId } : {},
      );
      const type = [Dhcp4MessageType.OFFER, Dhcp4MessageType.ACK, Dhcp4MessageType.NAK][int(3)]!;
      const seconds = 1 + int(100_000);
      const k = int(17);
      const a = int(Math.min(15, 16 - k) + 1);
      const options: Dhcp4ReplyOptions =
        type === Dhcp4MessageType.NAK
          ? {
              messageType: type,
              serverId: u32(),
              ...(int(4) ? { message: "x".repeat(1 + int(200)) } : {}),
            }
          : {
              messageType: type,
              serverId: u32(),
              subnetMask: int(2) ? 0xffffffff : (0xffffffff << int(32)) >>> 0,
              ...(int(5)
                ? {
                    leaseTime: seconds,
                    renewalTime: Math.floor(seconds / 2),
                    rebindingTime: Math.floor((seconds * 7) / 8),
                  }
                : {}),
              ...(int(2)
                ? { portParams: { offset: a, psidLength: k, psid: k === 0 ? 0 : int(2 ** k) } }
                : {}),
            };
      const ciaddr = type === Dhcp4MessageType.ACK ? q.ciaddr : 0;
      const yiaddr = int(4) ? u32() : 0;
      expect(encodeDhcp4Response(q, ciaddr, yiaddr, options)).toEqual(
        general(q, ciaddr, yiaddr, options),
      );
    }
  });

  test("a client identifier over 255 bytes is split as the general encoder splits it (RFC 3396)", () => {
    const q = query({}, { clientId: Uint8Array.from({ length: 300 }, (_, i) => i & 0xff) });
    const options: Dhcp4ReplyOptions = { messageType: Dhcp4MessageType.OFFER, serverId: 1 };
    const fast = encodeDhcp4Response(q, 0, 5, options);
    expect(fast).toEqual(general(q, 0, 5, options));
    const decoded = decodeDhcp4o6(fast);
    expect(decoded.ok && decoded.value.dhcp4.options.clientId?.length).toBe(300);
  });

  test("values the general encoder refuses are refused (RangeError), not written", () => {
    const q = query({});
    const bad: Dhcp4ReplyOptions[] = [
      { messageType: Dhcp4MessageType.ACK, serverId: 2 ** 32 },
      { messageType: Dhcp4MessageType.ACK, serverId: 1, leaseTime: -1 },
      { messageType: Dhcp4MessageType.ACK, serverId: 1, subnetMask: 0xff00ff00 },
      { messageType: Dhcp4MessageType.NAK, serverId: 1, message: "" },
      { messageType: Dhcp4MessageType.NAK, serverId: 1, message: "naïve ☃" },
      { messageType: Dhcp4MessageType.NAK, serverId: 1, message: "x".repeat(256) },
      {
        messageType: Dhcp4MessageType.ACK,
        serverId: 1,
        portParams: { offset: 10, psidLength: 8, psid: 1 },
      },
      { messageType: Dhcp4MessageType.REQUEST, serverId: 1 },
    ];
    for (const options of bad) {
      let generalError: unknown;
      try {
        general(q, 0, 1, options);
      } catch (error) {
        generalError = error;
      }
      let fastError: unknown;
      let fast: Uint8Array | undefined;
      try {
        fast = encodeDhcp4Response(q, 0, 1, options);
      } catch (error) {
        fastError = error;
      }
      if (generalError === undefined) {
        // Accepted by both (a 256-character message is split): the same bytes.
        expect(fast).toEqual(general(q, 0, 1, options));
      } else {
        expect(fastError).toBeInstanceOf(RangeError);
        expect((fastError as Error).message).toBe((generalError as Error).message);
      }
    }
  });
});
