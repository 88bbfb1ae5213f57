// A manual clock for supervisor tests: timers fire only when the test advances time, in time order,
// with pending promise callbacks run between timers (so async probe loops make progress).
import type { Clock } from "../../src/supervise/health.ts";

interface Timer {
  id: number;
  at: number;
  fn: () => void;
}

export class FakeClock implements Clock {
  private timers: Timer[] = [];
  private nextId = 1;
  constructor(private t: number) {}

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const timer = { id: this.nextId++, at: this.t + Math.max(0, ms), fn };
    this.timers.push(timer);
    return timer.id;
  }

  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((x) => x.id !== handle);
  }

  pending(): number {
    return this.timers.length;
  }

  /** Let promise callbacks run (several macrotask turns, so chains of awaits settle). */
  async settle(): Promise<void> {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  }

  /** Move time forward by `ms`, firing every timer due on the way, in order. */
  async advance(ms: number): Promise<void> {
    const target = this.t + ms;
    await this.settle();
    for (;;) {
      const due = this.timers.filter((x) => x.at <= target).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.timers = this.timers.filter((x) => x !== due);
      this.t = Math.max(this.t, due.at);
      due.fn();
      await this.settle();
    }
    this.t = target;
  }

  /** Jump the wall clock without firing timers (host asleep). */
  jump(ms: number): void {
    this.t += ms;
  }
}
