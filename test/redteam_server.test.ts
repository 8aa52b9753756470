/**
 * Red team: a real `dstm server --key` against an attacker on the same link, as root. Three
 * namespaces of this run — the server (with a bridge: the link), a host and an attacker —
 * removed afterwards. The attacker crafts datagrams with test/e2e_scripts/forge_udp.ts.
 *
 * Prefixes on the link: 2001:db8:8::/64 (the host's) and 2001:db8:7::/64 (the attacker's).
 */
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { getUnix } from "../lib/sys/http.ts";
import type { Netns } from "../lib/sys/netns.ts";
import { parseKeyFile, signMessage } from "../lib/wire/auth.ts";
import { encodeMessage } from "../lib/wire/dstm.ts";
import { MessageType } from "../lib/wire/dstm_types.ts";
import { ATTACKER6, attackerSuite, forgeUdp, HOST6, SERVER6 } from "./helpers/attacker_link.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { BUN, ROOT, runDstm } from "./helpers/process.ts";
import { eventually } from "./helpers/wait.ts";

const skip = netnsSkipReason();
announceSkip("redteam_server", skip);
/** Links of the server, a host and the attacker, undone after each test (./helpers/attacker_link.ts). */
const { link, server } = attackerSuite("dstm-redteam-");

/** Runs the crafter in `ns` (as `user`: an argv prefix such as setpriv). */
const forge = (ns: Netns, spec: object, user: string[] = []) => forgeUdp(ns, spec, { user });

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

