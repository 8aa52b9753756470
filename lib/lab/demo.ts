/**
 * The paper's tests, run in the lab and narrated: ping, a web page and FTP (passive and
 * active) from both DSTM nodes, then what the paper left out: inbound connections, a
 * diagnostic ping without a DTI, path MTU handling, and the TEP's counters.
 *
 * Each step checks its own result, so the demo doubles as an end-to-end test.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { sleep } from "../sys/process.ts";
import type { Lab } from "./lab.ts";
import { downloadBigFile, pingArgv } from "./probes.ts";
import { dstmArgv, FTP_FILE, WEB_PAGE } from "./services.ts";
import { LAB } from "./topology.ts";

export interface StepResult {
  title: string;
  ok: boolean;
  /** What was run and what came back, for the narration. */
  output: string;
}

export interface DemoStep {
  readonly title: string;
  readonly run: (
    lab: Lab,
  ) => Promise<{ ok: boolean; output: string }> | { ok: boolean; output: string };
}

/** The leased IPv4 address of node A or B (from its client's status socket). */
export async function leasedAddress(lab: Lab, node: "a" | "b" | "e"): Promise<string> {
  const response = await fetch("http://localhost/v1/status", {
    unix: lab.services.socket(`client-${node}`),
  });
  const status = (await response.json()) as { ipv4: string | null };
  if (!status.ipv4) throw new Error(`node ${node.toUpperCase()} has no lease`);
  return status.ipv4;
}

function sh(lab: Lab, role: Parameters<Lab["run"]>[0], argv: string[]) {
  const r = lab.run(role, argv);
  return { code: r.code, text: `$ ${argv.join(" ")}\n${(r.stdout + r.stderr).trimEnd()}` };
}

const ftpDigest = (lab: Lab) =>
  createHash("sha256")
    .update(readFileSync(join(lab.dir, "ftp", FTP_FILE)))
    .digest("hex");

