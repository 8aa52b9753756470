/**
 * A network that holds one server's datagrams to the TEP back and delivers chosen ones later
 * (test/scaleout18_snapshot_bind, _unbind_order): in the TEP's namespace nftables rewrites the
 * server's datagrams to the TEP's control port (4608) to {@link HOLD_PORT}, where
 * test/sys_scripts/g18_hold.ts keeps them; {@link AaHold.release} sends chosen ones, bytes
 * unchanged, from the server's address, and nftables gives them its source port (4607) back.
 * The nftables table is `ip6 g18`.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { canonicalIPv6 } from "../../lib/net/addr.ts";
import { AA, type AaLab } from "./aa_lab.ts";
import { startScript } from "./netns.ts";
import { waitUntil } from "./wait.ts";

/** Where the held datagrams go in the TEP's namespace. */
const HOLD_PORT = 4699;
/** The port the replays leave from (rewritten to 4607 at the TEP). */
const REPLAY_PORT = 4698;

/** One held datagram, as g18_hold.ts says it (fields absent when the message has none). */
export interface HeldDatagram {
  /** Its number in the hold directory, for {@link AaHold.release}. */
  n: number;
  /** The message type's name: BIND, UNBIND, SNAPSHOT, SYNC … */
  type: string;
  host4?: string;
  host6?: string;
  generation?: number;
  snapshot?: { id: number; part: number; parts: number };
}

export interface AaHold {
  /** Every datagram held so far, in arrival order. */
  held(): HeldDatagram[];
  /**
   * Sends the held datagrams numbered `ns` (in that order) from the server to the TEP, from
   * now on no longer holding the server's new ones; resolves once all are sent.
   */
  release(ns: readonly number[]): Promise<void>;
  /** Deletes the nftables table: the server's datagrams pass untouched again. */
  open(): void;
}

/**
 * Starts holding back everything server `server` of `lab` sends the TEP; resolves once the
 * hold is in place. The holding script is killed through `defer`; the held bytes are kept in
 * a new directory `held` under `dir`.
 */
export async function holdServerToTep(
  lab: AaLab,
  o: { dir: string; defer: (fn: () => unknown) => void; server?: number },
): Promise<AaHold> {
  const from = AA.server6(o.server ?? 0);
  const heldDir = join(o.dir, "held");
  mkdirSync(heldDir);
  const hold = startScript<never>(
    lab.tepNs,
    "g18_hold.ts",
    ["hold", AA.tep6, String(HOLD_PORT), heldDir],
    110_000,
  );
  o.defer(() => hold.kill());
  await hold.waitFor(/^holding$/, 20_000);
  const nft = (...args: string[]) => {
    const r = lab.tepNs.exec(["nft", ...args]);
    if (r.code !== 0) throw new Error(`nft ${args.join(" ")}: ${r.stderr}`);
  };
  nft("add", "table", "ip6", "g18");
  nft("add", "chain", "ip6", "g18", "pre", "{ type filter hook prerouting priority -300; }");
  nft(
    ..."add rule ip6 g18 pre ip6 saddr".split(" "),
    from,
    ..."udp dport 4608 udp dport set".split(" "),
    String(HOLD_PORT),
  );
  return {
    held: () =>
      hold.lines.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as HeldDatagram),
    async release(ns) {
      nft("flush", "chain", "ip6", "g18", "pre");
      nft(
        ..."add rule ip6 g18 pre ip6 saddr".split(" "),
        from,
        ..."udp sport".split(" "),
        String(REPLAY_PORT),
        ..."udp sport set 4607".split(" "),
      );
      const replay = startScript<never>(
        lab.srv,
        "g18_hold.ts",
        ["replay", from, String(REPLAY_PORT), AA.tep6, heldDir, ns.join(",")],
        20_000,
      );
      await replay.waitFor(new RegExp(`^replayed ${ns.length}$`), 20_000);
    },
    open: () => nft("delete", "table", "ip6", "g18"),
  };
}

/**
 * Releases the held UNBIND `unbind` (of `ipv4` for host `host6`, canonical) to the TEP of
 * `lab`, then waits (10 s at most) for the TEP's log line about it — `unbind`,
 * `unbind-superseded` or `unbind-stale` — and returns that line, the nftables hold removed.
 */
export async function tepWordOnHeldUnbind(
  lab: AaLab,
  hold: AaHold,
  unbind: HeldDatagram,
  ipv4: string,
  host6: string,
): Promise<string> {
  const tepLines = (lab.tep as NonNullable<AaLab["tep"]>).lines;
  const before = tepLines.length;
  await hold.release([unbind.n]);
  const about = (l: string) =>
    / unbind(-superseded|-stale)? /.test(l) &&
    l.includes(`ipv4=${ipv4} `) &&
    canonicalIPv6(/host6=(\S+)/.exec(l)?.[1] ?? "") === host6;
  await waitUntil(() => tepLines.slice(before).some(about), {
    timeoutMs: 10_000,
    what: "the TEP's word on the late UNBIND",
  });
  hold.open();
  return tepLines.slice(before).find(about) as string;
}
