// Collect havm's log lines (text, info and up) for the tests of one describe block, then restore the logger.
import { afterAll, beforeAll } from "bun:test";
import { configureLogger, loggerOptions } from "../../src/util/log.ts";

export function captureLogLines(): string[] {
  const lines: string[] = [];
  let saved = { ...loggerOptions() };
  beforeAll(() => {
    saved = { ...loggerOptions() };
    configureLogger({ write: (l) => lines.push(l), format: "text", color: false, level: "info" });
  });
  afterAll(() => configureLogger(saved));
  return lines;
}
