/**
 * Settings every long-running command has: logging, the config file, check mode.
 *
 * @module
 */
import * as v from "valibot";
import type { Setting } from "./setting.ts";

/**
 * Where a control socket named `file` is by default (./paths.ts), in words for --help and
 * the README: the runtime directory is $DSTM_RUNTIME_DIR when set, else /run/dstm as root,
 * else the user's $XDG_RUNTIME_DIR/dstm.
 */
export function runtimeSocketDoc(file: string): string {
  return `$DSTM_RUNTIME_DIR/${file} if set, else /run/dstm/${file} as root, else $XDG_RUNTIME_DIR/dstm/${file}`;
}

/**
 * Where the server's control socket is by default (./paths.ts defaultControlSocket), in words
 * for --help and the README: the daemon's own `--control` and every command that asks it
 * (`lease …`, `server reload`) say the same.
 */
export const SERVER_CONTROL_DOC = `$DSTM_CONTROL if set, else ${runtimeSocketDoc("server.sock")}`;

/** `--key-overlap` of the TEP and the client (lib/control/key_ring.ts). */
export const KEY_OVERLAP_SETTING: Setting = {
  name: "key-overlap",
  kind: { type: "duration" },
  arg: "<duration>",
  doc: "after a reload that changed --key, how long the key it replaced is still accepted",
  default: "1h",
  reloadable: true,
};

/**
 * `--server` of the TEP and the client: the DSTM server's IPv6 address, repeatable on the
 * command line; in a config file one address as a string, or several (servers sharing one
 * lease database) as an array. `doc` says what the command does with it.
 */
export function serverSetting(doc: string): Setting {
  return {
    name: "server",
    kind: {
      type: "custom",
      schema: v.union([v.string(), v.pipe(v.array(v.string()), v.minLength(1))]),
      describe: "an IPv6 address, or an array of them",
    },
    arg: "<v6>",
    repeatable: true,
    doc,
  };
}

/** `--server-port` of the TEP and the client: the server's UDP port, with each one's default. */
export function serverPortSetting(
  o: Pick<Setting, "default" | "defaultDoc" | "deprecated">,
): Setting {
  return {
    name: "server-port",
    kind: { type: "int" },
    arg: "<n>",
    doc: "the server's UDP port",
    ...o,
  };
}

/** `--metrics` of the server, the TEP and the client (docs/metrics.md). */
export const METRICS_SETTING: Setting = {
  name: "metrics",
  kind: { type: "string" },
  arg: "<addr:port>",
  doc: "serve Prometheus metrics on http://ADDR:PORT/metrics (docs/metrics.md)",
};

/**
 * The tunnel settings the TEP and the client share: `--mss-clamp` (RFC 4459 §3.2, towards
 * `peer`), `--offload` (of the `device`: the client's DTI, the TEP's TUN; `superPackets` says
 * what it does with TCP super-packets) and `--dscp` (RFC 2983).
 */
export function tunnelSettings(o: {
  readonly device: string;
  readonly peer: string;
  readonly superPackets: string;
}): Setting[] {
  return [
    {
      name: "mss-clamp",
      kind: { type: "bool" },
      negatable: true,
      doc: `clamp the MSS of TCP SYNs to the path MTU towards ${o.peer} (RFC 4459 §3.2; on unless --no-mss-clamp)`,
      offDoc: "leave the MSS of TCP SYNs alone",
    },
    {
      name: "offload",
      kind: { type: "bool" },
      negatable: true,
      doc: `${o.device} offloads (IFF_VNET_HDR: ${o.superPackets}, GRO of checked segments) and batched socket I/O (recvmmsg/sendmmsg); on unless --no-offload`,
      offDoc: `one packet per system call: no ${o.device} offloads and no batched socket I/O`,
    },
    {
      name: "dscp",
      kind: { type: "string" },
      arg: "<copy|n>",
      doc: "outer DSCP: copy the inner one (RFC 2983), or a fixed 0–63",
      default: "copy",
    },
  ];
}

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

/**
 * The flags every daemon (server, TEP, client) takes besides its own, in flag form (camelCase
 * names of the settings above and of cli/common.ts's logging and --config/--check options).
 */
export interface DaemonFlags {
  metrics?: string;
  logFormat?: "text" | "json";
  logLevel?: "debug" | "info" | "warn" | "error";
  config?: string;
  check?: boolean;
}
