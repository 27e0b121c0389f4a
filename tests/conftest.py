"""Fixtures shared by more than one test folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest


@pytest.fixture
def world_traversable():
    """A directory every user may traverse (pytest's own temp tree is private to root), for tests
    that act as the fallback sandbox's user."""
    path = Path(tempfile.mkdtemp(prefix="heldout-world-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
