"""The committed clients are what `make clients` generates from the committed openapi.json."""

from __future__ import annotations

from pathlib import Path

from tests.generated_clients.conftest import CLIENTS, gen_clients_script


def test_committed_clients_match_a_fresh_generation(freshly_generated: Path) -> None:
    stale = gen_clients_script().stale_files(freshly_generated, CLIENTS)
    assert not stale, "clients/ is stale, run `make clients`:\n" + "\n".join(stale)


def test_generation_covers_both_clients(freshly_generated: Path) -> None:
    package = freshly_generated / "python" / "ml_platform_client"
    assert (package / "api" / "training_api.py").is_file()
    assert (freshly_generated / "typescript" / "api.ts").is_file()
    assert (CLIENTS / "typescript" / "package-lock.json").is_file()


def test_a_changed_or_missing_file_is_reported(freshly_generated: Path, tmp_path: Path) -> None:
    import shutil

    committed = tmp_path / "clients"
    shutil.copytree(freshly_generated, committed)
    (committed / "typescript" / "api.ts").write_text("// edited by hand\n")
    (committed / "python" / "ml_platform_client" / "models" / "problem.py").unlink()
    stale = gen_clients_script().stale_files(freshly_generated, committed)
    assert "typescript/api.ts" in stale
    assert "python/ml_platform_client/models/problem.py" in stale
