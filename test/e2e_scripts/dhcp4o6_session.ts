/**
 * Runs one DHCPv4-over-DHCPv6 client session inside a host namespace (test/kea_dhcp4o6.test.ts)
 * and prints, last, one line of JSON: what was sent (type, U flag, destination), the leases,
 * and the servers option 88 named.
 *
 *   bun dhcp4o6_session.ts unicast   SERVER6 HOST6 TEP6   lease, renew, rebind (clock past T2),
 *                                                       release, option 88 (client.discoverServers)
 *   bun dhcp4o6_session.ts multicast IFNAME  HOST6 TEP6   option 88 (discoverServers), lease via
 *                                                       ff02::1:2, renew, release
 *
 * Each step waits for the next wall-clock second, so that Kea's lease file (expiry times in
 * whole seconds) shows each renewal. The script does not wait after the RELEASE (which has no
 * answer): the caller polls Kea's lease file for it.
 */
import { Dhcp4o6Client, discoverServers } from "../../lib/client/dhcp4o6_client.ts";
import { formatIPv4 } from "../../lib/net/addr.ts";
import { dhcp4MessageTypeName } from "../../lib/wire/dhcp4.ts";
import { DHCP4O6_FLAG_UNICAST, decodeDhcp4o6 } from "../../lib/wire/dhcp4o6.ts";

const [mode, target, host6, tep6] = process.argv.slice(2) as [string, string, string, string];

/**
 * Resolves once the wall clock is 100 ms into a later second than `since` (ms since the
 * epoch). The margin is for Kea: glibc's time() reads CLOCK_REALTIME_COARSE, which lags the
 * clock by up to a tick, so a query sent right at the boundary can still get the old second.
 */
async function nextSecond(since: number): Promise<void> {
  const due = (Math.floor(since / 1000) + 1) * 1000 + 100;
  while (Date.now() < due) await Bun.sleep(10);
}

const sent: { message: string; u: boolean; to: string }[] = [];
const out: Record<string, unknown> = {};
// Option 88 first, on its own socket ([::]:546: the reply comes to the link-local address);
// the session below then still goes to ff02::1:2, to show DORA over multicast.
if (mode === "multicast")
  out.servers = await discoverServers(target, { retry: { initialMs: 1000, tries: 3 } });
let skew = 0;
const client = await Dhcp4o6Client.open({
  server: mode === "unicast" ? target : "ff02::1:2",
  ifname: mode === "multicast" ? target : undefined,
  // An empty server list given: no INFORMATION-REQUEST of the client's own, DORA over
  // ff02::1:2 whatever option 88 said (the client would otherwise use option 88's addresses).
  servers: mode === "multicast" ? [] : undefined,
  host6,
  tep6,
  retry: { initialMs: 1000, maxMs: 2000, tries: 3 },
  now: () => Date.now() + skew,
  onSend: (payload, to) => {
    const r = decodeDhcp4o6(payload);
    if (!r.ok) return; // the INFORMATION-REQUEST is plain DHCPv6
    sent.push({
      message: dhcp4MessageTypeName(r.value.dhcp4.options.messageType),
      u: (r.value.flags & DHCP4O6_FLAG_UNICAST) !== 0,
      to,
    });
  },
});
try {
  const lease = await client.discover();
  out.lease = { ipv4: formatIPv4(lease.ipv4), leaseTime: lease.leaseTime, tep6: lease.tep6 };
  out.binding = { ...client.binding, ipv4: formatIPv4(lease.ipv4) };
  console.log(`bound ${formatIPv4(lease.ipv4)}`);
  let acked = Date.now();
  await nextSecond(acked);
  const renewed = await client.request(lease.ipv4);
  out.renewed = { ipv4: formatIPv4(renewed.ipv4), leaseTime: renewed.leaseTime };
  console.log("renewed");
  acked = Date.now();
  if (mode === "unicast") {
    await nextSecond(acked);
    skew = (client.binding!.t2 + 1) * 1000; // as if T2 had passed without an answer
    const rebound = await client.request(lease.ipv4);
    out.rebound = { ipv4: formatIPv4(rebound.ipv4), leaseTime: rebound.leaseTime };
    skew = 0;
    console.log("rebound");
    acked = Date.now();
  }
  await nextSecond(acked);
  await client.release(lease.ipv4);
  // Option 88 through the client's own socket ([host6]:546, reply to the global address).
  if (mode === "unicast") out.servers = await client.discoverServers();
} finally {
  client.close();
}
out.sent = sent;
console.log(JSON.stringify(out));
