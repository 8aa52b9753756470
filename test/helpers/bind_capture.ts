/**
 * The attacker's recording of server → TEP control traffic (dumpcap, then tshark), from which
 * it takes a BIND to replay. Shared by test/redteam_tep.test.ts and test/tep_attack.test.ts.
 */
import { readFileSync } from "node:fs";
import type { Netns } from "../../lib/sys/netns.ts";
import { MessageType } from "../../lib/wire/dstm_types.ts";
import { type Daemon, until } from "./daemon.ts";

/** Resolves once dumpcap has written its file header to `pcap` (true), or after 10 s (false). */
export function captureStarted(pcap: string): Promise<boolean> {
  return until(() => {
    try {
      return readFileSync(pcap).length > 0;
    } catch {
      return false;
    }
  }, 10_000);
}

/**
 * Stops the dumpcap `capture` (writing `pcap`) and returns, as hex, the UDP payload of the
 * first DSTM BIND in it, read with tshark in `ns`; "" when there is none.
 */
export async function stopAndFindBind(capture: Daemon, ns: Netns, pcap: string): Promise<string> {
  // dumpcap writes each frame as it comes: poll the file for the BIND (deadline 5 s), then stop.
  await until(() => _firstBind(ns, pcap) !== "", 5_000);
  capture.proc.kill("SIGTERM");
  await capture.proc.exited;
  return _firstBind(ns, pcap);
}

function _firstBind(ns: Netns, pcap: string): string {
  const fields = ns.exec(["tshark", "-r", pcap, "-T", "fields", "-e", "udp.payload"]);
  return (
    fields.stdout
      .split("\n")
      .map((l) => l.trim().replaceAll(":", ""))
      .find((l) => l.slice(2, 4) === MessageType.BIND.toString(16).padStart(2, "0")) ?? ""
  );
}
