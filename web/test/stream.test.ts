import { describe, expect, it } from "vitest";
import { LogBuffer, MetricSeries } from "../src/series";
import { JobStream, type SocketLike, type StreamState, streamUrl } from "../src/stream";
import type { StreamMessage } from "../src/types";

class FakeSocket implements SocketLike {
  onopen: ((event: Event) => void) | null = null;
  onmessage: ((event: MessageEvent) => void) | null = null;
  onclose: ((event: CloseEvent) => void) | null = null;
  onerror: ((event: Event) => void) | null = null;
  closed: number | null = null;
  constructor(
    readonly url: string,
    readonly protocols: string[],
  ) {}
  open(): void {
    this.onopen?.({} as Event);
  }
  send(message: object): void {
    this.onmessage?.({ data: JSON.stringify(message) } as MessageEvent);
  }
  drop(code: number): void {
    this.onclose?.({ code } as CloseEvent);
  }
  close(code?: number): void {
    this.closed = code ?? 1000;
  }
}

function harness() {
  const sockets: FakeSocket[] = [];
  const states: string[] = [];
  const messages: StreamMessage[] = [];
  const timers: { ms: number; run: () => void }[] = [];
  const stream = new JobStream({
    url: "ws://127.0.0.1:8000/v1/jobs/training/job_1/stream",
    apiKey: "mlp_secret",
    onMessage: (message) => messages.push(message),
    onState: (state: StreamState, detail?: string) => states.push(detail ? `${state}:${detail}` : state),
    factory: (url, protocols) => {
      const socket = new FakeSocket(url, protocols);
      sockets.push(socket);
      return socket;
    },
    schedule: (run, ms) => timers.push({ ms, run }),
  });
  return { stream, sockets, states, messages, timers };
}

const log = (id: number) => ({ type: "log", id, timestamp: "t", stream: "stdout", line: `line ${id}` });

describe("JobStream", () => {
  it("sends the key as a subprotocol, never in the URL", () => {
    const { stream, sockets } = harness();
    stream.start();
    expect(sockets[0]?.protocols).toEqual(["mlp.v1", "mlp.auth.mlp_secret"]);
    expect(sockets[0]?.url).not.toContain("mlp_secret");
  });

  it("reconnects with backoff after a dropped connection, then stops at the end", () => {
    const { stream, sockets, states, messages, timers } = harness();
    stream.start();
    sockets[0]?.open();
    sockets[0]?.send(log(1));
    sockets[0]?.drop(1006);
    expect(states.at(-1)).toMatch(/^reconnecting/);
    expect(timers.map((t) => t.ms)).toEqual([500]);
    timers[0]?.run();
    expect(sockets).toHaveLength(2);
    sockets[1]?.drop(1006); // a second failure before it opened: a longer wait
    expect(timers.map((t) => t.ms)).toEqual([500, 1000]);
    timers[1]?.run();
    sockets[2]?.open();
    expect(states.at(-1)).toBe("live");
    sockets[2]?.send({ type: "end", status: "succeeded" });
    sockets[2]?.drop(1000);
    expect(states.at(-1)).toBe("ended");
    expect(timers).toHaveLength(2);
    expect(messages.map((m) => m.type)).toEqual(["log", "end"]);
  });

  it("gives up with a message on the application close codes", () => {
    for (const [code, text] of [
      [4401, "API key"],
      [4404, "not found"],
      [4403, "origin"],
    ] as const) {
      const { stream, sockets, states, timers } = harness();
      stream.start();
      sockets[0]?.drop(code);
      expect(states.at(-1)).toMatch(new RegExp(`^failed:.*${text}`));
      expect(timers).toHaveLength(0);
    }
  });

  it("does not reconnect once stopped", () => {
    const { stream, sockets, timers } = harness();
    stream.start();
    stream.stop();
    expect(sockets[0]?.closed).toBe(1000);
    sockets[0]?.drop(1006);
    expect(timers).toHaveLength(0);
  });

  it("builds ws: or wss: URLs from the page's origin", () => {
    expect(streamUrl({ protocol: "http:", host: "127.0.0.1:8000" }, "job_1")).toBe(
      "ws://127.0.0.1:8000/v1/jobs/training/job_1/stream",
    );
    expect(streamUrl({ protocol: "https:", host: "mlp.example" }, "a/b")).toBe(
      "wss://mlp.example/v1/jobs/training/a%2Fb/stream",
    );
  });
});

describe("replays after a reconnect", () => {
  it("keep each log line once", () => {
    const logs = new LogBuffer(3);
    expect([1, 2, 1, 2, 3, 4].map((id) => logs.add(id, `l${id}`, "stdout"))).toEqual([
      true,
      true,
      false,
      false,
      true,
      true,
    ]);
    expect(logs.lines.map((line) => line.id)).toEqual([2, 3, 4]); // bounded, oldest dropped
  });

  it("keep each metric point once, per name, with sorted x", () => {
    const series = new MetricSeries();
    series.add({ id: 1, name: "loss", step: 1, value: 0.9 });
    series.add({ id: 2, name: "acc", step: 1, value: 0.5 });
    series.add({ id: 3, name: "loss", step: 2, value: 0.7 });
    expect(series.add({ id: 1, name: "loss", step: 1, value: 0.9 })).toBe(false);
    series.add({ id: 4, name: "loss", step: 1, value: 0.95 }); // a retry restarts its steps
    series.add({ id: 5, name: "loss", value: 0.6 }); // no step: the next x
    expect(series.get("loss")).toEqual({ x: [1, 2, 2, 3], y: [0.9, 0.7, 0.95, 0.6] });
    expect(series.names()).toEqual(["loss", "acc"]);
    expect(series.size()).toBe(5);
  });
});
