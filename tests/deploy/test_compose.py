"""The production compose file: valid for Compose, and consistent with the code it runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


def _compose_tool() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def test_compose_config_accepted_by_compose():
    tool = _compose_tool()
    if tool is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed on this machine")
    res = subprocess.run([*tool, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_compose_services_and_settings_match_the_code():
    from grader_api.config import Settings

    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    assert {"postgres", "redis", "api", "worker-cpu", "worker-gpu"} <= set(services)

    # Every variable the app containers receive is one the settings class reads.
    env = services["api"]["environment"]
    known = set()
    for name, field in Settings.model_fields.items():
        known.add(name.upper())
        alias = field.validation_alias
        if isinstance(alias, str):
            known.add(alias.upper())
        elif alias is not None and hasattr(alias, "choices"):
            known.update(str(c).upper() for c in alias.choices)
    prefix = (Settings.model_config.get("env_prefix") or "").upper()
    known |= {prefix + k for k in list(known)}
    assert set(env) <= known, f"unknown settings in compose: {set(env) - known}"

    assert services["worker-cpu"]["command"][:4] == ["grade", "worker", "--queues", "cpu"]
    assert services["worker-gpu"]["command"][:4] == ["grade", "worker", "--queues", "gpu"]
    assert services["worker-gpu"]["build"]["dockerfile"] == "Dockerfile.gpu"
    for name in ("api", "worker-cpu", "worker-gpu"):
        dockerfile = ROOT / services[name]["build"]["dockerfile"]
        assert dockerfile.is_file(), f"{name} builds from a missing {dockerfile.name}"


def test_cli_commands_used_by_compose_exist():
    from typer.main import get_command

    from grader_api.cli.main import app

    group = get_command(app)
    assert "serve" in group.commands and "worker" in group.commands
