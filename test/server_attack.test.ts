/**
 * A real `dstm server` against an attacker on the same link (issue 8 items 3, 4, 5), as root:
 * three namespaces of this run — the server (with a bridge: the link), a host and an
 * attacker — removed afterwards. The attacker crafts packets with
 * test/e2e_scripts/alloc_attack.ts from addresses it adds with `nodad`.
 *
 * Prefixes on the link: 2001:db8:8::/64 (the host's) and 2001:db8:7::/64 (the attacker's).
 */
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Netns } from "../lib/sys/netns.ts";
import { ATTACKER6, attackerSuite, HOST6, SERVER6 } from "./helpers/attacker_link.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { BUN, ROOT, runDstm } from "./helpers/process.ts";
import { eventually } from "./helpers/wait.ts";

const skip = netnsSkipReason();
announceSkip("server_attack", skip);
const SCRIPT = join(ROOT, "test", "e2e_scripts", "alloc_attack.ts");
/** Links of the server, a host and the attacker, undone after each test (./helpers/attacker_link.ts). */
const { link, server } = attackerSuite("dstm-attack-");

interface NativeResult {
  sent: number;
  acks: { host6: string; ipv4: string; leaseTime: number }[];
  naks: Record<string, number>;
  silent: number;
}
interface Dhcp4o6Result {
  answer: { type: string; yiaddr: string; leaseTime: number | null } | null;
}

function attack<T>(ns: Netns, args: string[]): T {
  const run = ns.exec([BUN, SCRIPT, ...args], { cwd: ROOT, timeoutMs: 30_000 });
  if (run.code !== 0) throw new Error(`alloc_attack ${args[0]}: ${run.stdout}\n${run.stderr}`);
  return JSON.parse(run.stdout.trim().split("\n").at(-1)!) as T;
}

