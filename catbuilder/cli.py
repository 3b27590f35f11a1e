"""The ``catbuilder`` command line.

Each subcommand imports what it needs when it runs, so ``catbuilder --help``
is fast and imports no deep-learning framework.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["main"]

_COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable]] = {}


def command(name: str, help: str):
    """Register ``func`` as subcommand ``name``; ``setup`` adds its arguments."""

    def deco(setup: Callable[[argparse.ArgumentParser], None]):
        def register(run: Callable):
            _COMMANDS[name] = (setup, run)
            setup.help = help  # type: ignore[attr-defined]
            return run

        return register

    return deco


def _where(p: argparse.ArgumentParser, default: str) -> None:
    """The flags that say where a command's Dask work runs: the same on every command."""
    p.add_argument(
        "--cluster",
        default=None,
        help=f"where to run: processes, threads, sync, local (a LocalCluster), a "
        f"dask-jobqueue name (slurm, pbs, ...) or a scheduler address (default: {default})",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Dask worker processes (default: one per core on this machine)",
    )
    p.add_argument("--scheduler", dest="cluster", help=argparse.SUPPRESS)  # its old name
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


class _Help(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default (where it has one)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        if action.option_strings or action.nargs in ("?", "*"):
            text += " (default: %(default)s)"
        return text


def _conf(key: str) -> str:
    """``(default: <value>)`` of configuration key ``key``, for --help."""
    from catbuilder import config

    value = config.get(key)
    if isinstance(value, list):
        value = ",".join(map(str, value))
    return f"(default: {value}; configuration {key})"


def _output_check(path: Path, what: str, overwrite: bool) -> None:
    """Before any work: ``path`` is absent, or catbuilder's own and ``--overwrite`` was given."""
    from catbuilder.errors import OutputExistsError
    from catbuilder.outputs import check_parquet_output

    check_parquet_output(path, what)  # anything not catbuilder's is refused regardless
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"{path} exists (a {what} catbuilder wrote); add --overwrite to replace it"
        )


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",")]  # empty names are errors, not dropped


# -- synth --------------------------------------------------------------------


def _synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("outdir", type=Path, help="output directory")
    p.add_argument(
        "--preset",
        action="append",
        dest="presets",
        metavar="NAME",
        help="survey preset: sdss-like or des-like (repeat for both; default both)",
    )
    p.add_argument(
        "--n-objects",
        type=int,
        default=None,
        help=f"objects over all areas {_conf('synth.n-objects')}",
    )
    p.add_argument("--seed", type=int, default=None, help=f"random seed {_conf('synth.seed')}")
    p.add_argument(
        "--bands", type=_csv, default=None, help=f"comma-separated {_conf('synth.bands')}"
    )
    p.add_argument(
        "--table-format", choices=["parquet", "fits"], default="parquet", help="source tables"
    )
    p.add_argument("--preview", action="store_true", help="write PNGs of a tile and of objects")
    _where(p, "a process pool")


@command("synth", "make a GalSim mock survey (FITS tiles, source and label tables)")(_synth_args)
def _synth(args: argparse.Namespace) -> int:
    from catbuilder.synth import make_survey

    survey = make_survey(
        args.outdir,
        presets=args.presets,
        n_objects=args.n_objects,
        seed=args.seed,
        bands=args.bands,
        table_format=args.table_format,
        cluster=args.cluster,
        workers=args.workers,
        progress=not args.no_progress,
        preview=args.preview,
    )
    print(survey.summary())
    return 0


# -- tiles --------------------------------------------------------------------


def _tiles_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="FITS files, directories or glob patterns")
    p.add_argument("-o", "--output", type=Path, required=True, help="index file (.parquet)")
    p.add_argument(
        "--band-pattern",
        default=None,
        help="regex with a (?P<band>...) group, matched to file names, for files whose headers "
        "name no band (default: header keywords BAND, FILTER, FILTNAM)",
    )
    p.add_argument(
        "--tile-pattern",
        default=None,
        help="regex with a (?P<tile>...) group (default: the file name without suffix and band)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an index catbuilder wrote")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


