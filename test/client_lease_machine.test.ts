/**
 * The DSTM client's lease state machine (lib/client/node.ts) without root: a scripted
 * LeaseClient stands in for the server and DtiHooks (lib/client/dti.ts) for the TUN device,
 * so acquiring, renewing at T/2, losing a lease, on-demand and the release on stop (what
 * SIGTERM does in `dstm client`) are checked in order, event by event.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { DtiError, type DtiHooks, type DtiInUse, type DtiMode } from "../lib/client/dti.ts";
import { DstmNode } from "../lib/client/node.ts";
import { dtiStatus, dtiText } from "../lib/client/node_status.ts";
import {
  type ClientLease,
  DstmRefusedError,
  DstmTimeoutError,
  type LeaseClient,
} from "../lib/client/protocol.ts";
import { Logger } from "../lib/control/log.ts";
import { formatIPv4, parseIPv4 } from "../lib/net/addr.ts";
import { PLACEHOLDER_IPV4 } from "../lib/tunnel/napt.ts";
import { Status } from "../lib/wire/dstm_types.ts";
import { waitUntil } from "./helpers/wait.ts";

const HOST6 = "2001:db8:1::a";
const TEP6 = "2001:db8::1";
const A = parseIPv4("198.51.100.7")!;
const B = parseIPv4("198.51.100.9")!;

const nodes: DstmNode[] = [];
afterEach(async () => {
  for (const node of nodes.splice(0)) await node.stop();
});

function lease(ipv4: number, leaseTime: number): ClientLease {
  const now = Date.now();
  return {
    ipv4,
    host6: HOST6,
    tep6: TEP6,
    leaseTime,
    obtainedAt: now,
    expiresAt: now + leaseTime * 1000,
  };
}

/** One step the server stand-in takes: a lease, an error to throw, or no answer ever. */
type Step = () => ClientLease | Error | "silent";

/** A scripted server and DTI that write every call into one event list. */
function harness(script: { discover?: Step[]; request?: Step[]; upFails?: Error[] }) {
  const events: string[] = [];
  const logLines: string[] = [];
  /** The `withinMs` of each REQUEST. */
  const requestBounds: (number | undefined)[] = [];
  const discover = [...(script.discover ?? [])];
  const request = [...(script.request ?? [])];
  const upFails = [...(script.upFails ?? [])];
  let onNeedLease: (() => void) | undefined;
  const take = (steps: Step[], what: string): Promise<ClientLease> => {
    const step = steps.shift();
    if (!step) return Promise.reject(new DstmTimeoutError(`script has no more ${what}`));
    const outcome = step();
    if (outcome === "silent") return new Promise<ClientLease>(() => {});
    return outcome instanceof Error ? Promise.reject(outcome) : Promise.resolve(outcome);
  };
  const client: LeaseClient = {
    host6: HOST6,
    discover: () => {
      events.push("discover");
      return take(discover, "DISCOVER answers");
    },
    request: (ipv4, options) => {
      events.push(`request ${formatIPv4(ipv4)}`);
      requestBounds.push(options?.withinMs);
      return take(request, "REQUEST answers");
    },
    release: (ipv4) => {
      events.push(`release ${formatIPv4(ipv4)}`);
      return Promise.resolve();
    },
    close: () => {
      events.push("close");
    },
  };
  let up = false;
  const dti: DtiHooks = {
    up: (address, tep6, needLease) => {
      events.push(`up ${formatIPv4(address)}${tep6 ? "" : " (no TEP)"}`);
      const fails = upFails.shift();
      if (fails) return Promise.reject(fails);
      up = true;
      onNeedLease = needLease;
      return Promise.resolve(1460);
    },
    down: () => {
      if (up) events.push("down");
      up = false;
      return Promise.resolve();
    },
    inUse: () => (up ? inUse : undefined),
  };
  let inUse: DtiInUse = { mode: "tun" };
  const start = async (
    extra: {
      onDemand?: boolean;
      idleSeconds?: number;
      maxBackoffMs?: number;
      dtiMode?: DtiMode;
    } = {},
  ) => {
    const node = await DstmNode.start({
      server: "2001:db8::53",
      host6: HOST6,
      leaseClient: async () => client,
      dti,
      log: new Logger({ sink: (text) => logLines.push(...text.trimEnd().split("\n")) }),
      ...extra,
    });
    nodes.push(node);
    return node;
  };
  return {
    events,
    logLines,
    requestBounds,
    start,
    needLease: () => onNeedLease?.(),
    /** What the stand-in DTI says is up from now on. */
    setInUse: (next: DtiInUse) => {
      inUse = next;
    },
  };
}

