"""Every test here shares the worker's sandbox pool (one warm spare between evaluations)."""

from __future__ import annotations

import pytest

from worker.sandbox.isolation import sandbox_status


@pytest.fixture(scope="session", autouse=True)
def sandbox_mode() -> str:
    status = sandbox_status()
    if status.mode == "none":
        pytest.skip(f"no sandbox on this machine: {status.reason}")
    return status.mode
