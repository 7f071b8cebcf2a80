// The generated TypeScript client (clients/typescript, compiled by the pytest test) against a
// live server: create, get, list and cancel a training job, and a 422 problem body.
// Env: MLP_CLIENT_DIST (the compiled client), MLP_BASE_URL, MLP_API_KEY.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { test } from "node:test";

const require = createRequire(import.meta.url);
const { Configuration, TrainingApi, FrameworkType, JobStatus } = require(process.env.MLP_CLIENT_DIST);

const api = new TrainingApi(
  new Configuration({ basePath: process.env.MLP_BASE_URL, apiKey: process.env.MLP_API_KEY }),
);

const spec = {
  name: "ts-client-job",
  framework: FrameworkType.Sklearn,
  docker_image: "python:3.11",
  data_path: "data/train.csv",
  output_path: "models/ts-client/",
  tags: { client: "typescript" },
};

test("create, get, list and cancel a training job", async () => {
  const created = await api.createTrainingJob(spec);
  assert.equal(created.status, 201);
  const job = created.data;
  assert.match(job.id, /^job_/);
  assert.equal(job.status, JobStatus.Pending);
  assert.equal(job.spec.name, spec.name);

  const fetched = await api.getTrainingJob(job.id);
  assert.equal(fetched.status, 200);
  assert.equal(fetched.data.id, job.id);
  assert.deepEqual(fetched.data.spec.tags, spec.tags);
  assert.ok(fetched.headers.etag, "GET answers an ETag");

  const listed = await api.listTrainingJobs(undefined, FrameworkType.Sklearn, "client=typescript");
  assert.equal(listed.status, 200);
  assert.deepEqual(
    listed.data.jobs.map((item) => item.id),
    [job.id],
  );
  assert.equal(listed.data.total, 1);

  const cancelled = await api.cancelTrainingJob(job.id);
  assert.equal(cancelled.status, 204);
  const after = await api.getTrainingJob(job.id);
  assert.equal(after.data.status, JobStatus.Cancelled);
});

test("a 422 carries a problem body", async () => {
  const bad = { ...spec, compute: { compute_type: "gpu", gpu_count: 0 } };
  await assert.rejects(api.createTrainingJob(bad), (error) => {
    assert.equal(error.response.status, 422);
    assert.match(error.response.headers["content-type"], /^application\/problem\+json/);
    const problem = error.response.data;
    assert.equal(problem.status, 422);
    assert.equal(problem.code, "INVALID_ARGUMENT");
    assert.ok(problem.request_id);
    assert.deepEqual(
      problem.errors.map((item) => item.path),
      ["body.compute.gpu_count"],
    );
    return true;
  });
});

test("a wrong key is a 401 problem", async () => {
  const stranger = new TrainingApi(
    new Configuration({ basePath: process.env.MLP_BASE_URL, apiKey: "mlp_not-a-real-key" }),
  );
  await assert.rejects(stranger.listTrainingJobs(), (error) => {
    assert.equal(error.response.status, 401);
    assert.equal(error.response.data.status, 401);
    return true;
  });
});
