/**
 * bench/c/flood4in6.c, the load generator of bench/tep_alone.ts's flood tests, read back by
 * tshark (a dissector we did not write): every frame well formed, checksums right, the flows
 * in turn, each flow's IPv4 identification counting up from 0 as a connected Linux UDP socket
 * numbers its DF datagrams — what the TEPs' UDP GRO (lib/tunnel/gro_udp.ts) may coalesce.
 * As root, in a namespace of its own (veth v0 ⇄ v1), deleted afterwards.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Netns } from "../lib/sys/netns.ts";
import { announceSkip, netnsSkipReason, withNetns } from "./helpers/netns.ts";
import { ROOT } from "./helpers/process.ts";
import { tshark } from "./helpers/tshark.ts";
import { waitUntil } from "./helpers/wait.ts";

const skip =
  netnsSkipReason() ??
  (Bun.which("cc") === null ? "needs cc" : null) ??
  (Bun.which("tshark") === null ? "needs tshark" : null);
announceSkip("bench flood4in6", skip);

const dir = mkdtempSync(join(tmpdir(), "dstm-flood-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function compile(): string {
  const out = join(dir, "flood4in6");
  const r = Bun.spawnSync(["cc", "-O2", "-o", out, join(ROOT, "bench", "c", "flood4in6.c")], {
    stderr: "pipe",
  });
  if (r.exitCode !== 0) throw new Error(r.stderr.toString());
  return out;
}

function mac(ns: Netns, ifname: string): string {
  return ns.ipJson<{ address: string }[]>("link", "show", ifname)[0]!.address;
}

/** Captures on v1 what the flood sends from v0 (`frames` of them); tshark's fields per frame. */
async function capture(ns: Netns, v6: boolean, flows: number, frames: number) {
  const flood = compile();
  for (const v of ["v0", "v1"]) ns.ip("link", "set", v, "up");
  const pcap = join(dir, `flood-${v6 ? 6 : 4}.pcap`);
  const filter = v6 ? "ip6 proto 4" : "ip and udp port 9";
  const cap = ns.spawn(
    ["tshark", "-n", "-i", "v1", "-f", filter, "-c", String(frames), "-w", pcap],
    {
      timeoutMs: 30_000,
    },
  );
  let said = "";
  const reader = cap.stderr.getReader();
  await waitUntil(
    async () => {
      const { value } = await reader.read();
      said += new TextDecoder().decode(value ?? new Uint8Array());
      // "Capturing on 'v1'" comes before dumpcap opened its socket; this after.
      return /Capture started/.test(said);
    },
    { timeoutMs: 20_000, what: "tshark capturing" },
  );
  const argv = [flood, "v0", mac(ns, "v1"), mac(ns, "v0")];
  argv.push(...(v6 ? ["2001:db8:100::1", "2001:db8:1::1"] : ["-", "-"]));
  argv.push("198.51.100.1", "192.0.2.80", "9", "64", String(flows), "5", String(frames));
  const sent = ns.exec(argv);
  // Through the transmit ring (PACKET_TX_RING), not the sendmmsg fallback.
  expect(sent.stdout.trim()).toBe(`sent ${frames} failed 0 via tx-ring`);
  expect(await cap.exited).toBe(0);
  // Checksums verified (tshark's default leaves them unverified: status 2).
  const fields = ["ipv6.nxt", "ip.id", "ip.flags.df", "ip.checksum.status", "udp.srcport"];
  fields.push("udp.length", "udp.checksum.status");
  const out = tshark([
    "-r",
    pcap,
    "-o",
    "ip.check_checksum:TRUE",
    "-o",
    "udp.check_checksum:TRUE",
    "-T",
    "fields",
    "-E",
    "separator=|",
    ...fields.flatMap((f) => ["-e", f]),
  ]);
  return out
    .trim()
    .split("\n")
    .map((line) => Object.fromEntries(line.split("|").map((v, i) => [fields[i]!, v])));
}

describe.skipIf(skip !== null)("bench/c/flood4in6.c read back by tshark", () => {
  test("4in6, two flows in turn: next header 4, checksums right, ids count per flow", async () => {
    await withNetns(
      async (ns) => {
        const rows = await capture(ns, true, 2, 6);
        expect(rows.length).toBe(6);
        expect(rows.map((r) => r["udp.srcport"])).toEqual([
          "10000",
          "10001",
          "10000",
          "10001",
          "10000",
          "10001",
        ]);
        expect(rows.map((r) => Number(r["ip.id"]))).toEqual([0, 0, 1, 1, 2, 2]);
        for (const r of rows) {
          expect(r["ipv6.nxt"]).toBe("4");
          expect(r["udp.length"]).toBe("72");
          expect(r["ip.flags.df"]).toMatch(/^(1|True)$/);
          // 1: good (0 bad, 2 unverified).
          expect(r["ip.checksum.status"]).toBe("1");
          expect(r["udp.checksum.status"]).toBe("1");
        }
      },
      { veth: true },
    );
  }, 60_000);

  test("more frames than the transmit ring holds (1,024), not a multiple of its batch: each once, in order per flow", async () => {
    await withNetns(
      async (ns) => {
        const frames = 3001;
        const rows = await capture(ns, true, 3, frames);
        expect(rows.length).toBe(frames);
        for (let f = 0; f < 3; f++) {
          const ids = rows
            .filter((r) => r["udp.srcport"] === String(10000 + f))
            .map((r) => Number(r["ip.id"]));
          expect(ids).toEqual([...Array(f === 0 ? 1001 : 1000).keys()]);
        }
        expect(rows.every((r) => r["ip.checksum.status"] === "1")).toBe(true);
        expect(rows.every((r) => r["udp.checksum.status"] === "1")).toBe(true);
      },
      { veth: true },
    );
  }, 60_000);

  test("plain IPv4 (routing path): checksums verified by tshark", async () => {
    await withNetns(
      async (ns) => {
        const pcap = await capture(ns, false, 1, 3);
        expect(pcap.map((r) => r["ipv6.nxt"])).toEqual(["", "", ""]);
        expect(pcap.map((r) => Number(r["ip.id"]))).toEqual([0, 1, 2]);
        for (const r of pcap) {
          expect(r["ip.checksum.status"]).toBe("1");
          expect(r["udp.checksum.status"]).toBe("1");
        }
      },
      { veth: true },
    );
  }, 60_000);
});
