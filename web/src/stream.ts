// The job's live stream over the public WebSocket (/v1/jobs/training/{id}/stream).
//
// The API key travels in the subprotocol list (["mlp.v1", "mlp.auth.<key>"]), never in the
// URL. A dropped connection is retried with backoff; the server replays the job from its first
// line and point, and the buffers drop what was already shown (ids only grow), so the view
// resumes with nothing lost or repeated. Close codes 4401/4403/4404 and 1000 (job ended) stop.
import type { StreamMessage } from "./types";

export interface SocketLike {
  onopen: ((event: Event) => void) | null;
  onmessage: ((event: MessageEvent) => void) | null;
  onclose: ((event: CloseEvent) => void) | null;
  onerror: ((event: Event) => void) | null;
  close(code?: number, reason?: string): void;
}

export type SocketFactory = (url: string, protocols: string[]) => SocketLike;

export type StreamState = "connecting" | "live" | "reconnecting" | "ended" | "failed";

export interface StreamOptions {
  url: string;
  apiKey: string;
  onMessage: (message: StreamMessage) => void;
  onState: (state: StreamState, detail?: string) => void;
  factory?: SocketFactory;
  delaysMs?: number[];
  schedule?: (callback: () => void, ms: number) => unknown;
}

export const SUBPROTOCOL = "mlp.v1";
const FINAL_CODES: Record<number, string> = {
  4401: "the API key was not accepted: sign in again",
  4403: "this page's origin is not allowed to open the stream",
  4404: "the job was not found in your tenant",
};

export function streamUrl(location: { protocol: string; host: string }, jobId: string): string {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/v1/jobs/training/${encodeURIComponent(jobId)}/stream`;
}

export class JobStream {
  private socket: SocketLike | null = null;
  private stopped = false;
  private ended = false;
  private attempt = 0;
  private readonly factory: SocketFactory;
  private readonly delays: number[];
  private readonly schedule: (callback: () => void, ms: number) => unknown;

  constructor(private readonly options: StreamOptions) {
    this.factory =
      options.factory ?? ((url, protocols) => new WebSocket(url, protocols) as SocketLike);
    this.delays = options.delaysMs ?? [500, 1000, 2000, 4000, 8000];
    this.schedule = options.schedule ?? ((callback, ms) => setTimeout(callback, ms));
  }

  start(): void {
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.socket?.close(1000, "page closed");
    this.socket = null;
  }

  /** Drop the connection as a network failure would (the view reconnects and resumes). */
  drop(): void {
    this.socket?.close(4000, "dropped by the page");
  }

  private connect(): void {
    if (this.stopped) return;
    this.options.onState(this.attempt === 0 ? "connecting" : "reconnecting");
    const socket = this.factory(this.options.url, [SUBPROTOCOL, `mlp.auth.${this.options.apiKey}`]);
    this.socket = socket;
    socket.onopen = () => {
      this.attempt = 0;
      this.options.onState("live");
    };
    socket.onmessage = (event) => {
      let message: StreamMessage;
      try {
        message = JSON.parse(String(event.data)) as StreamMessage;
      } catch {
        return;
      }
      if (message.type === "end") this.ended = true;
      this.options.onMessage(message);
    };
    socket.onerror = () => undefined; // onclose follows with the code
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.stopped) return;
      const final = FINAL_CODES[event.code];
      if (final) {
        this.options.onState("failed", final);
        return;
      }
      if (this.ended || event.code === 1000) {
        this.options.onState("ended");
        return;
      }
      const delay = this.delays[Math.min(this.attempt, this.delays.length - 1)] ?? 1000;
      this.attempt += 1;
      this.options.onState("reconnecting", `connection lost; retrying in ${delay / 1000}s`);
      this.schedule(() => this.connect(), delay);
    };
  }
}
