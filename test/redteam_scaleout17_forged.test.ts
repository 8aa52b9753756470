/**
 * Red team, issue 12 §3: an on-link attacker sends the TEP control messages claiming to be
 * the second server (`dstm tep --server A --server B`): spoofing B's address and port is easy
 * on the link, so with a key (`--key`, the servers' `--tep-key`) only the MAC may decide.
 * Held (lib/tep/control_gate.ts): one replay guard per TEP, whatever server a message
 * claims, and the MAC bound to this TEP. Asserted:
 *
 * - unsigned, or signed in the hosts' domain, from B's address and port: refused;
 * - a signed UNBIND server A sent (captured on the link) sent again as from B: refused
 *   (replayed), so the attacker cannot remove a binding through the other server's name;
 * - a signed BIND server A made for another TEP, sent as from B: refused (bad MAC);
 * - the genuine messages of both servers are taken.
 */
import { describe, expect, test } from "bun:test";
import { KeyRing } from "../lib/control/key_ring.ts";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { WarnLimit } from "../lib/control/warn_limit.ts";
import { parseIPv6 } from "../lib/net/addr.ts";
import { ControlGate } from "../lib/tep/control_gate.ts";
import { type AuthKey, signMessage } from "../lib/wire/auth.ts";
import { encodeMessage } from "../lib/wire/dstm.ts";
import { type DstmMessage, MessageType } from "../lib/wire/dstm_types.ts";

const KEY: AuthKey = { id: 7, secret: new Uint8Array(32).fill(0x5a) };
const TEP6 = "2001:db8:1::1";
const A = "2001:db8:1::53";
const B = "2001:db8:1::54";
const PORT = 4607;

describe("forged control messages claiming to be the second server", () => {
  test("need the key, and a captured one of the first server's is not taken twice", () => {
    let now = 1_800_000_000_000;
    const metrics = new Metrics();
    metrics.counter("dstm_tep_control_total", "as the TEP declares it", ["kind", "result"]);
    const gate = new ControlGate({
      servers: [A, B],
      port: PORT,
      tep6: TEP6,
      keys: new KeyRing(KEY),
      warn: new WarnLimit(new Logger({ sink: () => {} })),
      metrics,
      now: () => now,
    });
    now += 1000; // messages stamped after the TEP started
    const unbind: DstmMessage = {
      type: MessageType.UNBIND,
      xid: 42,
      host4: 0xc6120005,
      host6: "2001:db8:2::5",
    };
    const sign = (m: DstmMessage, tep6 = TEP6) =>
      signMessage(m, KEY, now, undefined, "tep", parseIPv6(tep6) ?? undefined);

    // Unsigned, or in the hosts' domain, from B's address and port.
    expect(gate.accept(encodeMessage(unbind), B, PORT)).toBeUndefined();
    expect(gate.accept(signMessage(unbind, KEY, now), B, PORT)).toBeUndefined();
    // A's genuine UNBIND, taken; the same bytes again as from B: a replay.
    const fromA = sign(unbind);
    expect(gate.accept(fromA, A, PORT)?.kind).toBe("unbind");
    expect(gate.accept(fromA, B, PORT)).toBeUndefined();
    expect(gate.accept(fromA, A, PORT)).toBeUndefined();
    // Signed for another TEP, as from B.
    const bind: DstmMessage = { ...unbind, type: MessageType.BIND, xid: 43 };
    expect(gate.accept(sign(bind, "2001:db8:1::2"), B, PORT)).toBeUndefined();
    // B's own, taken.
    expect(gate.accept(sign(bind), B, PORT)?.kind).toBe("bind");
    const refused = (result: string) =>
      metrics
        .snapshot()
        .filter((m) => m.name === "dstm_tep_control_total" && m.labels.includes(result))
        .reduce((n, m) => n + m.value, 0);
    expect(refused("drop-auth-missing")).toBe(1);
    expect(refused("drop-auth-replayed")).toBe(2);
    expect(refused("drop-auth-bad-mac")).toBe(2);
  });
});
