/**
 * Reloading a TEP's static bindings (`--binding`, `--binding-file`) on SIGHUP: the bindings
 * the new configuration adds are installed, those it no longer has are withdrawn, and the
 * bindings the DSTM server manages are left as they are (./control.ts keeps the two apart).
 *
 * A static binding owns its address (the server may not bind or unbind it here), so a new
 * static binding on an address the server has bound now is a conflict: the reload is refused
 * as a whole, naming the address, and the running table stays. Withdraw the lease first
 * (`dstm lease del`), or take the address out of the server's pools.
 *
 * @module
 */
import type { Logger } from "../control/log.ts";
import { formatIPv4 } from "../net/addr.ts";
import type { WireBinding } from "../wire/dstm_types.ts";

/** What a reload changes in the static bindings, in the order of the configuration. */
export interface StaticChange {
  readonly added: readonly WireBinding[];
  readonly removed: readonly WireBinding[];
}

/** A binding as comparable text: address, port set and host, all of which must match. */
function _identity(b: WireBinding): string {
  const { offset, psidLength, psid } = b.portSet;
  return `${b.host4}/${offset}/${psidLength}/${psid}=${b.host6}`;
}

/**
 * The static bindings `next` adds to and removes from `current`; throws an Error naming the
 * first address `next` makes static that a server-managed binding (`managed`) holds now.
 *
 * @example
 * staticChange([a], [a, b], []) // { added: [b], removed: [] }
 */
export function staticChange(
  current: readonly WireBinding[],
  next: readonly WireBinding[],
  managed: Iterable<WireBinding>,
): StaticChange {
  const before = new Set(current.map(_identity));
  const after = new Set(next.map(_identity));
  const staticNow = new Set(current.map((b) => b.host4));
  const added = next.filter((b) => !before.has(_identity(b)));
  const removed = current.filter((b) => !after.has(_identity(b)));
  const newlyStatic = new Set(added.map((b) => b.host4).filter((a) => !staticNow.has(a)));
  for (const b of managed) {
    if (newlyStatic.has(b.host4))
      throw new Error(
        `static binding ${formatIPv4(b.host4)}: the server has bound this address (to ${b.host6}); end that lease first (dstm lease del) or take the address out of the server's pools`,
      );
  }
  return { added, removed };
}

/**
 * Logs a reload's change as one `static-bindings` line: how many were added and removed, and
 * the first 8 of each as `IPV4[:PSID]=IPV6`. Nothing when the TEP has no control plane yet.
 */
export function logStaticChange(log: Logger, change: StaticChange | undefined): void {
  if (!change) return;
  const list = (bindings: readonly WireBinding[]) =>
    bindings
      .slice(0, 8)
      .map(
        (b) =>
          `${formatIPv4(b.host4)}${b.portSet.psidLength ? `:${b.portSet.psid}` : ""}=${b.host6}`,
      )
      .join(",") || undefined;
  log.info("static-bindings", {
    added: change.added.length,
    removed: change.removed.length,
    "added-first": list(change.added),
    "removed-first": list(change.removed),
  });
}
