"""Commands that run a whole workflow: run (a pipeline file), demo, survey."""

from __future__ import annotations

import argparse
from pathlib import Path

from catbuilder.cli.common import (
    command,
    conf,
    cutout_options,
    cutout_size,
    output_option,
    resolved_output,
    where_options,
)


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("pipeline", type=Path, help="pipeline file (YAML; see examples/pipeline.yaml)")
    p.add_argument(
        "-o",
        "--output",
        "--workdir",
        dest="workdir",
        type=Path,
        default=None,
        help="the run's work directory, where every output goes (default: the file's "
        "workdir, else <file name>-run beside it)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check the run whole, print the plan (and a jobqueue cluster's batch script), "
        "run nothing",
    )
    where_options(p, "the file's cluster section")


@command(
    "run",
    "run the workflow a pipeline file describes; complete steps are kept, interrupted ones resume",
)(_run_args)
def _run(args: argparse.Namespace) -> int:
    from catbuilder.pipeline import Pipeline

    where = {k: v for k, v in (("kind", args.cluster), ("workers", args.workers)) if v is not None}
    pipe = Pipeline.from_yaml(
        args.pipeline,
        workdir=args.workdir,
        overrides={"cluster": where} if where else None,
        progress=not args.no_progress,
    )
    result = pipe.run(dry_run=args.dry_run)
    if args.no_progress and not args.dry_run:
        print(result.summary())
    return 0


def _demo_args(p: argparse.ArgumentParser) -> None:
    output_option(p, "the run's work directory (default: catbuilder-demo)", positional=True)
    p.add_argument("--n-objects", type=int, default=600, help="mock survey size")
    p.add_argument("--seed", type=int, default=42, help="random seed")
    p.add_argument("--epochs", type=int, default=12, help="small-CNN training epochs")
    where_options(p, "a LocalCluster of 2 workers")


@command(
    "demo",
    "the packaged pipeline file on a mock survey: labels by crossmatch -> Zarr cutouts -> CNN "
    "-> catalog -> evaluation -> report.html",
)(_demo_args)
def _demo(args: argparse.Namespace) -> int:
    from catbuilder.pipeline import demo

    result = demo(
        resolved_output(args, Path("catbuilder-demo")),
        cluster=args.cluster,
        n_objects=args.n_objects,
        seed=args.seed,
        epochs=args.epochs,
        workers=2 if args.workers is None else args.workers,
        progress=not args.no_progress,
    )
    if args.no_progress:
        print(result.summary())
    return 0


def _survey_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("table", help="source table: Parquet (read a batch at a time), FITS, CSV")
    p.add_argument("tiles", nargs="+", help="FITS tiles, directories, globs, or an index .parquet")
    p.add_argument("--model-dir", type=Path, required=True, help="a saved model's directory")
    p.add_argument("-o", "--output", type=Path, required=True, help="the run's directory")
    cutout_options(p)
    p.add_argument(
        "--partition-rows",
        type=int,
        default=None,
        help=f"objects per sky partition at most {conf('survey.partition-rows')}",
    )
    p.add_argument(
        "--highest-order",
        type=int,
        default=None,
        help=f"finest HEALPix order of a partition {conf('survey.highest-order')}",
    )
    p.add_argument("--id-col", default=None, help=f"id column {conf('sources.id-columns')}")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="partition the sources and print the plan (tasks, bytes, projected time); cut nothing",
    )
    p.add_argument(
        "--cores-per-node", type=int, default=32, help="for the plan's projection of nodes"
    )
    where_options(p, "a LocalCluster")


@command(
    "survey",
    "cut, classify and catalog a survey by sky partition (HEALPix, a HATS catalog), in "
    "bounded memory; a stopped run keeps its finished partitions",
)(_survey_args)
def _survey(args: argparse.Namespace) -> int:
    from catbuilder.survey import run_survey

    size = cutout_size(args.size)
    result = run_survey(
        args.table,
        args.tiles[0] if len(args.tiles) == 1 else args.tiles,
        args.model_dir,
        args.output,
        size=size,
        bands=args.bands,
        id_col=args.id_col,
        partition_rows=args.partition_rows,
        highest_order=args.highest_order,
        cluster=args.cluster,
        workers=args.workers,
        progress=not args.no_progress,
        dry_run=args.dry_run,
    )
    if args.dry_run:
        print(result.summary(cores_per_node=args.cores_per_node))
    else:
        totals = result.totals()
        print(
            f"{totals['n_objects']:,} objects in {totals['partitions']} partitions; "
            f"predicted {totals['predicted']}; flagged {totals['flagged']:,}; "
            f"catalog: {result.catalog_path}"
        )
    return 0
