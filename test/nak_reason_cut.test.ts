/**
 * A NAK's reason cut to the request's size (lib/server/handler_messages.ts nakWithin: no
 * reflection amplification) ends at a word with "…" instead of mid-phrase, and the client does
 * not print a reason twice when its hint says it in full (lib/client/protocol.ts). A newcomer
 * read `NOT_AUTHORISED (HOST_IPV6 must); HOST_IPV6 must be the address …`.
 */
import { describe, expect, test } from "bun:test";
import { DstmRefusedError } from "../lib/client/protocol.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { cutText, nakWithin } from "../lib/server/handler_messages.ts";
import { decodeMessage } from "../lib/wire/dstm.ts";
import { MessageType, Status } from "../lib/wire/dstm_types.ts";

const REASON =
  "HOST_IPV6 must be the address the request is sent from; a server with --no-source-check accepts other addresses";
const bytes = (text: string) => new TextEncoder().encode(text).length;

describe("cutText", () => {
  test("a text that fits is whole", () => {
    expect(cutText(REASON, 200)).toBe(REASON);
    expect(cutText(REASON, bytes(REASON))).toBe(REASON);
  });

  test("a cut text ends at a word, with …, within the bytes given", () => {
    expect(cutText(REASON, 32)).toBe("HOST_IPV6 must be the address…");
    expect(cutText(REASON, 31)).toBe("HOST_IPV6 must be the…");
    // No dangling separator before the mark.
    expect(cutText(REASON, 60)).toBe("HOST_IPV6 must be the address the request is sent from; a…");
    expect(cutText(REASON, 58)).toBe("HOST_IPV6 must be the address the request is sent from…");
    for (let max = 0; max <= bytes(REASON); max++) {
      const cut = cutText(REASON, max);
      expect(bytes(cut)).toBeLessThanOrEqual(max);
      if (cut !== REASON && cut !== "") expect(cut).toEndWith("…");
    }
  });

  test("a first word too long is cut on a character boundary; nothing when not even … fits", () => {
    expect(cutText("authentication failed: missing", 10)).toBe("authent…");
    expect(cutText("ééééé", 8)).toBe("éé…");
    expect(cutText(REASON, 2)).toBe("");
  });
});

test("nakWithin: the NAK to a short request carries the reason cut at a word", () => {
  const nak = { type: MessageType.NAK, xid: 7, status: Status.NOT_AUTHORISED };
  const metrics = new Metrics();
  const wire = nakWithin(60, nak, REASON, undefined, () => 0, metrics);
  expect(wire).not.toBeNull();
  expect(wire!.length).toBeLessThanOrEqual(60);
  const decoded = decodeMessage(wire!);
  if (!decoded.ok) throw new Error("the NAK does not decode");
  const text = decoded.value.statusText ?? "";
  expect(text).toEndWith("…");
  expect(REASON.startsWith(text.slice(0, -1))).toBe(true);
  expect(REASON[text.length - 1]).toMatch(/[ ;]/); // the cut is at a word's end
});

describe("the client says a reason once", () => {
  test("HOST_IPV6 not the source: the client's full hint, not the server's cut copy too", () => {
    const message = new DstmRefusedError(Status.NOT_AUTHORISED, "HOST_IPV6 must be the…", true)
      .message;
    expect(message).toBe(
      "server refused: NOT_AUTHORISED; HOST_IPV6 must be the address the request is sent from (--host6 an address of this host), unless the server runs with --no-source-check",
    );
    expect(message.match(/HOST_IPV6/g)).toHaveLength(1);
  });

  test("an unsigned request: the hint only, also when the cut fell inside the first word", () => {
    for (const text of ["authentication…", "authenticat…", "authentication failed: missing"])
      expect(new DstmRefusedError(Status.NOT_AUTHORISED, text, false).message).toBe(
        "server refused: NOT_AUTHORISED; the server requires signed requests: give --key FILE with the server's key",
      );
  });

  test("a hint that adds to the server's reason keeps the reason", () => {
    expect(
      new DstmRefusedError(Status.NOT_AUTHORISED, "authentication failed: bad-mac", true).message,
    ).toBe(
      "server refused: NOT_AUTHORISED (authentication failed: bad-mac); --key FILE holds another secret than the server's for that key id",
    );
    expect(new DstmRefusedError(Status.POOL_EXHAUSTED, "no address left", true).message).toBe(
      "server refused: POOL_EXHAUSTED (no address left)",
    );
  });
});
