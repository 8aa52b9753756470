/**
 * `dstm lab up | down | status | demo`: the paper's test network in network namespaces.
 *
 * @module
 */
import { Command, Option } from "@commander-js/extra-typings";
import { runtimeDir } from "../lib/config/paths.ts";
import { type LeaseJson, renderLeaseTable } from "../lib/control/lease_view.ts";
import { runDemo } from "../lib/lab/demo.ts";
import { Lab } from "../lib/lab/lab.ts";
import { alive, SERVICES } from "../lib/lab/services.ts";
import { LAB, labNamespaces } from "../lib/lab/topology.ts";
import { getUnix } from "../lib/sys/http.ts";
import { UsageError } from "./errors.ts";

const out = (text: string) => process.stdout.write(text.endsWith("\n") ? text : `${text}\n`);

function requireRoot(): void {
  if (process.getuid?.() !== 0)
    throw new UsageError(
      "the lab creates network namespaces and TUN devices: run it as root (sudo)",
    );
}

function labName(name: string): string {
  if (!/^[a-z0-9]{1,8}$/.test(name))
    throw new UsageError(`--name: "${name}" must be 1–8 lower-case letters or digits`);
  return name;
}

/**
 * The `lab` command and its four subcommands (up, down, status, demo), each added by its own
 * function below. Exit codes: 0, 1 when a demo step failed, 2 on a usage error (not root, a
 * bad --name).
 */
export function labCommand() {
  const lab = new Command("lab")
    .description("the paper's test network in network namespaces: up | down | status | demo")
    .addHelpText(
      "after",
      examples(
        "dstm lab demo              # build it, run the paper's tests, remove it (as root)",
        "dstm lab up && dstm lab status && dstm lab down",
        "dstm lab demo --name b     # a second lab beside the first (namespaces dstm-b-*)",
      ),
    );
  addUpCommand(lab);
  addDownCommand(lab);
  addStatusCommand(lab);
  addDemoCommand(lab);
  return lab;
}

type LabCommand = ReturnType<typeof labCommand>;

/** `--name NAME`: the lab's name (namespaces dstm-NAME-*), default "lab". */
const nameOption = () =>
  new Option("--name <name>", "lab name (namespaces are dstm-NAME-*)").default("lab", "lab");
/** The examples paragraph of a subcommand's help. */
const examples = (...lines: string[]) => `\nExamples:\n${lines.map((l) => `  ${l}`).join("\n")}`;

/** `dstm lab up`: builds the network and starts every service (root). */
function addUpCommand(lab: LabCommand): void {
  lab
    .command("up")
    .description(
      "build the network (nodes A and B, DSTM server, TEP, web and FTP servers) and start everything",
    )
    .addOption(nameOption())
    .addHelpText(
      "after",
      examples(
        "dstm lab up",
        "dstm lab up --name b   # a second lab beside the first",
        "ip netns exec dstm-lab-a curl http://192.0.2.80/",
      ),
    )
    .action(async (flags) => {
      requireRoot();
      const l = await Lab.up(labName(flags.name), runtimeDir(), (line) => out(`  ${line}`));
      out(describe(l));
    });
}

/** `dstm lab down`: stops the lab's processes and deletes its namespaces (root). */
function addDownCommand(lab: LabCommand): void {
  lab
    .command("down")
    .description("stop the lab's processes and delete its namespaces (also after a crash)")
    .addOption(nameOption())
    .addHelpText("after", examples("dstm lab down", "dstm lab down --name b"))
    .action(async (flags) => {
      requireRoot();
      const { processes, namespaces } = await Lab.down(labName(flags.name), runtimeDir());
      out(
        namespaces.length || processes
          ? `lab "${flags.name}" down: ${processes} processes stopped, ${namespaces.length} namespaces deleted`
          : `lab "${flags.name}" was not up`,
      );
    });
}

