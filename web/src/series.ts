// Metric points per name, appended as they stream in, in the columns uPlot draws.

export interface MetricPoint {
  id: number;
  name: string;
  step?: number | null;
  value: number;
}

export interface Series {
  x: number[];
  y: number[];
}

export class MetricSeries {
  private readonly byName = new Map<string, Series>();
  private lastId = 0;

  /** Adds a point; false for one already seen (ids only grow: a replay after a reconnect). */
  add(point: MetricPoint): boolean {
    if (point.id <= this.lastId) return false;
    this.lastId = point.id;
    let series = this.byName.get(point.name);
    if (!series) {
      series = { x: [], y: [] };
      this.byName.set(point.name, series);
    }
    const previous = series.x.length ? (series.x[series.x.length - 1] as number) : -Infinity;
    let x = point.step ?? (Number.isFinite(previous) ? previous + 1 : 0);
    if (x < previous) x = previous; // a retried attempt restarts its steps: keep x sorted
    series.x.push(x);
    series.y.push(point.value);
    return true;
  }

  get last(): number {
    return this.lastId;
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  get(name: string): Series | undefined {
    return this.byName.get(name);
  }

  size(): number {
    let total = 0;
    for (const series of this.byName.values()) total += series.x.length;
    return total;
  }
}

/** Log lines kept in order without repeats, bounded (oldest dropped first). */
export class LogBuffer {
  private lastId = 0;
  readonly lines: { id: number; text: string; stream: string }[] = [];

  constructor(private readonly limit = 10_000) {}

  add(id: number, text: string, stream: string): boolean {
    if (id <= this.lastId) return false;
    this.lastId = id;
    this.lines.push({ id, text, stream });
    if (this.lines.length > this.limit) this.lines.splice(0, this.lines.length - this.limit);
    return true;
  }

  get last(): number {
    return this.lastId;
  }
}
