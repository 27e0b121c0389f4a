"""`grade team ...`: form a team for a task, join one by its code, show it, leave it.

Same conventions as the other student commands (grader_api/cli/student.py): `--json` for one
JSON document, one line on stderr and a documented exit code on any error, and every string
from the server printed through `safe_text`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from grader_api.cli import student as common
from grader_api.cli.safe_text import for_rich

team_app = typer.Typer(name="team", help="Teams: create one for a task, join one by its code, show or leave it.",
                       no_args_is_help=True)

TaskOpt = Annotated[str, typer.Option("--task", "-t", help="Task name.")]
CourseOpt = Annotated[str | None, typer.Option("--course", help="Course slug (when the task name is in several "
                                                                "of your courses).")]


def _print_team(team: dict[str, Any], *, heading: str) -> None:
    out = common._console()
    out.print(f"[bold]{for_rich(heading)}[/] · team [bold]{for_rich(team.get('name'))}[/] · "
              f"task {for_rich(team.get('task'))} ({len(team.get('members') or [])} of "
              f"{for_rich(team.get('team_size'))} members)")
    for m in team.get("members") or []:
        me = " (you)" if m.get("is_me") else ""
        out.print(f"  {for_rich(m.get('display_name'))}{me}")
    if team.get("join_code"):
        out.print(f"join code: [bold]{for_rich(team['join_code'])}[/]  "
                  f"(a teammate joins with `grade team join {for_rich(team['join_code'])}`)")
    if team.get("locked"):
        out.print("the team has a scored submission: members can no longer leave (course staff can move them)")


@team_app.command("create")
def create(task: TaskOpt, name: Annotated[str, typer.Option("--name", "-n", help="The team's name on the board.")],
           course: CourseOpt = None, as_json: common.JsonOpt = False) -> None:
    """Create a team for TASK and join it; prints the join code to share with your teammates."""
    def body() -> None:
        with common._client(as_json) as c:
            team = c.create_team(task, name, course)
        if as_json:
            common._emit_json(team)
            return
        _print_team(team, heading="created")

    common._guard(as_json, body)


@team_app.command("join")
def join(code: Annotated[str, typer.Argument(help="The join code a team member shared.")],
         as_json: common.JsonOpt = False) -> None:
    """Join the team whose join code a member shared with you."""
    def body() -> None:
        with common._client(as_json) as c:
            team = c.join_team(code)
        if as_json:
            common._emit_json(team)
            return
        _print_team(team, heading="joined")

    common._guard(as_json, body)


@team_app.command("show")
def show(task: TaskOpt, course: CourseOpt = None, as_json: common.JsonOpt = False) -> None:
    """Your team for TASK: its members (by display name) and its join code."""
    def body() -> None:
        with common._client(as_json) as c:
            mine = c.my_team(task, course)
        if as_json:
            common._emit_json(mine)
            return
        if mine.get("team"):
            _print_team(mine["team"], heading="your team")
        elif (mine.get("team_size") or 1) > 1:
            common._console().print(f"you submit alone for task {for_rich(task)}: create a team with "
                                    f"`grade team create --task {for_rich(task)} --name NAME` or join one "
                                    "with `grade team join CODE`")
        else:
            common._console().print(f"task {for_rich(task)} is done alone (no teams)")

    common._guard(as_json, body)


@team_app.command("leave")
def leave(task: TaskOpt, course: CourseOpt = None, as_json: common.JsonOpt = False) -> None:
    """Leave your team for TASK (refused once the team has a scored submission)."""
    def body() -> None:
        with common._client(as_json) as c:
            out = c.leave_team(task, course)
        if as_json:
            common._emit_json(out)
            return
        gone = " (you were its last member: the team is dissolved)" if out.get("dissolved") else ""
        common._console().print(f"left team {for_rich(out.get('team'))}{gone}")

    common._guard(as_json, body)


def register(app: typer.Typer) -> None:
    app.add_typer(team_app, rich_help_panel="Students")
