// Pure formatting helpers (unit-tested in test/format.test.ts).

/** "just now", "42s", "5m", "3h", "2d" from a timestamp to ``now``. */
export function age(iso: string, now: number = Date.now()): string {
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return "—";
  return compact(Math.max(0, (now - then) / 1000), true);
}

/** A job's run time: start to end (or to ``now`` while it runs); "—" before it starts. */
export function duration(
  start: string | null | undefined,
  end: string | null | undefined,
  now: number = Date.now(),
): string {
  if (!start) return "—";
  const from = Date.parse(start);
  const to = end ? Date.parse(end) : now;
  if (Number.isNaN(from) || Number.isNaN(to)) return "—";
  return compact(Math.max(0, (to - from) / 1000), false);
}

function compact(seconds: number, ago: boolean): string {
  if (ago && seconds < 5) return "just now";
  if (seconds < 60) return `${Math.floor(seconds)}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return ago ? `${minutes}m` : `${minutes}m ${Math.floor(seconds % 60)}s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return ago ? `${hours}h` : `${hours}h ${minutes % 60}m`;
  const days = Math.floor(hours / 24);
  return ago ? `${days}d` : `${days}d ${hours % 24}h`;
}

/** 1536 -> "1.5 KiB". */
export function bytes(size: number): string {
  if (!Number.isFinite(size) || size < 0) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = size;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** A metric value for a table cell: 4 significant digits, no exponent for ordinary sizes. */
export function metric(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (value !== 0 && (Math.abs(value) >= 1e6 || Math.abs(value) < 1e-3)) {
    return value.toExponential(3);
  }
  return Number(value.toPrecision(4)).toString();
}

/** ISO timestamp -> "2026-12-01 16:23:50 UTC" (the platform's time is UTC). */
export function timestamp(iso: string | null | undefined): string {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "—";
  return `${date.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

/** "key1=value1,key2=value2" -> a map, or an error message naming the bad pair. */
export function parseTags(raw: string): { tags: Record<string, string> } | { error: string } {
  const tags: Record<string, string> = {};
  const text = raw.trim();
  if (!text) return { tags };
  for (const pair of text.split(",")) {
    const at = pair.indexOf("=");
    const key = at < 0 ? "" : pair.slice(0, at).trim();
    const value = at < 0 ? "" : pair.slice(at + 1).trim();
    if (!key || value.includes("=")) {
      return { error: `"${pair.trim()}" is not key=value (e.g. team=fraud,env=prod)` };
    }
    tags[key] = value;
  }
  return { tags };
}

/** A tags map as the API's filter syntax, keys sorted. */
export function formatTags(tags: Record<string, string>): string {
  return Object.keys(tags)
    .sort()
    .map((key) => `${key}=${tags[key] ?? ""}`)
    .join(",");
}