export const DEMO_STEPS: readonly DemoStep[] = [
  {
    title:
      "Nodes A and B hold IPv4 addresses leased by the DSTM server (the paper's figure 3 table)",
    run: (lab) => {
      const r = sh(lab, "server", [
        ...dstmArgv(),
        "lease",
        "ls",
        "--control",
        lab.services.socket("server"),
      ]);
      const ok = r.code === 0 && r.text.includes(LAB.nodeA6) && r.text.includes(LAB.nodeB6);
      return { ok, output: r.text };
    },
  },
  ...(["a", "b"] as const).map((node) => ({
    title: `Node ${node.toUpperCase()} pings the IPv4 web server ${LAB.web4} through its DTI and the TEP`,
    run: (lab: Lab) => {
      const r = sh(lab, node, ["ping", "-c", "3", "-i", "0.2", "-W", "2", LAB.web4]);
      return { ok: r.code === 0 && / 0% packet loss/.test(r.text), output: r.text };
    },
  })),
  ...(["a", "b"] as const).map((node) => ({
    title: `Node ${node.toUpperCase()} fetches the web page`,
    run: (lab: Lab) => {
      const r = sh(lab, node, ["curl", "-sS", "--max-time", "10", `http://${LAB.web4}/`]);
      return { ok: r.code === 0 && r.text.includes(WEB_PAGE.trim()), output: r.text };
    },
  })),
  ...(["a", "b"] as const).flatMap((node) =>
    (["passive", "active"] as const).map((mode) => ({
      title: `Node ${node.toUpperCase()} downloads a 256 KiB file from the FTP server, ${mode} mode${mode === "active" ? " (the server connects back to the node: inbound)" : ""}`,
      run: (lab: Lab) => {
        const argv = [
          "curl",
          "-sS",
          "--max-time",
          "20",
          ...(mode === "active" ? ["-P", "-"] : ["--ftp-pasv"]),
          `ftp://${LAB.ftp4}/${FTP_FILE}`,
        ];
        const file = join(lab.dir, `download-${node}-${mode}.bin`);
        rmSync(file, { force: true });
        const r = lab.run(node, [...argv, "-o", file]);
        const got = existsSync(file) ? readFileSync(file) : new Uint8Array();
        const ok =
          r.code === 0 && createHash("sha256").update(got).digest("hex") === ftpDigest(lab);
        const detail = ok
          ? `${got.length} bytes, sha256 matches the server's file`
          : `exit ${r.code}, ${got.length} bytes: ${r.stderr.trim()}`;
        return { ok, output: `$ ${argv.join(" ")} -o ${file}\n${detail}` };
      },
    })),
  ),
  {
    title: "Inbound: a host of the IPv4 domain opens a connection to node A's leased address",
    run: async (lab) => {
      const a4 = await leasedAddress(lab, "a");
      const server = lab.ns.a.spawn([
        "/usr/bin/env",
        "python3",
        "-m",
        "http.server",
        "8080",
        "--bind",
        a4,
        "--directory",
        join(lab.dir, "www"),
      ]);
      try {
        let r = { code: 1, text: "" };
        for (let i = 0; i < 40 && r.code !== 0; i++) {
          await sleep(100);
          r = sh(lab, "web", ["curl", "-sS", "--max-time", "5", `http://${a4}:8080/`]);
        }
        return { ok: r.code === 0 && r.text.includes(WEB_PAGE.trim()), output: r.text };
      } finally {
        server.kill("SIGKILL");
        await server.exited;
      }
    },
  },
  {
    title:
      "dstm ping4 from the server host: a temporary lease and ICMP straight to the TEP, no DTI",
    run: (lab) => {
      const r = sh(lab, "server", [
        ...dstmArgv(),
        "ping4",
        LAB.web4,
        "--server",
        LAB.server6,
        "-c",
        "3",
        "-i",
        "0.2",
      ]);
      return { ok: r.code === 0 && / 0% packet loss/.test(r.text), output: r.text };
    },
  },
  {
    title:
      "Path MTU: a 1,600-byte ping with DF from the IPv4 side gets 'fragmentation needed' with the tunnel MTU 1460",
    run: async (lab) => {
      const a4 = await leasedAddress(lab, "a");
      const r = sh(lab, "web", ["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1572", a4]);
      return { ok: /mtu ?= ?1460/i.test(r.text), output: r.text };
    },
  },
  {
    title: "… and without DF it passes (the TEP fragments the outer IPv6 packet)",
    run: async (lab) => {
      const a4 = await leasedAddress(lab, "a");
      const r = sh(lab, "web", ["ping", "-c", "2", "-W", "2", "-M", "dont", "-s", "1572", a4]);
      return { ok: r.code === 0 && / 0% packet loss/.test(r.text), output: r.text };
    },
  },
  {
    title: `Path MTU through a narrow link: node E sits behind r1 ═ r2 (MTU ${LAB.narrowMtu}); a 1,460-byte ping with DF towards it gets 'fragmentation needed' with path MTU − 40 = ${LAB.narrowMtu - 40}`,
    run: async (lab) => {
      await lab.ensure("client-e");
      const e4 = await leasedAddress(lab, "e");
      // The first packet draws r1's Packet Too Big at the TEP, which relays it as ICMPv4 3/4;
      // later ones are answered by the TEP itself from the path MTU it learned.
      const r = sh(lab, "web", pingArgv(e4, { count: 2, interval: 0.3 }));
      return { ok: new RegExp(`mtu ?= ?${LAB.narrowMtu - 40}`).test(r.text), output: r.text };
    },
  },
  {
    title: `… the TEP learned node E's path MTU (${LAB.narrowMtu}) from the router, and node E downloads 2 MiB through the narrow link`,
    run: (lab) => {
      const stats = sh(lab, "tep", [
        ...dstmArgv(),
        "tep",
        "stats",
        "--control",
        lab.services.socket("tep"),
      ]);
      const learned = new RegExp(`path MTU ${LAB.nodeE6} ${LAB.narrowMtu}`).test(stats.text);
      const r = downloadBigFile(lab, "e", join(lab.dir, "download-e-big.bin"));
      const { argv, same } = r;
      const lines = stats.text
        .split("\n")
        .filter((l) => /path MTU|pmtu-learned|icmp-relay-frag/.test(l));
      return {
        ok: learned && same,
        output: `${lines.join("\n")}\n$ ${argv.join(" ")}\n${same ? "2097152 bytes, sha256 matches the server's file" : `exit ${r.code}: ${r.stderr.trim()}`}`,
      };
    },
  },
  {
    title: "The TEP's counters: every packet forwarded or dropped is counted under its reason",
    run: (lab) => {
      const r = sh(lab, "tep", [
        ...dstmArgv(),
        "tep",
        "stats",
        "--control",
        lab.services.socket("tep"),
      ]);
      return { ok: r.code === 0 && /decap-forward\s+[1-9]/.test(r.text), output: r.text };
    },
  },
];

/** Runs every step, narrating through `print`; resolves with the results. */
export async function runDemo(
  lab: Lab,
  print: (text: string) => void,
  steps: readonly DemoStep[] = DEMO_STEPS,
): Promise<StepResult[]> {
  const results: StepResult[] = [];
  for (const [i, step] of steps.entries()) {
    print(`\n[${i + 1}/${steps.length}] ${step.title}\n`);
    let result: { ok: boolean; output: string };
    try {
      result = await step.run(lab);
    } catch (error) {
      result = { ok: false, output: (error as Error).message };
    }
    print(`${result.output.replace(/^/gm, "    ")}\n    ${result.ok ? "✔ ok" : "✘ FAILED"}\n`);
    results.push({ title: step.title, ...result });
  }
  return results;
}
