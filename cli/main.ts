/**
 * The `dstm` command line: one executable for the server, client, TEP, diagnostics and lab.
 *
 * @module
 */
import {
  Command,
  CommanderError,
  type CommandUnknownOpts,
  Option,
} from "@commander-js/extra-typings";
import { generateKeyFileText } from "../lib/wire/auth.ts";
import { versionText } from "./build_info.ts";
import { clientCommand } from "./client.ts";
import { completionCommand } from "./completion.ts";
import { UsageError } from "./errors.ts";
import { labCommand } from "./lab.ts";
import { leaseCommand } from "./lease.ts";
import { ping4Command } from "./ping4.ts";
import { serverCommand } from "./server.ts";
import { closedPipePolicyFor } from "./stdout_pipe.ts";
import { tepCommand } from "./tep.ts";

export function program(): Command {
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
      .showHelpAfterError("(run with --help for usage)")
      // `dstm tep stats --stats X`: options after a subcommand belong to the subcommand.
      .enablePositionalOptions()
      // What a closed stdout (`dstm … | head`) does depends on the command (cli/stdout_pipe.ts).
      .hook("preAction", (_root, action) => {
        const path: string[] = [];
        for (let c: CommandUnknownOpts | null = action; c?.parent; c = c.parent)
          path.unshift(c.name());
        closedPipePolicyFor(path);
      })
      .addCommand(serverCommand())
      .addCommand(clientCommand())
      .addCommand(tepCommand())
      .addCommand(leaseCommand())
      .addCommand(ping4Command())
      .addCommand(labCommand())
      .addCommand(completionCommand(program))
      .addCommand(
        new Command("keygen")
          .description("print a new HMAC-SHA256 key file for --key (server and clients share it)")
          .option("--id <n>", "key id (default 1)")
          .action((flags) => {
            const id = flags.id === undefined ? 1 : Number(flags.id);
            if (!Number.isInteger(id) || id < 0 || id > 0xffffffff)
              throw new UsageError("--id must be 0..4294967295");
            process.stdout.write(generateKeyFileText(id));
          }),
      )
  );
}

/** Runs the CLI with `argv` (as process.argv); resolves to the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const cli = program().exitOverride();
  try {
    await cli.parseAsync([...argv]);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    if (error instanceof UsageError || isOneLine(error)) {
      process.stderr.write(`dstm: ${(error as Error).message}\n`);
      return error instanceof UsageError ? 2 : 1;
    }
    process.stderr.write(`dstm: internal error: ${(error as Error).stack ?? String(error)}\n`);
    return 70;
  }
}

/** Errors our libraries raise for the user (bind failures, store errors, bad pools) have a name and a one-line message. */
function isOneLine(error: unknown): boolean {
  return (
    error instanceof Error &&
    [
      "UdpBindError",
      "HttpListenError",
      "LeaseStoreError",
      "PoolConfigError",
      "SysError",
      "DstmRefusedError",
      "DstmTimeoutError",
      "LabError",
    ].includes(error.name) &&
    !error.message.includes("\n")
  );
}
