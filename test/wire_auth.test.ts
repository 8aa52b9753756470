import { describe, expect, test } from "bun:test";
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import {
  type AuthKey,
  generateKeyFileText,
  keyMap,
  parseKeyFile,
  ReplayGuard,
  sharesSecret,
  signMessage,
  TEP_AUTH_LABEL,
  verifyMessage,
} from "../lib/wire/auth.ts";
import { decodeMessage, encodeMessage } from "../lib/wire/dstm.ts";
import { type DstmMessage, MessageType } from "../lib/wire/dstm_types.ts";

const KEY: AuthKey = { id: 7, secret: Uint8Array.from({ length: 32 }, (_, i) => i) };
const KEYS = keyMap([KEY, { id: 9, secret: new Uint8Array(16).fill(9) }]);
const NOW = 1_764_150_000_123;
const NONCE = Uint8Array.from([0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8]);

const RELEASE: DstmMessage = {
  type: MessageType.RELEASE,
  xid: 0x1a2b3c4e,
  host4: 0xc0000281,
  host6: "2001:db8:1::25",
};

/** Decodes `raw` and verifies it against KEYS with `guard`. */
function verify(raw: Uint8Array, guard: ReplayGuard, now = NOW): string {
  const decoded = decodeMessage(raw);
  if (!decoded.ok) return `decode:${decoded.error.code}`;
  return verifyMessage(raw, decoded.value, KEYS, guard, now);
}

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

