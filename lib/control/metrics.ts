/**
 * The metrics of one daemon, exposed in the Prometheus text format (version 0.0.4) by
 * prom-client (https://github.com/siimon/prom-client): its registry writes the text (escaping,
 * HELP/TYPE lines) and its default collectors give the `process_*` metrics (CPU seconds,
 * resident and virtual memory, open file descriptors, start time); the JavaScript heap is
 * `dstm_js_heap_used_bytes` / `dstm_js_heap_size_bytes` ({@link registerJsHeapMetrics}).
 *
 * Callers declare a family once (`counter`, `gauge`) and then `inc` / `set` it with any
 * labels: the values live here, in one Map per family keyed by a label string computed once,
 * so counting on the hot path is one Map lookup and `get` / `snapshot` are synchronous (for
 * tests and `stats`). Each exposition copies them into prom-client metrics (label names are
 * those the family has been given so far) and renders the registry. Exposition is
 * asynchronous, as prom-client's is: `text()` resolves to the text, `expose()` is the same as
 * a response body.
 *
 * Every daemon's exposition also has `dstm_build_info{version,commit,runtime} 1` once the
 * command line has said what the build is ({@link setBuildInfo}).
 *
 * @module
 */
import {
  Counter,
  collectDefaultMetrics,
  Gauge,
  type Counter as PromCounter,
  type Gauge as PromGauge,
  Registry,
} from "prom-client";

export type Labels = Record<string, string>;

/** What `dstm_build_info` says: the version, the commit and the runtime (`bun 1.x`). */
export interface BuildInfo {
  readonly version: string;
  readonly commit: string;
  readonly runtime: string;
}

let buildInfo: (() => BuildInfo) | undefined;
let buildInfoValue: BuildInfo | undefined;

/**
 * Names the build for `dstm_build_info` in every registry exposed from now on; `info` is
 * called once, at the first exposition (it may ask git).
 */
export function setBuildInfo(info: () => BuildInfo): void {
  buildInfo = info;
  buildInfoValue = undefined;
}

interface Series {
  readonly labels: Labels;
  value: number;
}

/** One series of a counter (./metrics.ts `incSeries`): add to `value` to count. */
export interface CounterSeries {
  value: number;
}

interface Family {
  readonly help: string;
  readonly type: "counter" | "gauge";
  readonly values: Map<string, Series>;
  /** The prom-client metric of the last exposition and the label names it was made with. */
  metric?: PromCounter<string> | PromGauge<string>;
  labelNames?: string;
  /** The label names it was declared with (a family counted "by" something), if any. */
  readonly declaredLabels?: readonly string[];
}

export class Metrics {
  /** The prom-client registry this daemon's text comes from. */
  readonly registry = new Registry();
  readonly #families = new Map<string, Family>();
  readonly #collectors: (() => void)[] = [];
  #processMetrics = false;

  /**
   * Declares a counter (idempotent). Its name ends in `_total` (Prometheus conventions).
   * `labels`: the label names of a family counted "by" something (reason, result…). Such a
   * family shows no series before its first count; without them, an unlabelled `name 0`
   * would be exposed until then, and vanish at the first labelled count.
   */
  counter(name: string, help: string, labels?: readonly string[]): void {
    this.#declare(name, help, "counter", labels);
  }

  /** Declares a gauge (idempotent); `labels` as for {@link counter}. */
  gauge(name: string, help: string, labels?: readonly string[]): void {
    this.#declare(name, help, "gauge", labels);
  }

  /** Adds `by` (default 1) to the counter `name` with `labels`. */
  inc(name: string, labels: Labels = {}, by = 1): void {
    const family = this.#family(name);
    const key = labelKey(labels);
    const series = family.values.get(key);
    if (series) series.value += by;
    else family.values.set(key, { labels: { ...labels }, value: by });
  }

