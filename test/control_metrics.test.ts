/**
 * lib/control/metrics.ts: the Metrics API on prom-client — values kept synchronously for
 * `get` / `snapshot`, exposition by prom-client (escaping, HELP/TYPE, process_* and
 * dstm_build_info), checked by promtool when it is installed.
 */
import { describe, expect, test } from "bun:test";
import { Metrics, metricsHandler, setBuildInfo } from "../lib/control/metrics.ts";

function promtool(text: string): { code: number; output: string } | undefined {
  if (!Bun.which("promtool")) return undefined;
  const r = Bun.spawnSync(["promtool", "check", "metrics"], {
    stdin: new TextEncoder().encode(text),
  });
  return { code: r.exitCode, output: `${r.stdout.toString()}${r.stderr.toString()}` };
}

describe("Metrics", () => {
  test("counters and gauges: get and snapshot are synchronous; text() is prom-client's exposition", async () => {
    const m = new Metrics();
    m.counter("dstm_x_total", "Things, by kind");
    m.gauge("dstm_y", "A level");
    m.inc("dstm_x_total", { kind: "a" });
    m.inc("dstm_x_total", { kind: "a" }, 2);
    m.inc("dstm_x_total", { kind: 'q"uote\\d\nnl' });
    let level = 5;
    m.onCollect(() => m.set("dstm_y", {}, level));
    expect(m.get("dstm_x_total", { kind: "a" })).toBe(3);
    expect(m.get("dstm_x_total", { kind: "b" })).toBe(0);
    expect(m.snapshot()).toContainEqual({ name: "dstm_y", labels: "", value: 5 });
    level = 7;
    const text = await m.text();
    expect(text).toContain("# HELP dstm_x_total Things, by kind\n# TYPE dstm_x_total counter\n");
    expect(text).toContain('dstm_x_total{kind="a"} 3\n');
    expect(text).toContain('dstm_x_total{kind="q\\"uote\\\\d\\nnl"} 1\n');
    expect(text).toContain("# TYPE dstm_y gauge\ndstm_y 7\n");
    expect(text).toMatch(/^process_cpu_seconds_total \d/m);
    expect(text).not.toContain("nodejs_");
    const checked = promtool(text);
    if (checked) expect(checked).toEqual({ code: 0, output: "" });
  });

  test("a family given more label names later is exposed with all of them", async () => {
    const m = new Metrics();
    m.counter("dstm_z_total", "Z");
    m.inc("dstm_z_total", { direction: "decap", result: "forward" });
    expect(await m.text()).toContain('dstm_z_total{direction="decap",result="forward"} 1');
    m.inc("dstm_z_total", { direction: "decap", result: "drop", reason: "no-binding" }, 4);
    const text = await m.text();
    expect(text).toContain('dstm_z_total{direction="decap",result="forward"} 1');
    expect(text).toContain('dstm_z_total{direction="decap",result="drop",reason="no-binding"} 4');
    expect(text.match(/# TYPE dstm_z_total counter/g)?.length).toBe(1);
  });

  test("a family declared with label names shows no unlabelled 0 before its first count", async () => {
    const m = new Metrics();
    m.counter("dstm_by_total", "Refusals, by reason", ["reason"]);
    m.counter("dstm_plain_total", "Steps");
    let text = await m.text();
    expect(text).toContain("# TYPE dstm_by_total counter\n");
    expect(text).not.toMatch(/^dstm_by_total /m);
    expect(text).toMatch(/^dstm_plain_total 0$/m);
    m.inc("dstm_by_total", { reason: "bad-mac" });
    text = await m.text();
    expect(text).toContain('dstm_by_total{reason="bad-mac"} 1\n');
    expect(text).not.toMatch(/^dstm_by_total /m);
    const checked = promtool(text);
    if (checked) expect(checked).toEqual({ code: 0, output: "" });
  });

  test("expose() is the same text as a response body; metricsHandler serves /metrics only", async () => {
    const m = new Metrics();
    m.counter("dstm_w_total", "W");
    m.inc("dstm_w_total");
    expect(await new Response(m.expose()).text()).toContain("dstm_w_total 1\n");
    const handler = metricsHandler(m);
    const ok = await handler(new Request("http://localhost/metrics"));
    expect(ok.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(await ok.text()).toContain("dstm_w_total 1\n");
    expect((await handler(new Request("http://localhost/other"))).status).toBe(404);
  });

  test("dstm_build_info carries the build's labels once the command line has named it", async () => {
    setBuildInfo(() => ({ version: "9.9.9", commit: "abc1234", runtime: "bun 1.4.5" }));
    const text = await new Metrics().text();
    expect(text).toContain(
      'dstm_build_info{version="9.9.9",commit="abc1234",runtime="bun 1.4.5"} 1\n',
    );
  });
});
