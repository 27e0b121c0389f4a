"""The `grade` command. Each group of commands lives in its own module and registers here.

Heavy imports (torch, FastAPI, SQLAlchemy) happen inside the commands, so `grade --help`
and the student commands stay fast.
"""

from __future__ import annotations

import typer

from grader_api.cli import account, offline, server, splits, student, team

app = typer.Typer(
    name="grade",
    help="heldout: submit predictions or models, see scores and leaderboards, run the grader.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

student.register(app)   # login, submit, status, submissions, diff, leaderboard, tasks
team.register(app)      # team create, join, show, leave
account.register(app)   # courses, name set, token rotate
offline.register(app)   # score
splits.register(app)    # split import, split info
server.register(app)    # serve, worker, admin ...

if __name__ == "__main__":  # pragma: no cover
    app()
