"""Commands that run a whole pipeline: run, demo."""

from __future__ import annotations

import argparse
from pathlib import Path

from catbuilder.cli.common import (
    command,
)


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("pipeline", type=Path, help="pipeline file (YAML; see examples/pipeline.yaml)")
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="output directory (default: the file's workdir, else <file name>-run beside it)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (and a jobqueue cluster's batch script) and run nothing",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


@command(
    "run",
    "run the workflow a pipeline file describes; complete steps are kept, interrupted ones resume",
)(_run_args)
def _run(args: argparse.Namespace) -> int:
    from catbuilder.pipeline import Pipeline

    pipe = Pipeline.from_yaml(args.pipeline, workdir=args.workdir, progress=not args.no_progress)
    result = pipe.run(dry_run=args.dry_run)
    if args.no_progress and not args.dry_run:
        print(result.summary())
    return 0


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("outdir", type=Path, nargs="?", default=Path("catbuilder-demo"))
    p.add_argument("--n-objects", type=int, default=600, help="mock survey size")
    p.add_argument("--seed", type=int, default=42, help="random seed")
    p.add_argument("--epochs", type=int, default=12, help="small-CNN training epochs")
    p.add_argument("--workers", type=int, default=2, help="Dask workers")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


@command(
    "demo",
    "the packaged pipeline file on a mock survey: labels by crossmatch -> Zarr cutouts -> CNN "
    "-> catalog -> evaluation -> report.html",
)(_demo_args)
def _demo(args: argparse.Namespace) -> int:
    from catbuilder.pipeline import demo

    result = demo(
        args.outdir,
        n_objects=args.n_objects,
        seed=args.seed,
        epochs=args.epochs,
        workers=args.workers,
        progress=not args.no_progress,
    )
    if args.no_progress:
        print(result.summary())
    return 0
