/** A TEP binding sink (lib/server/tep_sync.ts BindingSink) that records what a handler told the TEP. */
import type { Lease } from "../../lib/lease/lease.ts";
import { formatIPv4 } from "../../lib/net/addr.ts";

/** What the handler told the TEP: `+IPV4 HOST6` installed, `-IPV4 HOST6` removed, in order. */
export function recordingSink(events: string[]) {
  const text = (sign: string, l: Lease) => `${sign}${formatIPv4(l.ipv4)} ${l.host6}`;
  return {
    install: (l: Lease) => {
      events.push(text("+", l));
      return Promise.resolve(true);
    },
    remove: (l: Lease) => {
      events.push(text("-", l));
    },
    pending: () => undefined,
    onTepMessage: () => {},
    close: () => {},
  };
}
