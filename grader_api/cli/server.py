"""Server-side commands: `grade serve`, `grade worker`, `grade admin ...`.

Heavy imports happen inside the commands so `grade --help` stays fast.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

admin = typer.Typer(help="Administration: users, tasks, migrations, sweeping.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("worker")(worker)
    app.add_typer(admin, name="admin")


def _settings(**overrides):
    from grader_api.config import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _setup_logging(level: str) -> None:
    import logging

    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _owner_only_files() -> None:
    # Database, splits (labels), uploads, logs: nothing the service creates is for other users,
    # least of all the sandbox's (see docs/models.md, fallback mode).
    os.umask(0o077)


def _exit_cleanly_on_sigterm() -> None:
    # uvicorn re-raises the SIGTERM it handled once it has shut down; with the default action
    # that would end the process before atexit handlers run (the sandbox pool's cleanup).
    signal.signal(signal.SIGTERM, lambda _s, _f: sys.exit(128 + signal.SIGTERM))


def _sandbox_paths(settings) -> list[Path]:
    """The service's files a model must never read: database, splits, uploads, the var dir."""
    from sqlalchemy.engine import make_url

    paths = [settings.effective_data_root, settings.effective_storage_dir, settings.var_dir]
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        paths += [Path(url.database + suffix) for suffix in ("", "-wal", "-shm", "-journal")]
    return paths


def _check_sandbox(settings) -> None:
    """Say how model files will be run here; refuse to start where fallback would expose data."""
    from worker.sandbox.exposure import guest_python_problem, readable_by_guest
    from worker.sandbox.isolation import prefer_fallback, sandbox_status

    prefer_fallback(settings.sandbox_mode == "fallback")
    status = sandbox_status()
    typer.echo(f"heldout: model sandbox: {status.mode} ({status.reason})")
    if status.mode == "none":
        typer.echo("heldout: model files will be refused (prediction files are unaffected)", err=True)
    if status.mode != "fallback":
        return
    from worker.sandbox.pool import runtime_parent

    problem = guest_python_problem()
    if problem is not None:
        typer.echo(f"error: HELDOUT_SANDBOX_MODE=fallback runs models as nobody, who cannot run this "
                   f"Python with its packages ({sys.executable}): {problem}\nInstall the environment "
                   "where nobody can read it (not under a 0700 home directory) and start again.", err=True)
        raise typer.Exit(1)
    # The sandbox's own directory is meant for the guest (its inputs), and is not data.
    exposed = readable_by_guest(_sandbox_paths(settings), exclude=runtime_parent(settings.sandbox_dir))
    if exposed:
        shown = "\n  ".join(str(p) for p in exposed[:10])
        more = f"\n  … and {len(exposed) - 10} more" if len(exposed) > 10 else ""
        typer.echo(f"error: HELDOUT_SANDBOX_MODE=fallback runs models as nobody without a private file "
                   f"system, and nobody can read:\n  {shown}{more}\nMake them owner-only "
                   "(e.g. chmod -R go-rwx on the data root, storage and var directories) and start again.",
                   err=True)
        raise typer.Exit(1)


def serve(
    demo: bool = typer.Option(False, "--demo", help="seed a demo course (tasks, splits, users, submissions)"),
    host: str = typer.Option("127.0.0.1", help="address to bind"),
    port: int = typer.Option(8000, help="port"),
) -> None:
    """Run the API and web pages. Without REDIS_URL: SQLite under ./var, local storage and an
    in-process worker — no other servers needed."""
    import uvicorn

    from grader_api.app import create_app

    _owner_only_files()
    settings = _settings(demo=demo or None)
    _setup_logging(settings.log_level)
    mode = "celery workers via REDIS_URL" if settings.uses_celery else "in-process worker"
    typer.echo(f"heldout: database {_redact(settings.effective_database_url)}, {mode}; "
               f"http://{host}:{port}/  (API docs: /api/v1/docs)")
    if not settings.uses_celery:
        _check_sandbox(settings)
    _exit_cleanly_on_sigterm()
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


