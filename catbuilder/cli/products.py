"""Commands that read products: similar, evaluate."""

from __future__ import annotations

import argparse
from pathlib import Path

from catbuilder.cli.common import (
    check_output,
    command,
    output_option,
    overwrite_option,
)


def _table_output(path: Path | None, what: str, overwrite: bool) -> None:
    """Before any work: a table output is absent, or replaceable with --overwrite
    (Parquet: only one catbuilder wrote; CSV carries no mark, --overwrite says so)."""
    if path is None:
        return
    if path.suffix.lower() not in (".csv", ".parquet"):
        raise ValueError(f"-o {path}: a {what} table is written as .csv or .parquet")
    if path.suffix.lower() == ".parquet":
        check_output(path, what, overwrite)
    elif path.exists() and not overwrite:
        from catbuilder.errors import OutputExistsError

        raise OutputExistsError(f"{path} exists; add --overwrite to replace it")


def _write_table(df, path: Path, what: str) -> None:
    from catbuilder.outputs import atomic_path, write_parquet

    if path.suffix.lower() == ".parquet":
        write_parquet(df, path, what)
    else:
        with atomic_path(path) as tmp:
            df.to_csv(tmp, index=False)


def _similar_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("predictions", help="predictions store (.zarr) with embeddings")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--objid", default=None, help="the query object's id")
    where.add_argument(
        "--position", nargs=2, type=float, metavar=("RA", "DEC"), help="query by position (deg)"
    )
    p.add_argument("-k", type=int, default=10, help="neighbours")
    output_option(p, "table of the neighbours (.csv or .parquet)")
    p.add_argument("--gallery", type=Path, default=None, help="PNG of the query and neighbours")
    overwrite_option(p, "tables and PNGs catbuilder wrote")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


@command("similar", "objects whose embeddings are nearest a given object's")(_similar_args)
def _similar(args: argparse.Namespace) -> int:
    from catbuilder.embeddings import similar

    query: object = args.objid
    if args.position:
        query = tuple(args.position)
    elif args.objid is not None and args.objid.lstrip("-").isdigit():
        query = int(args.objid)
    _table_output(args.output, "similar", args.overwrite)
    if args.gallery is not None and args.gallery.exists() and not args.overwrite:
        raise FileExistsError(f"{args.gallery} exists; add --overwrite to replace it")
    res = similar(args.predictions, query, args.k)
    print(f"query: {res.attrs['query']} ({res.attrs['method']} search)")
    print(res.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.output is not None:
        _write_table(res, args.output, "similar")
    if args.gallery is not None:
        from catbuilder.evaluation.plots import plot_thumbnails
        from catbuilder.predictions import open_predictions
        from catbuilder.stack import open_stack

        stack = open_stack(open_predictions(args.predictions).meta["stack"]["path"])
        titles = [
            f"{'query' if r == 0 else f'#{r}'} {o}\n{p} d={d:.3f}"
            for r, o, p, d in zip(res["rank"], res["objid"], res["predicted"], res["distance"])
        ]
        plot_thumbnails(stack, res["objid"], args.gallery, titles, title=res.attrs["query"])
        print(f"gallery: {args.gallery}")
    return 0


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("catalog", help="catalog written by catbuilder predict")
    p.add_argument("--truth", default=None, help="table with the true classes (default: labels)")
    p.add_argument("--truth-col", default="label", help="column of true classes")
    p.add_argument("--id-col", default="objid", help="id column of the truth table")
    p.add_argument("--by", default="split", help="column to report groups of (default split)")
    output_option(p, "metrics table (.csv or .parquet)")
    p.add_argument("--plots", type=Path, default=None, help="directory for PNG figures")
    p.add_argument("--stack", default=None, help="stack, for a gallery of cutouts")
    overwrite_option(p, "a metrics table catbuilder wrote")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


@command("evaluate", "accuracy, ROC, confidence curves of a catalog against truth")(_evaluate_args)
def _evaluate(args: argparse.Namespace) -> int:
    from catbuilder.evaluation import evaluate

    _table_output(args.output, "metrics", args.overwrite)
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
        _write_table(ev.metrics, args.output, "metrics")
    if args.plots is not None:
        stack = None
        if args.stack:
            from catbuilder.stack import open_stack

            stack = open_stack(args.stack)
        for p in ev.plot(args.plots, stack):
            print(f"plot: {p}")
    return 0
