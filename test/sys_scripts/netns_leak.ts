/**
 * Creates two namespaces and a veth pair between them, prints their names, then leaves
 * without deleting them: argv[2] "exit" returns normally, "wait" sleeps until killed.
 * lib/sys/netns.ts must delete them anyway.
 */
import { createNetns, vethPair } from "../../lib/sys/netns.ts";

const a = createNetns();
const b = createNetns();
vethPair(a, "x0", b, "y0");
console.log(JSON.stringify({ names: [a.name, b.name] }));
if (process.argv[2] === "wait") await Bun.sleep(20_000);
