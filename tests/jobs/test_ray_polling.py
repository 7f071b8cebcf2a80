"""The Ray executor's status reads (issue 15): a job's end is noticed within a small fraction
of its run time, and long jobs are not read more often than ``poll_interval``."""

from __future__ import annotations

import pytest

from ml_platform.jobs.executors.ray import FIRST_POLL_SECONDS, poll_delay


def reads_until(end: float, poll_interval: float) -> tuple[float, int]:
    """The first read at or after ``end`` (seconds since the start) and how many reads ran."""
    at, reads = 0.0, 0
    while at < end:
        at += poll_delay(at, poll_interval)
        reads += 1
    return at, reads


@pytest.mark.parametrize("end", [0.3, 1.0, 2.6, 3.0, 6.0, 20.0])
def test_the_end_of_a_short_job_is_noticed_within_a_fiftieth_of_its_run(end: float) -> None:
    noticed, _ = reads_until(end, poll_interval=0.5)
    # (the former x1.5 back-off reached 0.5 s between reads by 1.5 s: up to 0.5 s late)
    assert noticed - end <= max(FIRST_POLL_SECONDS, 0.02 * noticed) + 1e-9


def test_a_long_job_is_read_every_poll_interval_at_most() -> None:
    assert poll_delay(3600.0, 0.5) == 0.5
    assert poll_delay(0.0, 0.5) == FIRST_POLL_SECONDS
    assert poll_delay(0.0, 0.01) == 0.01  # a poll_interval below the first delay wins
    _, reads = reads_until(600.0, poll_interval=0.5)
    assert reads < 600.0 / 0.5 + 200  # the fast start costs a bounded number of extra reads
