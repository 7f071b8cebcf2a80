import { describe, expect, it } from "vitest";
import { ApiError, describeProblem, toProblem } from "../src/problem";

describe("problem details", () => {
  it("uses detail, then title, then the status", () => {
    expect(describeProblem({ status: 404, title: "Not Found", detail: "job 'x' not found" })).toBe(
      "job 'x' not found",
    );
    expect(describeProblem({ status: 409, title: "Conflict" })).toBe("Conflict");
    expect(describeProblem({ status: 502 })).toBe("HTTP 502");
  });
  it("lists the invalid fields", () => {
    const problem = toProblem(422, {
      status: 422,
      detail: "invalid request",
      code: "INVALID_ARGUMENT",
      errors: [{ path: "body.name", message: "field required" }],
    });
    expect(problem.code).toBe("INVALID_ARGUMENT");
    expect(describeProblem(problem)).toBe("invalid request (body.name: field required)");
  });
  it("reads a V2 inference error field", () => {
    expect(toProblem(400, { error: "input f9 is unknown" }).detail).toBe("input f9 is unknown");
  });
  it("turns a body that is not a problem into one", () => {
    expect(toProblem(502, "<html>bad gateway</html>")).toEqual({
      status: 502,
      detail: "<html>bad gateway</html>",
    });
    expect(toProblem(500, null, "Internal Server Error").detail).toBe("Internal Server Error");
  });
  it("keeps the problem on the error", () => {
    const error = new ApiError({ status: 401, detail: "invalid API key", request_id: "req_1" });
    expect(error.status).toBe(401);
    expect(error.message).toBe("invalid API key");
    expect(error.problem.request_id).toBe("req_1");
  });
});