@command("tiles", "index FITS tiles: bands, WCS footprints (Parquet)")(_tiles_args)
def _tiles(args: argparse.Namespace) -> int:
    from catbuilder.sky import TileIndex

    _output_check(args.output, "tile index", args.overwrite)
    index = TileIndex.build(
        args.inputs,
        band_pattern=args.band_pattern,
        tile_pattern=args.tile_pattern,
        progress=not args.no_progress,
    )
    index.to_parquet(args.output)
    print(f"{index} -> {args.output}")
    for path, why in index.problems:
        print(f"  not indexed: {path}: {why}")
    return 0


# -- cutouts ------------------------------------------------------------------


def _cutouts_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("table", help="source table (FITS, CSV, Parquet)")
    p.add_argument("tiles", nargs="+", help="FITS tiles, directories, globs, or an index .parquet")
    p.add_argument("-o", "--output", type=Path, required=True, help="Zarr store to write")
    p.add_argument(
        "--size",
        default=None,
        help=f'cutout side: pixels, or an angle such as "20 arcsec" {_conf("cutouts.size")}',
    )
    p.add_argument(
        "--bands", type=_csv, default=None, help=f"comma-separated {_conf('cutouts.bands')}"
    )
    p.add_argument(
        "--reference-band",
        default=None,
        help=f"band whose pixel grid the others follow {_conf('cutouts.reference-band')}",
    )
    p.add_argument(
        "--chunk-objects",
        type=int,
        default=None,
        help=f"objects per Zarr chunk and Dask task {_conf('cutouts.chunk-objects')}",
    )
    p.add_argument(
        "--ra-col", default=None, help=f"RA column {_conf('sources.ra-columns')} (first present)"
    )
    p.add_argument(
        "--dec-col", default=None, help=f"Dec column {_conf('sources.dec-columns')} (first present)"
    )
    p.add_argument(
        "--id-col", default=None, help=f"id column {_conf('sources.id-columns')} (first present)"
    )
    p.add_argument("--append", action="store_true", help="append to an existing stack")
    p.add_argument("--overwrite", action="store_true", help="replace a stack made differently")
    _where(p, "a process pool")


@command("cutouts", "cut sources out of FITS tiles into a Zarr image stack")(_cutouts_args)
def _cutouts(args: argparse.Namespace) -> int:
    from catbuilder.stack import append_to_stack, build_stack

    size = args.size
    if size is not None and size.strip().isdigit():
        size = int(size)
    tiles = args.tiles[0] if len(args.tiles) == 1 else args.tiles
    common = dict(
        ra_col=args.ra_col,
        dec_col=args.dec_col,
        id_col=args.id_col,
        cluster=args.cluster,
        workers=args.workers,
        progress=not args.no_progress,
    )
    if args.append:
        stack = append_to_stack(args.output, args.table, tiles, **common)
    else:
        stack = build_stack(
            args.table,
            tiles,
            args.output,
            size=size,
            bands=args.bands,
            reference_band=args.reference_band,
            chunk_objects=args.chunk_objects,
            overwrite=args.overwrite,
            **common,
        )
    flags = stack.objects()["flags"]
    print(f"{stack}\n  flagged: {int((flags != 0).sum())} of {len(stack)} objects")
    return 0


# -- crossmatch -----------------------------------------------------------------


def _xmatch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("left", help="table whose rows are matched")
    p.add_argument("right", help="table searched for each left row")
    p.add_argument("-o", "--output", type=Path, required=True, help="matched pairs (.parquet)")
    p.add_argument(
        "--radius-arcsec",
        type=float,
        default=None,
        help=f"match radius in arcsec {_conf('crossmatch.radius-arcsec')}",
    )
    p.add_argument("--radius", dest="radius_arcsec", type=float, help=argparse.SUPPRESS)
    p.add_argument("--unmatched", type=Path, default=None, help="write unmatched left rows here")
    p.add_argument("--overwrite", action="store_true", help="replace tables catbuilder wrote")
    _where(p, "a process pool, for tables large enough to partition")


