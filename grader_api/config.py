"""The one settings class of the service. Every knob is read here, from the environment.

`DATABASE_URL` and `REDIS_URL` keep their conventional names; everything else is
`HELDOUT_<NAME>`. Nothing is read at import time: call `get_settings()` (cached) or build
`Settings(...)` explicitly (tests do).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HELDOUT_", populate_by_name=True, extra="ignore")

    # --- where things live -------------------------------------------------------------
    var_dir: Path = Path("var")
    # default= by keyword: type checkers read a field's default only from that keyword
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "HELDOUT_DATABASE_URL", "database_url")
    )
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "HELDOUT_REDIS_URL", "redis_url")
    )
    storage_dir: Path | None = None        # default: <var_dir>/storage
    data_root: Path | None = None          # default: <var_dir>/data; task splits resolve under it
    datasets_dir: Path = Path("datasets")  # task YAML files shipped with the repo (demo seeding)

    # --- queue and reliability -----------------------------------------------------------
    queue_prefix: str = ""                 # prefixes Celery queue names and Redis keys (tests, shared brokers)
    max_attempts: int = 3                  # grading attempts per submission before it fails with a reason
    task_time_limit_s: int = 900           # Celery hard limit; must stay below the visibility timeout
    visibility_timeout_s: int = 3600       # Redis broker redelivery of unacked messages
    stuck_queued_after_s: int = 120        # sweeper re-sends a submission queued this long
    stuck_running_after_s: int = 960       # sweeper re-queues a submission running this long
    outbox_grace_s: float = 5.0            # sweeper leaves fresh unsent outbox rows to the relay
    sweep_interval_s: float = 15.0
    sweeper_enabled: bool = True           # a sweeper thread in `grade serve`
    storage_gc_interval_s: float = 3600.0  # how often the sweeper removes files no submission refers to
    storage_gc_age_s: float = 3600.0       # ... once they have been left alone this long
    inprocess_workers: int = 2             # embedded worker (no REDIS_URL): threads per queue (files, models)
    model_device: str = "auto"             # model evaluation device: auto (cuda when present), cpu, cuda
    model_memory_limit_mb: int = 4096      # memory of one sandboxed model run (host RAM)
    sandbox_dir: Path | None = None        # where sandbox job dirs and the input cache live (default: system temp)
    # auto: bubblewrap, else model files are refused; fallback (root only, weaker, never chosen by
    # itself): unshare + setpriv, and start-up refuses while the sandbox user could read our data
    sandbox_mode: Literal["auto", "fallback"] = "auto"
    auto_migrate: bool = True              # apply Alembic migrations when the app starts

    # --- limits --------------------------------------------------------------------------
    rate_limit: str = "300/minute"         # every authenticated API request, per user
    upload_rate_limit: str = "30/minute"   # uploads, per user (on top of the task's daily limit)
    # Failed authentications (unknown or revoked bearer tokens, failed web log-ins) per client
    # address. Past it, that address gets 429 for every bearer request and log-in, valid tokens
    # included, until the window has room: the token is not looked up at all.
    auth_failure_limit: str = "20/minute"
    # Uploads validated at once per API process (0: one per CPU), at most one per user so one
    # student's uploads wait behind each other, not in front of a classmate's. Validation is CPU
    # work; more at once only adds memory and contention, the rest wait their turn without
    # holding a thread or a database connection.
    upload_validation_slots: int = 0
    # CPU seconds one upload's row-by-row check may use; past it the upload is refused (422).
    upload_validation_cpu_s: float = 20.0

    @property
    def effective_upload_validation_slots(self) -> int:
        return self.upload_validation_slots or max(1, os.cpu_count() or 1)

    # --- web pages ------------------------------------------------------------------------
    secret_key: str | None = None          # signs browser sessions; default: a random key in <var_dir>
    # The address students reach this server at (e.g. https://grader.example.edu), used in the
    # sign-in links of invites.csv. Unset: the API uses the address the instructor's request came
    # to, which behind a proxy may not be the public one.
    public_url: str | None = None

    # --- demo ----------------------------------------------------------------------------
    demo: bool = False
    log_level: str = "INFO"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return _normalise_db_url(self.database_url)
        return f"sqlite:///{(self.var_dir / 'heldout.sqlite3').as_posix()}"

    @property
    def effective_storage_dir(self) -> Path:
        return self.storage_dir or self.var_dir / "storage"

    @property
    def effective_data_root(self) -> Path:
        return self.data_root or self.var_dir / "data"

    @property
    def uses_celery(self) -> bool:
        return bool(self.redis_url)

    def queue_name(self, queue: str) -> str:
        """Broker queue name for a logical queue (`cpu`, `gpu`)."""
        return f"{self.queue_prefix}{queue}"

    def ensure_dirs(self) -> None:
        """Create the local directories the embedded default needs (called at startup, not import)."""
        for d in (self.effective_storage_dir, self.effective_data_root):
            d.mkdir(parents=True, exist_ok=True)
        if not self.database_url:
            self.var_dir.mkdir(parents=True, exist_ok=True)


def _normalise_db_url(url: str) -> str:
    # Hosting platforms hand out postgres:// URLs; SQLAlchemy wants an explicit driver (psycopg 3).
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
