// The one way this page calls the REST API: the API key header, problem details as errors.
import { ApiError, toProblem } from "./problem";

const KEY_NAME = "mlp.api_key";

/** The API key lives in sessionStorage: gone when the tab closes, never in a URL or cookie. */
export const credentials = {
  get(): string | null {
    return sessionStorage.getItem(KEY_NAME);
  },
  set(key: string): void {
    sessionStorage.setItem(KEY_NAME, key);
  },
  clear(): void {
    sessionStorage.removeItem(KEY_NAME);
  },
};

type Listener = () => void;
const signedOut: Listener[] = [];

/** Called when the API answers 401: the key is wrong, revoked or missing. */
export function onSignedOut(listener: Listener): void {
  signedOut.push(listener);
}

export interface CallOptions {
  method?: string;
  body?: unknown;
  key?: string;
  signal?: AbortSignal;
}

export async function call<T>(path: string, options: CallOptions = {}): Promise<T> {
  const key = options.key ?? credentials.get();
  const headers: Record<string, string> = { Accept: "application/json" };
  if (key) headers["X-API-Key"] = key;
  const init: RequestInit = { method: options.method ?? "GET", headers, cache: "no-store" };
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  if (options.signal) init.signal = options.signal;
  let response: Response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error instanceof DOMException && error.name === "AbortError") throw error;
    throw new ApiError({
      status: 0,
      title: "Network error",
      detail: "The platform did not answer: is the server running? Retry in a moment.",
    });
  }
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: keep the text for the message
  }
  if (!response.ok) {
    if (response.status === 401 && options.key === undefined) {
      for (const listener of signedOut) listener();
    }
    throw new ApiError(toProblem(response.status, body, response.statusText));
  }
  return body as T;
}

/** A query string from the defined values of ``params``. */
export function query(params: Record<string, string | number | null | undefined>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export const enc = encodeURIComponent;