  /**
   * {@link inc}, returning the series counted: a caller counting one series per message keeps
   * it and adds to its `value` (no label key to build, no Map lookup). Series are never removed.
   */
  incSeries(name: string, labels: Labels, by = 1): CounterSeries {
    const family = this.#family(name);
    const key = labelKey(labels);
    let series = family.values.get(key);
    if (series) series.value += by;
    else {
      series = { labels: { ...labels }, value: by };
      family.values.set(key, series);
    }
    return series;
  }

  /** Sets the gauge (or, for copies of counters kept elsewhere, the counter) `name` with `labels`. */
  set(name: string, labels: Labels, value: number): void {
    const family = this.#family(name);
    const key = labelKey(labels);
    const series = family.values.get(key);
    if (series) series.value = value;
    else family.values.set(key, { labels: { ...labels }, value });
  }

  /** Current value, 0 when never set (for tests and `stats`). */
  get(name: string, labels: Labels = {}): number {
    return this.#families.get(name)?.values.get(labelKey(labels))?.value ?? 0;
  }

  /** Registers a function that refreshes values just before each exposition and snapshot. */
  onCollect(collect: () => void): void {
    this.#collectors.push(collect);
  }

  /** Every series of our own families as `{ name, labels, value }`, for JSON output. */
  snapshot(): { name: string; labels: string; value: number }[] {
    for (const collect of this.#collectors) collect();
    const out: { name: string; labels: string; value: number }[] = [];
    for (const [name, family] of this.#families)
      for (const [labels, series] of family.values) out.push({ name, labels, value: series.value });
    return out;
  }

  /** The Prometheus text format: our families, `dstm_build_info` and `process_*`. */
  async text(): Promise<string> {
    for (const collect of this.#collectors) collect();
    this.#registerProcessMetrics();
    for (const [name, family] of this.#families) this.#publish(name, family);
    return this.registry.metrics();
  }

  /** {@link text} as a response body (`new Response(metrics.expose())`). */
  expose(): ReadableStream<Uint8Array> {
    const text = this.text();
    return new ReadableStream({
      async start(controller) {
        try {
          controller.enqueue(new TextEncoder().encode(await text));
          controller.close();
        } catch (error) {
          controller.error(error);
        }
      },
    });
  }

  /** The content type of {@link text}. */
  get contentType(): string {
    return this.registry.contentType;
  }

  #declare(name: string, help: string, type: "counter" | "gauge", labels?: readonly string[]) {
    if (!this.#families.has(name))
      this.#families.set(name, { help, type, values: new Map(), declaredLabels: labels });
  }

  #family(name: string): Family {
    const family = this.#families.get(name);
    if (!family) throw new Error(`metric ${name} was not declared`);
    return family;
  }

  /** Copies `family`'s values into its prom-client metric (made again when its label names grew). */
  #publish(name: string, family: Family): void {
    const names = new Set<string>(family.declaredLabels);
    for (const series of family.values.values())
      for (const label in series.labels) names.add(label);
    const labelNames = [...names].sort();
    if (family.metric === undefined || family.labelNames !== labelNames.join(",")) {
      if (family.metric !== undefined) this.registry.removeSingleMetric(name);
      const config = { name, help: family.help, labelNames, registers: [this.registry] };
      family.metric = family.type === "counter" ? new Counter(config) : new Gauge(config);
      family.labelNames = labelNames.join(",");
    }
    const metric = family.metric;
    metric.reset();
    for (const series of family.values.values()) {
      if (metric instanceof Counter) metric.inc(series.labels, Math.max(0, series.value));
      else metric.set(series.labels, series.value);
    }
  }

  /**
   * prom-client's `process_*` collectors and `dstm_build_info`, at the first exposition (tests
   * that make many Metrics and never expose them pay nothing). Its `nodejs_*` metrics are left
   * out: under Bun several are meaningless, and three gauges end in `_total`, which
   * `promtool check metrics` rightly flags.
   */
  #registerProcessMetrics(): void {
    if (this.#processMetrics) return;
    this.#processMetrics = true;
    // prom-client counts CPU from its registration on: add what the process used before, so
    // that process_cpu_*_total are since the start, as Prometheus' process collectors are.
    const before = process.cpuUsage();
    collectDefaultMetrics({ register: this.registry });
    for (const metric of this.registry.getMetricsAsArray()) {
      const metricName = (metric as unknown as { name: string }).name;
      // process_heap_bytes is /proc's VmData (the data segment: every mmap'd arena, JIT
      // buffers included), not a heap: the JS heap is dstm_js_heap_*_bytes below.
      if (!metricName.startsWith("process_") || metricName === "process_heap_bytes")
        this.registry.removeSingleMetric(metricName);
    }
    registerJsHeapMetrics(this.registry);
    const cpuSeconds: Record<string, number> = {
      process_cpu_user_seconds_total: before.user / 1e6,
      process_cpu_system_seconds_total: before.system / 1e6,
      process_cpu_seconds_total: (before.user + before.system) / 1e6,
    };
    for (const [metricName, seconds] of Object.entries(cpuSeconds)) {
      const counter = this.registry.getSingleMetric(metricName);
      if (counter instanceof Counter) counter.inc(seconds);
    }
    if (buildInfo) {
      buildInfoValue ??= buildInfo();
      new Gauge({
        name: "dstm_build_info",
        help: "Always 1; the labels say which dstm this is (version, commit, runtime)",
        labelNames: ["version", "commit", "runtime"],
        registers: [this.registry],
      }).set({ ...buildInfoValue }, 1);
    }
  }
}

/**
 * `dstm_js_heap_used_bytes` and `dstm_js_heap_size_bytes`: the JavaScript heap, from
 * `process.memoryUsage()` (`heapUsed`, `heapTotal`; under Bun, JavaScriptCore's heap), read
 * at each exposition. Gauges in bytes with the application's prefix: prom-client's own
 * `nodejs_heap_size_*` names would say Node.js, and not one of Prometheus' standard
 * `process_*` metrics is a heap (https://prometheus.io/docs/instrumenting/writing_clientlibs/#process-metrics).
 */
function registerJsHeapMetrics(registry: Registry): void {
  new Gauge({
    name: "dstm_js_heap_used_bytes",
    help: "JavaScript heap in use by live objects, bytes (process.memoryUsage().heapUsed)",
    registers: [registry],
    collect() {
      this.set(process.memoryUsage().heapUsed);
    },
  });
  new Gauge({
    name: "dstm_js_heap_size_bytes",
    help: "JavaScript heap size, in use and free, bytes (process.memoryUsage().heapTotal)",
    registers: [registry],
    collect() {
      this.set(process.memoryUsage().heapTotal);
    },
  });
}

/**
 * A fetch handler serving `metrics` on GET /metrics (404 elsewhere), for a daemon's
 * `--metrics ADDR:PORT` endpoint and its control socket.
 */
export function metricsHandler(metrics: Metrics): (request: Request) => Promise<Response> {
  return async (request) => {
    if (new URL(request.url).pathname !== "/metrics")
      return new Response("see /metrics\n", { status: 404 });
    return new Response(await metrics.text(), {
      headers: { "content-type": metrics.contentType },
    });
  };
}

// Counters are bumped per message: build the key with a plain loop, escaping only when needed.
const NEEDS_ESCAPE = /[\\"\n]/;

/** `{a="1",b="2"}` in the caller's label order ("" without labels): the key of a series. */
function labelKey(labels: Labels): string {
  let key = "";
  for (const name in labels) {
    const value = labels[name]!;
    const text = NEEDS_ESCAPE.test(value)
      ? value.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`))
      : value;
    key += `${key === "" ? "{" : ","}${name}="${text}"`;
  }
  return key === "" ? "" : `${key}}`;
}
