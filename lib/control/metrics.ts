/**
 * Counters and gauges in the Prometheus text exposition format (version 0.0.4).
 *
 * Counters are keyed by a label string computed once by the caller, so incrementing on the
 * hot path is one Map lookup.
 *
 * @module
 */

export type Labels = Record<string, string>;

interface Family {
  readonly help: string;
  readonly type: "counter" | "gauge";
  readonly values: Map<string, number>;
}

export class Metrics {
  readonly #families = new Map<string, Family>();
  readonly #collectors: (() => void)[] = [];

  /** Declares a counter (idempotent). */
  counter(name: string, help: string): void {
    this.#declare(name, help, "counter");
  }

  /** Declares a gauge (idempotent). */
  gauge(name: string, help: string): void {
    this.#declare(name, help, "gauge");
  }

  /** Adds `by` (default 1) to the counter `name` with `labels`. */
  inc(name: string, labels: Labels = {}, by = 1): void {
    const family = this.#family(name);
    const key = labelKey(labels);
    family.values.set(key, (family.values.get(key) ?? 0) + by);
  }

  /** Sets the gauge `name` with `labels`. */
  set(name: string, labels: Labels, value: number): void {
    this.#family(name).values.set(labelKey(labels), value);
  }

  /** Current value, 0 when never set (for tests and `stats`). */
  get(name: string, labels: Labels = {}): number {
    return this.#families.get(name)?.values.get(labelKey(labels)) ?? 0;
  }

  /** Registers a function that refreshes gauges just before each exposition. */
  onCollect(collect: () => void): void {
    this.#collectors.push(collect);
  }

  /** Every series as `{ name, labels, value }`, for JSON output. */
  snapshot(): { name: string; labels: string; value: number }[] {
    for (const collect of this.#collectors) collect();
    const out: { name: string; labels: string; value: number }[] = [];
    for (const [name, family] of this.#families)
      for (const [labels, value] of family.values) out.push({ name, labels, value });
    return out;
  }

  /** The Prometheus text format. */
  expose(): string {
    for (const collect of this.#collectors) collect();
    let text = "";
    for (const [name, family] of this.#families) {
      text += `# HELP ${name} ${family.help}\n# TYPE ${name} ${family.type}\n`;
      for (const [labels, value] of family.values) text += `${name}${labels} ${value}\n`;
    }
    return text;
  }

  #declare(name: string, help: string, type: "counter" | "gauge"): void {
    if (!this.#families.has(name)) this.#families.set(name, { help, type, values: new Map() });
  }

  #family(name: string): Family {
    const family = this.#families.get(name);
    if (!family) throw new Error(`metric ${name} was not declared`);
    return family;
  }
}

// Counters are bumped per message: build the key with a plain loop, escaping only when needed.
const NEEDS_ESCAPE = /[\\"\n]/;

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
