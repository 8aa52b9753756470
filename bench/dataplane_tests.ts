/**
 * What bench/dataplane.ts measures: its tests (iperf3 arguments), the two paths, the figures
 * of one run, and the options. Shared with bench/bindings.ts, which runs one of the tests.
 *
 * @module
 */

const UDP_PAYLOAD = 64;
const UDP_FIXED_PPS = 150_000;

export type PathName = "dstm" | "kernel";
export const PATHS: readonly PathName[] = ["dstm", "kernel"];

export interface TestSpec {
  id: string;
  title: string;
  args: string[];
  kind: "tcp" | "udp";
  /** Data flows web → A (iperf3 -R): the TEP encapsulates. */
  reverse?: boolean;
}

export const TESTS: readonly TestSpec[] = [
  { id: "tcp1", title: "TCP, 1 stream, A → web", args: [], kind: "tcp" },
  { id: "tcp4", title: "TCP, 4 streams, A → web", args: ["-P", "4"], kind: "tcp" },
  {
    id: "tcp1-rev",
    title: "TCP, 1 stream, web → A (-R)",
    args: ["-R"],
    kind: "tcp",
    reverse: true,
  },
  {
    id: "udp64-max",
    title: "UDP 64 B, unlimited (-b 0)",
    args: ["-u", "-l", String(UDP_PAYLOAD), "-b", "0"],
    kind: "udp",
  },
  {
    id: "udp64-150k",
    title: "UDP 64 B, 150k pps offered",
    args: ["-u", "-l", String(UDP_PAYLOAD), "-b", String(UDP_FIXED_PPS * UDP_PAYLOAD * 8)],
    kind: "udp",
  },
];

export interface RunResult {
  round: number;
  test: string;
  path: PathName;
  /** TCP: receiver goodput; UDP: payload bits received. */
  gbps: number;
  retransmits?: number;
  /** UDP: datagrams sent and received per second, loss at the receiver. */
  sentPps?: number;
  receivedPps?: number;
  lossPercent?: number;
  /** Packets per second leaving the TEP towards the receiver, and their mean size. */
  tepPps: number;
  tepMeanBytes: number;
  /** iperf3's own CPU figures (% of one CPU). */
  cpu: { sender: number; receiver: number };
  /** dstm's forwarding Workers (TEP and node A): % of one CPU while traffic flowed, by thread. */
  workers: Record<string, number>;
  /** The whole machine: % of all its CPUs busy over the run. */
  machineBusy: number;
  /** Processes outside the lab (not this benchmark): % of one CPU over the run, and the top one. */
  outsideLoad: { percent: number; top: string };
  /** dstm path: packets per second the TEP tunnelled in the data's direction (its counter). */
  tunnelPps?: number;
  /** dstm path: CPU time of the two Workers in the data's direction per tunnelled packet. */
  workerUsPerPacket?: number;
  /** Counter differences over the run (only the non-zero drop counters). */
  drops: Record<string, number>;
  seconds: number;
}

export interface Options {
  duration: number;
  omit: number;
  rounds: number;
  json: boolean;
}
