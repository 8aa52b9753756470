/**
 * The `dstm` command tree as plain data, read from the commander program (cli/main.ts): every
 * command, its options, arguments and examples. Shell completion (cli/completion.ts) and the
 * man pages (scripts/man.ts) are generated from it, so they list exactly what `--help` lists.
 *
 * @module
 */
import type { CommandUnknownOpts as Command } from "@commander-js/extra-typings";

/** What an option's value is, for completion: a fixed set, a file name, or free text. */
export type ValueKind =
  | { readonly kind: "none" }
  | { readonly kind: "choices"; readonly choices: readonly string[] }
  | { readonly kind: "file" }
  | { readonly kind: "text" };

export interface OptionNode {
  /** As written in help, e.g. `-c, --count <n>`. */
  readonly flags: string;
  readonly short?: string;
  readonly long?: string;
  readonly description: string;
  readonly value: ValueKind;
  /** Name of the value in the flags (`n` of `<n>`), if any. */
  readonly valueName?: string;
  readonly defaultValue?: string;
}

export interface CommandNode {
  readonly name: string;
  /** Words after `dstm` that select this command (`[]` for dstm itself, `["lease", "ls"]`). */
  readonly path: readonly string[];
  readonly description: string;
  /** The usage line after the command path, e.g. `[options] <ipv4>`. */
  readonly usage: string;
  readonly options: readonly OptionNode[];
  readonly arguments: readonly { readonly name: string; readonly required: boolean }[];
  readonly subcommands: readonly CommandNode[];
  /** Text commander prints after the help (examples), without leading/trailing blank lines. */
  readonly epilog: string;
}

/** Value names that are file paths (`--key <file>`, `--db <path>`, `--config <file>`). */
const FILE_VALUES = new Set(["file", "path"]);

/** Reads `command` and its subcommands (hidden ones and commander's `help` left out). */
export function commandTree(command: Command, path: readonly string[] = []): CommandNode {
  const options: OptionNode[] = [];
  for (const option of command.options) {
    if (option.hidden) continue;
    const valueMatch = /<(.+)>|\[(.+)\]/.exec(option.flags);
    const valueName = valueMatch?.[1] ?? valueMatch?.[2];
    const choices = option.argChoices;
    // An optional value (`--use-client [ifname]`) is never taken from the next word by
    // completion: that word may be a positional argument.
    const value: ValueKind = choices
      ? { kind: "choices", choices }
      : valueName === undefined || option.optional
        ? { kind: "none" }
        : FILE_VALUES.has(valueName)
          ? { kind: "file" }
          : { kind: "text" };
    const def = option.defaultValue;
    options.push({
      flags: option.flags,
      short: option.short,
      long: option.long,
      description: option.description,
      value,
      valueName,
      defaultValue: def === undefined || typeof def === "boolean" ? undefined : String(def),
    });
  }
  options.push({
    flags: "-h, --help",
    short: "-h",
    long: "--help",
    description: "display help for command",
    value: { kind: "none" },
  });
  let epilog = "";
  (command as unknown as NodeJS.EventEmitter).emit("afterHelp", {
    error: false,
    command,
    write: (text: string) => {
      epilog += text;
    },
  });
  return {
    name: command.name(),
    path,
    description: command.description(),
    usage: command.usage(),
    options,
    arguments: command.registeredArguments.map((a) => ({ name: a.name(), required: a.required })),
    subcommands: command.commands
      .filter((c) => !(c as unknown as { _hidden?: boolean })._hidden)
      .map((c) => commandTree(c as Command, [...path, c.name()])),
    epilog: epilog.replace(/^\n+|\s+$/g, ""),
  };
}

/** Every command of the tree, depth first, the root first. */
export function allCommands(root: CommandNode): CommandNode[] {
  return [root, ...root.subcommands.flatMap(allCommands)];
}
