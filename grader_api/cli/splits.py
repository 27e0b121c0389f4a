"""`grade split import` and `grade split info`: build and inspect held-out split directories.

Runs on the instructor's machine, offline. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

split_app = typer.Typer(help="Build and inspect held-out split directories.",
                        no_args_is_help=True)


class ImportFormat(str, Enum):
    cifar10 = "cifar10"
    cifar100 = "cifar100"
    fashion_mnist = "fashion-mnist"
    image_folder = "image-folder"


class IdStyle(str, Enum):
    row_index = "index"   # not `index`: that would hide str.index
    filename = "filename"


def _load_task(task: Optional[Path]):
    if task is None:
        return None
    from scoring.tasks import load_task
    return load_task(task)


@split_app.command("import")
def import_cmd(
    format: Annotated[ImportFormat, typer.Option("--format", help="On-disk format of --source.")],
    source: Annotated[Path, typer.Option("--source", help="Folder holding the data (as torchvision "
                                                          "downloaded it, or an ImageFolder tree).")],
    out: Annotated[Path, typer.Option("--out", help="Split directory to create.")],
    task: Annotated[Optional[Path], typer.Option("--task", help="Task YAML to validate against "
                                                                "(required for image-folder).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Public/private partition seed "
                                                               "(default: random, recorded).")] = None,
    train: Annotated[bool, typer.Option("--train", help="Import the training files instead of "
                                                        "the test files.")] = False,
    resize: Annotated[bool, typer.Option("--resize", help="image-folder: resize images to the "
                                                          "task's image_size.")] = False,
    ids: Annotated[IdStyle, typer.Option("--ids", help="image-folder: ids are row indices or "
                                                       "image file names (stems).")] = IdStyle.row_index,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out if it exists.")] = False,
) -> None:
    """Create a split directory (labels.npy, ids.txt, inputs.npy, split.json) from local files."""
    from scoring.errors import ScoringError
    from scoring.split_import import import_split
    from scoring.splits import describe_split

    try:
        spec = _load_task(task)
        root = import_split(format.value, source, out, task=spec, seed=seed, train=train,
                            resize=resize, ids=ids.value, overwrite=overwrite)
        info = describe_split(root, spec)
    except ScoringError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {root}: {info['n']} items, labels {info['labels_shape']}, "
               f"inputs {info['inputs']['shape'] if info['inputs'] else None}, seed {info['seed']}")


@split_app.command("info")
def info_cmd(
    directory: Annotated[Path, typer.Argument(help="Split directory.")],
    task: Annotated[Optional[Path], typer.Option("--task", help="Task YAML: validate and name "
                                                                "the classes.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a split's size, shapes, seed and per-class counts (instructor's terminal only)."""
    from scoring.errors import ScoringError
    from scoring.splits import describe_split

    try:
        info = describe_split(directory, _load_task(task))
    except ScoringError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"split    {info['path']}")
    typer.echo(f"items    {info['n']} ({info['public']} public with this task's fraction)")
    typer.echo(f"labels   {tuple(info['labels_shape'])} {info['labels_dtype']}")
    inputs = info["inputs"]
    typer.echo(f"inputs   {tuple(inputs['shape'])} {inputs['dtype']}" if inputs else "inputs   none")
    typer.echo(f"seed     {info['seed']}   source {info['source']}   created {info['created']}")
    typer.echo("counts   " + ", ".join(f"{k}: {v}" for k, v in info["class_counts"].items()))


def register(app: typer.Typer) -> None:
    app.add_typer(split_app, name="split")