describe("DstmNode lease state machine (no root)", () => {
  test("acquires, brings the DTI up with the lease, renews at half the lease time", async () => {
    const h = harness({ discover: [() => lease(A, 0.2)], request: [() => lease(A, 600)] });
    const node = await h.start();
    await node.ready;
    expect(h.events).toEqual(["discover", "up 198.51.100.7"]);
    expect(node.status()).toMatchObject({
      state: "bound",
      ipv4: "198.51.100.7",
      tep6: TEP6,
      mtu: 1460,
      dti: { requested: "tun", mode: "tun", fallback: null, counters: "workers" },
    });
    await waitUntil(() => h.events.includes("request 198.51.100.7"), { what: "the renewal" });
    await waitUntil(() => node.status().leaseTime === 600, { what: "the renewed lease" });
    expect(node.status().state).toBe("bound");
    expect(h.events).toEqual(["discover", "up 198.51.100.7", "request 198.51.100.7"]);
  });

  test("stop (SIGTERM) takes the DTI down, releases the lease and closes the client", async () => {
    const h = harness({ discover: [() => lease(A, 600)] });
    const node = await h.start();
    await node.ready;
    await node.stop();
    expect(h.events).toEqual([
      "discover",
      "up 198.51.100.7",
      "down",
      "release 198.51.100.7",
      "close",
    ]);
    expect(node.status().state).toBe("stopped");
    expect(h.logLines.some((l) => / release ipv4=198\.51\.100\.7/.test(l))).toBe(true);
  });

  test("the same refusal again and again (no --key) is said once at warn, with the --key hint and the backoff", async () => {
    const unsigned = () =>
      new DstmRefusedError(Status.NOT_AUTHORISED, "authentication failed: missing");
    const h = harness({ discover: [unsigned, unsigned, unsigned, unsigned, () => lease(A, 600)] });
    const node = await h.start({ maxBackoffMs: 20 });
    await node.ready;
    expect(h.events.filter((e) => e === "discover")).toHaveLength(5);
    const warned = h.logLines.filter((l) => / refused /.test(l));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toContain("give --key FILE with the server's key");
    expect(warned[0]).toContain("the same failure again is logged at debug");
  });

  test("a refused renewal loses the lease: DTI down, then a new lease and the DTI up again", async () => {
    const h = harness({
      // 2 s: the renewal at T1 (1 s) is sent before the lease ends even on a loaded machine.
      discover: [() => lease(A, 2), () => lease(B, 600)],
      request: [() => new DstmRefusedError(Status.NO_SUCH_LEASE, "")],
    });
    const node = await h.start();
    await node.ready;
    await waitUntil(() => h.events.includes("up 198.51.100.9"), {
      what: "the second lease",
      timeoutMs: 10_000,
    });
    expect(h.events).toEqual([
      "discover",
      "up 198.51.100.7",
      "request 198.51.100.7",
      "down",
      "discover",
      "up 198.51.100.9",
    ]);
    expect(node.status()).toMatchObject({ state: "bound", ipv4: "198.51.100.9" });
    // The Logger writes on the next turn (setImmediate): wait for the line, do not race it.
    await waitUntil(() => h.logLines.some((l) => / lease-lost ipv4=198\.51\.100\.7/.test(l)), {
      what: "the log line",
    });
  });

  test("a renewal without answer while time remains is retried at half the remaining time", async () => {
    const h = harness({
      discover: [() => lease(A, 2.4)],
      request: [() => new DstmTimeoutError("no answer"), () => lease(A, 600)],
    });
    const node = await h.start();
    await node.ready;
    await waitUntil(() => node.status().leaseTime === 600, { what: "the retried renewal" });
    expect(h.events).toEqual([
      "discover",
      "up 198.51.100.7",
      "request 198.51.100.7",
      "request 198.51.100.7",
    ]);
    // The Logger writes on the next turn (setImmediate): wait for the line, do not race it.
    await waitUntil(() => h.logLines.some((l) => / renew-failed ipv4=198\.51\.100\.7/.test(l)), {
      what: "the log line",
    });
  });

  test("a renewal the server never answers: the lease is lost and the DTI down at the expiry (RFC 2131 §4.4.5)", async () => {
    const h = harness({
      // 2 s: the renewal at T1 (1 s); the stand-in never answers it, nor bounds itself.
      discover: [() => lease(A, 2), () => lease(B, 600)],
      request: [() => "silent"],
    });
    const node = await h.start();
    await node.ready;
    await waitUntil(() => h.events.includes("up 198.51.100.9"), {
      what: "the lease lost at its expiry, then a new one",
      timeoutMs: 10_000,
    });
    expect(h.events).toEqual([
      "discover",
      "up 198.51.100.7",
      "request 198.51.100.7",
      "down",
      "discover",
      "up 198.51.100.9",
    ]);
    // The exchange itself is told to end by the expiry: at most the 2 s lease.
    expect(h.requestBounds).toHaveLength(1);
    expect(h.requestBounds[0]).toBeGreaterThanOrEqual(0);
    expect(h.requestBounds[0]).toBeLessThanOrEqual(2000);
    await waitUntil(
      () => h.logLines.some((l) => / lease-lost ipv4=198\.51\.100\.7 .*expired/.test(l)),
      { what: "the log line" },
    );
  });

  test("a server that does not answer is asked again after a backoff, then the lease is used", async () => {
    const h = harness({ discover: [() => new DstmTimeoutError("no answer"), () => lease(A, 600)] });
    const node = await h.start();
    await node.ready;
    expect(h.events).toEqual(["discover", "discover", "up 198.51.100.7"]);
    // The Logger writes on the next turn (setImmediate): wait for the line, do not race it.
    await waitUntil(() => h.logLines.some((l) => / server-unreachable /.test(l)), {
      what: "the log line",
    });
  });

  test("on-demand: the DTI is up with 192.0.0.2 and no lease; traffic asks for one; idle releases it", async () => {
    const h = harness({ discover: [() => lease(A, 600)] });
    const node = await h.start({ onDemand: true, idleSeconds: 1 });
    await node.ready;
    expect(formatIPv4(PLACEHOLDER_IPV4)).toBe("192.0.0.2");
    expect(h.events).toEqual(["up 192.0.0.2 (no TEP)"]);
    expect(node.status()).toMatchObject({ state: "idle", ipv4: null });
    h.needLease(); // the outbound Worker holds a packet and has no lease
    await waitUntil(() => node.status().state === "bound", { what: "the on-demand lease" });
    expect(node.status().ipv4).toBe("198.51.100.7");
    // No traffic: after the idle time the lease is released; the DTI stays up.
    await waitUntil(() => h.logLines.some((l) => / idle-release ipv4=198\.51\.100\.7/.test(l)), {
      timeoutMs: 10_000,
      what: "the idle release",
    });
    expect(node.status()).toMatchObject({ state: "idle", ipv4: null });
    expect(h.events).toEqual(["up 192.0.0.2 (no TEP)", "discover", "release 198.51.100.7"]);
  });
});

