"""End to end through the REST API: real scheduler, real subprocesses, real files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import joblib
import psutil

from tests.conftest import Platform
from tests.jobs.conftest import (
    EXAMPLES,
    sse_events,
    submit,
    tenant_root,
    upload,
    wait_for,
    zip_dir,
    zip_files,
)

sys.path.insert(0, str(EXAMPLES))
from make_dataset import make_dataset


def test_sklearn_example_end_to_end(jobs_platform: Platform) -> None:
    tenant = jobs_platform.new_tenant()
    client = jobs_platform.client(tenant)
    root = tenant_root(jobs_platform, tenant)
    make_dataset(root / "data" / "train.csv")
    package = upload(client, zip_dir(EXAMPLES / "sklearn_classifier"))
    job = submit(
        client,
        source=package,
        hyperparameters={"epochs": 4, "sleep_seconds": 0.3},
        output_path="models/churn/v1",
    )
    assert job["status"] == "pending" and job["pending_reason"]

    metrics_during_run: dict[str, float] = {}
    lines: list[str] = []
    ids: list[int] = []
    end = None
    with client.stream(
        "GET", f"/v1/jobs/training/{job['id']}/logs", params={"follow": "true"}, timeout=120
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in sse_events(response):
            if event.event == "log":
                ids.append(int(event.id or 0))
                lines.append(event.data["line"])
                if "epoch 2:" in event.data["line"] and not metrics_during_run:
                    metrics_during_run = client.get(f"/v1/jobs/training/{job['id']}/metrics").json()
                    running = client.get(f"/v1/jobs/training/{job['id']}").json()
                    assert running["status"] == "running"
            elif event.event == "end":
                end = event.data
                break
    assert end == {"status": "succeeded"}, "\n".join(lines)
    assert ids == list(range(1, len(ids) + 1))
    assert {"loss", "accuracy"} <= metrics_during_run.keys()
    assert any("epoch 4:" in line for line in lines)

    done = wait_for(client, job["id"], {"succeeded"})
    assert done["started_at"] and done["completed_at"]
    assert done["resource_usage"]["cpu_seconds"] > 0
    assert [h["status"] for h in done["status_history"]] == ["pending", "running", "succeeded"]
    history = client.get(
        f"/v1/jobs/training/{job['id']}/metrics/history", params={"name": "loss"}
    ).json()
    assert [p["step"] for p in history["metrics"]] == [1, 2, 3, 4]
    latest = client.get(f"/v1/jobs/training/{job['id']}/metrics").json()
    assert latest["loss"] == history["metrics"][-1]["value"]

    model = joblib.load(root / "models" / "churn" / "v1" / "model.joblib")
    assert model.predict([[0.1, -0.2, 0.3, 0.0]]).shape == (1,)


def test_failing_script_reports_exit_code_and_stderr(jobs_platform: Platform) -> None:
    tenant = jobs_platform.new_tenant()
    client = jobs_platform.client(tenant)
    package = upload(
        client,
        zip_files(
            {
                "train.py": (
                    "import sys\nprint('about to fail')\nsys.exit('model diverged: loss=nan')\n"
                )
            }
        ),
    )
    job = submit(client, source=package)
    done = wait_for(client, job["id"], {"failed", "succeeded"})
    assert done["status"] == "failed"
    assert "exited with code 1" in done["error_message"]
    assert "model diverged: loss=nan" in done["error_message"]
    logs = client.get(f"/v1/jobs/training/{job['id']}/logs", params={"tail": 50}).json()["logs"]
    assert any(line["stream"] == "stdout" and line["line"] == "about to fail" for line in logs)


def test_timeout_fails_the_job(jobs_platform: Platform) -> None:
    client = jobs_platform.client(jobs_platform.new_tenant())
    job = submit(
        client, entrypoint='python -c "import time; time.sleep(600)"', max_runtime_seconds=1
    )
    done = wait_for(client, job["id"], {"failed", "succeeded"})
    assert done["status"] == "failed"
    assert "max_runtime_seconds=1" in done["error_message"]


def _job_processes(job_id: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["environ"]):
        try:
            environ = proc.info["environ"] or {}
            if environ.get("ML_PLATFORM_JOB_ID") == job_id and proc.status() != "zombie":
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_cancel_running_job_leaves_no_process(jobs_platform: Platform) -> None:
    client = jobs_platform.client(jobs_platform.new_tenant())
    script = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
        "print('started', flush=True); time.sleep(600)"
    )
    job = submit(client, entrypoint=f'python -c "{script}"')
    wait_for(client, job["id"], {"running"})
    while len(_job_processes(job["id"])) < 2:
        pass
    assert client.delete(f"/v1/jobs/training/{job['id']}").status_code == 204
    done = wait_for(client, job["id"], {"cancelled"})
    # The executor stops the process group; wait until the scheduler has recorded it.
    while not (done.get("resource_usage") or {}).get("wall_seconds"):
        done = client.get(f"/v1/jobs/training/{job['id']}").json()
    assert _job_processes(job["id"]) == []


def test_retries_make_each_attempt_visible(jobs_platform: Platform) -> None:
    client = jobs_platform.client(jobs_platform.new_tenant())
    job = submit(client, entrypoint='python -c "raise SystemExit(2)"', max_retries=1)
    done = wait_for(client, job["id"], {"failed", "succeeded"})
    history = [(h["status"], h["attempt"]) for h in done["status_history"]]
    assert history == [
        ("pending", None),
        ("running", 1),
        ("pending", 1),
        ("running", 2),
        ("failed", 2),
    ]
    assert done["attempt"] == 2


def test_pending_reasons(jobs_platform: Platform) -> None:
    client = jobs_platform.client(jobs_platform.new_tenant())
    gpu = submit(
        client, compute={"compute_type": "gpu", "gpu_count": 2, "cpu_cores": 1, "memory_gb": 1}
    )
    sleeper = 'python -c "import time; time.sleep(600)"'
    running = [submit(client, entrypoint=sleeper) for _ in range(2)]
    for job in running:
        wait_for(client, job["id"], {"running"})
    queued = [submit(client, entrypoint=sleeper) for _ in range(2)]
    try:
        gpu_job = wait_for_reason(client, gpu["id"])
        assert gpu_job["pending_reason"] == (
            "waiting for 2 GPUs: this platform has 0 (unschedulable)"
        )
        first = wait_for_reason(client, queued[0]["id"])
        assert first["pending_reason"] == "tenant quota: 2 of 2 concurrent jobs running"
        second = wait_for_reason(client, queued[1]["id"])
        assert second["pending_reason"] == "queued: 1 job ahead"
        assert second["queue_position"] == 1
    finally:
        for job in [gpu, *running, *queued]:
            client.delete(f"/v1/jobs/training/{job['id']}")
    for job in running:
        wait_for(client, job["id"], {"cancelled"})


def wait_for_reason(client, job_id):  # type: ignore[no-untyped-def]
    while True:
        job = client.get(f"/v1/jobs/training/{job_id}").json()
        if job["pending_reason"] != "queued: waiting for the scheduler":
            return job


def test_paths_outside_tenant_roots_are_422(jobs_platform: Platform) -> None:
    tenant, other = jobs_platform.new_tenant(), jobs_platform.new_tenant()
    client = jobs_platform.client(tenant)
    db_file = str(Path(jobs_platform.settings.data_dir).resolve() / "mlp.db")
    for field, value in [
        ("data_path", db_file),
        ("data_path", "/etc/passwd"),
        ("output_path", "/tmp/anywhere"),
        ("output_path", f"../{other.id}/models"),
        ("data_path", str(tenant_root(jobs_platform, other) / "data.csv")),
    ]:
        response = client.post("/v1/jobs/training", json=_body(**{field: value}))
        assert response.status_code == 422, (field, value, response.text)
        problem = response.json()
        assert field in problem["errors"][0]["path"], problem
    unknown = client.post("/v1/jobs/training", json=_body(source="sha256:" + "0" * 64))
    assert unknown.status_code == 422


def _body(**changes):  # type: ignore[no-untyped-def]
    from tests.jobs.conftest import job_body

    return job_body(**changes)


def test_malicious_archives_are_rejected_over_http(jobs_platform: Platform) -> None:
    import io
    import tarfile

    client = jobs_platform.client(jobs_platform.new_tenant())
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        link = tarfile.TarInfo("evil")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/shadow"
        archive.addfile(link)
    for data, media in [
        (zip_files({"../../escape.py": "x"}), "application/zip"),
        (buffer.getvalue(), "application/gzip"),
        (b"not an archive", "application/zip"),
    ]:
        response = client.post("/v1/code-packages", content=data, headers={"Content-Type": media})
        assert 400 <= response.status_code < 500, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
    wrong_type = client.post(
        "/v1/code-packages", content=b"x", headers={"Content-Type": "text/plain"}
    )
    assert 400 <= wrong_type.status_code < 500


def test_another_tenant_cannot_read_logs_metrics_or_package(jobs_platform: Platform) -> None:
    owner, intruder = jobs_platform.new_tenant(), jobs_platform.new_tenant()
    client, other = jobs_platform.client(owner), jobs_platform.client(intruder)
    package = upload(client, zip_files({"train.py": "print('secret')\n"}))
    job = submit(client, source=package)
    wait_for(client, job["id"], {"succeeded", "failed"})
    base = f"/v1/jobs/training/{job['id']}"
    for path, params in [
        (f"{base}/logs", {}),
        (f"{base}/logs", {"follow": "true"}),
        (f"{base}/metrics", {}),
        (f"{base}/metrics/history", {}),
        (f"/v1/code-packages/{package}", {}),
    ]:
        response = other.get(path, params=params)
        assert response.status_code == 404, (path, response.text)
    assert os.environ.get("ML_PLATFORM_JOB_ID") is None


def test_freed_capacity_goes_to_the_tenant_running_fewer_jobs(jobs_platform: Platform) -> None:
    a = jobs_platform.client(jobs_platform.new_tenant())
    b = jobs_platform.client(jobs_platform.new_tenant())
    sleeper = 'python -c "import time; time.sleep(600)"'
    big = {"cpu_cores": 2, "memory_gb": 1}  # the node has 4 cores: two such jobs fill it
    a1, a2 = submit(a, entrypoint=sleeper, compute=big), submit(a, entrypoint=sleeper, compute=big)
    started = [(a, a1), (a, a2)]
    try:
        wait_for(a, a1["id"], {"running"})
        wait_for(a, a2["id"], {"running"})
        a3 = submit(a, entrypoint=sleeper, compute=big)  # submitted first, but tenant a runs 2
        b1 = submit(b, entrypoint=sleeper, compute=big)
        started += [(a, a3), (b, b1)]
        waiting = wait_for_reason(b, b1["id"])
        assert waiting["pending_reason"].startswith("waiting for capacity: needs 2 CPU cores")
        assert a.delete(f"/v1/jobs/training/{a1['id']}").status_code == 204
        wait_for(b, b1["id"], {"running"})  # b runs nothing, a still runs a2: b goes first
        assert a.get(f"/v1/jobs/training/{a3['id']}").json()["status"] == "pending"
    finally:
        for client, job in started:
            client.delete(f"/v1/jobs/training/{job['id']}")
    for client, job in started:
        wait_for(client, job["id"], {"cancelled", "failed", "succeeded"})
