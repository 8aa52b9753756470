/**
 * The `dstm` command line: one executable for the server, client, TEP, diagnostics and lab.
 *
 * @module
 */
import {
  closeSync,
  existsSync,
  fchmodSync,
  fstatSync,
  fsyncSync,
  mkdirSync,
  openSync,
  statSync,
  writeSync,
} from "node:fs";
import { dirname, join } from "node:path";
import {
  Command,
  CommanderError,
  type CommandUnknownOpts,
  Option,
} from "@commander-js/extra-typings";
import { closestName } from "../lib/config/did_you_mean.ts";
import { readErrorText } from "../lib/config/errors.ts";
import { setBuildInfo } from "../lib/control/metrics.ts";
import { generateKeyFileText } from "../lib/wire/auth.ts";
import { buildInfo, versionText } from "./build_info.ts";
import { clientCommand } from "./client.ts";
import { completionCommand } from "./completion.ts";
import { EXIT_FAILED, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, UsageError } from "./errors.ts";
import { withFlagHint } from "./flag_hint.ts";
import { labCommand } from "./lab.ts";
import { leaseCommand } from "./lease.ts";
import { ping4Command } from "./ping4.ts";
import { serverCommand } from "./server.ts";
import { closedPipePolicyFor } from "./stdout_pipe.ts";
import { tepCommand } from "./tep.ts";

export function program(): Command {
  // dstm_build_info in every daemon's metrics; asked (git, from a checkout) at the first scrape.
  setBuildInfo(buildInfo);
  return (
    new Command("dstm")
      .description(
        "Dual Stack Transition Mechanism: IPv4 for hosts in IPv6-only networks (server, client, TEP, lab)",
      )
      // -V/--version prints the commit and runtime too (cli/build_info.ts), computed only when asked.
      .addOption(new Option("-V, --version", "output the version, commit and runtime"))
      .on("option:version", () => {
        process.stdout.write(`${versionText()}\n`);
        throw new CommanderError(0, "commander.version", versionText());
      })
      // `dstm tep stats --stats X`: options after a subcommand belong to the subcommand.
      .enablePositionalOptions()
      // What a closed stdout (`dstm … | head`) does depends on the command (cli/stdout_pipe.ts).
      .hook("preAction", (_root, action) => {
        const path: string[] = [];
        for (let c: CommandUnknownOpts | null = action; c?.parent; c = c.parent)
          path.unshift(c.name());
        closedPipePolicyFor(path);
      })
      .addHelpText(
        "after",
        `
Examples (every command has --help with its own):
  dstm keygen /etc/dstm/key && dstm keygen /etc/dstm/tep.key
  dstm server --pool 198.51.100.0/24 --tep 2001:db8:1::1,192.0.2.1 --key /etc/dstm/key --tep-key /etc/dstm/tep.key
  dstm tep --ipv6 2001:db8:1::1 --ipv4 192.0.2.1 --server 2001:db8:2::53 --route 198.51.100.0/24 --key /etc/dstm/tep.key
  dstm client --server 2001:db8:2::53 --key /etc/dstm/key
  dstm lease ls
  dstm lab demo          # the paper's test network in namespaces, as root`,
      )
      .addCommand(serverCommand())
      .addCommand(clientCommand())
      .addCommand(tepCommand())
      .addCommand(leaseCommand())
      .addCommand(ping4Command())
      .addCommand(labCommand())
      .addCommand(completionCommand(program))
      .addCommand(
        new Command("keygen")
          .description(
            "write a new HMAC-SHA256 key file, mode 0600: for --key (server and clients) or --tep-key (server and TEPs; a separate one)",
          )
          .argument(
            "[file]",
            "where to write it (created 0600, its directory 0700 when missing; refused if it exists); default stdout",
          )
          .option("--id <n>", "key id (default: 1)")
          .addHelpText(
            "after",
            "\nExamples:\n  dstm keygen /etc/dstm/key          # host key: the server and every client\n  dstm keygen /etc/dstm/tep.key      # TEP key: the server and its TEPs only\n  dstm keygen --id 2 /etc/dstm/key.new   # the next key, for a rotation (server --key-overlap)",
          )
          .action((file, flags) => {
            const id = flags.id === undefined ? 1 : Number(flags.id);
            if (!Number.isInteger(id) || id < 0 || id > 0xffffffff)
              throw new UsageError("--id must be 0..4294967295");
            writeKeyFile(file, generateKeyFileText(id));
          }),
      )
  );
}

/**
 * Writes a key file's text to `file`, created with mode 0600 and never over an existing file
 * (O_EXCL), or to stdout. When stdout is a regular file (`dstm keygen > key`), that file is
 * made 0600 too: the shell created it with the umask's mode, usually 0644.
 */
