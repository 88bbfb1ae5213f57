// The one logger: text for people, NDJSON for machines, levels filter, secrets never appear.
import { afterEach, describe, expect, test } from "bun:test";
import { addSecret, colorAllowed, configureLogger, log, redact } from "../../src/util/log.ts";

let lines: string[] = [];
const capture = (level: "debug" | "info" | "warning" | "error", format: "text" | "json", color = false) => {
  lines = [];
  configureLogger({ level, format, color, write: (l) => lines.push(l) });
};
afterEach(() => configureLogger({ level: "info", format: "text", color: false, write: (l) => process.stderr.write(l + "\n") }));

describe("log", () => {
  test("JSON lines carry time, level, msg and fields", () => {
    capture("debug", "json");
    log.info("image ready", { version: "17.1", verified: true, bytes: 42 });
    log.warn("careful");
    const objs = lines.map((l) => JSON.parse(l));
    expect(objs[0]).toMatchObject({ level: "info", msg: "image ready", version: "17.1", verified: true, bytes: 42 });
    expect(new Date(objs[0].time).toString()).not.toBe("Invalid Date");
    expect(objs[1]).toMatchObject({ level: "warning", msg: "careful" });
  });

  test("an Error field is its message; fields cannot overwrite time/level/msg", () => {
    capture("info", "json");
    log.error("boom", { error: new Error("disk full"), msg: "sneaky", level: "debug" });
    const o = JSON.parse(lines[0]!);
    expect(o).toMatchObject({ level: "error", msg: "boom", error: "disk full" });
  });

  test("levels filter", () => {
    capture("warning", "text");
    log.debug("d");
    log.info("i");
    log.warn("w");
    log.error("e");
    expect(lines.map((l) => l.split(" ")[1])).toEqual(["WARN", "ERROR"]);
    capture("debug", "text");
    log.debug("d");
    expect(lines).toHaveLength(1);
    expect(log.debugEnabled).toBe(true);
  });

  test("text lines: time, level, message, key=value (quoted when needed); no colour unless asked", () => {
    capture("info", "text");
    log.info("persistent disk created", { path: "/a b/haos.img", size: "32 GiB", n: 3 });
    expect(lines[0]).toMatch(/^\d\d:\d\d:\d\d INFO  persistent disk created path="\/a b\/haos.img" size="32 GiB" n=3$/);
    expect(lines[0]).not.toContain("\x1b[");
    capture("info", "text", true);
    log.info("x");
    expect(lines[0]).toContain("\x1b[");
  });

  test("registered secrets never appear, in text or JSON, in messages or fields", () => {
    addSecret("eyJhbGciOiJIUzI1NiJ9.super-secret-token");
    capture("debug", "json");
    log.info("calling HA with eyJhbGciOiJIUzI1NiJ9.super-secret-token", { auth: "Bearer eyJhbGciOiJIUzI1NiJ9.super-secret-token" });
    capture("debug", "text");
    log.error("failed", { token: "eyJhbGciOiJIUzI1NiJ9.super-secret-token" });
    for (const l of lines) expect(l).not.toContain("super-secret-token");
    expect(redact("x eyJhbGciOiJIUzI1NiJ9.super-secret-token y")).toBe("x *** y");
  });

  test("colours only on a TTY and never with NO_COLOR", () => {
    expect(colorAllowed({ isTTY: true }, {})).toBe(true);
    expect(colorAllowed({ isTTY: false }, {})).toBe(false);
    expect(colorAllowed({ isTTY: true }, { NO_COLOR: "" })).toBe(false);
    expect(colorAllowed({ isTTY: true }, { TERM: "dumb" })).toBe(false);
  });
});
