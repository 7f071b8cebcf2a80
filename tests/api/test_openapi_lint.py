"""The committed openapi.json passes Redocly's linter (``redocly.yaml``) with zero errors.

The linter is ``@redocly/cli`` from ``tools/node`` (``make node``); warnings are printed, not
failed on (``redocly.yaml`` says which remain and why).
"""

from __future__ import annotations

import json
import os
import subprocess

from tests.node_tools import NODE_MODULES, REPO, require_node_tools

REDOCLY = NODE_MODULES / ".bin" / "redocly"


def _lint() -> dict[str, object]:
    require_node_tools()
    assert REDOCLY.is_file(), "@redocly/cli is not installed in tools/node: run `make node`"
    result = subprocess.run(
        [str(REDOCLY), "lint", "openapi.json", "--config", "redocly.yaml", "--format", "json"],
        cwd=REPO,
        env={**os.environ, "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.stdout.strip(), f"redocly printed no report:\n{result.stderr[-2000:]}"
    report: dict[str, object] = json.loads(result.stdout)
    return report


def test_openapi_json_has_zero_lint_errors() -> None:
    report = _lint()
    problems = report["problems"]
    assert isinstance(problems, list)
    errors = [
        f"{p['ruleId']}: {p['message']} at {p['location'][0]['pointer']}"
        for p in problems
        if p["severity"] == "error"
    ]
    assert not errors, "redocly lint errors:\n" + "\n".join(errors)
    totals = report["totals"]
    assert isinstance(totals, dict) and totals["errors"] == 0, totals
