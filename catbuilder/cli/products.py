"""Commands that read products: similar, evaluate."""

from __future__ import annotations

import argparse
from pathlib import Path

from catbuilder.cli.common import (
    command,
)


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
        from catbuilder.evaluation.plots import plot_thumbnails
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
    from catbuilder.evaluation import evaluate

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
