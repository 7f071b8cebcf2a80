// RFC 9457 problem details, as the API answers every error, turned into messages people read.

export interface FieldError {
  path?: string;
  loc?: (string | number)[];
  message?: string;
  msg?: string;
}

export interface Problem {
  type?: string;
  title?: string;
  status: number;
  detail?: string;
  code?: string;
  request_id?: string;
  errors?: FieldError[];
}

export class ApiError extends Error {
  readonly problem: Problem;
  constructor(problem: Problem) {
    super(describeProblem(problem));
    this.name = "ApiError";
    this.problem = problem;
  }
  get status(): number {
    return this.problem.status;
  }
}

/** A problem (or anything an API answered) as one sentence plus its field errors. */
export function describeProblem(problem: Problem): string {
  const head = problem.detail || problem.title || `HTTP ${problem.status}`;
  const fields = (problem.errors ?? [])
    .slice(0, 5)
    .map((error) => {
      const where = error.path ?? (error.loc ? error.loc.join(".") : "");
      const what = error.message ?? error.msg ?? "";
      return where ? `${where}: ${what}` : what;
    })
    .filter((text) => text.length > 0);
  return fields.length ? `${head} (${fields.join("; ")})` : head;
}

/** The problem in a response body; bodies that are not problems still become one. */
export function toProblem(status: number, body: unknown, statusText = ""): Problem {
  if (body && typeof body === "object" && !Array.isArray(body)) {
    const record = body as Record<string, unknown>;
    const problem: Problem = { status: typeof record.status === "number" ? record.status : status };
    for (const key of ["type", "title", "detail", "code", "request_id"] as const) {
      const value = record[key];
      if (typeof value === "string") problem[key] = value;
    }
    if (!problem.detail && typeof record.error === "string") problem.detail = record.error;
    if (Array.isArray(record.errors)) problem.errors = record.errors as FieldError[];
    return problem;
  }
  const detail = typeof body === "string" && body.trim() ? body.trim().slice(0, 300) : statusText;
  return detail ? { status, detail } : { status };
}
