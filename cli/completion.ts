/**
 * `dstm completion bash|zsh|fish`: shell completion scripts generated from the command tree
 * (cli/command_tree.ts), so they offer exactly the commands and options `--help` lists, the
 * choices of options that have them (`--log-format text|json`) and file names for `<file>`
 * and `<path>` values.
 *
 * The scripts are static (no `dstm` process per Tab press). Each finds the command being typed
 * by walking the words before the cursor: a word naming a subcommand of the current command
 * descends into it, an option that takes a value skips the next word.
 *
 * @module
 */
import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { type CommandNode, commandTree, type OptionNode } from "./command_tree.ts";
import { UsageError } from "./errors.ts";

export const SHELLS = ["bash", "zsh", "fish"] as const;
export type Shell = (typeof SHELLS)[number];

/** The completion script for `shell`, for the program whose tree is `root`. */
export function completionScript(root: CommandNode, shell: Shell): string {
  const nodes = _walk(root);
  return shell === "bash" ? _bash(nodes) : shell === "zsh" ? _zsh(nodes) : _fish(nodes);
}

/** `dstm completion <shell>`; `program` builds the whole CLI (called only when run). */
export function completionCommand(program: () => CommandUnknownOpts) {
  return new Command("completion")
    .description("print a shell completion script: bash, zsh or fish")
    .argument("<shell>", "bash, zsh or fish")
    .addHelpText(
      "after",
      `
Examples:
  dstm completion bash > /etc/bash_completion.d/dstm      # or: source <(dstm completion bash)
  dstm completion zsh > "\${fpath[1]}/_dstm"
  dstm completion fish > ~/.config/fish/completions/dstm.fish`,
    )
    .action((shell) => {
      if (!(SHELLS as readonly string[]).includes(shell))
        throw new UsageError(`completion: "${shell}" is not bash, zsh or fish`);
      process.stdout.write(completionScript(commandTree(program()), shell as Shell));
    });
}

interface _Node {
  /** Words after `dstm`, joined by one space ("" for dstm itself). */
  readonly key: string;
  readonly node: CommandNode;
  /** Subcommand names, with commander's implicit `help` when there are subcommands. */
  readonly subcommands: readonly { name: string; description: string }[];
}

function _walk(root: CommandNode): _Node[] {
  const out: _Node[] = [];
  const visit = (node: CommandNode) => {
    const subcommands = node.subcommands.map((s) => ({ name: s.name, description: s.description }));
    if (subcommands.length > 0)
      subcommands.push({ name: "help", description: "display help for command" });
    out.push({ key: node.path.join(" "), node, subcommands });
    node.subcommands.forEach(visit);
  };
  visit(root);
  return out;
}

const _names = (o: OptionNode) => [o.short, o.long].filter((n): n is string => n !== undefined);
const _firstLine = (text: string) => text.split("\n")[0]!.trim();
/** Single-quoted for bash and zsh. */
const _sq = (text: string) => `'${text.replaceAll("'", `'\\''`)}'`;

/** One shell `case` arm per command: `'lease ls') echo …;;`. */
function _caseArms(nodes: readonly _Node[], body: (n: _Node) => string | undefined): string {
  return nodes
    .map((n) => {
      const b = body(n);
      return b === undefined ? undefined : `    ${_sq(n.key)}) ${b} ;;`;
    })
    .filter(Boolean)
    .join("\n");
}

/** `case "$1|$2"`: what the value of option $2 of command $1 is (choices:…, file, text). */
function _valueArms(nodes: readonly _Node[]): string {
  const arms: string[] = [];
  for (const n of nodes) {
    for (const option of n.node.options) {
      if (option.value.kind === "none") continue;
      const kind =
        option.value.kind === "choices"
          ? `choices ${option.value.choices.join(" ")}`
          : option.value.kind;
      const patterns = _names(option).map((name) => _sq(`${n.key}|${name}`));
      arms.push(`    ${patterns.join("|")}) echo ${_sq(kind)} ;;`);
    }
  }
  return arms.join("\n");
}

/** The word walk shared by bash and zsh (both run it on an array of words before the cursor). */
function _shellHelpers(nodes: readonly _Node[]): string {
  return `_dstm_subcommands() {
  case "$1" in
${_caseArms(nodes, (n) => (n.subcommands.length ? `echo ${_sq(n.subcommands.map((s) => s.name).join(" "))}` : undefined))}
  esac
}
_dstm_options() {
  case "$1" in
${_caseArms(nodes, (n) => `echo ${_sq(n.node.options.flatMap(_names).join(" "))}`)}
  esac
}
_dstm_value() {
  case "$1|$2" in
${_valueArms(nodes)}
    *) echo none ;;
  esac
}
# The command the words "$@" (after "dstm", before the cursor) select, in _dstm_path.
_dstm_find_path() {
  _dstm_path=""
  local skip=0 w subs
  for w in "$@"; do
    if [ "$skip" = 1 ]; then skip=0; continue; fi
    case "$w" in
      --*=*) continue ;;
      -*) [ "$(_dstm_value "$_dstm_path" "$w")" != none ] && skip=1; continue ;;
    esac
    subs=" $(_dstm_subcommands "$_dstm_path") "
    case "$subs" in *" $w "*) _dstm_path="\${_dstm_path:+$_dstm_path }$w" ;; esac
  done
}`;
}

function _bash(nodes: readonly _Node[]): string {
  return `# bash completion for dstm (generated by \`dstm completion bash\`)
