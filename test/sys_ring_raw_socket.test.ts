/**
 * RingRawSocket (lib/sys/ring_raw_socket.ts): the packet ring is read first, the raw IPv6
 * socket when the poll(2) on both says it has something, and else first only once the ring
 * handed over RAW_FIRST_AFTER packets while no poll looked at it (so a busy ring never starves
 * it), never by a recvmmsg(2) that finds nothing while polls keep looking (issue 14). The ring and the raw socket are stand-ins that count their reads, on real
 * descriptors for poll: an unbound UDP socket (never readable) and /dev/null (always).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { closeSync, openSync } from "node:fs";
import * as libc from "../lib/sys/libc.ts";
import type { PacketRing } from "../lib/sys/packet_ring.ts";
import type { Raw6Batch } from "../lib/sys/raw6_batch.ts";
import {
  NAP_BELOW,
  NAP_BELOW_BYTES,
  RAW_FIRST_AFTER,
  RingRawSocket,
} from "../lib/sys/ring_raw_socket.ts";

/** Reads of a busy ring at 64 packets each between two of the raw socket's turns. */
const RAW_FIRST_EVERY = RAW_FIRST_AFTER / 64;

const idle = libc.socket(libc.AF_INET, libc.SOCK_DGRAM | libc.SOCK_CLOEXEC, 0);
const idle2 = libc.socket(libc.AF_INET, libc.SOCK_DGRAM | libc.SOCK_CLOEXEC, 0);
const readable = openSync("/dev/null", "r");
afterAll(() => {
  libc.close(idle);
  libc.close(idle2);
  closeSync(readable);
});

/**
 * A stand-in reader on `fd` whose read returns `answer()` packets of `bytes` each (their
 * sizes) and counts the calls.
 */
function source(fd: number, answer: () => number, bytes = 92) {
  return {
    fd,
    calls: 0,
    errorPending: false,
    /** PacketRing.ready: a packet waits (always, for these stand-ins). */
    ready: true,
    read(_bufs: readonly Uint8Array[], sizes: Int32Array) {
      this.calls++;
      const n = answer();
      sizes.fill(bytes, 0, Math.max(0, n));
      return n;
    },
  };
}

function pair(
  ringFd: number,
  ringAnswer: () => number,
  rawFd: number,
  rawAnswer: () => number,
  napUs = 0,
  ringPacketBytes = 92,
  clock = { ms: 0 },
) {
  const ring = source(ringFd, ringAnswer, ringPacketBytes);
  const raw = source(rawFd, rawAnswer);
  // The reader's clock (how long it worked since it last waited): stands still unless moved.
  const sock = new RingRawSocket(
    ring as unknown as PacketRing,
    raw as unknown as Raw6Batch,
    0,
    napUs,
    () => clock.ms,
  );
  const read = () =>
    sock.read([new Uint8Array(64)], new Int32Array(256), 0, new Uint8Array(16), new Uint8Array(1));
  return { ring, raw, read, sock };
}

