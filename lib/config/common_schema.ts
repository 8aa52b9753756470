/**
 * Settings every long-running command has: logging, the config file, check mode.
 *
 * @module
 */
import type { Setting } from "./setting.ts";

/**
 * Where a control socket named `file` is by default (cli/paths.ts), in words for --help and
 * the README: the runtime directory is $DSTM_RUNTIME_DIR when set, else /run/dstm as root,
 * else the user's $XDG_RUNTIME_DIR/dstm.
 */
export function runtimeSocketDoc(file: string): string {
  return `$DSTM_RUNTIME_DIR/${file} if set, else /run/dstm/${file} as root, else $XDG_RUNTIME_DIR/dstm/${file}`;
}

/** `--key-overlap` of the TEP and the client (lib/control/key_ring.ts). */
export const KEY_OVERLAP_SETTING: Setting = {
  name: "key-overlap",
  kind: { type: "duration" },
  arg: "<duration>",
  doc: "after a reload that changed --key, how long the key it replaced is still accepted",
  default: "1h",
  reloadable: true,
};

export const COMMON_SETTINGS: readonly Setting[] = [
  {
    name: "log-format",
    kind: { type: "choice", choices: ["text", "json"] },
    arg: "<format>",
    doc: "log line format",
    default: "text",
  },
  {
    name: "log-level",
    kind: { type: "choice", choices: ["debug", "info", "warn", "error"] },
    arg: "<level>",
    doc: "least severe events logged",
    default: "info",
    reloadable: true,
  },
  {
    name: "config",
    kind: { type: "string" },
    arg: "<file>",
    doc: "read settings from this TOML file (the same names as the flags, without --; flags win); SIGHUP reads it again",
    flagOnly: true,
  },
  {
    name: "check",
    kind: { type: "bool" },
    doc: "check the flags and the config file (values, key files, addresses, prefixes) as a start would, without starting anything; exit 0 when valid, 2 when not",
    flagOnly: true,
  },
];
