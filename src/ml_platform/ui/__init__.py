"""The web dashboard's built assets (sources in ``web/``, built by ``npm run build`` there).

The build is committed under ``static/`` so the wheel and ``make run`` need no Node and no CDN;
``tests/ui/test_ui_build.py`` rebuilds it and fails when the committed files drift.
"""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
"""``index.html`` and ``assets/``: what ``/ui`` serves."""
