// Prometheus text exposition format 0.0.4, by hand. Pure: snapshot in, text out.
// https://prometheus.io/docs/instrumenting/exposition_formats/ : HELP escapes backslash and newline;
// label values also escape the double quote. Every family gets HELP and TYPE (promtool lints a missing HELP).
import type { FamilySnapshot } from "./registry.ts";

export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** Go-style float text: NaN, +Inf, -Inf; integers without exponent up to 2^53. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  if (Object.is(v, -0)) return "0";
  return String(v);
}

function labelText(labels: Readonly<Record<string, string>>): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

/**
 * Render families to the text format. Throws on a duplicate family or series: that is a bug in the
 * caller (the registry keys series by labels, so it cannot happen through it), and promtool would not
 * notice it.
 */
export function renderText(families: readonly FamilySnapshot[]): string {
  const out: string[] = [];
  const names = new Set<string>();
  for (const f of families) {
    if (names.has(f.name)) throw new Error(`metric family ${f.name} appears twice`);
    names.add(f.name);
    out.push(`# HELP ${f.name} ${escapeHelp(f.help)}`);
    out.push(`# TYPE ${f.name} ${f.type}`);
    const seen = new Set<string>();
    for (const s of f.samples) {
      const line = `${s.name}${labelText(s.labels)}`;
      const key = `${s.name}${labelText(Object.fromEntries(Object.entries(s.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))))}`;
      if (seen.has(key)) throw new Error(`duplicate series ${line}`);
      seen.add(key);
      out.push(`${line} ${formatValue(s.value)}`);
    }
  }
  return out.length ? out.join("\n") + "\n" : "";
}
