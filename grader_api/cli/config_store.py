"""Per-user settings of the `grade` CLI: which server, which token.

Stored as JSON in `$XDG_CONFIG_HOME/heldout/config.json` (default `~/.config/heldout/`),
mode 0600 because the token is a credential. `GRADE_SERVER` / `GRADE_TOKEN` in the
environment win over the file, so CI jobs and notebooks need no file at all.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

ENV_SERVER = "GRADE_SERVER"
ENV_TOKEN = "GRADE_TOKEN"
ENV_CONFIG_DIR = "GRADE_CONFIG_DIR"  # tests and shared machines point this elsewhere


@dataclass(frozen=True)
class Credentials:
    server: str | None
    token: str | None
    source: str  # "env", "file", "env+file" or "none": said in error messages

    @property
    def complete(self) -> bool:
        return bool(self.server and self.token)


def config_path() -> Path:
    explicit = os.environ.get(ENV_CONFIG_DIR)
    if explicit:
        return Path(explicit) / "config.json"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "heldout" / "config.json"


def read_file() -> dict[str, str]:
    path = config_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        # A damaged file must not crash every command; `grade login` rewrites it.
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def save(server: str, token: str) -> Path:
    """Write the file atomically with mode 0600 from the first byte (no window where it is world-readable)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"server": normalize_server(server), "token": token}, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    os.chmod(path, 0o600)
    return path


def load() -> Credentials:
    stored = read_file()
    env_server, env_token = os.environ.get(ENV_SERVER), os.environ.get(ENV_TOKEN)
    server = env_server or stored.get("server")
    token = env_token or stored.get("token")
    used = {"env" for v in (env_server, env_token) if v} | {
        "file" for k, v in (("server", env_server), ("token", env_token)) if not v and stored.get(k)
    }
    source = "+".join(sorted(used)) if used else "none"
    return Credentials(server=normalize_server(server) if server else None, token=token, source=source)


def normalize_server(url: str) -> str:
    """Accept `host:port` and trailing slashes; the client appends `/api/v1/...`."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url
