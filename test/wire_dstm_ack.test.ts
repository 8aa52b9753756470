/**
 * lib/wire/dstm_ack.ts: the server's direct ACK writer makes exactly the bytes of
 * `encodeMessage` for the same message (every option combination, random values) and
 * refuses what `encodeMessage` refuses; findOption finds an option's value in a request.
 */
import { describe, expect, test } from "bun:test";
import { formatIPv6, parseIPv6 } from "../lib/net/addr.ts";
import { decodeMessage, encodeMessage } from "../lib/wire/dstm.ts";
import { encodeAck, findOption } from "../lib/wire/dstm_ack.ts";
import { type DstmMessage, MessageType, OptionCode } from "../lib/wire/dstm_types.ts";

/** A small deterministic generator (xorshift32), so a failure names its seed. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

function unicast(next: () => number): Uint8Array {
  const b = new Uint8Array(16);
  for (let i = 0; i < 16; i++) b[i] = next() & 0xff;
  if (b[0] === 0xff) b[0] = 0x20;
  b[15] = b[15]! | 1;
  return b;
}

describe("encodeAck", () => {
  test("writes exactly encodeMessage's bytes for 3,000 random ACKs of every shape", () => {
    const next = rng(12);
    for (let n = 0; n < 3000; n++) {
      const kind = n % 3;
      const type =
        kind === 0
          ? MessageType.DISCOVER_ACK
          : kind === 1
            ? MessageType.REQUEST_ACK
            : MessageType.RELEASE_ACK;
      // The host's address at an offset inside a larger buffer, as in a received request.
      const at = next() % 40;
      const request = new Uint8Array(at + 16 + (next() % 8));
      const host6 = unicast(next);
      request.set(host6, at);
      const tep6 = unicast(next);
      const host4 = (next() % 0xfffffffe) + 1;
      const tep4 = next() % 2 ? 0 : (next() % 0xfffffffe) + 1;
      const k = next() % 17;
      const a = next() % (17 - k);
      const portSet =
        next() % 3 === 0 || a > 15
          ? undefined
          : { offset: a, psidLength: k, psid: k === 0 ? 0 : next() % 2 ** k };
      const leaseTime = n % 7 === 0 ? 0xffffffff : (next() % 100_000) + 1;
      const existing = type === MessageType.DISCOVER_ACK && next() % 2 === 0;
      const xid = next();
      const release = type === MessageType.RELEASE_ACK;
      const message: DstmMessage = release
        ? { type, xid, host4, host6: formatIPv6(host6) }
        : {
            type,
            xid,
            host4,
            host6: formatIPv6(host6),
            tep6: formatIPv6(tep6),
            tep4: tep4 === 0 ? undefined : tep4,
            portSet,
            leaseTime,
            existingLease: existing ? true : undefined,
          };
      const direct = release
        ? encodeAck(type, xid, host4, request, at, null, 0, 0, undefined, 0, false)
        : encodeAck(type, xid, host4, request, at, tep6, 0, tep4, portSet, leaseTime, existing);
      expect([n, direct]).toEqual([n, encodeMessage(message)]);
      const back = decodeMessage(direct);
      expect(back.ok && back.value.type).toBe(type);
    }
  });

  test("refuses what encodeMessage refuses", () => {
    const host6 = parseIPv6("2001:db8::7")!;
    const tep6 = parseIPv6("2001:db8::1")!;
    const ack = MessageType.DISCOVER_ACK;
    const bad: [string, () => Uint8Array][] = [
      ["host4 0", () => encodeAck(ack, 1, 0, host6, 0, tep6, 0, 0, undefined, 60, false)],
      [
        "host4 all ones",
        () => encodeAck(ack, 1, 0xffffffff, host6, 0, tep6, 0, 0, undefined, 60, false),
      ],
      ["xid 2^32", () => encodeAck(ack, 2 ** 32, 1, host6, 0, tep6, 0, 0, undefined, 60, false)],
      ["lease time 0", () => encodeAck(ack, 1, 1, host6, 0, tep6, 0, 0, undefined, 0, false)],
      [
        "multicast host6",
        () => encodeAck(ack, 1, 1, parseIPv6("ff02::1")!, 0, tep6, 0, 0, undefined, 60, false),
      ],
      [
        "unspecified tep6",
        () => encodeAck(ack, 1, 1, host6, 0, new Uint8Array(16), 0, 0, undefined, 60, false),
      ],
      [
        "host6 past the buffer",
        () => encodeAck(ack, 1, 1, host6, 4, tep6, 0, 0, undefined, 60, false),
      ],
      ["no tep6", () => encodeAck(ack, 1, 1, host6, 0, null, 0, 0, undefined, 60, false)],
      [
        "PSID too long",
        () =>
          encodeAck(
            ack,
            1,
            1,
            host6,
            0,
            tep6,
            0,
            0,
            { offset: 6, psidLength: 8, psid: 256 },
            60,
            false,
          ),
      ],
      [
        "EXISTING_LEASE in REQUEST_ACK",
        () => encodeAck(MessageType.REQUEST_ACK, 1, 1, host6, 0, tep6, 0, 0, undefined, 60, true),
      ],
      [
        "lease in RELEASE_ACK",
        () => encodeAck(MessageType.RELEASE_ACK, 1, 1, host6, 0, tep6, 0, 0, undefined, 0, false),
      ],
      ["a NAK", () => encodeAck(MessageType.NAK, 1, 1, host6, 0, tep6, 0, 0, undefined, 60, false)],
    ];
    for (const [name, encode] of bad) {
      let error: unknown;
      try {
        encode();
      } catch (e) {
        error = e;
      }
      expect([name, error instanceof RangeError]).toEqual([name, true]);
    }
  });
});

describe("findOption", () => {
  test("finds HOST_IPV6 after other options, and -1 for an option not present", () => {
    const bytes = encodeMessage({
      type: MessageType.REQUEST,
      xid: 9,
      host4: 0xc6120005,
      host6: "2001:db8:5::1",
      leaseTime: 600,
    });
    const at = findOption(bytes, 0, OptionCode.HOST_IPV6);
    expect(formatIPv6(bytes, at)).toBe("2001:db8:5::1");
    expect(findOption(bytes, 0, OptionCode.TEP_IPV6)).toBe(-1);
  });
});