def _redact(url: str) -> str:
    # Never print a database password.
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def worker(
    queues: str = typer.Option("cpu,gpu", help="logical queues to consume: cpu, gpu or both"),
    concurrency: int = typer.Option(1, help="worker processes"),
    sweeper: bool = typer.Option(True, help="also run the sweeper loop in this process"),
) -> None:
    """Run a Celery worker (needs REDIS_URL and DATABASE_URL) plus the sweeper loop."""
    from grader_api.config import get_settings
    from grader_api.db import migrate

    _owner_only_files()
    settings = get_settings()
    _setup_logging(settings.log_level)
    if not settings.uses_celery:
        raise typer.BadParameter("REDIS_URL is not set: `grade serve` grades in-process without a worker")
    _check_sandbox(settings)
    migrate(settings.effective_database_url)
    names = [settings.queue_name(q.strip()) for q in queues.split(",") if q.strip()]
    # The Celery worker is a child process: its prefork pool must not fork a process that
    # already runs the sweeper thread.
    cmd = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", ",".join(names),
           "--concurrency", str(concurrency), "--loglevel", settings.log_level.upper(),
           "-n", f"heldout-{os.getpid()}@%h"]
    proc = subprocess.Popen(cmd)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda s, _f: proc.send_signal(s))
    sweep_thread = None
    if sweeper:
        from grader_api.db import get_database
        from worker.relays import make_relay
        from worker.sweeper import SweeperThread

        sweep_thread = SweeperThread(settings, make_relay(settings, get_database(settings.effective_database_url)))
        sweep_thread.start()
    code = proc.wait()
    if sweep_thread is not None:
        sweep_thread.stop()
        sweep_thread.relay.close()
    # Celery's pool processes end with os._exit (no atexit): their sandbox runtime directories
    # (cached split inputs, a spare's job dir) are removed here, now that they are gone.
    from worker.sandbox.pool import remove_dead_pools, runtime_parent

    remove_dead_pools(runtime_parent(settings.sandbox_dir))
    raise typer.Exit(code)


# --- admin ---------------------------------------------------------------------------------

def _db():
    from grader_api.config import get_settings
    from grader_api.db import get_database, migrate

    settings = get_settings()
    settings.ensure_dirs()
    migrate(settings.effective_database_url)
    return settings, get_database(settings.effective_database_url)


def _run(fn):
    from grader_api.cli.safe_text import for_terminal
    from grader_api.services.errors import DomainError

    try:
        return fn()
    except DomainError as exc:
        typer.echo(f"error: {for_terminal(exc.message)}", err=True)
        raise typer.Exit(1) from None


_COURSE_OPTION = typer.Option("default", "--course", help="the course's slug")


@admin.command("create-course")
def create_course(slug: str, title: str = typer.Option(..., help="the course's title"),
                  timezone: str = typer.Option("UTC", help="IANA time zone, e.g. America/Chicago"),
                  instructor: str = typer.Option(None, help="user name of its first instructor "
                                                            "(created if missing; their token is printed)")) -> None:
    """Create a course (and enrol its first instructor)."""
    import sqlalchemy as sa

    from grader_api.models import Role, User
    from grader_api.services import courses
    from grader_api.services.users import create_user as create

    _settings_, db = _db()

    def go():
        token = None
        with db.transaction() as s:
            course = courses.create_course(s, slug, title, timezone)
            if instructor:
                user = s.scalar(sa.select(User).where(User.name == instructor))
                if user is None:
                    user, token = create(s, instructor, "instructor", course=course)
                else:
                    courses.enroll(s, course, user, Role.INSTRUCTOR)
        typer.echo(f"created course '{course.slug}' ({course.title}, {course.timezone})")
        if instructor:
            typer.echo(f"instructor: '{instructor}'" + (f". Token (shown once):\n{token}" if token else ""))

    _run(go)


@admin.command("courses")
def list_courses() -> None:
    """List the courses on this server."""
    from grader_api.cli.safe_text import for_terminal
    from grader_api.services import courses

    _settings_, db = _db()
    with db.transaction() as s:
        for c in courses.list_courses(s):
            typer.echo(f"{c.slug}\t{for_terminal(c.title)}\t{c.timezone}")


