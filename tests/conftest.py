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


def pytest_configure(config):
    config.addinivalue_line("markers", "fresh_database: the `course` fixture's app starts on an empty var dir "
                                       "and migrates a new database (tests of what start-up creates)")
