/**
 * The README's settings tables, generated from the schemas (scripts/readme_tables.ts writes
 * them between `<!-- settings:NAME -->` and `<!-- /settings:NAME -->`; a test checks that
 * the README is up to date).
 *
 * @module
 */
import type { Setting, SettingSchema } from "./setting.ts";

/** The Markdown table of a command's settings: flag, TOML key, default, live reload, meaning. */
export function settingsTable(schema: SettingSchema): string {
  const rows = ["| flag | TOML | default | reload | meaning |", "| --- | --- | --- | --- | --- |"];
  for (const s of schema.settings) {
    rows.push(
      `| ${cell(flagOf(s))} | ${cell(tomlOf(s))} | ${cell(defaultOf(s))} | ${s.reloadable ? "live" : ""} | ${cell(meaning(s))} |`,
    );
  }
  return rows.join("\n");
}

function flagOf(s: Setting): string {
  if (s.fileOnly) return "—";
  const arg = s.arg ? ` ${s.arg.replace(/[<>]/g, "").toUpperCase()}` : "";
  const main =
    s.kind.type === "bool" && s.negatable ? `\`--no-${s.name}\`` : `\`--${s.name}${arg}\``;
  const off = s.offable ? ` / \`--no-${s.name}\`` : "";
  const old = s.deprecated?.length
    ? ` (was ${s.deprecated.map((d) => `\`--${d}\``).join(", ")})`
    : "";
  return `${main}${off}${old}`;
}

function tomlOf(s: Setting): string {
  if (s.flagOnly) return "—";
  const example =
    s.kind.type === "bool"
      ? "true/false"
      : s.kind.type === "int"
        ? "integer"
        : s.kind.type === "list"
          ? '["…"]'
          : s.kind.type === "duration"
            ? '"1h30m" or seconds'
            : s.kind.type === "custom"
              ? "see below"
              : '"…"';
  return `\`${s.name}\` ${example}${s.offable ? " or false" : ""}`;
}

function defaultOf(s: Setting): string {
  if (s.default !== undefined) return `\`${s.default}\``;
  if (s.defaultDoc !== undefined) return s.defaultDoc;
  if (s.kind.type === "bool") return s.negatable ? "on" : "off";
  return "—";
}

function meaning(s: Setting): string {
  // The row's flag is --no-NAME: say first what it does (as --help does), then the default.
  if (s.kind.type === "bool" && s.negatable && s.offDoc) {
    const on = s.doc
      .replace(/; on unless --no-[a-z0-9-]+\)$/, ")")
      .replace(/ \(on unless --no-[a-z0-9-]+\)$/, "")
      .replace(/; on unless --no-[a-z0-9-]+$/, "");
    return `${s.offDoc}; on (the default): ${on}`;
  }
  return s.repeatable || s.kind.type === "list"
    ? `${s.doc.replace(/ \(repeatable\)/, "")} (repeatable)`
    : s.doc;
}

function cell(text: string): string {
  return text.replaceAll("|", "\\|").replaceAll("\n", " ");
}

/** `readme` with each `<!-- settings:NAME -->` … `<!-- /settings:NAME -->` section regenerated. */
export function updateReadme(
  readme: string,
  schemas: Readonly<Record<string, SettingSchema>>,
): string {
  let text = readme;
  for (const [name, schema] of Object.entries(schemas)) {
    const open = `<!-- settings:${name} -->`;
    const close = `<!-- /settings:${name} -->`;
    const a = text.indexOf(open);
    const b = text.indexOf(close);
    if (a < 0 || b < a) throw new Error(`README has no ${open} … ${close} section`);
    text = `${text.slice(0, a + open.length)}\n${settingsTable(schema)}\n${text.slice(b)}`;
  }
  return text;
}