@command("crossmatch", "match two source tables on the sky")(_xmatch_args)
def _crossmatch(args: argparse.Namespace) -> int:
    from catbuilder.sky import crossmatch

    for out in (args.output, args.unmatched):
        if out is not None:
            _output_check(out, "crossmatch", args.overwrite)  # before the work, not after

    res = crossmatch(
        args.left,
        args.right,
        args.radius_arcsec,
        cluster=args.cluster,
        workers=args.workers,
        progress=not args.no_progress,
    )
    from catbuilder.outputs import write_parquet

    write_parquet(res.join(), args.output, "crossmatch")
    if args.unmatched is not None:
        write_parquet(res.unmatched_left, args.unmatched, "crossmatch")
    print(res.summary())
    return 0


# -- plugins --------------------------------------------------------------------


def _plugins_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kind", choices=["classifier", "embedder"], default=None, help="only plugins of this kind"
    )


@command("plugins", "list the installed model plugins and what each can do")(_plugins_args)
def _plugins(args: argparse.Namespace) -> int:
    from catbuilder.plugins import describe

    rows = describe(args.kind)
    if not rows:
        print("no plugins installed; see docs/plugins.md")
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        if r["problem"]:
            print(f"  {r['name']:<{width}}  ({r['distribution'] or '?'}) {r['problem']}")
            continue
        size = f"{r['input_size']} px" if r["input_size"] else "any size"
        can = ", ".join(r["capabilities"])
        print(f"  {r['name']:<{width}}  {r['description']} [{r['framework']}, {size}; {can}]")
    return 0


# -- train ----------------------------------------------------------------------


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("stack", help="image stack (.zarr) with labels, or a run file (.yaml)")
    p.add_argument(
        "-o",
        "--model-dir",
        "--output",
        dest="output",
        metavar="DIR",
        type=Path,
        default=None,
        help="directory to save the trained model in (default: <stack>.model beside the stack)",
    )
    p.add_argument(
        "--model",
        default=None,
        help=f"model plugin name, see `catbuilder plugins` {_conf('train.model')}",
    )
    p.add_argument(
        "--params", default=None, help="estimator parameters as a JSON object (default: none)"
    )
    p.add_argument(
        "--epochs", type=int, default=None, help="epochs of every stage (default: the plugin's)"
    )
    p.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="per-epoch checkpoints, to resume a stopped run (default: configuration "
        "train.checkpoint-dir, else <stack>.checkpoints)",
    )
    p.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
    _where(p, "this process; with a cluster, one Horovod rank per worker")


