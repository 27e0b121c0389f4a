"""Account commands of `grade`: courses, display name, token rotation.

The same conventions as the other student commands (grader_api/cli/student.py): `--json`,
one-line errors and the documented exit codes. A rotated token is stored in the CLI's config
file (mode 0600) the way `grade login` stores one, and printed only with `--show`.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer

from grader_api.cli import config_store
from grader_api.cli.safe_text import for_rich, for_terminal
from grader_api.cli.student import EXIT_USAGE, JsonOpt, _client, _console, _die, _emit_json, _guard

token_app = typer.Typer(help="Your API token.", no_args_is_help=True)
name_app = typer.Typer(help="The name other students see on leaderboards.", no_args_is_help=True)

CourseOpt = Annotated[str | None, typer.Option("--course", envvar="GRADE_COURSE",
                                               help="Course slug; needed only when you are in several courses.")]


def register(app: typer.Typer) -> None:
    app.command("courses", rich_help_panel="Students")(courses)
    app.add_typer(token_app, name="token", rich_help_panel="Students")
    app.add_typer(name_app, name="name", rich_help_panel="Students")


def courses(as_json: JsonOpt = False) -> None:
    """Your courses, your role in each and the name other students see."""
    from rich.table import Table

    def body() -> None:
        with _client(as_json) as c:
            me = c.me()
        items = me.get("courses") or []
        if as_json:
            _emit_json({"name": me.get("name"), "courses": items})
            return
        t = Table(title=f"courses of {for_rich(me.get('name'))}", title_justify="left")
        for col in ("course", "title", "role", "display name", "time zone"):
            t.add_column(col)
        for x in items:
            t.add_row(*(for_rich(x.get(k) or "") for k in ("course", "title", "role", "display_name", "timezone")))
        out = _console()
        out.print(t)
        if not items:
            out.print("you are not enrolled in any course")

    _guard(as_json, body)


@name_app.command("set")
def set_name(name: Annotated[str, typer.Argument(help="3–40 characters, unique in the course")],
             course: CourseOpt = None, as_json: JsonOpt = False) -> None:
    """Choose your display name in a course."""

    def body() -> None:
        with _client(as_json) as c:
            slug = course or _only_course(c, as_json)
            out: dict[str, Any] = c.set_display_name(slug, name)
        if as_json:
            _emit_json(out)
        else:
            _console().print(f"your display name in {for_rich(out.get('course'))} is now "
                             f"[bold]{for_rich(out.get('display_name'))}[/]")

    _guard(as_json, body)


def _only_course(c, as_json: bool) -> str:
    slugs = [str(x.get("course")) for x in (c.me().get("courses") or [])]
    if len(slugs) == 1:
        return slugs[0]
    if not slugs:
        _die("you are not enrolled in any course", EXIT_USAGE, as_json)
    _die(f"you are in several courses ({', '.join(slugs)}): name one with --course", EXIT_USAGE, as_json)


@token_app.command("rotate")
def rotate(show: Annotated[bool, typer.Option("--show", help="Also print the new token.")] = False,
           as_json: JsonOpt = False) -> None:
    """A new token: every earlier one stops working. It is saved where `grade login` saves it."""
    creds = config_store.load()

    def body() -> None:
        with _client(as_json) as c:
            out: dict[str, Any] = c.rotate_token()
        token = str(out.get("token") or "")
        try:
            path = config_store.save(creds.server or "", token)
        except OSError as exc:
            # The old token is dead already: the new one must not be lost with the file.
            sys.stdout.write(f"{token}\n")
            _die(f"the new token (printed above, shown once) could not be saved to {config_store.config_path()}: "
                 f"{exc.strerror or exc}; run `grade login --server URL` with it", EXIT_USAGE, as_json)
        if as_json:
            _emit_json({"name": out.get("name"), "revoked": out.get("revoked"), "config": str(path),
                        **({"token": token} if show else {})})
        else:
            _console().print(f"new token for [bold]{for_rich(out.get('name'))}[/] saved to {for_rich(path)}; "
                             f"{for_rich(out.get('revoked'))} earlier token(s) revoked")
            if show:
                sys.stdout.write(f"{for_terminal(token)}\n")
        if os.environ.get(config_store.ENV_TOKEN):   # it wins over the file
            sys.stderr.write(f"warning: {config_store.ENV_TOKEN} is set and holds the old token, which no longer "
                             f"works: unset it (the new token is in {path})\n")

    _guard(as_json, body)