describe("DstmNode: the DTI in use and DTI failures (no root)", () => {
  test("status says which DTI the hooks brought up, and nothing once it is down", async () => {
    const h = harness({ discover: [() => lease(A, 600)] });
    h.setInUse({ mode: "seg6", fallback: "the kernel has no ip6tnl" });
    const node = await h.start({ dtiMode: "kernel" });
    await node.ready;
    expect(node.status().dti).toEqual({
      requested: "kernel",
      mode: "seg6",
      fallback: "the kernel has no ip6tnl",
      counters: "kernel",
    });
    expect(dtiText(node.status().dti)).toBe(
      "kernel: seg6 (the kernel has no ip6tnl); counters are the kernel's: ip -s link show of the host's IPv6 link (seg6 sends past the DTI)",
    );
    await node.stop();
    expect(node.status().dti).toEqual({
      requested: "kernel",
      mode: null,
      fallback: null,
      counters: null,
    });
  });

  test("the text of dtiStatus: the default TUN, a shared lease on the TUN, an older client", () => {
    expect(dtiText(dtiStatus("tun", { mode: "tun" }))).toBe("tun");
    expect(dtiText(dtiStatus("ip6tnl", { mode: "ip6tnl" }))).toBe(
      "ip6tnl; counters are the kernel's: ip -s link",
    );
    expect(dtiText(dtiStatus("kernel", { mode: "tun", fallback: "a shared lease" }))).toBe(
      "kernel: tun (a shared lease)",
    );
    expect(dtiText(dtiStatus("seg6", undefined))).toBe("seg6: down");
    expect(dtiText(dtiStatus("tun", { mode: "tun", kernelEncap: true }))).toBe(
      "tun; encapsulation by the kernel (--kernel-encap)",
    );
    expect(dtiText(undefined)).toBe("");
  });

  test("a DTI that can never be made: the lease is released, no retry, `failed` says why", async () => {
    const why = new DtiError("DTI dti0: --dti ip6tnl: this kernel has no ip6tnl", {
      permanent: true,
    });
    const h = harness({ discover: [() => lease(A, 600), () => lease(A, 600)], upFails: [why] });
    const node = await h.start({ dtiMode: "ip6tnl", maxBackoffMs: 50 });
    expect(await node.failed).toBe(why);
    expect(h.events).toEqual(["discover", "up 198.51.100.7", "release 198.51.100.7"]);
    expect(h.logLines.some((l) => / dti-failed /.test(l))).toBe(false);
    expect(node.status()).toMatchObject({ ipv4: null, dti: { mode: null } });
  });

  test("a transient DTI failure keeps the lease client retrying with back-off", async () => {
    const h = harness({
      discover: [() => lease(A, 600), () => lease(A, 600)],
      upFails: [new DtiError("DTI dti0: EBUSY")],
    });
    const node = await h.start({ maxBackoffMs: 50 });
    await node.ready;
    expect(h.events).toEqual(["discover", "up 198.51.100.7", "discover", "up 198.51.100.7"]);
    // The Logger writes on the next turn (setImmediate): wait for the line, do not race it.
    await waitUntil(() => h.logLines.some((l) => / dti-failed .*EBUSY/.test(l)), {
      what: "the log line",
    });
    expect(node.status()).toMatchObject({ state: "bound", dti: { mode: "tun" } });
  });
});