${_shellHelpers(nodes)}
_dstm() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]} value
  _dstm_find_path "\${COMP_WORDS[@]:1:COMP_CWORD-1}"
  COMPREPLY=()
  if [ "$COMP_CWORD" -gt 1 ] && [[ $prev == -* ]]; then
    value=$(_dstm_value "$_dstm_path" "$prev")
    case "$value" in
      choices\\ *) COMPREPLY=($(compgen -W "\${value#choices }" -- "$cur")); return ;;
      file) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")); return ;;
      text) return ;;
    esac
  fi
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$(_dstm_options "$_dstm_path")" -- "$cur"))
  else
    COMPREPLY=($(compgen -W "$(_dstm_subcommands "$_dstm_path")" -- "$cur"))
  fi
}
complete -F _dstm dstm
`;
}

/** `name:description` for zsh's _describe (colons in the name escaped). */
const _zshItem = (name: string, description: string) =>
  _sq(`${name.replaceAll(":", "\\:")}:${_firstLine(description)}`);

function _zsh(nodes: readonly _Node[]): string {
  const described = (body: (n: _Node) => string[]) =>
    _caseArms(nodes, (n) => {
      const items = body(n);
      return items.length ? `items=(${items.join(" ")})` : undefined;
    });
  return `#compdef dstm
# zsh completion for dstm (generated by \`dstm completion zsh\`)
${_shellHelpers(nodes)}
_dstm() {
  local -a items
  local cur=\${words[CURRENT]} prev=\${words[CURRENT-1]} value
  _dstm_find_path "\${(@)words[2,CURRENT-1]}"
  if (( CURRENT > 2 )) && [[ $prev == -* ]]; then
    value=$(_dstm_value "$_dstm_path" "$prev")
    case "$value" in
      choices\\ *) compadd -- \${=value#choices }; return ;;
      file) _files; return ;;
      text) _message "\${prev#--} value"; return ;;
    esac
  fi
  if [[ $cur == -* ]]; then
    case "$_dstm_path" in
${described((n) => n.node.options.flatMap((o) => _names(o).map((name) => _zshItem(name, o.description))))}
    esac
    _describe -t options option items
  else
    case "$_dstm_path" in
${described((n) => n.subcommands.map((s) => _zshItem(s.name, s.description)))}
    esac
    (( \${#items} )) && _describe -t commands command items
  fi
}
if [ "\${funcstack[1]}" = _dstm ]; then _dstm "$@"; else compdef _dstm dstm; fi
`;
}

/** Single-quoted for fish (which escapes only \\ and ' inside single quotes). */
const _fq = (text: string) => `'${text.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`;

function _fish(nodes: readonly _Node[]): string {
  const lines = [
    "# fish completion for dstm (generated by `dstm completion fish`)",
    "function __dstm_subcommands",
    "    switch $argv[1]",
    ...nodes
      .filter((n) => n.subcommands.length)
      .map(
        (n) =>
          `        case ${_fq(n.key)}\n            echo ${n.subcommands.map((s) => s.name).join(" ")}`,
      ),
    "    end",
    "end",
    "function __dstm_takes_value",
    "    switch $argv[1]'|'$argv[2]",
    ...(() => {
      const patterns = nodes.flatMap((n) =>
        n.node.options
          .filter((o) => o.value.kind !== "none")
          .flatMap((o) => _names(o).map((name) => _fq(`${n.key}|${name}`))),
      );
      return patterns.length ? [`        case ${patterns.join(" ")}`, "            return 0"] : [];
    })(),
    "    end",
    "    return 1",
    "end",
    "# The command the words before the cursor select, words joined by one space.",
    "function __dstm_path",
    "    set -l words (commandline -opc)",
    "    set -e words[1]",
    "    set -l path ''",
    "    set -l skip 0",
    "    for w in $words",
    "        if test $skip = 1",
    "            set skip 0",
    "            continue",
    "        end",
    "        if string match -q -- '-*' $w",
    "            if not string match -q -- '*=*' $w; and __dstm_takes_value $path $w",
    "                set skip 1",
    "            end",
    "            continue",
    "        end",
    "        if contains -- $w (string split ' ' -- (__dstm_subcommands $path))",
    '            set path (string trim -- "$path $w")',
    "        end",
    "    end",
    "    echo $path",
    "end",
    "function __dstm_at",
    '    test (__dstm_path) = "$argv[1]"',
    "end",
    "complete -c dstm -f",
  ];
  for (const n of nodes) {
    const at = `-n ${_fq(`__dstm_at ${_fq(n.key)}`)}`;
    for (const s of n.subcommands)
      lines.push(`complete -c dstm ${at} -a ${s.name} -d ${_fq(_firstLine(s.description))}`);
    for (const o of n.node.options) {
      const names = [
        o.short ? `-s ${o.short.slice(1)}` : "",
        o.long ? `-l ${o.long.slice(2)}` : "",
      ].filter(Boolean);
      const value =
        o.value.kind === "choices"
          ? `-x -a ${_fq(o.value.choices.join(" "))}`
          : o.value.kind === "file"
            ? "-r -F"
            : o.value.kind === "text"
              ? "-x"
              : "";
      const parts = ["complete -c dstm", at, ...names, value, "-d", _fq(_firstLine(o.description))];
      lines.push(parts.filter(Boolean).join(" "));
    }
  }
  return `${lines.join("\n")}\n`;
}
