/**
 * What a reload (SIGHUP) of the TEP or the client may change, decided the server's way
 * (lib/server/reload.ts): all or nothing. Each daemon describes its settings as comparable
 * text in two sets, those a restart changes and those it applies live; a reload that would
 * change one of the first is refused with one line naming it, and the running configuration
 * stays.
 *
 * @module
 */

/** Settings by name (without --), as comparable text. */
export type SettingsText = Readonly<Record<string, string>>;

/**
 * The live settings that differ (`changed`), or `refused`: the first restart-only setting
 * that differs, as one line.
 *
 * @example
 * planReload({ ifname: "dti0" }, { ifname: "dti1" }, {}, {}) // { refused: "--ifname cannot change without a restart (dti0 → dti1)" }
 */
export function planReload(
  fixedNow: SettingsText,
  fixedNext: SettingsText,
  liveNow: SettingsText,
  liveNext: SettingsText,
): { refused: string } | { changed: string[] } {
  for (const name of Object.keys(fixedNow)) {
    const now = fixedNow[name] ?? "";
    const next = fixedNext[name] ?? "";
    if (now === next) continue;
    const values = now.length + next.length <= 80 ? ` (${now} → ${next})` : "";
    return {
      refused: `--${name} cannot change without a restart${values}; the running configuration stays`,
    };
  }
  return { changed: Object.keys(liveNow).filter((name) => liveNow[name] !== liveNext[name]) };
}