/** `dstm lab status`: namespaces, processes and the server's leases (no root needed). */
function addStatusCommand(lab: LabCommand): void {
  lab
    .command("status")
    .description("show the lab's namespaces, processes and leases")
    .addOption(nameOption())
    .addHelpText("after", examples("dstm lab status", "dstm lab status --name b"))
    .action(async (flags) => {
      const name = labName(flags.name);
      const namespaces = labNamespaces(name);
      if (namespaces.length === 0) {
        out(`lab "${name}" is not up`);
        return;
      }
      const l = Lab.open(name, runtimeDir());
      out(describe(l));
      for (const service of SERVICES) {
        const pid = l.state.pids[service];
        out(
          `  ${service.padEnd(9)} ${pid === undefined ? "not started" : `pid ${pid} ${alive(pid) ? "running" : "DEAD"}`}`,
        );
      }
      out(`  namespaces: ${namespaces.join(" ")}`);
      out(await labLeases(l.services.socket("server")));
    });
}

/**
 * `dstm lab demo`: runs lib/lab/demo.ts's steps on the lab (brought up for the demo and taken
 * down after it unless it was up or --keep); exit code 1 when a step failed (root).
 */
function addDemoCommand(lab: LabCommand): void {
  lab
    .command("demo")
    .description(
      "run the paper's tests (ping, web, FTP from both nodes) and more, narrating each step",
    )
    .addOption(nameOption())
    .option(
      "--keep",
      "leave the lab up afterwards (default: take it down unless it was already up)",
    )
    .addHelpText(
      "after",
      examples("dstm lab demo", "dstm lab demo --keep", "dstm lab demo --name b --keep"),
    )
    .action(async (flags) => {
      requireRoot();
      const name = labName(flags.name);
      const wasUp = labNamespaces(name).length > 0;
      out(
        wasUp
          ? `Using lab "${name}", already up.`
          : `Bringing up lab "${name}": the DSTM test network of the paper (figure 5).`,
      );
      const l = wasUp
        ? Lab.open(name, runtimeDir())
        : await Lab.up(name, runtimeDir(), (line) => out(`  ${line}`));
      const takeDown = !wasUp && !flags.keep;
      const onSignal = () => {
        void Lab.down(name, runtimeDir()).finally(() => process.exit(130));
      };
      if (takeDown) process.once("SIGINT", onSignal);
      let failed = 0;
      try {
        out(describe(l));
        const results = await runDemo(l, out);
        failed = results.filter((r) => !r.ok).length;
        out(`\n${results.length - failed} of ${results.length} steps passed.`);
      } finally {
        if (takeDown) {
          process.off("SIGINT", onSignal);
          await Lab.down(name, runtimeDir());
          out(`Lab "${name}" taken down.`);
        } else {
          const named = name === "lab" ? "" : ` --name ${name}`;
          out(`Lab "${name}" left up: \`dstm lab status${named}\`, \`dstm lab down${named}\`.`);
        }
      }
      if (failed > 0) process.exitCode = 1;
    });
}

/** The lab server's active leases, from its control socket (a line saying why not when it does not answer). */
async function labLeases(socket: string): Promise<string> {
  try {
    const body = (await (await getUnix(socket, "/v1/leases")).json()) as { leases: LeaseJson[] };
    return body.leases.length
      ? `  leases:\n${renderLeaseTable(body.leases, Date.now())
          .trimEnd()
          .split("\n")
          .map((l) => `    ${l}`)
          .join("\n")}`
      : "  leases: none";
  } catch {
    return `  leases: the lab's server does not answer on ${socket}`;
  }
}

function describe(l: Lab): string {
  return [
    `lab "${l.name}": logs and sockets in ${l.dir}`,
    `  IPv6-only DSTM domain ${LAB.prefix6}: node A ${LAB.nodeA6}, node B ${LAB.nodeB6}, server ${LAB.server6}`,
    `  TEP ${LAB.tep6} / ${LAB.tep4}; DSTM pool ${LAB.pool}`,
    `  node E ${LAB.nodeE6} behind r1 ═ r2 (a ${LAB.narrowMtu}-byte link: path MTU discovery)`,
    `  IPv4 domain ${LAB.ipv4Net}: web ${LAB.web4}, ftp ${LAB.ftp4}`,
    `  try: ip netns exec dstm-${l.name}-a curl http://${LAB.web4}/`,
  ].join("\n");
}