describe("signMessage() and verifyMessage()", () => {
  test("a validly signed message verifies", () => {
    expect(verify(signMessage(RELEASE, KEY, NOW), new ReplayGuard())).toBe("ok");
  });

  test("the signed message decodes to the message plus its AUTH option", () => {
    const decoded = decodeMessage(signMessage(RELEASE, KEY, NOW, NONCE));
    expect(decoded.ok && { ...decoded.value, auth: undefined }).toEqual({
      ...RELEASE,
      auth: undefined,
    });
    expect(decoded.ok && decoded.value.auth?.keyId).toBe(7);
    expect(decoded.ok && decoded.value.auth?.timestamp).toBe(NOW);
    expect(decoded.ok && decoded.value.auth?.nonce).toEqual(NONCE);
  });

  test("the MAC matches the test vector in docs/protocol.md", () => {
    const signed = signMessage(RELEASE, KEY, NOW, NONCE);
    const doc = readFileSync(new URL("../docs/protocol.md", import.meta.url), "utf8");
    const block = doc.slice(doc.indexOf("<!-- example:signed-release -->")).split("```")[1] ?? "";
    const dumped = block
      .split("\n")
      .map((line) => line.replace(/#.*/, "").replace(/\s+/g, ""))
      .join("");
    expect(dumped).toBe(hex(signed));
    expect(hex(signed.subarray(-32))).toBe(
      "39f2b21fd8b5010caef8b82f792ca85542f5766e1e4231114b2f1683cff2452c",
    );
  });

  test("signing replaces an existing AUTH option", () => {
    const auth = { keyId: 1, timestamp: 5, nonce: new Uint8Array(8), mac: new Uint8Array(32) };
    const signed = signMessage({ ...RELEASE, auth }, KEY, NOW, NONCE);
    expect(signed).toEqual(signMessage(RELEASE, KEY, NOW, NONCE));
  });

  test("each signature gets a fresh random nonce", () => {
    const a = decodeMessage(signMessage(RELEASE, KEY, NOW));
    const b = decodeMessage(signMessage(RELEASE, KEY, NOW));
    expect(
      a.ok &&
        b.ok &&
        hex(a.value.auth?.nonce ?? new Uint8Array()) !==
          hex(b.value.auth?.nonce ?? new Uint8Array()),
    ).toBe(true);
  });

  test("an unsigned message is missing", () => {
    expect(verify(encodeMessage(RELEASE), new ReplayGuard())).toBe("missing");
  });

  test("an unknown key id is unknown-key", () => {
    const other: AuthKey = { id: 8, secret: KEY.secret };
    expect(verify(signMessage(RELEASE, other, NOW), new ReplayGuard())).toBe("unknown-key");
  });

  test("the wrong secret for a known key id is bad-mac", () => {
    const forged: AuthKey = { id: 9, secret: KEY.secret };
    expect(verify(signMessage(RELEASE, forged, NOW), new ReplayGuard())).toBe("bad-mac");
  });

  test("one flipped bit anywhere (header, option, key id, timestamp, nonce, mac) is bad-mac", () => {
    const signed = signMessage(RELEASE, KEY, NOW, NONCE);
    let checked = 0;
    for (let byte = 0; byte < signed.length; byte++) {
      for (let bit = 0; bit < 8; bit++) {
        const copy = signed.slice();
        copy[byte] = (copy[byte] ?? 0) ^ (1 << bit);
        const decoded = decodeMessage(copy);
        if (!decoded.ok) continue; // the decoder already refuses it
        // AUTH turned into a skippable option 0x88 leaves an unsigned message: "missing"
        const auth = decoded.value.auth;
        const want = auth === undefined ? "missing" : auth.keyId === 7 ? "bad-mac" : "unknown-key";
        expect(verifyMessage(copy, decoded.value, KEYS, new ReplayGuard(), NOW)).toBe(want);
        checked++;
      }
    }
    // the flips the decoder lets through must include every part the MAC protects
    expect(checked).toBeGreaterThan(signed.length * 4);
    for (const at of [4, 14, 20, 46, 49, 50, 57, 58, 89]) {
      const copy = signed.slice();
      copy[at] = (copy[at] ?? 0) ^ 1;
      expect(verify(copy, new ReplayGuard())).toBe("bad-mac");
    }
  });

  test("a MAC over a message with bytes appended is refused", () => {
    const signed = signMessage(RELEASE, KEY, NOW, NONCE);
    const decoded = decodeMessage(signed);
    if (!decoded.ok) throw new Error("decode");
    // raw may be longer than the message: the header's length bounds what the MAC covers
    const longer = new Uint8Array(signed.length + 8);
    longer.set(signed);
    expect(verifyMessage(longer, decoded.value, KEYS, new ReplayGuard(), NOW)).toBe("ok");
    expect(verifyMessage(signed.subarray(0, 40), decoded.value, KEYS, new ReplayGuard(), NOW)).toBe(
      "bad-mac",
    );
  });

  test("the same message twice: the second is replayed", () => {
    const guard = new ReplayGuard();
    const signed = signMessage(RELEASE, KEY, NOW);
    expect(verify(signed, guard)).toBe("ok");
    expect(verify(signed, guard, NOW + 1000)).toBe("replayed");
  });

  test("the same nonce under another key id is not a replay", () => {
    const guard = new ReplayGuard();
    const other = KEYS.get(9) as AuthKey;
    expect(verify(signMessage(RELEASE, KEY, NOW, NONCE), guard)).toBe("ok");
    expect(verify(signMessage(RELEASE, other, NOW, NONCE), guard)).toBe("ok");
  });

  test("a forged message does not use up its nonce", () => {
    const guard = new ReplayGuard();
    const forged = signMessage(RELEASE, { id: 7, secret: new Uint8Array(16) }, NOW, NONCE);
    expect(verify(forged, guard)).toBe("bad-mac");
    expect(guard.size).toBe(0);
    expect(verify(signMessage(RELEASE, KEY, NOW, NONCE), guard)).toBe("ok");
  });

  test("a timestamp 31 s old is stale, 30 s old is accepted", () => {
    const guard = new ReplayGuard();
    expect(verify(signMessage(RELEASE, KEY, NOW - 31_000), guard)).toBe("stale");
    expect(verify(signMessage(RELEASE, KEY, NOW - 30_000), guard)).toBe("ok");
    expect(guard.size).toBe(1);
  });

  test("a timestamp beyond the window in the future is stale", () => {
    const guard = new ReplayGuard();
    expect(verify(signMessage(RELEASE, KEY, NOW + 30_001), guard)).toBe("stale");
    expect(verify(signMessage(RELEASE, KEY, NOW + 29_000), guard)).toBe("ok");
  });

  test("a future-dated message cannot be replayed while its timestamp is fresh", () => {
    // stamped 30 s ahead: fresh until NOW + 60 s, so the nonce must be kept that long
    const guard = new ReplayGuard();
    const signed = signMessage(RELEASE, KEY, NOW + 30_000);
    expect(verify(signed, guard)).toBe("ok");
    for (let t = NOW + 5_000; t <= NOW + 60_000; t += 5_000)
      expect(verify(signed, guard, t)).toBe("replayed");
    expect(verify(signed, guard, NOW + 60_001)).toBe("stale");
  });
});

describe("ReplayGuard", () => {
  const nonce = (i: number) => Uint8Array.from([0, 0, 0, 0, i >>> 24, i >>> 16, i >>> 8, i]);

  test("memory stays bounded over many windows", () => {
    const guard = new ReplayGuard({ windowMs: 1000 });
    let largest = 0;
    let n = 0;
    // 100 windows, 50 messages per 100 ms, each stamped within ±200 ms of arrival
    for (let now = 0; now < 100_000; now += 100) {
      for (let j = 0; j < 50; j++) {
        const stamp = now + ((j * 37) % 400) - 200;
        expect(guard.check(1, nonce(n++), stamp, now)).toBe("ok");
      }
      largest = Math.max(largest, guard.size);
    }
    // window (1 s) + bucket (125 ms) + skew (400 ms) worth of messages at 500/s, with slack
    expect(largest).toBeLessThan(1000);
    expect(guard.size).toBeLessThan(1000);
  });

  test("everything is forgotten once stale", () => {
    const guard = new ReplayGuard({ windowMs: 1000 });
    for (let i = 0; i < 100; i++) guard.check(1, nonce(i), 5000, 5000);
    expect(guard.size).toBe(100);
    expect(guard.check(1, nonce(1000), 10_000, 10_000)).toBe("ok");
    expect(guard.size).toBe(1);
  });

  test("maxEntries is never exceeded and dropped timestamps are refused as stale, not accepted", () => {
    const guard = new ReplayGuard({ windowMs: 8000, maxEntries: 100 });
    // 200 messages stamped over 4 s, all arriving at t = 4000
    for (let i = 0; i < 200; i++) {
      guard.check(1, nonce(i), i * 20, 4000);
      expect(guard.size).toBeLessThanOrEqual(100);
    }
    // message 0 was dropped early: a replay is refused (as stale), never accepted
    expect(guard.check(1, nonce(0), 0, 4000)).toBe("stale");
    // a message still held is reported as replayed
    expect(guard.check(1, nonce(199), 199 * 20, 4000)).toBe("replayed");
    // fresh messages are still accepted
    expect(guard.check(1, nonce(500), 4000, 4000)).toBe("ok");
  });

  test("a NaN timestamp is stale", () => {
    expect(new ReplayGuard().check(1, nonce(1), Number.NaN, 0)).toBe("stale");
  });

  test("rejects a nonsensical configuration", () => {
    expect(() => new ReplayGuard({ windowMs: 0 })).toThrow(RangeError);
    expect(() => new ReplayGuard({ maxEntries: 0 })).toThrow(RangeError);
  });
});

describe("parseKeyFile()", () => {
  const HEX32 = "000102030405060708090a0b0c0d0e0f";

  test("reads KEYID SECRET lines, comments and blank lines", () => {
    const text = `# keys\n\n1 ${HEX32}\n  4294967295\t${HEX32.toUpperCase()}ff  # trailing comment\r\n0 base64:MDEyMzQ1Njc4OWFiY2RlZg==\n`;
    const result = parseKeyFile(text);
    if (!result.ok) throw new Error(result.message);
    expect(result.keys.map((k) => k.id)).toEqual([1, 4294967295, 0]);
    expect(result.keys[0]?.secret).toEqual(Uint8Array.from({ length: 16 }, (_, i) => i));
    expect(result.keys[1]?.secret.length).toBe(17);
    expect(new TextDecoder().decode(result.keys[2]?.secret)).toBe("0123456789abcdef");
  });

  test("a single bare SECRET is key id 1", () => {
    const result = parseKeyFile(`# generated\n${HEX32}\n`);
    expect(result.ok && result.keys).toEqual([
      { id: 1, secret: Uint8Array.from({ length: 16 }, (_, i) => i) },
    ]);
  });

  const bad: [string, string, string][] = [
    ["an empty file", "", "no keys"],
    ["only comments", "# nothing\n\n", "no keys"],
    [
      "a duplicate id",
      `1 ${HEX32}\n# x\n1 ${HEX32}ab\n`,
      "line 3: key id 1 already defined on line 1",
    ],
    ["a short hex secret", `1 ${HEX32.slice(2)}\n`, "line 1: secret is 15 bytes"],
    ["an odd number of hex digits", `1 ${HEX32}0\n`, "line 1: secret is not hex"],
    ["non-hex digits", `1 ${HEX32.slice(1)}g\n`, "line 1: secret is not hex"],
    ["a short base64 secret", "1 base64:MDEyMzQ1Njc4OWFiY2Rl\n", "line 1: secret is 15 bytes"],
    [
      "bad base64",
      "1 base64:MDEy*zQ1Njc4OWFiY2RlZg==\n",
      "line 1: secret after base64: is not valid",
    ],
    ["a key id above 2^32-1", `4294967296 ${HEX32}\n`, 'line 1: key id "4294967296"'],
    ["a negative key id", `-1 ${HEX32}\n`, "line 1: key id"],
    ["a key id with a leading zero", `01 ${HEX32}\n`, "line 1: key id"],
    ["three fields", `1 ${HEX32} extra\n`, "line 1: expected KEYID SECRET"],
    ["a bare SECRET among keys", `2 ${HEX32}\n${HEX32}\n`, "line 2: a bare SECRET"],
    ["a key after a bare SECRET", `${HEX32}\n2 ${HEX32}\n`, "line 2: a bare SECRET"],
  ];
  for (const [name, text, message] of bad) {
    test(`refuses ${name}`, () => {
      const result = parseKeyFile(text);
      expect(result.ok ? "ok" : result.message).toStartWith(message);
    });
  }
});

describe("generateKeyFileText()", () => {
  test("writes a file parseKeyFile reads back, with a 256-bit random secret", () => {
    const text = generateKeyFileText(42);
    expect(text).toMatch(/^# dstm key .*\n42 [0-9a-f]{64}\n$/);
    const result = parseKeyFile(text);
    expect(result.ok && result.keys.length === 1 && result.keys[0]?.id).toBe(42);
    expect(result.ok && result.keys[0]?.secret.length).toBe(32);
    expect(generateKeyFileText()).not.toBe(generateKeyFileText());
    expect(generateKeyFileText()).toContain("\n1 ");
  });

  test("refuses an id outside 0..2^32-1", () => {
    expect(() => generateKeyFileText(-1)).toThrow(RangeError);
    expect(() => generateKeyFileText(2 ** 32)).toThrow(RangeError);
  });
});

describe("MAC domains (host ⇄ server, server ⇄ TEP)", () => {
  const BIND: DstmMessage = {
    type: MessageType.BIND,
    xid: 1,
    host4: 0xc0000281,
    host6: "2001:db8:1::25",
  };
  const check = (raw: Uint8Array, domain: "host" | "tep") => {
    const decoded = decodeMessage(raw);
    if (!decoded.ok) throw new Error(decoded.error.message);
    return verifyMessage(raw, decoded.value, KEYS, new ReplayGuard(), NOW, domain);
  };

  test("a message signed in one domain never verifies in the other, with the same key", () => {
    const tep = signMessage(BIND, KEY, NOW, NONCE, "tep");
    const host = signMessage(BIND, KEY, NOW, NONCE, "host");
    expect(hex(tep)).not.toBe(hex(host)); // only the MAC differs
    expect(hex(tep.subarray(0, tep.length - 32))).toBe(hex(host.subarray(0, host.length - 32)));
    expect(check(tep, "tep")).toBe("ok");
    expect(check(host, "host")).toBe("ok");
    expect(check(tep, "host")).toBe("bad-mac");
    expect(check(host, "tep")).toBe("bad-mac");
  });

  test("the tep MAC is HMAC-SHA256 over the label, then the message up to the MAC", () => {
    const signed = signMessage(BIND, KEY, NOW, NONCE, "tep");
    const body = signed.subarray(0, signed.length - 32);
    const mac = createHmac("sha256", KEY.secret).update(TEP_AUTH_LABEL).update(body).digest();
    expect(hex(signed.subarray(signed.length - 32))).toBe(hex(mac));
    expect(new TextDecoder().decode(TEP_AUTH_LABEL)).toBe("DSTM server-TEP control v1\0");
  });

  test("sharesSecret() finds a secret present in both key lists, whatever the key ids", () => {
    const other: AuthKey = { id: 1, secret: new Uint8Array(32).fill(3) };
    expect(sharesSecret([KEY], [other])).toBe(false);
    expect(sharesSecret([KEY, other], [{ id: 99, secret: KEY.secret.slice() }])).toBe(true);
  });
});
