"""Every test here shares the worker's sandbox pool (one warm spare between evaluations)."""

from __future__ import annotations

import pytest

from worker.sandbox.isolation import detect_mode


@pytest.fixture(scope="session", autouse=True)
def sandbox_mode() -> str:
    mode = detect_mode()
    if mode == "none":
        pytest.skip("no sandbox on this machine (needs bubblewrap, or root for the fallback)")
    return mode