@admin.command("enroll")
def enroll_user(course: str, name: str, role: str = typer.Option("student", help="student, ta or instructor")) -> None:
    """Enrol an existing user in a course (or change their role there)."""
    from grader_api.models import Role
    from grader_api.services import courses
    from grader_api.services.errors import InvalidInput
    from grader_api.services.users import get_user

    _settings_, db = _db()

    def go():
        try:
            role_value = Role(role)
        except ValueError:
            raise InvalidInput("role: expected 'student', 'ta' or 'instructor'") from None
        with db.transaction() as s:
            enrollment = courses.enroll(s, courses.get_course(s, course), get_user(s, name), role_value)
        typer.echo(f"'{name}' is {enrollment.role.value} of '{course}' (shown to students as "
                   f"'{enrollment.display_name}')")

    _run(go)


@admin.command("create-user")
def create_user(name: str, role: str = typer.Option("student", help="student, ta or instructor (in --course)"),
                course: str = _COURSE_OPTION) -> None:
    """Create a user enrolled in a course and print their token (shown once)."""
    from grader_api.services.courses import get_course
    from grader_api.services.users import create_user as create

    _settings_, db = _db()

    def go():
        with db.transaction() as s:
            user, token = create(s, name, role, course=get_course(s, course))
        typer.echo(f"created {role} '{user.name}' in '{course}'. Token (shown once):\n{token}")

    _run(go)


@admin.command("token")
def token(name: str, revoke_old: bool = typer.Option(False, help="revoke the user's other tokens")) -> None:
    """Issue a new token for an existing user."""
    from grader_api.services.users import new_token

    _settings_, db = _db()

    def go():
        with db.transaction() as s:
            typer.echo(new_token(s, name, revoke_old=revoke_old))

    _run(go)


@admin.command("revoke")
def revoke(name: str) -> None:
    """Revoke every token of a user."""
    from grader_api.services.users import revoke as do_revoke

    _settings_, db = _db()

    def go():
        with db.transaction() as s:
            typer.echo(f"revoked {do_revoke(s, name)} token(s) of '{name}'")

    _run(go)


roster_admin = typer.Typer(help="Course rosters from the LMS.", no_args_is_help=True)
admin.add_typer(roster_admin, name="roster")


