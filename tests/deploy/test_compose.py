"""The production compose file and images: valid for Compose, each container starts a command the
CLI accepts, and the GPU worker's model sandbox gets what bubblewrap needs from Docker."""

from __future__ import annotations

import hashlib
import json
import platform
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.main import get_command

from grader_api.cli.main import app

try:  # newer typer carries its own copy of click, and raises that copy's exceptions
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - typer on the click package
    from click.exceptions import ClickException

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SECCOMP_PROFILE = ROOT / "deploy" / "seccomp-sandbox.json"

# Docker's default seccomp profile (moby/profiles seccomp v0.2.3, the version moby vendors):
# SHA-256 of its canonical JSON, so the shipped profile provably keeps it unchanged.
DOCKER_DEFAULT_PROFILE_SHA256 = "9da637d2ab0a204fcbd91bd88f1be9e004a3acab61c571a9f5b8870e588a17d2"
# What bwrap --unshare-all --disable-userns calls that Docker's default allows only with
# CAP_SYS_ADMIN (bubblewrap.c: raw_clone with CLONE_NEW*, unshare(CLONE_NEWUSER), mount,
# umount2, pivot_root).
SANDBOX_SYSCALLS = {"clone", "mount", "pivot_root", "umount2", "unshare"}
# Docker's default capability set; worker-gpu adds none (checked below).
DOCKER_DEFAULT_CAPS = {
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}


