/**
 * lib/sys/http.ts serveTcp: a port in use is refused naming the address and the flag to change
 * (the metrics endpoint of server, TEP and client), not only "the port is in use".
 */
import { afterAll, expect, test } from "bun:test";
import { HttpListenError, serveTcp } from "../lib/sys/http.ts";

const taken = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("x") });
afterAll(() => taken.stop(true));

test("a port in use names the address and --metrics", () => {
  const port = taken.port as number;
  const listen = () => serveTcp("127.0.0.1", port, () => new Response("y"));
  expect(listen).toThrow(HttpListenError);
  expect(listen).toThrow(
    `cannot listen on 127.0.0.1:${port}: the port is in use; choose another with --metrics`,
  );
});

test("a free port serves", async () => {
  const endpoint = serveTcp("127.0.0.1", 0, () => new Response("served"));
  try {
    expect(await (await fetch(`http://${endpoint.where}/`)).text()).toBe("served");
  } finally {
    endpoint.close();
  }
});
