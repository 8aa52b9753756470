/**
 * The order of BIND and UNBIND for one binding at the TEP, by their GENERATION
 * (docs/protocol.md, "Generations"; lib/wire/dstm_tep_options.ts).
 *
 * Several servers share one lease database (docs/scale-out.md) and each BINDs what it grants
 * and UNBINDs what it frees. Their messages for one binding (one IPv4 address and PSID) can
 * arrive in another order than the database decided them: server A expires host H's lease and
 * sends UNBIND X→H; server B grants X to H again and BINDs X→H; A's UNBIND, late in the
 * network, arrives after B's BIND. Both name the same X→H, so without more the TEP removes the
 * live binding of an acknowledged lease until a SYNC brings a snapshot.
 *
 * A generation is the lease's version in the shared store: the change sequence number of its
 * row (PostgreSQL `dstm_leases.seq`), which the database hands out in commit order to every
 * server's writes. A BIND carries the version of the lease granted, an UNBIND the version of
 * the write that freed it; a later grant of the same slot is a later write, so its version is
 * higher. The TEP keeps, per binding, the generation of the BIND that installed it, and per
 * slot freed recently the generation of the UNBIND that freed it (a bounded mark), and:
 *
 * - an UNBIND older than the binding held (`held > unbind`) is stale: acknowledged, ignored;
 * - a BIND older than the binding held (`held > bind`), or not newer than the UNBIND that
 *   last freed the slot (`unbound ≥ bind`), is stale: acknowledged, ignored;
 * - a message without a generation (an older server, a store that is not shared), or for a
 *   binding whose generation is unknown, is applied as before (an UNBIND only when it names the
 *   binding held: its HOST_IPV6 and port set).
 *
 * Pure functions: the state is ./tep_bindings.ts's.
 *
 * @module
 */

/** What to do with a BIND. */
export type BindOrder =
  /** Install it. */
  | "apply"
  /** The binding held is newer (a later grant, possibly by another server): ignore. */
  | "superseded"
  /** The slot was freed by an UNBIND at least as new: a late BIND of a lease gone; ignore. */
  | "unbound";

/** What to do with an UNBIND (before checking that it names the binding held). */
export type UnbindOrder =
  /** As before: remove the binding when it is the one named. */
  | "apply"
  /** The binding held is newer than the lease this UNBIND frees: ignore. */
  | "superseded";

/**
 * A BIND of generation `bind` for a slot whose binding held has generation `held` and that an
 * UNBIND of generation `unbound` last freed (each undefined when unknown or none).
 *
 * @example bindOrder(7, 9, undefined) // "superseded": the TEP holds version 9
 * @example bindOrder(7, undefined, 7) // "unbound": version 7 was freed already
 * @example bindOrder(undefined, 9, undefined) // "apply": no generation, as before
 */
export function bindOrder(
  bind: number | undefined,
  held: number | undefined,
  unbound: number | undefined,
): BindOrder {
  if (bind === undefined) return "apply";
  if (held !== undefined && held > bind) return "superseded";
  if (unbound !== undefined && unbound >= bind) return "unbound";
  return "apply";
}

/**
 * An UNBIND of generation `unbind` for a slot whose binding held has generation `held`
 * (undefined when unknown or none).
 *
 * @example unbindOrder(8, 12) // "superseded": A's late UNBIND of version 8, B's BIND of 12 held
 * @example unbindOrder(12, 12) // "apply": frees the version held
 * @example unbindOrder(undefined, 12) // "apply": no generation, as before
 */
export function unbindOrder(unbind: number | undefined, held: number | undefined): UnbindOrder {
  if (unbind === undefined || held === undefined) return "apply";
  return held > unbind ? "superseded" : "apply";
}
