import { afterEach, describe, expect, test } from "bun:test";
import { createProgress, formatDuration, renderBar } from "../../src/util/progress.ts";
import { configureLogger, loggerOptions } from "../../src/util/log.ts";

const saved = { ...loggerOptions() };
afterEach(() => configureLogger(saved));

describe("progress", () => {
  test("bar text with a known and an unknown total", () => {
    expect(renderBar("HAOS", 512 * 1024 * 1024, 1024 * 1024 * 1024, 64 * 1024 * 1024, 100)).toMatch(
      /^HAOS \[#+-+\]  50% 512 MiB \/ 1 GiB 64 MiB\/s ETA 00:08$/,
    );
    expect(renderBar("HAOS", 3 * 1024 * 1024, undefined, 1024 * 1024, 80)).toBe("HAOS 3 MiB 1 MiB/s");
    expect(formatDuration(3725)).toBe("1:02:05");
    expect(formatDuration(Infinity)).toBe("--:--");
  });

  test("on a TTY: redraws one line, ends with a newline", () => {
    let out = "";
    let t = 0;
    const p = createProgress("DL", { mode: "bar", total: 100, now: () => t, stream: { isTTY: true, columns: 80, write: (s: string) => (out += s) } });
    for (let i = 1; i <= 10; i++) {
      t = i;
      p.update(i * 10);
    }
    p.finish();
    expect(out.split("\r").length).toBeGreaterThan(10);
    expect(out.endsWith("\n")).toBe(true);
    expect(out).toContain("100%");
  });

  test("without a TTY (and in JSON mode): periodic log lines, total optional", () => {
    const lines: string[] = [];
    configureLogger({ format: "json", level: "info", write: (l) => lines.push(l) });
    let t = 0;
    const p = createProgress("HAOS 17.1", { now: () => t, logEverySeconds: 5, stream: { isTTY: true, write: () => {} } });
    for (let i = 1; i <= 12; i++) {
      t = i;
      p.update(i * 1024 * 1024);
    }
    p.finish("downloaded");
    const parsed = lines.map((l) => JSON.parse(l));
    expect(parsed.filter((o) => o.msg === "HAOS 17.1").length).toBe(2);
    expect(parsed[0]).toMatchObject({ level: "info", done: "5 MiB" });
    expect(parsed[0].total).toBeUndefined();
    expect(parsed.at(-1)).toMatchObject({ msg: "downloaded", bytes: "12 MiB" });
  });
});
