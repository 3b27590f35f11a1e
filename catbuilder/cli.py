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
    p.add_argument("--workers", type=int, default=None, help="Dask worker processes")
    p.add_argument("--scheduler", dest="cluster", help=argparse.SUPPRESS)  # its old name
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


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
    p.add_argument("--n-objects", type=int, default=None, help="objects over all areas")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--bands", type=_csv, default=None, help="comma-separated, e.g. g,r,i")
    p.add_argument("--table-format", choices=["parquet", "fits"], default="parquet")
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
    p.add_argument("--band-pattern", default=None, help="regex with a (?P<band>...) group")
    p.add_argument("--tile-pattern", default=None, help="regex with a (?P<tile>...) group")


@command("tiles", "index FITS tiles: bands, WCS footprints (Parquet)")(_tiles_args)
def _tiles(args: argparse.Namespace) -> int:
    from catbuilder.outputs import check_parquet_output
    from catbuilder.sky import TileIndex

    check_parquet_output(args.output, "tile index")
    index = TileIndex.build(
        args.inputs, band_pattern=args.band_pattern, tile_pattern=args.tile_pattern, progress=True
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
    p.add_argument("--size", default=None, help='pixels, or an angle such as "20 arcsec"')
    p.add_argument("--bands", type=_csv, default=None, help="comma-separated, e.g. g,r,i")
    p.add_argument("--reference-band", default=None)
    p.add_argument("--chunk-objects", type=int, default=None)
    p.add_argument("--ra-col", default=None)
    p.add_argument("--dec-col", default=None)
    p.add_argument("--id-col", default=None)
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
    p.add_argument("--radius", type=float, default=None, help="arcsec (default 1)")
    p.add_argument("--unmatched", type=Path, default=None, help="write unmatched left rows here")
    _where(p, "a process pool, for tables large enough to partition")


@command("crossmatch", "match two source tables on the sky")(_xmatch_args)
def _crossmatch(args: argparse.Namespace) -> int:
    from catbuilder.outputs import check_parquet_output
    from catbuilder.sky import crossmatch

    for out in (args.output, args.unmatched):
        if out is not None:
            check_parquet_output(out, "crossmatch")  # before the work, not after

    res = crossmatch(
        args.left,
        args.right,
        args.radius,
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
    p.add_argument("--kind", choices=["classifier", "embedder"], default=None)


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
    p.add_argument("-o", "--output", type=Path, default=None, help="directory for the model")
    p.add_argument("--model", default=None, help="model plugin name (see `catbuilder plugins`)")
    p.add_argument("--params", default=None, help="estimator parameters as a JSON object")
    p.add_argument("--epochs", type=int, default=None, help="epochs of every stage")
    p.add_argument("--checkpoint-dir", type=Path, default=None)
    p.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
    _where(p, "this process; with a cluster, one Horovod rank per worker")


@command("train", "train a plugin model on a labelled image stack")(_train_args)
def _train(args: argparse.Namespace) -> int:
    import json

    from catbuilder.train.run import run_training

    params = json.loads(args.params) if args.params else None
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
    p.add_argument("--model", required=True, help="saved model directory")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="catalog: .parquet, .fits, .vot, or a directory with --format hats",
    )
    p.add_argument("--format", choices=["parquet", "fits", "votable", "hats"], default=None)
    p.add_argument(
        "--predictions",
        type=Path,
        default=None,
        help="Zarr store of probabilities/embeddings (default next to the stack)",
    )
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--tta", action="store_true", help="average over flips and rotations")
    p.add_argument("--no-embed", action="store_true", help="do not write embeddings")
    p.add_argument("--overwrite", action="store_true")
    _where(p, "the active client, else a LocalCluster")


@command("predict", "classify a stack on Dask workers and write the catalog")(_predict_args)
def _predict(args: argparse.Namespace) -> int:
    from catbuilder.catalog import build_catalog, check_catalog_output, write_catalog
    from catbuilder.infer import predict

    check_catalog_output(args.output, args.format)  # before any work: a bad -o fails now
    preds = predict(
        args.stack,
        args.model,
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
    path = write_catalog(cat, args.output, args.format)
    counts = cat["predicted"].replace("", "(no prediction)").value_counts().to_dict()
    print(f"{len(cat)} objects -> {path}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    print(f"probabilities{' and embeddings' if not args.no_embed else ''} in {preds.path}")
    return 0


# -- evaluate ---------------------------------------------------------------------


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("catalog", help="catalog written by catbuilder predict")
    p.add_argument("--truth", default=None, help="table with the true classes (default: labels)")
    p.add_argument("--truth-col", default="label")
    p.add_argument("--id-col", default="objid")
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


# -- demo ---------------------------------------------------------------------


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("outdir", type=Path, nargs="?", default=Path("catbuilder-demo"))
    p.add_argument("--n-objects", type=int, default=600, help="mock survey size")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--epochs", type=int, default=12, help="small-CNN training epochs")
    p.add_argument("--workers", type=int, default=2, help="Dask workers for inference")
    p.add_argument("--no-progress", action="store_true")


@command(
    "demo",
    "synthetic survey -> labels by crossmatch -> Zarr cutouts -> CNN -> catalog -> evaluation",
)(_demo_args)
def _demo(args: argparse.Namespace) -> int:
    from catbuilder.pipeline import demo

    demo(
        args.outdir,
        n_objects=args.n_objects,
        seed=args.seed,
        epochs=args.epochs,
        workers=args.workers,
        progress=not args.no_progress,
    )
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
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors", **d)


def build_parser() -> argparse.ArgumentParser:
    from catbuilder import __version__

    parser = argparse.ArgumentParser(
        prog="catbuilder",
        description="Build galaxy morphology catalogs from survey images.",
    )
    parser.add_argument("--version", action="version", version=f"catbuilder {__version__}")
    _global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (setup, run) in _COMMANDS.items():
        p = sub.add_parser(name, help=setup.help, description=setup.help)  # type: ignore[attr-defined]
        setup(p)
        _global_options(p, top=False)
        p.set_defaults(_run=run)
    return parser


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
        if isinstance(err, OSError) and not err.filename and getattr(args, "output", None):
            msg = f"writing {args.output}: {msg}"
        print(f"{name}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
