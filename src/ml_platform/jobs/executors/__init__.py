"""Executors run a job's code somewhere: ``local`` (a subprocess) or ``ray`` (a Ray cluster)."""

from ml_platform.jobs.executors.base import Executor, JobLaunch, JobOutcome

__all__ = ["Executor", "JobLaunch", "JobOutcome"]