def _services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


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
    # From the project directory, as a deployer runs it: Compose v1 reads the seccomp profile
    # relative to the working directory.
    res = subprocess.run([*tool, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True,
                         cwd=ROOT)
    assert res.returncode == 0, res.stderr


def test_compose_services_and_settings_match_the_code():
    from grader_api.config import Settings

    services = _services()
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

    assert services["worker-gpu"]["build"]["dockerfile"] == "Dockerfile.gpu"
    for name in ("api", "worker-cpu", "worker-gpu"):
        dockerfile = ROOT / services[name]["build"]["dockerfile"]
        assert dockerfile.is_file(), f"{name} builds from a missing {dockerfile.name}"


# --- what each container runs: ENTRYPOINT + (Compose command, else CMD), parsed by the real CLI ---


@dataclass
class ImageCommand:
    entrypoint: list[str]
    cmd: list[str] | None  # None: the base image's CMD, unknown here


def _final_stage(dockerfile_text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the last build stage: continuations joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in dockerfile_text.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        if (pending + line).strip():
            logical.append((pending + line).strip())
        pending = ""
    if pending.strip():
        logical.append(pending.strip())
    instructions = [(parts[0].upper(), parts[1] if len(parts) > 1 else "")
                    for parts in (line.split(None, 1) for line in logical)]
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    return instructions[starts[-1] + 1:] if starts else instructions


def _exec_form(keyword: str, arguments: str) -> list[str]:
    try:
        value = json.loads(arguments)
    except ValueError:
        value = None
    if not (isinstance(value, list) and all(isinstance(item, str) for item in value)):
        pytest.fail(f"`{keyword} {arguments}` is in shell form; write it in exec (JSON) form, "
                    f'e.g. {keyword} ["grade", "..."]: the shell form runs under /bin/sh -c, which '
                    "does not pass signals on, and cannot be checked against the CLI")
    return value


def _image_command(dockerfile_text: str) -> ImageCommand:
    entrypoint: list[str] = []
    cmd: list[str] | None = None
    for keyword, arguments in _final_stage(dockerfile_text):
        if keyword == "CMD":
            cmd = _exec_form(keyword, arguments)
        elif keyword == "ENTRYPOINT":
            entrypoint = _exec_form(keyword, arguments)
            if cmd is None:
                cmd = []  # ENTRYPOINT resets a CMD inherited from the base image
    return ImageCommand(entrypoint, cmd)


def _compose_argv(value: str | list[str]) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else list(value)


def _effective_argv(image: ImageCommand, service: dict) -> list[str]:
    """What Docker executes for a container of this image with this Compose service's settings."""
    entrypoint, cmd = image.entrypoint, image.cmd
    if "entrypoint" in service:
        entrypoint, cmd = _compose_argv(service["entrypoint"]), []  # drops the image's CMD too
    if "command" in service:
        cmd = _compose_argv(service["command"])
    if cmd is None:
        pytest.fail("the image's command would come from its base image: give it a CMD")
    return entrypoint + cmd


def _grade_args(argv: list[str]) -> list[str]:
    if len(argv) >= 2 and Path(argv[0]).name == "tini" and argv[1] == "--":
        argv = argv[2:]
    assert argv[:1] == ["grade"], f"the container runs {argv}, not the grade command"
    return argv[1:]


def _unparsed(ctx) -> list[str]:
    # A group's context keeps its subcommand and that command's arguments here (click renamed
    # the attribute in 8.2).
    protected = ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args
    return [*protected, *ctx.args]


def _parse_cli(args: list[str]):
    """The context of the command `grade ARGS` would run, parsed by the real CLI without running
    anything; raises the CLI's ClickException where it would refuse. (Not --help: click handles
    --help before it rejects extra arguments.)"""
    command = get_command(app)
    ctx = command.make_context("grade", list(args), resilient_parsing=False)
    while hasattr(command, "resolve_command"):  # a group: descend into its subcommand
        rest = _unparsed(ctx)
        if not rest:
            ctx.fail("Missing command.")
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)
    return ctx


def _accepted(argv: list[str]):
    args = _grade_args(argv)
    try:
        return _parse_cli(args)
    except ClickException as err:
        pytest.fail(f"`{shlex.join(argv)}` is refused by the CLI: {err.format_message()}")


def test_every_service_built_here_starts_a_command_the_cli_accepts():
    services = _services()
    built = {name: svc for name, svc in services.items() if "build" in svc}
    assert {"api", "worker-cpu", "worker-gpu"} <= set(built)
    started = {}
    for name, service in built.items():
        build = service["build"]
        context = ROOT / (build.get("context", ".") if isinstance(build, dict) else build)
        dockerfile = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
        image = _image_command((context / dockerfile).read_text())
        started[name] = _accepted(_effective_argv(image, service))

    assert started["api"].info_name == "serve"
    for name, queue in (("worker-cpu", "cpu"), ("worker-gpu", "gpu")):
        assert started[name].info_name == "worker", name
        assert started[name].params["queues"] == queue, name


def test_each_image_run_without_a_command_starts_its_default():
    dockerfiles = sorted(ROOT.glob("Dockerfile*"))
    assert {p.name for p in dockerfiles} >= {"Dockerfile", "Dockerfile.gpu"}
    for path in dockerfiles:
        _accepted(_effective_argv(_image_command(path.read_text()), {}))
    gpu = _accepted(_effective_argv(_image_command((ROOT / "Dockerfile.gpu").read_text()), {}))
    assert (gpu.info_name, gpu.params["queues"]) == ("worker", "gpu")


def test_an_entrypoint_that_already_names_the_command_fails_the_check():
    """An ENTRYPOINT that holds `grade worker` plus Compose's `command` gives
    `grade worker --queues gpu grade worker ...`: the checks above must catch it."""
    image = _image_command('FROM python:3.11-slim\n'
                           'ENTRYPOINT ["/usr/bin/tini", "--", "grade", "worker", "--queues", "gpu"]\n')
    argv = _effective_argv(image, _services()["worker-gpu"])
    assert argv[2:6] == ["grade", "worker", "--queues", "gpu"] and argv[6:8] == ["grade", "worker"]
    with pytest.raises(ClickException, match="unexpected extra argument"):
        _parse_cli(_grade_args(argv))
    with pytest.raises(pytest.fail.Exception, match="refused by the CLI"):
        _accepted(argv)


def test_a_shell_form_command_is_refused_with_the_reason():
    with pytest.raises(pytest.fail.Exception, match=r"shell form; write it in exec \(JSON\) form"):
        _image_command("FROM python:3.11-slim\nCMD grade worker --queues gpu\n")


def test_the_last_cmd_of_the_last_stage_wins():
    text = ('FROM python:3.11-slim AS build\nENTRYPOINT ["false"]\nCMD ["false"]\n'
            'FROM python:3.11-slim\nCMD ["grade", "serve"]\n# CMD ["false"]\n'
            'ENTRYPOINT ["/usr/bin/tini", \\\n  "--"]\nCMD ["grade", "worker"]\n')
    assert _effective_argv(_image_command(text), {}) == ["/usr/bin/tini", "--", "grade", "worker"]


# --- the GPU worker's seccomp profile: Docker's default plus what bubblewrap needs ---


def _canonical_sha256(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_seccomp_profile_is_dockers_default_plus_only_the_sandbox_calls():
    profile = json.loads(SECCOMP_PROFILE.read_text())
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    *default_rules, added = profile["syscalls"]
    default = {**profile, "syscalls": default_rules}
    assert _canonical_sha256(default) == DOCKER_DEFAULT_PROFILE_SHA256, \
        "the rules before the sandbox rule are no longer Docker's default profile"
    assert set(added["names"]) == SANDBOX_SYSCALLS and len(added["names"]) == len(SANDBOX_SYSCALLS)
    assert added["action"] == "SCMP_ACT_ALLOW"
    assert not ({"args", "includes", "excludes"} & set(added)), "the sandbox rule is unconditional"
    assert "bubblewrap" in added.get("comment", "")


def test_worker_gpu_runs_with_the_sandbox_profile():
    worker = _services()["worker-gpu"]
    options = worker.get("security_opt", [])
    assert "seccomp=deploy/seccomp-sandbox.json" in options
    assert "seccomp=unconfined" not in options
    assert {"apparmor=unconfined", "systempaths=unconfined"} <= set(options)
    assert not worker.get("privileged") and not worker.get("cap_add")


_SECCOMP_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
                "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
_DOCKER_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def _rule_applies(rule: dict, arch: str, caps: set[str], kernel: tuple[int, ...]) -> bool:
    """Docker's filter (moby/profiles seccomp_linux.go) of a profile rule for one container."""
    def minimum(value: str) -> tuple[int, ...]:
        return tuple(int(n) for n in value.split("."))

    excludes, includes = rule.get("excludes") or {}, rule.get("includes") or {}
    if arch in (excludes.get("arches") or []) or caps & set(excludes.get("caps") or []):
        return False
    if excludes.get("minKernel") and kernel >= minimum(excludes["minKernel"]):
        return False
    if includes.get("arches") and arch not in includes["arches"]:
        return False
    if not set(includes.get("caps") or []) <= caps:
        return False
    return not (includes.get("minKernel") and kernel < minimum(includes["minKernel"]))


def _compiled_like_runc(profile: dict, caps: set[str]) -> str:
    """libseccomp's pseudo-code of the filter runc loads from `profile` for a container with
    `caps` on this machine's architecture (native only)."""
    seccomp = pytest.importorskip("pyseccomp")
    arch = _DOCKER_ARCH.get(platform.machine())
    if arch is None:
        pytest.skip(f"no Docker architecture name known here for {platform.machine()}")
    kernel = tuple(int(n) for n in re.findall(r"\d+", platform.release())[:2])

    def action(name: str, errno: int | None) -> int:
        return seccomp.ALLOW if name == "SCMP_ACT_ALLOW" else seccomp.ERRNO(errno or 1)

    default = action(profile["defaultAction"], profile.get("defaultErrnoRet"))
    flt = seccomp.SyscallFilter(default)
    for rule in profile["syscalls"]:
        rule_action = action(rule["action"], rule.get("errnoRet"))
        if rule_action == default or not _rule_applies(rule, arch, caps, kernel):
            continue  # runc skips rules that repeat the default action
        args = [seccomp.Arg(a["index"], _SECCOMP_OPS[a["op"]], a["value"], a.get("valueTwo", 0))
                for a in rule.get("args") or []]
        for name in rule["names"]:
            try:
                flt.add_rule(rule_action, name, *args)
            except OSError:
                continue  # a call this libseccomp does not know: runc skips it too
    with tempfile.TemporaryFile("w+") as out:
        flt.export_pfc(out)
        out.seek(0)
        return out.read()


def _unconditional_action(pfc: str, name: str) -> str | None:
    """The action compiled for every call of `name`; None where it depends on the arguments or
    the call is left to the default action."""
    found = re.search(rf'# filter for syscall "{re.escape(name)}" \(\d+\).*\n'
                      r"\s*if \(\$syscall == \d+\)\n\s*action (\S+);", pfc)
    return found.group(1) if found else None


def test_seccomp_profile_lets_bubblewrap_build_its_namespaces():
    """Compiled with libseccomp as runc does, for the worker's container (Docker's default
    capabilities, no CAP_SYS_ADMIN): the sandbox calls are allowed whatever their arguments, which
    Docker's default alone does not do. libseccomp keeps the first unconditional rule of a call,
    so this also proves no earlier rule shadows the added one."""
    profile = json.loads(SECCOMP_PROFILE.read_text())
    with_rule = _compiled_like_runc(profile, DOCKER_DEFAULT_CAPS)
    default_only = _compiled_like_runc({**profile, "syscalls": profile["syscalls"][:-1]}, DOCKER_DEFAULT_CAPS)
    for name in sorted(SANDBOX_SYSCALLS):
        assert _unconditional_action(with_rule, name) == "ALLOW", name
        assert _unconditional_action(default_only, name) is None, name
    # clone3 stays ENOSYS as in Docker's default, so glibc falls back to clone (allowed above).
    assert _unconditional_action(with_rule, "clone3") == "ERRNO(38)"
    assert _unconditional_action(with_rule, "bpf") is None  # still refused by default
