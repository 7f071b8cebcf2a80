"""One stored log line of a job: what the live store, the archive and the API exchange."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class LogLine:
    """One stored log line."""

    id: int
    timestamp: datetime
    stream: str
    text: str

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "timestamp": self.timestamp.isoformat().replace("+00:00", "Z"),
            "stream": self.stream,
            "line": self.text,
        }

    def render(self) -> str:
        """The line as shown in plain-text log views."""
        ts = self.timestamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return f"{ts} [{self.stream}] {self.text}"