describe.skipIf(skip !== null)("dstm server against an attacker on the link", () => {
  test("item 4: 300 addresses of one /64 get 16 leases, the rest refused and counted; the next host still leases", async () => {
    const l = link();
    // 300 source addresses in the attacker's /64, usable at once (no DAD).
    const batch = Array.from(
      { length: 300 },
      (_, i) => `addr add 2001:db8:7::${(0x1000 + i).toString(16)}/64 dev eth0 nodad`,
    ).join("\n");
    writeFileSync(join(l.dir, "addrs"), `${batch}\n`);
    l.attacker.ip("-batch", join(l.dir, "addrs"));
    const s = await server(l, ["--dhcp4o6", "--dhcp4o6-listen", "[::]:547"]);
    const flood = attack<NativeResult>(l.attacker, [
      "native",
      SERVER6,
      "4607",
      "2001:db8:7::",
      "300",
    ]);
    expect(flood.acks.length).toBe(16);
    expect(flood.naks.POOL_EXHAUSTED ?? 0).toBeGreaterThan(0);
    const prefixLimit = await s.metric(
      "dstm_admission_refused_total",
      'protocol="native",reason="prefix-limit"',
    );
    const rateLimit = await s.metric(
      "dstm_admission_refused_total",
      'protocol="native",reason="rate-limit"',
    );
    // Each refusal is counted by reason: the NAKs as prefix-limit, the silence as rate-limit
    // (a loaded machine may also drop some of the burst in the socket buffer: not counted).
    expect(prefixLimit).toBeGreaterThanOrEqual(flood.naks.POOL_EXHAUSTED!);
    expect(rateLimit).toBeGreaterThan(0);
    expect(rateLimit).toBeLessThanOrEqual(flood.silent);
    expect(prefixLimit + rateLimit).toBeLessThanOrEqual(284);
    expect((await s.leases()).filter((l) => l.hostIPv6.startsWith("2001:db8:7:")).length).toBe(16);
    // 4o6 from the same prefix gets no offer either: refused (counted), not merely unanswered
    // within the script's wait.
    const refused4o6 = async () =>
      (await s.metric("dstm_admission_refused_total", 'protocol="dhcp4o6",reason="prefix-limit"')) +
      (await s.metric("dstm_admission_refused_total", 'protocol="dhcp4o6",reason="rate-limit"'));
    const before4o6 = await refused4o6();
    const offer = attack<Dhcp4o6Result>(l.attacker, [
      "dhcp4o6",
      SERVER6,
      "547",
      ATTACKER6,
      "discover",
    ]);
    expect(await eventually(async () => (await refused4o6()) === before4o6 + 1)).toBe(true);
    expect(offer.answer).toBeNull();
    // The host of the other prefix still gets a lease.
    const host = attack<NativeResult>(l.host, ["native", SERVER6, "4607", HOST6, "0"]);
    expect(host.acks.length).toBe(1);
    expect((await s.leases()).length).toBe(17);
    const { stdout } = await s.stop();
    expect(stdout).toMatch(/ WARN reject reason=prefix-limit protocol=native/);
    expect(stdout).toMatch(/ WARN reject reason=rate-limit protocol=native/);
  }, 90_000);

  test("item 3: with --key, 4o6 answers only the prefixes of --dhcp4o6-allow", async () => {
    const l = link();
    const key = join(l.dir, "key");
    writeFileSync(key, (await runDstm(["keygen", "--id", "1"])).stdout, { mode: 0o600 });
    const s = await server(l, [
      "--key",
      key,
      "--dhcp4o6",
      "--dhcp4o6-listen",
      "[::]:547",
      "--dhcp4o6-allow",
      "2001:db8:8::/64",
    ]);
    const refused = attack<Dhcp4o6Result>(l.attacker, [
      "dhcp4o6",
      SERVER6,
      "547",
      ATTACKER6,
      "discover",
    ]);
    expect(refused.answer).toBeNull();
    const offered = attack<Dhcp4o6Result>(l.host, ["dhcp4o6", SERVER6, "547", HOST6, "discover"]);
    expect(offered.answer?.type).toBe("OFFER");
    expect((await s.leases()).map((lease) => lease.hostIPv6)).toEqual([HOST6]); // the offer
    expect(
      await s.metric("dstm_admission_refused_total", 'protocol="dhcp4o6",reason="not-allowed"'),
    ).toBe(1);
    const { stdout } = await s.stop();
    expect(stdout).toMatch(/ WARN reject reason=not-allowed protocol=dhcp4o6 from=2001:db8:7::66/);
    expect(stdout).toMatch(/ dhcp4o6 .*allow=2001:db8:8::\/64/);
  }, 60_000);

  test("item 5: a DISCOVER replayed from a bound host's address (4o6 or native, any port, any chaddr) leaves its lease as it is", async () => {
    const l = link();
    const s = await server(l, [
      "--lease-time",
      "3600",
      "--dhcp4o6",
      "--dhcp4o6-listen",
      "[::]:547",
    ]);
    const offer = attack<Dhcp4o6Result>(l.host, ["dhcp4o6", SERVER6, "547", HOST6, "discover"]);
    expect(offer.answer?.leaseTime).toBe(3600); // what the ACK grants (issue 11)
    const ack = attack<Dhcp4o6Result>(l.host, [
      "dhcp4o6",
      SERVER6,
      "547",
      HOST6,
      "request",
      offer.answer!.yiaddr,
      "192.0.2.1",
    ]);
    expect(ack.answer).toEqual({ type: "ACK", yiaddr: offer.answer!.yiaddr, leaseTime: 3600 });
    const [bound] = await s.leases();
    expect(bound?.hostIPv6).toBe(HOST6);
    // The attacker takes the host's address too (no DAD) and replays.
    l.attacker.addAddress("eth0", `${HOST6}/128`);
    attack<Dhcp4o6Result>(l.attacker, ["dhcp4o6", SERVER6, "547", HOST6, "discover"]);
    attack<NativeResult>(l.attacker, ["native", SERVER6, "4607", HOST6, "0", "1"]);
    // Both replays reached the server and were answered (to the host's address).
    expect(await s.metric("dstm_dhcp4o6_messages_total", 'type="discover",result="offer"')).toBe(2);
    expect(await s.metric("dstm_messages_total", 'type="discover",result="ack"')).toBe(1);
    const after = await s.leases();
    expect(after.length).toBe(1);
    expect([after[0]!.hostIPv4, after[0]!.state, after[0]!.expiresAt]).toEqual([
      bound!.hostIPv4,
      "active",
      bound!.expiresAt,
    ]);
  }, 60_000);
});
