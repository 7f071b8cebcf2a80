import { describe, expect, it } from "vitest";
import { age, bytes, duration, formatTags, metric, parseTags, timestamp } from "../src/format";

const NOW = Date.parse("2026-12-01T12:00:00Z");

describe("age", () => {
  it("reads like a person would say it", () => {
    expect(age("2026-12-01T11:59:58Z", NOW)).toBe("just now");
    expect(age("2026-12-01T11:59:00Z", NOW)).toBe("1m");
    expect(age("2026-12-01T09:00:00Z", NOW)).toBe("3h");
    expect(age("2026-11-28T12:00:00Z", NOW)).toBe("3d");
  });
  it("never shows a negative age or NaN", () => {
    expect(age("2026-12-01T12:05:00Z", NOW)).toBe("just now");
    expect(age("not a date", NOW)).toBe("—");
  });
});

describe("duration", () => {
  it("is a dash before the job starts", () => {
    expect(duration(null, null, NOW)).toBe("—");
  });
  it("runs to now while the job runs, to completion after", () => {
    expect(duration("2026-12-01T11:58:30Z", null, NOW)).toBe("1m 30s");
    expect(duration("2026-12-01T10:00:00Z", "2026-12-01T12:30:00Z", NOW)).toBe("2h 30m");
    expect(duration("2026-12-01T11:59:50Z", "2026-12-01T11:59:57Z", NOW)).toBe("7s");
  });
});

describe("numbers", () => {
  it("formats sizes in binary units", () => {
    expect(bytes(512)).toBe("512 B");
    expect(bytes(1536)).toBe("1.5 KiB");
    expect(bytes(5 * 1024 * 1024)).toBe("5.0 MiB");
    expect(bytes(-1)).toBe("—");
  });
  it("formats metrics with 4 significant digits", () => {
    expect(metric(0.912345)).toBe("0.9123");
    expect(metric(12)).toBe("12");
    expect(metric(0.00001234)).toBe("1.234e-5");
    expect(metric(Number.NaN)).toBe("NaN");
  });
  it("shows timestamps in UTC", () => {
    expect(timestamp("2026-12-01T16:23:50.123Z")).toBe("2026-12-01 16:23:50 UTC");
    expect(timestamp(null)).toBe("—");
  });
});

describe("tags filter", () => {
  it("parses key=value pairs", () => {
    expect(parseTags(" team=fraud, env = prod ")).toEqual({ tags: { team: "fraud", env: "prod" } });
    expect(parseTags("")).toEqual({ tags: {} });
  });
  it("names the pair it cannot read", () => {
    const parsed = parseTags("team=fraud,oops");
    expect(parsed).toHaveProperty("error");
    expect((parsed as { error: string }).error).toContain('"oops"');
    expect(parseTags("a=b=c")).toHaveProperty("error");
  });
  it("writes the API's filter syntax with sorted keys", () => {
    expect(formatTags({ z: "1", a: "2" })).toBe("a=2,z=1");
  });
});
