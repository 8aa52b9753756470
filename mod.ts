/**
 * dstm: the Dual Stack Transition Mechanism as a library and one executable.
 *
 * Library users import the layers re-exported here; running this file is the CLI.
 *
 * @module
 */

export { AllocationEngine } from "./lib/alloc/engine.ts";
export {
  type ClientLease,
  DstmClient,
  DstmRefusedError,
  DstmTimeoutError,
  DstmTransport,
} from "./lib/client/protocol.ts";
export * from "./lib/lease/mod.ts";
export { canonicalIPv6, formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from "./lib/net/addr.ts";
export { DstmServer, type ServerConfig } from "./lib/server/server.ts";
export * from "./lib/wire/mod.ts";

if (import.meta.main) {
  const { main } = await import("./cli/main.ts");
  const pipe = await import("./cli/stdout_pipe.ts");
  pipe.endQuietlyOnClosedPipe();
  const code = await main(process.argv);
  // A command may set process.exitCode itself (ping4 without replies, a failed lab demo step).
  process.exitCode = pipe.exitStatus(code !== 0 ? code : Number(process.exitCode ?? 0));
}