@roster_admin.command("import")
def roster_import(course: str, roster_file: Path,
                  invites: Annotated[Path | None, typer.Option(
                      "--invites", help="also write invites.csv (student, email, one-time sign-in link) for "
                                        "students who have not joined yet")] = None,
                  base_url: Annotated[str | None, typer.Option(
                      "--base-url", help="the address students open, e.g. https://grader.example.edu "
                                         "(default: HELDOUT_PUBLIC_URL)")] = None) -> None:
    """Import a roster into COURSE: a Canvas gradebook export, or name,email[,role][,section].
    Prints what changed and every refused row with its line; importing the same file again
    changes nothing."""
    from grader_api.cli.safe_text import for_terminal
    from grader_api.roster import DEFAULT_MAX_BYTES
    from grader_api.services import invites as invite_service
    from grader_api.services.courses import get_course
    from grader_api.services.errors import InvalidInput
    from grader_api.services.roster_import import import_roster, parse_roster_file

    settings, db = _db()

    def go():
        base = base_url or settings.public_url
        if invites is not None and not base:
            raise InvalidInput("--invites needs the address students open: --base-url URL, or HELDOUT_PUBLIC_URL")
        try:
            with roster_file.open("rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size > DEFAULT_MAX_BYTES:   # refused before it is read
                    raise InvalidInput(f"roster: the file is {size / 2**20:.3g} MB; the limit is "
                                       f"{DEFAULT_MAX_BYTES / 2**20:.3g} MB")
                data = fh.read(DEFAULT_MAX_BYTES + 1)   # a pipe has no size: one byte over is enough
        except OSError as exc:
            raise InvalidInput(f"cannot read {roster_file}: {exc.strerror or exc}") from None
        parsed = parse_roster_file(data, roster_file.name)
        with db.transaction() as s:
            found = get_course(s, course)
            result = import_roster(s, found, parsed, actor=None)
            links = None
            if invites is not None:
                # The server's own authority: links for every student, whatever their other courses.
                links = invite_service.issue_invites(s, found, base_url=base, issuer=None).links
                # Written before the commit: if the file cannot be written, the links it would
                # hold are not stored either, and the earlier ones keep working.
                try:
                    _write_private(invites, invite_service.invites_csv(links))
                except OSError as exc:
                    raise InvalidInput(f"cannot write {invites}: {exc.strerror or exc}; nothing was imported") from None
        typer.echo(f"{course}: {result.added} added, {result.updated} updated, {result.unchanged} unchanged, "
                   f"{result.dropped} dropped, {len(result.refused)} refused ({result.format} roster)")
        for row in result.refused:
            typer.echo(f"line {row.line}: refused: {for_terminal(row.reason)}")
        for row in result.skipped:
            typer.echo(f"line {row.line}: skipped: {for_terminal(row.reason)}")
        if result.dropped_logins:
            typer.echo("dropped (kept, with their submissions): " + ", ".join(map(for_terminal, result.dropped_logins)))
        if result.drops_withheld:
            typer.echo(f"note: {result.drops_withheld}")
        if links is not None:
            typer.echo(f"wrote {len(links)} sign-in link(s) to {invites} (valid 14 days, one use each; "
                       "earlier unused links of these students stopped working)")

    _run(go)


def _write_private(path: Path, text: str) -> None:
    """Write `path` owner-only (its links sign people in), replacing it atomically."""
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@admin.command("add-task")
def add_task(task_file: Path, update: bool = typer.Option(False, help="update the task if it exists"),
             course: str = _COURSE_OPTION) -> None:
    """Create (or with --update, update) a task from a task YAML file. Its split must exist
    under the data root (HELDOUT_DATA_ROOT)."""
    import sqlalchemy as sa

    from grader_api.models import Task
    from grader_api.services import tasks as task_service
    from grader_api.services.courses import get_course

    settings, db = _db()
    text = task_file.read_text(encoding="utf-8")

    def go():
        with db.transaction() as s:
            found = get_course(s, course)
            mapping, _opts = task_service.parse_task_yaml(text)
            existing = s.scalar(sa.select(Task).where(Task.course_id == found.id, Task.name == mapping.get("name")))
            if existing is not None and update:
                task = task_service.update_task(s, settings, existing, text, task_service.CourseOptions())
                verb = "updated"
            else:
                task = task_service.create_task(s, settings, text, course=found)
                verb = "created"
        typer.echo(f"{verb} task '{task.name}' in '{course}' ({task.kind}, {task.metric})")

    _run(go)


@admin.command("sweep")
def sweep(gc: bool = typer.Option(False, "--gc", help="also remove stored files no submission refers to "
                                                    "(left alone longer than HELDOUT_STORAGE_GC_AGE_S)")) -> None:
    """One sweeper pass: re-send lost messages, re-queue stuck submissions."""
    from grader_api.storage import LocalStorage
    from worker.relays import make_relay
    from worker.storage_gc import collect_garbage
    from worker.sweeper import sweep_once

    settings, db = _db()
    relay = make_relay(settings, db)
    try:
        result = sweep_once(settings, relay)
        relay.wait_idle(600)  # embedded worker: grade what was re-queued before exiting
    finally:
        relay.close()
    typer.echo(result.as_dict())
    if gc:
        typer.echo(collect_garbage(db, LocalStorage(settings.effective_storage_dir),
                                   settings.storage_gc_age_s).as_dict())


@admin.command("migrate")
def migrate_cmd() -> None:
    """Apply database migrations (the server and workers also do this on start)."""
    settings, _db_ = _db()
    typer.echo(f"database at the latest revision: {_redact(settings.effective_database_url)}")
