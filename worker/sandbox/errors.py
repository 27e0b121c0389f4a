"""Errors of model evaluation. `ModelRejected` messages are shown to students as-is."""

from __future__ import annotations


class ModelRejected(Exception):
    """The submission failed for a reason the student can act on; `str()` is that reason."""


class ModelRefused(ModelRejected):
    """Refused before any sandbox started (format, or a format the task cannot run): it held no
    grader, so it costs no submission."""


class ModelLimitExceeded(ModelRejected):
    """The run was stopped by a resource limit; `limit` says which (time, memory, cpu, output)."""

    def __init__(self, reason: str, limit: str):
        super().__init__(reason)
        self.limit = limit


class SandboxUnavailable(RuntimeError):
    """This machine cannot run a sandbox (an operator problem, not the student's)."""
