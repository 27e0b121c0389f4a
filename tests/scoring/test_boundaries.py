"""The scoring core stays pure: no web, database or queue library, and no heavy import at
module import time (torch and pyarrow are imported where they are used)."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import importlib, pkgutil, sys
import scoring
for mod in pkgutil.walk_packages(scoring.__path__, "scoring."):
    importlib.import_module(mod.name)
banned = ("fastapi", "starlette", "sqlalchemy", "celery", "redis", "kombu", "httpx", "uvicorn",
          "grader_api", "worker", "torch", "pyarrow")
loaded = sorted(name for name in banned if name in sys.modules)
print(",".join(loaded))
"""


def test_importing_every_scoring_module_loads_no_service_library_and_no_torch():
    out = subprocess.run([sys.executable, "-c", CODE], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "", f"scoring imported at module import time: {out.stdout.strip()}"