describe("RingRawSocket", () => {
  test("a busy ring: the raw socket is asked first once per RAW_FIRST_AFTER packets, not at every other read", () => {
    const { ring, raw, read } = pair(
      idle,
      () => 64,
      idle2,
      () => 0,
    );
    for (let i = 0; i < 4 * RAW_FIRST_EVERY + 1; i++) expect(read()).toBe(64);
    expect(raw.calls).toBe(4);
    expect(ring.calls).toBe(4 * RAW_FIRST_EVERY + 1);
  });

  test("a busy ring never starves the raw socket: its packets come on its turn", () => {
    let rawQueued = 3;
    const { raw, read } = pair(
      idle,
      () => 5,
      idle2,
      () => (rawQueued > 0 ? rawQueued-- && 1 : 0),
    );
    const got: number[] = [];
    for (let i = 0; i < 3 * (Math.ceil(RAW_FIRST_AFTER / 5) + 1); i++) got.push(read());
    expect(raw.calls).toBe(3);
    expect(got.filter((n) => n === 1).length).toBe(3); // the raw socket's three reads
  });

  test("both empty: one poll, no recvmmsg on the raw socket that would find nothing", () => {
    const { ring, raw, read } = pair(
      idle,
      () => 0,
      idle2,
      () => 0,
    );
    for (let i = 0; i < 2 * RAW_FIRST_EVERY; i++) expect(read()).toBe(0);
    expect(raw.calls).toBe(0);
    expect(ring.calls).toBe(2 * RAW_FIRST_EVERY); // the poll (timeout 0) found nothing either
  });

  test("a ring that empties now and then: the polls look at the raw socket, no recvmmsg finds nothing", () => {
    // iperf3's 64-byte UDP: a few packets per read, a poll every few reads.
    let k = 0;
    const { ring, raw, read } = pair(
      idle,
      () => (++k % 4 === 0 ? 0 : 3),
      idle2,
      () => 0,
    );
    const reads = Math.ceil((8 * RAW_FIRST_AFTER) / 3);
    for (let i = 0; i < reads; i++) read();
    expect(ring.calls).toBe(reads);
    expect(raw.calls).toBe(0);
  });

  test("a poll finds both readable: the ring's packets now, the raw socket's at the next read", () => {
    let ringAnswers = [0, 4, 4, 4];
    const { raw, read } = pair(
      readable,
      () => ringAnswers.shift() ?? 4,
      readable,
      () => 2,
    );
    expect(read()).toBe(4); // the ring empty, the poll: both readable, the ring's go first
    expect(raw.calls).toBe(0);
    expect(read()).toBe(2); // then the raw socket's, without waiting for RAW_FIRST_AFTER packets
    expect(raw.calls).toBe(1);
    ringAnswers = [];
    expect(read()).toBe(4);
  });

  test("the ring empty and the raw socket readable (poll says so): its packets are read at once", () => {
    const { raw, read } = pair(
      idle,
      () => 0,
      readable,
      () => 2,
    );
    expect(read()).toBe(2);
    expect(raw.calls).toBe(1);
  });

  test("the ring stopped at a last fragment's mark: one packet of the raw socket next, then the ring's frames", () => {
    // The ring's reads: 2 packets then (stopped) a mark; 3 packets; (stopped at once) a mark
    // whose fragment completed nothing; 4 packets. The raw socket holds the packet the first
    // fragment completed.
    const answers: [number, boolean][] = [
      [2, true],
      [3, false],
      [0, true],
      [4, false],
    ];
    const order: string[] = [];
    const ring = {
      fd: idle,
      rawDue: false,
      markAhead: false,
      errorPending: false,
      read() {
        const [n, due] = answers.shift() ?? [0, false];
        this.rawDue = due;
        order.push(`ring ${n}`);
        return n;
      },
    };
    let rawQueued = 1;
    const raw = {
      fd: idle2,
      errorPending: false,
      read(bufs: readonly Uint8Array[]) {
        const n = Math.min(bufs.length, rawQueued);
        rawQueued -= n;
        order.push(`raw ${n} of ${bufs.length}`);
        return n;
      },
    };
    const sock = new RingRawSocket(ring as unknown as PacketRing, raw as unknown as Raw6Batch, 0);
    const bufs = [new Uint8Array(64), new Uint8Array(64), new Uint8Array(64)];
    const read = () => sock.read(bufs, new Int32Array(3), 0, new Uint8Array(48), new Uint8Array(3));
    expect([read(), read(), read(), read()]).toEqual([2, 1, 3, 4]);
    // The raw socket is asked for one packet at each mark (the completed one, not a batch that
    // would take what is behind it); a mark that completed nothing lets the ring go on.
    expect(order).toEqual(["ring 2", "raw 1 of 1", "ring 3", "ring 0", "raw 0 of 1", "ring 4"]);
  });

  test("the raw socket's turn waits while a last fragment's mark is ahead in the ring", () => {
    const ring = {
      ...source(idle, () => 1),
      rawDue: false,
      markAhead: true,
    };
    const raw = source(idle2, () => 1);
    const sock = new RingRawSocket(ring as unknown as PacketRing, raw as unknown as Raw6Batch, 0);
    const read = () =>
      sock.read([new Uint8Array(64)], new Int32Array(1), 0, new Uint8Array(16), new Uint8Array(1));
    // One packet a read: past RAW_FIRST_AFTER packets the turn is due, and still waits.
    for (let i = 0; i < RAW_FIRST_AFTER + 8; i++) read();
    expect(raw.calls).toBe(0);
    ring.markAhead = false;
    read();
    expect(raw.calls).toBe(1);
  });

  describe("naps (NAPI-like)", () => {
    /** The ring answers these counts in turn, then 0. */
    const answers = (...counts: number[]) => {
      const queue = [...counts];
      return () => queue.shift() ?? 0;
    };

    test("a small read: the next read naps first, then reads what came meanwhile", () => {
      const { ring, raw, read, sock } = pair(idle, answers(3, 5), idle2, () => 0, 20);
      expect(read()).toBe(3);
      // A nap is next (20 µs): not pending, so that a loop holding trains writes them first.
      expect(sock.pending).toBe(false);
      expect(read()).toBe(5);
      expect(ring.calls).toBe(2);
      expect(raw.calls).toBe(0);
      expect(sock.pending).toBe(false); // 5 is small too: naps go on
    });

    test("without naps (napUs 0) the ring's waiting packets are pending after any read", () => {
      const { read, sock } = pair(idle, answers(3, 5), idle2, () => 0);
      expect(read()).toBe(3);
      expect(sock.pending).toBe(true);
      expect(read()).toBe(5);
    });

    test("a nap that finds nothing ends the naps: the poll waits, and the next read does not nap", () => {
      const { ring, read, sock } = pair(idle, answers(3), idle2, () => 0, 20);
      expect(read()).toBe(3);
      expect(read()).toBe(0); // the nap, the ring, then the poll (timeout 0 here)
      expect(ring.calls).toBe(2);
      expect(sock.pending).toBe(true);
      expect(read()).toBe(0); // no nap: the ring, then the poll
      expect(ring.calls).toBe(3);
    });

    test(`a read of NAP_BELOW (${NAP_BELOW}) packets or more is not followed by a nap`, () => {
      const { read, sock } = pair(idle, answers(NAP_BELOW - 1, NAP_BELOW), idle2, () => 0, 20);
      expect(read()).toBe(NAP_BELOW - 1);
      expect(sock.pending).toBe(false);
      expect(read()).toBe(NAP_BELOW);
      expect(sock.pending).toBe(true);
    });

    test(`a few long packets (${NAP_BELOW_BYTES} bytes or more in all, a TSO flow's) are not followed by a nap`, () => {
      const bytes = Math.ceil(NAP_BELOW_BYTES / 2);
      const two = pair(idle, answers(2), idle2, () => 0, 20, bytes);
      expect(two.read()).toBe(2);
      expect(two.sock.pending).toBe(true);
      const one = pair(idle, answers(1), idle2, () => 0, 20, bytes);
      expect(one.read()).toBe(1);
      expect(one.sock.pending).toBe(false); // half as many bytes: a nap next
    });

    test("a reader busy more than half a nap's time since it last waited does not nap (a flood)", () => {
      const clock = { ms: 0 };
      const big = NAP_BELOW;
      const { read, sock } = pair(idle, answers(3, big, 3, big, 3), idle2, () => 0, 20, 92, clock);
      expect(read()).toBe(3);
      expect(sock.pending).toBe(false); // a nap next
      expect(read()).toBe(big); // after the nap: a full read, no nap next
      expect(sock.pending).toBe(true);
      clock.ms += 0.009; // 9 µs of work since the nap
      expect(read()).toBe(3);
      expect(sock.pending).toBe(false); // less than half the 20 µs nap: a nap next
      expect(read()).toBe(big);
      clock.ms += 0.011; // 11 µs of work since that nap: more than a third of the time busy
      expect(read()).toBe(3);
      expect(sock.pending).toBe(true); // no nap: read again at once
    });

    test("the raw socket readable during a nap: it ends the nap and its packets are read", () => {
      const { ring, raw, read } = pair(idle, answers(3), readable, () => 2, 1_000_000);
      expect(read()).toBe(3);
      // A nap of 1 s would hold the test; the readable raw socket ends it at once.
      expect(read()).toBe(2);
      expect(raw.calls).toBe(1);
      expect(ring.calls).toBe(2);
    });

    test("the ring's packets after a nap go first, the readable raw socket's at the next read", () => {
      const { raw, read } = pair(idle, answers(3, 4), readable, () => 2, 1_000_000);
      expect(read()).toBe(3);
      expect(read()).toBe(4);
      expect(raw.calls).toBe(0);
      expect(read()).toBe(2); // its turn before the next nap
      expect(raw.calls).toBe(1);
    });
  });
});
