"""The one-line progress display of ``job.wait()``: only on a terminal, silent otherwise."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

__all__ = ["WaitProgress"]


class WaitProgress:
    """``with WaitProgress(job_id) as progress: progress.update(job)``.

    On a TTY (stderr) a Rich live line: ``job <id>  running  0:12  accuracy=0.91``. When
    stderr is not a terminal (logs, CI, pipes) it prints nothing at all.
    """

    def __init__(self, job_id: str) -> None:
        self._job_id = job_id
        self._started = time.monotonic()
        self._live: Any = None
        self._text = ""

    def __enter__(self) -> WaitProgress:
        from rich.console import Console

        console = Console(stderr=True)
        if console.is_terminal:
            from rich.live import Live

            self._live = Live("", console=console, transient=False, refresh_per_second=4)
            self._live.__enter__()
        return self

    @property
    def active(self) -> bool:
        return self._live is not None

    def line(self, status: str, metrics: dict[str, float]) -> str:
        elapsed = int(time.monotonic() - self._started)
        minutes, seconds = divmod(elapsed, 60)
        text = f"job {self._job_id}  {status}  {minutes}:{seconds:02d}"
        if metrics:
            name = sorted(metrics)[-1] if "loss" not in metrics else "loss"
            shown = {name: metrics[name]}
            for extra in ("accuracy",):
                if extra in metrics and extra not in shown:
                    shown[extra] = metrics[extra]
            text += "  " + "  ".join(f"{k}={v:.4g}" for k, v in shown.items())
        return text

    def update(self, status: str, metrics: dict[str, float]) -> None:
        if self._live is None:
            return
        from rich.text import Text

        self._text = self.line(status, metrics)
        self._live.update(Text(self._text))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)
            self._live = None