describe.skipIf(skip !== null)("dstm server: attacker on the link, local user", () => {
  test("malformed and unsigned requests: every answer is no longer than its request, and the log stays short", async () => {
    const l = link();
    const key = join(l.dir, "key");
    writeFileSync(key, (await runDstm(["keygen", "--id", "1"])).stdout, { mode: 0o600 });
    const s = await server(l, ["--key", key]);
    // Before the fix: a 12-byte header got a 43-byte NAK MALFORMED (3.6×), these 14 bytes
    // a 64-byte one (4.6×), an unsigned DISCOVER (30 bytes) a 51-byte NAK NOT_AUTHORISED; each
    // to whatever source the datagram names, before any rate limit, each with a log line.
    const datagrams = [
      "010100000000000100" + "0c0000", // DISCOVER header only: missing HOST_IPV6
      "010100003643d819000e0000dfdd", // found with the seeded fuzzer: a long decoder message
      hex(encodeMessage({ type: MessageType.DISCOVER, xid: 7, host6: ATTACKER6 })),
      hex(encodeMessage({ type: MessageType.RELEASE, xid: 8, host6: HOST6, host4: 0xcb007101 })),
    ];
    const rounds = 150;
    const result = await forge(l.attacker, {
      from: ATTACKER6,
      fromPort: 40000,
      to: SERVER6,
      toPort: 4607,
      datagrams,
      rounds,
      intervalMs: 2,
      listenMs: 1000,
    });
    expect(result.sent).toBe(rounds * datagrams.length);
    // Still answered (the unsigned DISCOVER's NAK fits in 30 bytes), never amplified.
    expect(result.received).toBeGreaterThan(0);
    expect(result.receivedBytes).toBeLessThanOrEqual(result.sentBytes);
    expect(await s.metric("dstm_auth_failures_total", 'reason="missing"')).toBeGreaterThan(0);
    expect(await s.metric("dstm_dropped_total", 'reason="answer-too-long"')).toBeGreaterThan(0);
    const { stdout } = await s.stop();
    const rejects = stdout.split("\n").filter((line) => / WARN reject /.test(line));
    // 600 refusals; the log shows the burst (20) and then 5 a second, saying how many it skipped.
    expect(rejects.length).toBeGreaterThan(0);
    expect(rejects.length).toBeLessThan(60);
    expect(rejects.some((line) => /suppressed=\d+/.test(line))).toBe(true);
  }, 90_000);

  test("with --key, a local user on the server's machine can neither read the key nor lease (from ::1 or the server's address)", async () => {
    const l = link();
    const key = join(l.dir, "key");
    writeFileSync(key, (await runDstm(["keygen", "--id", "1"])).stdout, { mode: 0o600 });
    const s = await server(l, ["--key", key, "--listen", "[::]:4607"]);
    const nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
    const read = l.srv.exec([...nobody, "cat", key]);
    expect(read.code).not.toBe(0);
    const discover = (xid: number, host6: string) =>
      hex(encodeMessage({ type: MessageType.DISCOVER, xid, host6 }));
    for (const from of ["::1", SERVER6]) {
      const local = await forge(
        l.srv,
        {
          from,
          fromPort: 0,
          to: from,
          toPort: 4607,
          datagrams: [discover(1, from)],
          listenMs: 800,
        },
        nobody,
      );
      expect(local.sent).toBe(1);
      expect(local.received).toBe(1); // NAK NOT_AUTHORISED, no longer than the DISCOVER
      expect(local.receivedBytes).toBeLessThanOrEqual(local.sentBytes);
    }
    expect(await s.leases()).toEqual([]);
    expect(await s.metric("dstm_auth_failures_total", 'reason="missing"')).toBe(2);
  }, 90_000);

  test("a signed RELEASE captured before a server restart cannot be replayed after it (the host's new lease stays)", async () => {
    const l = link();
    const keyFile = join(l.dir, "key");
    const keyText = (await runDstm(["keygen", "--id", "1"])).stdout;
    writeFileSync(keyFile, keyText, { mode: 0o600 });
    const parsed = parseKeyFile(keyText);
    if (!parsed.ok) throw new Error(parsed.message);
    const key = parsed.keys[0]!;
    const db = join(l.dir, "leases.db");
    const fromHost = (message: Parameters<typeof signMessage>[0]) =>
      forge(l.host, {
        from: HOST6,
        fromPort: 0,
        to: SERVER6,
        toPort: 4607,
        datagrams: [hex(signMessage(message, key, Date.now()))],
        listenMs: 500,
      });
    let s = await server(l, ["--key", keyFile], db);
    expect((await fromHost({ type: MessageType.DISCOVER, xid: 1, host6: HOST6 })).received).toBe(1);
    const [lease] = await s.leases();
    const ipv4 = lease!.hostIPv4;
    const host4 = ipv4.split(".").reduce((n, b) => n * 256 + Number(b), 0);
    // The host gives its address back; the attacker on the link keeps a copy of the RELEASE.
    const release = hex(
      signMessage({ type: MessageType.RELEASE, xid: 2, host6: HOST6, host4 }, key, Date.now()),
    );
    const released = await forge(l.host, {
      from: HOST6,
      fromPort: 0,
      to: SERVER6,
      toPort: 4607,
      datagrams: [release],
      listenMs: 500,
    });
    expect(released.received).toBe(1);
    expect(await s.leases()).toEqual([]);
    // The server restarts (an upgrade); the host leases again and gets its address back.
    await s.stop();
    s = await server(l, ["--key", keyFile], db);
    expect(
      (await fromHost({ type: MessageType.DISCOVER, xid: 3, host6: HOST6, host4 })).received,
    ).toBe(1);
    expect((await s.leases()).map((x) => x.hostIPv4)).toEqual([ipv4]);
    // The attacker replays the RELEASE from the host's address, well inside the 30 s window.
    l.attacker.ip("addr", "add", `${HOST6}/128`, "dev", "lo", "nodad");
    const replay = await forge(l.attacker, {
      from: HOST6,
      fromPort: 0,
      to: SERVER6,
      toPort: 4607,
      datagrams: [release],
      listenMs: 500,
    });
    expect(replay.sent).toBe(1);
    // Before the fix: the new server's replay guard was empty, the RELEASE verified, the lease went.
    // Refused without an answer: the count is polled (the crafter's 500 ms of listening are no
    // proof that the server has read the datagram on a loaded machine).
    const stale = () => s.metric("dstm_auth_failures_total", 'reason="stale"');
    await eventually(async () => (await stale()) >= 1, { timeoutMs: 10_000, intervalMs: 50 });
    expect(await stale()).toBe(1);
    expect((await s.leases()).map((x) => x.hostIPv4)).toEqual([ipv4]);
  }, 90_000);

  // Before the fix a 10-byte INFORMATION-REQUEST asking only for option 88 got a 46-byte REPLY
  // (server DUID + OPTION_DHCP4_O_DHCPV6_SERVER), 4.6× to any source without --key (or with
  // --dhcp4o6-open, or in an allowed prefix), up to the per-prefix burst and then 10/s per /64.
  test("4o6: an INFORMATION-REQUEST gets no answer larger than itself", async () => {
    const l = link();
    const s = await server(l, ["--dhcp4o6", "--dhcp4o6-listen", "[::]:547"]);
    const small = "0b000001000600020058"; // INFORMATION-REQUEST, ORO [88], no client id
    // A request the REPLY fits in: client id (DUID-LL), elapsed time, ORO [88] and a user
    // class (15, RFC 8415 §21.15) of 24 bytes. The REPLY echoes the client id and adds the
    // server id (22 bytes) and an empty option 88 (4 bytes).
    const big =
      "0b000002" +
      "0001000a00030001020000000001" +
      "000800020000" +
      "000600020058" +
      `000f001a0018${"75".repeat(24)}`;
    const spray = (datagrams: string[]) =>
      forge(l.attacker, {
        from: ATTACKER6,
        fromPort: 546,
        to: SERVER6,
        toPort: 547,
        datagrams,
        rounds: 20,
        intervalMs: 1,
        listenMs: 800,
      });
    const r = await spray([small]);
    expect(r.sent).toBe(20);
    expect(r.received).toBe(0);
    // Refused without an answer: counted when the server reads them, which the crafter's
    // 800 ms of listening do not prove on a loaded machine. Polled, then compared exactly.
    const tooLong = () =>
      s.metric(
        "dstm_dhcp4o6_messages_total",
        'type="information-request",result="answer-too-long"',
      );
    await eventually(async () => (await tooLong()) >= 20, { timeoutMs: 10_000, intervalMs: 50 });
    expect(await tooLong()).toBe(20);
    // A request that the REPLY fits in is still answered (RFC 7341 §5), never amplified.
    const ok = await spray([big]);
    expect(ok.received).toBe(20);
    expect(ok.receivedBytes).toBeLessThanOrEqual(ok.sentBytes);
    // The warning says what to do: ask from the link-local address (RFC 8415 §14.1).
    const { stdout } = await s.stop();
    const warn = stdout.split("\n").find((line) => / reason=answer-too-long /.test(line));
    expect(warn).toContain("from its link-local address");
  }, 90_000);

  // Before the fix the lease cap counted per /64 and the rate limit per source /64, and
  // nothing bounded how many prefixes took leases: without --key a blind attacker spoofing
  // DISCOVERs from 16 addresses in each of 17 /64s took the whole /24 (254 leases; a native
  // DISCOVER commits at once, no answer needed). Now the /64s of one site (/56) share
  // --max-leases-per-site (default 64).
  test("a DISCOVER storm from many /64s leaves addresses for the next host", async () => {
    const l = link();
    const s = await server(l, []);
    // AnyIP: the attacker may send from any address of 2001:db8:100::/48.
    l.attacker.ip("-6", "route", "add", "local", "2001:db8:100::/48", "dev", "lo");
    l.attacker.exec(["sysctl", "-qw", "net.ipv6.ip_nonlocal_bind=1"]);
    // Resolve the server's link-layer address first: the kernel queues only a few datagrams
    // while it does, and would drop the rest of the burst.
    expect(l.attacker.exec(["ping", "-6", "-c", "1", "-W", "5", SERVER6]).code).toBe(0);
    const script = join(ROOT, "test", "e2e_scripts", "discover_spray.ts");
    const run = l.attacker.exec([BUN, script, SERVER6, "4607", "2001:db8:100", "17", "16"], {
      cwd: ROOT,
      timeoutMs: 60_000,
    });
    if (run.code !== 0) throw new Error(`discover_spray: ${run.stderr}`);
    expect(JSON.parse(run.stdout.trim()).sent).toBe(17 * 16);
    // Wait until the server has handled all 272 DISCOVERs (acknowledged or refused).
    const discovers = async () => {
      const text = await (await getUnix(join(l.dir, "control.sock"), "/metrics")).text();
      return text
        .split("\n")
        .filter((line) => line.startsWith("dstm_messages_total{") && /type="discover"/.test(line))
        .reduce((sum, line) => sum + Number(line.split(" ").at(-1)), 0);
    };
    await eventually(async () => (await discovers()) >= 17 * 16, {
      timeoutMs: 60_000,
      intervalMs: 100,
    });
    // (A datagram lost on the way only makes the wait end at the deadline.)
    const handled = await discovers();
    expect(handled).toBeGreaterThan(64);
    // One site's worth, no more: 64 leases (before: 254, the whole pool); the rest refused
    // and counted by reason.
    expect((await s.leases()).length).toBe(64);
    expect(
      await s.metric("dstm_admission_refused_total", 'protocol="native",reason="site-limit"'),
    ).toBe(handled - 64);
    const host = await forge(l.host, {
      from: HOST6,
      fromPort: 0,
      to: SERVER6,
      toPort: 4607,
      datagrams: [hex(encodeMessage({ type: MessageType.DISCOVER, xid: 9, host6: HOST6 }))],
      listenMs: 800,
    });
    expect(host.received).toBe(1);
    expect((await s.leases()).some((x) => x.hostIPv6 === HOST6)).toBe(true);
  }, 120_000);
});