@command("train", "train a plugin model on a labelled image stack")(_train_args)
def _train(args: argparse.Namespace) -> int:
    import json

    from catbuilder.train.run import run_training

    params = json.loads(args.params) if args.params else None
    if not args.no_progress:  # plugins report each epoch on the "catbuilder.train" logger
        import logging

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("catbuilder train: %(message)s"))
        log = logging.getLogger("catbuilder.train")
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    result = run_training(
        args.stack,
        output=args.output,
        model=args.model,
        params=params,
        epochs=args.epochs,
        checkpoint_dir=args.checkpoint_dir,
        resume=not args.no_resume,
        cluster=args.cluster,
        workers=args.workers,
    )
    h = result.history
    cols = [
        c
        for c in (
            "stage",
            "epoch",
            "loss",
            "accuracy",
            "val_loss",
            "val_accuracy",
            "lr",
            "samples_per_s",
        )
        if c in h.columns
    ]
    if len(h):
        print(h[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"model saved to {result.output}")
    return 0


# -- predict ----------------------------------------------------------------------


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("stack", help="image stack (.zarr)")
    p.add_argument(
        "--model-dir",
        metavar="DIR",
        default=None,
        help="directory of a saved model (from catbuilder train)",
    )
    p.add_argument("--model", dest="model_dir_old", default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="catalog: .parquet, .fits, .vot, or a directory with --format hats",
    )
    p.add_argument(
        "--format",
        choices=["parquet", "fits", "votable", "hats"],
        default=None,
        help="catalog format (default: from the output's suffix)",
    )
    p.add_argument(
        "--predictions",
        type=Path,
        default=None,
        help="Zarr store of probabilities/embeddings (default next to the stack)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"objects per batch {_conf('infer.batch-size')}",
    )
    p.add_argument("--tta", action="store_true", help="average over flips and rotations")
    p.add_argument("--no-embed", action="store_true", help="do not write embeddings")
    p.add_argument(
        "--anomaly-scores",
        action="store_true",
        help="add an anomaly_score column (isolation forest over the embeddings)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace predictions made with other arguments"
    )
    _where(p, "the active client, else a LocalCluster")


@command("predict", "classify a stack on Dask workers and write the catalog")(_predict_args)
def _predict(args: argparse.Namespace) -> int:
    from catbuilder.catalog import build_catalog, check_catalog_output, write_catalog
    from catbuilder.infer import predict

    model_dir = args.model_dir or args.model_dir_old
    if args.model_dir_old and not args.model_dir:
        import warnings

        warnings.warn(
            "predict's --model is now --model-dir (--model names a plugin, as in train)",
            FutureWarning,
            stacklevel=1,
        )
    if not model_dir:
        raise ValueError("predict needs --model-dir: the directory of a saved model")
    check_catalog_output(args.output, args.format)  # before any work: a bad -o fails now
    preds = predict(
        args.stack,
        model_dir,
        output=args.predictions,
        cluster=args.cluster,
        workers=args.workers,
        batch_size=args.batch_size,
        embed=False if args.no_embed else None,
        tta=True if args.tta else None,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    cat = build_catalog(preds)
    if args.anomaly_scores:
        from catbuilder.embeddings import with_anomaly_scores

        cat = with_anomaly_scores(cat, preds)
    path = write_catalog(cat, args.output, args.format)
    counts = cat["predicted"].fillna("(no prediction)").value_counts().to_dict()
    print(f"{len(cat)} objects -> {path}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    print(f"probabilities{' and embeddings' if not args.no_embed else ''} in {preds.path}")
    return 0


# -- selftrain -------------------------------------------------------------------


def _count_or_fraction(text: str) -> int | float:
    """``300`` (a count) or ``0.4`` (a fraction), as scikit-learn's sizes."""
    from catbuilder.selftrain import _per_class

    try:
        return _per_class(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _selftrain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("labelled", help="image stack of the labelled survey (A)")
    p.add_argument("unlabelled", help="image stack of the survey to adapt to (B)")
    p.add_argument("-o", "--output", type=Path, required=True, help="directory for models, tables")
    p.add_argument("--model", default=None, help=f"classifier plugin name {_conf('train.model')}")
    p.add_argument(
        "--params", default=None, help="estimator parameters as a JSON object (default: none)"
    )
    p.add_argument("--rounds", type=int, default=None, help=_conf("selftrain.rounds"))
    p.add_argument(
        "--per-class",
        type=_count_or_fraction,
        default=None,
        help="pseudo-labels added per class and round: a count, or a fraction of the pool "
        f"(0.4: 40%% of the pool's share of each class per round) {_conf('selftrain.per-class')}",
    )
    p.add_argument(
        "--threshold", type=float, default=None, help="minimum probability of a pseudo-label"
    )
    p.add_argument(
        "--retrain",
        choices=["scratch", "fine-tune"],
        default=None,
        help=f"each round trains new weights, or starts from the last round's model "
        f"{_conf('selftrain.retrain')}",
    )
    p.add_argument(
        "--seeds", type=_csv, default=None, help=f"comma-separated {_conf('selftrain.seeds')}"
    )
    _where(p, "one seed after another in this process")


@command("selftrain", "train on survey A, pseudo-label survey B's most confident, retrain")(
    _selftrain_args
)
def _selftrain(args: argparse.Namespace) -> int:
    import json

    from catbuilder.selftrain import self_train

    res = self_train(
        args.labelled,
        args.unlabelled,
        args.model,
        outdir=args.output,
        params=json.loads(args.params) if args.params else None,
        rounds=args.rounds,
        per_class=args.per_class,
        threshold=args.threshold,
        retrain=args.retrain,
        seeds=[int(s) for s in args.seeds] if args.seeds else None,
        cluster=args.cluster,
        workers=args.workers,
        progress=not args.no_progress,
    )
    print(res)
    print(f"models and tables in {args.output}")
    return 0


# -- similar ----------------------------------------------------------------------


def _similar_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("predictions", help="predictions store (.zarr) with embeddings")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--objid", default=None, help="the query object's id")
    where.add_argument(
        "--position", nargs=2, type=float, metavar=("RA", "DEC"), help="query by position (deg)"
    )
    p.add_argument("-k", type=int, default=10, help="neighbours")
    p.add_argument("-o", "--output", type=Path, default=None, help="table (.csv or .parquet)")
    p.add_argument("--gallery", type=Path, default=None, help="PNG of the query and neighbours")


@command("similar", "objects whose embeddings are nearest a given object's")(_similar_args)
def _similar(args: argparse.Namespace) -> int:
    from catbuilder.embeddings import similar

    query: object = args.objid
    if args.position:
        query = tuple(args.position)
    elif args.objid is not None and args.objid.lstrip("-").isdigit():
        query = int(args.objid)
    res = similar(args.predictions, query, args.k)
    print(f"query: {res.attrs['query']} ({res.attrs['method']} search)")
    print(res.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.output is not None:
        if args.output.suffix == ".parquet":
            res.to_parquet(args.output, index=False)
        else:
            res.to_csv(args.output, index=False)
    if args.gallery is not None:
        from catbuilder.evaluate.plots import plot_thumbnails
        from catbuilder.infer import open_predictions
        from catbuilder.stack import open_stack

        stack = open_stack(open_predictions(args.predictions).meta["stack"]["path"])
        titles = [
            f"{'query' if r == 0 else f'#{r}'} {o}\n{p} d={d:.3f}"
            for r, o, p, d in zip(res["rank"], res["objid"], res["predicted"], res["distance"])
        ]
        plot_thumbnails(stack, res["objid"], args.gallery, titles, title=res.attrs["query"])
        print(f"gallery: {args.gallery}")
    return 0


# -- evaluate ---------------------------------------------------------------------


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("catalog", help="catalog written by catbuilder predict")
    p.add_argument("--truth", default=None, help="table with the true classes (default: labels)")
    p.add_argument("--truth-col", default="label", help="column of true classes")
    p.add_argument("--id-col", default="objid", help="id column of the truth table")
    p.add_argument("--by", default="split", help="column to report groups of (default split)")
    p.add_argument("-o", "--output", type=Path, default=None, help="metrics table (.csv)")
    p.add_argument("--plots", type=Path, default=None, help="directory for PNG figures")
    p.add_argument("--stack", default=None, help="stack, for a gallery of cutouts")


@command("evaluate", "accuracy, ROC, confidence curves of a catalog against truth")(_evaluate_args)
def _evaluate(args: argparse.Namespace) -> int:
    from catbuilder.evaluate import evaluate

    ev = evaluate(
        args.catalog, args.truth, truth_col=args.truth_col, id_col=args.id_col, by=args.by or None
    )
    print(ev.summary())
    cols = [
        "group",
        "class",
        "accuracy",
        "precision",
        "recall",
        "specificity",
        "f1",
        "fpr",
        "auc",
        "support",
    ]
    t = ev.table()
    print(
        t[[c for c in cols if c in t.columns]].to_string(
            index=False, float_format=lambda v: f"{v:.4f}", na_rep=""
        )
    )
    if args.output is not None:
        ev.metrics.to_csv(args.output, index=False)
    if args.plots is not None:
        stack = None
        if args.stack:
            from catbuilder.stack import open_stack

            stack = open_stack(args.stack)
        for p in ev.plot(args.plots, stack):
            print(f"plot: {p}")
    return 0


# -- run and demo ---------------------------------------------------------------


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


# -- entry point ----------------------------------------------------------------


def _global_options(p: argparse.ArgumentParser, top: bool) -> None:
    """Options every command takes, before or after the command's name."""
    d = {} if top else {"default": argparse.SUPPRESS}
    p.add_argument("--config", type=Path, help="user YAML configuration file", **d)
    p.add_argument(
        "--strict",
        action="store_true",
        help="treat warnings about changed or ignored input as errors",
        **d,
    )
    p.add_argument(
        "--debug",
        action="store_true",
        help="show tracebacks of errors and the native libraries' start-up messages",
        **d,
    )


def build_parser() -> argparse.ArgumentParser:
    from catbuilder._version import __version__

    parser = argparse.ArgumentParser(
        prog="catbuilder",
        description="Build galaxy morphology catalogs from survey images.",
    )
    parser.add_argument("--version", action="version", version=f"catbuilder {__version__}")
    _global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (setup, run) in _COMMANDS.items():
        p = sub.add_parser(
            name,
            help=setup.help,  # type: ignore[attr-defined]
            description=setup.help,  # type: ignore[attr-defined]
            formatter_class=_Help,
        )
        setup(p)
        _global_options(p, top=False)
        p.set_defaults(_run=run)
    return parser


def reference_markdown() -> str:
    """The command-line reference (``docs/cli.md``): every command's ``--help``."""
    import os

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "90"  # the same text on every terminal
    try:
        parser = build_parser()
        parts = [
            "# Command-line reference",
            "",
            "Generated from the parser by `python -m catbuilder.cli --reference > docs/cli.md`;",
            "a test fails when it is out of date.",
            "",
            "```text",
            parser.format_help().rstrip(),
            "```",
        ]
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        for name, p in sub.choices.items():
            parts += ["", f"## catbuilder {name}", "", "```text", p.format_help().rstrip(), "```"]
        return "\n".join(parts) + "\n"
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


_OS_HINTS = {
    errno.ENOSPC: "free some space (or choose another output) and run the same command "
    "again: finished work is kept and resumed",
    errno.EDQUOT: "free some space (or choose another output) and run the same command again",
    errno.EROFS: "the file system is read-only; choose a writable output path",
    errno.EACCES: "choose an output path you may write to",
    errno.EPERM: "choose an output path you may write to",
}


def error_message(err: BaseException) -> str:
    """One line that says what went wrong (and, where known, what to do)."""
    if isinstance(err, OSError) and err.errno in _OS_HINTS:
        where = f" ({err.filename})" if err.filename else ""
        msg = f"{err.strerror or err}{where}: {_OS_HINTS[err.errno]}"
    elif isinstance(err, KeyError) and type(err) is KeyError:
        msg = f"missing key {err.args[0]!r}" if err.args else "missing key"
    else:
        msg = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        from catbuilder.errors import CatbuilderError, CatbuilderWarning

        plain = (CatbuilderError, ValueError, FileNotFoundError, FileExistsError, MemoryError)
        if isinstance(err, CatbuilderWarning):
            msg = f"{msg} (a warning, made an error by --strict)"
        elif not isinstance(err, plain) or not msg:
            msg = f"{type(err).__name__}: {msg} (run with --debug for the traceback)"
    return " ".join(msg.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Every failure is one line, ``catbuilder <command>: error: <message>``,
    and exit status 2 (130 after Ctrl-C); ``--debug`` shows the traceback.
    Warnings are one line each; ``--strict`` makes input warnings errors.
    """
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    name = f"catbuilder {args.command}"
    if args.debug:  # before any framework loads, here and in worker processes
        import os

        os.environ["CATBUILDER_DEBUG"] = "1"

    def one_line(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        print(f"{name}: warning: {text}", file=sys.stderr)

    from catbuilder.errors import CatbuilderWarning, strict

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", CatbuilderWarning)  # every one, every time
            warnings.showwarning = one_line
            with strict(args.strict):
                if args.config is not None:
                    from catbuilder import config

                    config.load(args.config)
                return int(args._run(args) or 0)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(
            f"{name}: interrupted; finished work is kept: run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    except Exception as err:
        if args.debug:
            raise
        msg = error_message(err)
        from catbuilder.errors import CatbuilderError

        own = isinstance(err, CatbuilderError)  # its messages name the path already
        if (
            isinstance(err, OSError)
            and not own
            and not err.filename
            and getattr(args, "output", None)
        ):
            msg = f"writing {args.output}: {msg}"
        print(f"{name}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    if sys.argv[1:] == ["--reference"]:
        sys.stdout.write(reference_markdown())
        sys.exit(0)
    sys.exit(main())
