/**
 * Commander options generated from a setting schema (lib/config/setting.ts), and the merge of
 * a parsed command's flags over the config file over the defaults (lib/config/merge.ts) — one
 * place for every long-running command.
 *
 * @module
 */
import { type Command, Option } from "@commander-js/extra-typings";
import { mergeSettings, type Settings } from "../lib/config/merge.ts";
import type { Setting, SettingSchema } from "../lib/config/setting.ts";

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** The help text of a setting: its doc and, one way for every setting, its default. */
export function helpText(setting: Setting): string {
  const fallback = setting.default ?? setting.defaultDoc;
  return fallback === undefined ? setting.doc : `${setting.doc} (default: ${fallback})`;
}

/** Adds one option per setting of `schema` (plus hidden, deprecated aliases) to `command`. */
export function addSettings<C extends Command<[], Record<string, unknown>>>(
  command: C,
  schema: SettingSchema,
): C {
  for (const s of schema.settings) {
    if (s.fileOnly) continue;
    for (const option of optionsOf(s)) command.addOption(option);
    for (const old of s.deprecated ?? []) {
      const alias = new Option(s.arg ? `--${old} ${s.arg}` : `--${old}`, `deprecated: --${s.name}`);
      if (s.kind.type === "list") alias.argParser(collect);
      command.addOption(alias.hideHelp());
    }
  }
  return command;
}

function optionsOf(s: Setting): Option[] {
  const doc = helpText(s);
  if (s.kind.type === "bool")
    return [
      s.negatable
        ? new Option(`--no-${s.name}`, s.offDoc ?? `turn off: ${s.doc}`)
        : new Option(`--${s.name}`, doc),
    ];
  const option = new Option(`--${s.name} ${s.arg ?? "<value>"}`, doc);
  if (s.kind.type === "list" || s.repeatable) option.argParser(collect);
  if (s.kind.type === "choice") option.choices(s.kind.choices);
  if (!s.offable) return [option];
  return [option, new Option(`--no-${s.name}`, s.offDoc ?? `no ${s.name}`)];
}

/** {@link mergeSettings} of a parsed commander command: "from the command line" is its value source. */
export function commandSettings(
  command: Command<[], Record<string, unknown>>,
  schema: SettingSchema,
): Settings {
  return mergeSettings(schema, command.opts(), {
    fromCli: (key) => command.getOptionValueSource(key) === "cli",
  });
}

/** Runs `fn`, rewriting its UsageError to the config file's position (Settings.explain). */
export async function explained<T>(settings: Settings, fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw settings.explain(error);
  }
}
