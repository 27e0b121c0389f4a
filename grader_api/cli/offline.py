"""`grade score`: score a predictions file against a local split, with no server.

numpy and the scoring code are imported inside the command so `grade --help` stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from grader_api.cli.safe_text import for_terminal

DATA_ROOT_ENV = "HELDOUT_DATA_ROOT"


def _split_dir(task_file: Path, task_split: str, override: Path | None) -> Path:
    """--split as given (relative to the working directory); else the task's split, relative
    paths resolved against $HELDOUT_DATA_ROOT when set, else the task file's directory."""
    if override is not None:
        return override
    p = Path(task_split)
    if p.is_absolute():
        return p
    root = os.environ.get(DATA_ROOT_ENV) or str(task_file.resolve().parent)
    return Path(root) / p


def score(
    task: Annotated[Path, typer.Option("--task", help="Task YAML file.")],
    predictions: Annotated[Path, typer.Option("--predictions", help="Predictions file (.csv, .npy, .npz).")],
    split: Annotated[
        Optional[Path], typer.Option("--split", help="Split directory (overrides the task's split).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
) -> None:
    """Score a predictions file against a held-out split on this machine."""
    import json

    from scoring.errors import PredictionFormatError, SplitError, TaskFileError
    from scoring.evaluate import evaluate
    from scoring.parsers import parse_predictions
    from scoring.report import format_report
    from scoring.splits import load_split
    from scoring.tasks import load_task

    try:
        spec = load_task(task)
        split_data = load_split(_split_dir(task, spec.split, split), spec)
        if not predictions.is_file():
            raise PredictionFormatError("file not found", code="not_found", filename=str(predictions))
        preds = parse_predictions(predictions, spec, split_data, filename=predictions.name)
        report = evaluate(spec, split_data, preds, public_detail=True)  # the caller holds the labels
    except (TaskFileError, SplitError, PredictionFormatError) as exc:
        typer.echo(f"error: {for_terminal(exc)}", err=True)  # messages quote the file's own text
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(report, allow_nan=False))
    else:
        typer.echo(format_report(report, spec), nl=False)


def register(app: typer.Typer) -> None:
    app.command("score")(score)
