"""``train(source_dir=..., data=<local file>)`` against a live platform that runs the job.

The package the job runs holds the directory's files minus ``.git``, ``__pycache__``,
``.venv`` and ``.gitignore``d paths (the job lists what it got); packing the same directory
again uploads nothing (the proxy sees the existence check and no second upload); a local data
file is uploaded into the tenant's data area and the job reads it. Both clients.
"""

from __future__ import annotations

from pathlib import Path

from tests.client._proxy import FailingProxy
from tests.client.conftest import done, make_client
from tests.conftest import Platform

LISTING = """
import os
from pathlib import Path
from ml_platform import runtime
root = Path(__file__).resolve().parent
for path in sorted(p for p in root.rglob("*") if p.is_file()):
    print("FILE", path.relative_to(root).as_posix(), flush=True)
with runtime.open_data("r", runtime.data_path()) as handle:
    print("ROWS", sum(1 for _ in handle), flush=True)
"""


def _source(directory: Path) -> Path:
    files = {
        "train.py": LISTING,
        "keep.txt": "kept",
        "sub/helper.py": "X = 1\n",
        ".gitignore": "secret.txt\nbuild/\n*.log\n",
        "secret.txt": "do not ship",
        "build/out.bin": "artifact",
        "sub/debug.log": "noise",
        ".git/config": "[core]\n",
        "__pycache__/train.cpython-311.pyc": "bytecode",
        ".venv/lib/site.py": "venv",
    }
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory


async def test_source_dir_is_packed_without_ignored_paths_and_uploaded_once(
    job_platform: Platform, job_proxy: FailingProxy, kind: str, tmp_path: Path
) -> None:
    tenant = job_platform.new_tenant()
    source = _source(tmp_path / "project")
    rows = tmp_path / "rows.csv"
    rows.write_text("f0,label\n" + "".join(f"{i},1\n" for i in range(41)))
    client = make_client(kind, job_proxy.base_url, tenant.api_key)
    args = {"source_dir": source, "data": str(rows), "cpu_cores": 1, "memory_gb": 1}
    try:
        first = await done(client.train(name="packed", **args))
        await done(first.wait(polling_interval=0.1, timeout=120))
        logs = await done(first.get_logs(tail=100))
        second = await done(client.train(name="packed-again", **args))
        await done(second.wait(polling_interval=0.1, timeout=120))
    finally:
        await done(client.close())

    shipped = [line.removeprefix("FILE ") for line in logs.splitlines() if line.startswith("FILE ")]
    assert shipped == [".gitignore", "keep.txt", "sub/helper.py", "train.py"]
    assert "ROWS 42" in logs.splitlines()
    assert first.data.spec.data_path == second.data.spec.data_path == "data/rows.csv"
    assert first.data.spec.source == second.data.spec.source

    uploads = job_proxy.to("POST", "/v1/code-packages")
    checks = job_proxy.to("GET", "/v1/code-packages/")
    assert len(uploads) == 1 and len(checks) == 2  # the second train found it and sent nothing
    assert len(job_proxy.to("PUT", "/v1/data/rows.csv")) == 2