function writeKeyFile(file: string | undefined, text: string): void {
  if (file === undefined) {
    try {
      if (fstatSync(1).isFile()) fchmodSync(1, 0o600);
    } catch {
      // not a file we own (a pipe, a terminal): nothing to protect here
    }
    process.stdout.write(text);
    return;
  }
  // A fresh machine has no /etc/dstm: made here, 0700 (the key's readers are root's daemons).
  const dir = dirname(file);
  if (!existsSync(dir))
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (error) {
      throw new UsageError(
        `cannot create directory ${dir} for key file ${file}: ${readErrorText(error)}`,
      );
    }
  let fd: number;
  try {
    fd = openSync(file, "wx", 0o600);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UsageError(
      code === "EEXIST" && isDirectory(file)
        ? `${file} is a directory; give the key file's path, e.g. ${join(file, "key")}`
        : code === "EEXIST"
          ? `${file} exists; remove it first (a new key replaces the old one everywhere it is shared)`
          : `cannot create key file ${file}: ${code === "ENOENT" ? "its directory does not exist" : readErrorText(error)}`,
    );
  }
  try {
    fchmodSync(fd, 0o600); // the umask may have taken bits away, never added: 0600 exactly
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Gives every command of the tree the same error handling: commander throws instead of
 * exiting, prints `dstm: MESSAGE` (not `error: MESSAGE`) and the help hint of that command.
 */
function configure(command: Command, path: string, seen: { command: string }): void {
  command
    .exitOverride()
    .configureOutput({
      // An unknown flag gets the "did you mean" of cli/flag_hint.ts (--rx-ring=yes, --rx_ring).
      // A subcommand mistyped (`tep stat`) is an excess argument to a command with an action.
      outputError: (text, write) =>
        write(
          `dstm: ${subcommandHint(text, command, path) ?? withFlagHint(text.replace(/^error: /, ""), command.options)}`,
        ),
    })
    .showHelpAfterError(`dstm: see '${path} --help'`);
  command.hook("preAction", (_self, action) => {
    seen.command = commandPath(action);
  });
  for (const sub of command.commands) configure(sub as Command, `${path} ${sub.name()}`, seen);
}

/**
 * `dstm tep stat`: commander's "too many arguments for 'tep' … got 1: stat." for a command
 * that has subcommands (and an action of its own, so it takes the word for an argument) as
 * the did you mean of `lease lss`: `unknown command 'stat' for 'dstm tep'; did you mean
 * 'dstm tep stats'?`, or the list of its subcommands; commander's own two-line
 * "unknown command 'leases'" + "(Did you mean lease?)" as that one line too. Undefined for any
 * other error.
 */
export function subcommandHint(text: string, command: Command, path: string): string | undefined {
  // `dstm leases ls`: commander's own "unknown command 'leases'" and, on a line of its own
  // without the dstm: prefix, "(Did you mean lease?)": one line, as for `tep stat` below.
  const unknown = /^error: unknown command '([^']*)'\n\(Did you mean ([^?]*)\?\)\n$/.exec(text);
  if (unknown)
    return `unknown command '${unknown[1]}' for '${path}'; did you mean '${path} ${unknown[2]}'?\n`;
  const match =
    /too many arguments for '[^']*'\. Expected \d+ arguments? but got \d+: ([^\s.]+)/.exec(text);
  const subcommands = command.commands.map((c) => c.name());
  if (!match || subcommands.length === 0) return undefined;
  const word = match[1] as string;
  // A typo (relod), or the start of one (stat for status).
  const starts = subcommands.filter((c) => c.startsWith(word));
  const meant = closestName(word, subcommands) ?? (starts.length === 1 ? starts[0] : undefined);
  if (meant !== undefined)
    return `unknown command '${word}' for '${path}'; did you mean '${path} ${meant}'?\n`;
  return `unknown command '${word}' for '${path}' (it takes no arguments; its subcommands: ${subcommands.join(", ")})\n`;
}

function commandPath(command: { name(): string; parent: unknown }): string {
  const names: string[] = [];
  for (let c: { name(): string; parent: unknown } | null = command; c; c = c.parent as typeof c)
    names.unshift(c.name());
  return names.join(" ");
}

/**
 * Runs the CLI with `argv` (as process.argv); resolves to the exit code (the rule is in
 * ./errors.ts): 0 done, 1 failed at run time, 2 bad command line or configuration, 70 bug.
 */
export async function main(argv: readonly string[]): Promise<number> {
  const cli = program();
  const seen = { command: "dstm" }; // the command whose action ran (for future hints)
  configure(cli, "dstm", seen);
  try {
    await cli.parseAsync([...argv]);
    return EXIT_OK;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    if (error instanceof UsageError || isConfigError(error)) {
      process.stderr.write(`dstm: ${(error as Error).message}\n`);
      return EXIT_USAGE;
    }
    if (isOneLine(error)) {
      process.stderr.write(`dstm: ${(error as Error).message}\n`);
      return EXIT_FAILED;
    }
    process.stderr.write(`dstm: internal error: ${(error as Error).stack ?? String(error)}\n`);
    return EXIT_INTERNAL;
  }
}

/** Library errors that mean the configuration is wrong (exit 2, like UsageError). */
function isConfigError(error: unknown): boolean {
  return (
    error instanceof Error &&
    ["PoolConfigError", "BindingFileError"].includes(error.name) &&
    !error.message.includes("\n")
  );
}

/** Errors our libraries raise for the user (bind failures, store errors, bad pools) have a name and a one-line message. */
function isOneLine(error: unknown): boolean {
  return (
    error instanceof Error &&
    [
      "UdpBindError",
      "CheckMismatchError",
      "HttpListenError",
      "LeaseStoreError",
      "RuntimeError",
      "SysError",
      "DstmRefusedError",
      "DstmTimeoutError",
      "LabError",
    ].includes(error.name) &&
    !error.message.includes("\n")
  );
}

/** Whether `path` names a directory (false when it cannot be looked at). */
function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
