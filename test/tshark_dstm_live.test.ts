/**
 * The Wireshark dissector on a capture of real processes, as root in a namespace of its own
 * (capture on that namespace's loopback only): `dstm server` with a key, a `dstm tep` that
 * syncs, is restarted (SNAPSHOT) and takes BIND/UNBIND, and `dstm lease get` / `release`, one
 * refused with NAK. tshark with contrib/wireshark/dstm.lua decodes every message, no malformed.
 */
import { expect, test } from "bun:test";
import { join } from "node:path";
import type { Netns } from "../lib/sys/netns.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { oneHostScope } from "./helpers/one_host.ts";
import { BUN, ROOT } from "./helpers/process.ts";
import { tshark, tsharkFields } from "./helpers/tshark.ts";
import { eventually } from "./helpers/wait.ts";

const skip =
  netnsSkipReason({ tun: true }) ??
  (Bun.which("tshark") ? null : "needs tshark (scripts/test-deps.sh installs it)");
announceSkip("tshark_dstm_live", skip);
const { dir, procs, host } = oneHostScope("dstm-live-");
let ns: Netns | undefined;

/** Starts argv in the namespace; resolves once a line of stdout or stderr matches `ready`. */
async function start(argv: string[], ready: RegExp): Promise<Bun.Subprocess> {
  const proc = ns!.spawn(argv, { cwd: ROOT, timeoutMs: 60_000 });
  procs.push(proc);
  let seen = "";
  let signal = (_found: boolean) => {};
  const matched = new Promise<boolean>((resolve) => {
    signal = resolve;
  });
  // Keep draining both streams after the match, so the process never writes to a full pipe.
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      seen += decoder.decode(chunk, { stream: true });
      if (ready.test(seen)) signal(true);
    }
  };
  void Promise.all([drain(proc.stdout), drain(proc.stderr)]).then(() => signal(false));
  const found = await Promise.race([matched, Bun.sleep(20_000).then(() => false)]);
  if (!found) throw new Error(`${argv.slice(2, 4).join(" ")} never printed ${ready}: ${seen}`);
  return proc;
}

test.skipIf(skip !== null)(
  "tshark decodes a live server ⇄ TEP ⇄ host exchange with the Lua dissector",
  async () => {
    ns = host();
    // `dstm keygen FILE` writes each key 0600, as server, TEP and client require.
    const keygen = (file: string) => Bun.spawnSync([BUN, "mod.ts", "keygen", file], { cwd: ROOT });
    const key = join(dir, "key");
    keygen(key);
    const other = join(dir, "other-key");
    keygen(other);
    const pcap = join(dir, "live.pcap");
    const capture = await start(
      ["tshark", "-q", "-F", "pcap", "-i", "lo", "-f", "udp", "-w", pcap],
      /Capturing on/,
    );
    const dstm = [BUN, join(ROOT, "mod.ts")];
    // The server ⇄ TEP channel has its own key (--tep-key); the TEP holds that one.
    const tepKey = join(dir, "tep-key");
    keygen(tepKey);
    const server = await start(
      [
        ...dstm,
        ...["server", "--pool", "192.0.2.0/29", "--tep", "2001:db8::1,192.0.2.254"],
        ...["--listen", "[::1]:4607", "--db", "memory", "--no-control", "--key", key],
        ...["--tep-key", tepKey],
      ],
      /tep-connected|start /,
    );
    const tepArgs = [
      ...dstm,
      ...["tep", "--ipv6", "2001:db8::1", "--ipv4", "192.0.2.254", "--server", "::1"],
      ...["--route", "192.0.2.0/29", "--key", tepKey, "--stats", join(dir, "tep.sock")],
    ];
    let tep = await start(tepArgs, /tep-start/);
    const get = ns.exec([
      ...dstm,
      "lease",
      "get",
      "--server",
      "::1",
      "--key",
      key,
      "--host6",
      "::1",
    ]);
    expect({ out: get.stdout, err: get.stderr }).toMatchObject({
      out: expect.stringContaining("192.0.2.1 for ::1"),
    });
    // A TEP that restarts syncs with an empty table: the server answers with a SNAPSHOT.
    tep.kill("SIGTERM");
    await tep.exited;
    tep = await start(tepArgs, /tep-start/);
    const refused = ns.exec([...dstm, "lease", "get", "--server", "::1", "--key", other]);
    expect(refused.code).not.toBe(0);
    const release = ns.exec([
      ...[...dstm, "lease", "release", "--server", "::1", "--key", key],
      ...["--host6", "::1", "--ipv4", "192.0.2.1"],
    ]);
    expect(release.code).toBe(0);
    // Wait (bounded) until the capture holds the RELEASE_ACK and a SNAPSHOT, then stop.
    await eventually(
      () => {
        const types = tsharkFields(pcap, ["dstm.type"]).map((r) => r["dstm.type"]);
        return types.includes("6") && types.includes("12");
      },
      { timeoutMs: 10_000, intervalMs: 100 },
    );
    capture.kill("SIGINT");
    await capture.exited;
    tep.kill("SIGTERM");
    server.kill("SIGTERM");

    const rows = tsharkFields(pcap, [
      "dstm.type",
      "dstm.host_ipv4",
      "dstm.status.code",
      "dstm.auth.key_id",
      "dstm.binding.host_ipv4",
      "dstm.sync.count",
    ]);
    const types = new Set(rows.map((r) => Number(r["dstm.type"])));
    // DISCOVER, DISCOVER_ACK, RELEASE, RELEASE_ACK, NAK, BIND, UNBIND, BIND_ACK, SYNC, SNAPSHOT.
    expect([...types].sort((a, b) => a - b)).toEqual([1, 2, 5, 6, 7, 8, 9, 10, 11, 12]);
    const ack = rows.find((r) => r["dstm.type"] === "2")!;
    expect(ack["dstm.host_ipv4"]).toBe("192.0.2.1");
    expect(ack["dstm.auth.key_id"]).toBe("1");
    expect(rows.find((r) => r["dstm.type"] === "7")!["dstm.status.code"]).toBe("3"); // NOT_AUTHORISED
    expect(rows.find((r) => r["dstm.type"] === "12")!["dstm.binding.host_ipv4"]).toBe("192.0.2.1");
    expect(rows.some((r) => r["dstm.type"] === "11" && r["dstm.sync.count"] === "0")).toBe(true);
    expect(tshark(["-r", pcap, "-Y", "_ws.malformed || _ws.expert.severity >= 0x600000"])).toBe("");
    expect(tshark(["-r", pcap, "-Y", "udp && !dstm"])).toBe("");
  },
  90_000,
);
