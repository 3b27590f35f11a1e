"""Commands about models: plugins, weights, train, predict, selftrain."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from catbuilder.cli.common import (
    command,
    conf,
    csv_list,
    output_option,
    overwrite_option,
    where_options,
)


def _plugins_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--can",
        choices=["classify", "embed", "distributed"],
        default=None,
        help="only plugins with this capability",
    )


@command("plugins", "list the installed model plugins and what each can do")(_plugins_args)
def _plugins(args: argparse.Namespace) -> int:
    from catbuilder.plugins import describe

    rows = [r for r in describe() if args.can is None or args.can in r["capabilities"]]
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


def _weights_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "action",
        choices=["add", "fetch"],
        help="add: register a weights file you have (checked against the published hash); "
        "fetch: download it (a machine online)",
    )
    p.add_argument("model", help="plugin name (keras.xception), or its last part (xception)")
    p.add_argument("file", nargs="?", type=Path, default=None, help="the weights file (add)")


def _plugin_named(name: str):
    """A plugin by its name, or by the last part of one (``xception``) when unique."""
    from catbuilder.plugins import get_plugin, list_plugins

    installed = list_plugins()
    names = [n for n in installed if n.rsplit(".", 1)[-1] == name]
    return get_plugin(names[0] if len(names) == 1 and name not in installed else name)


@command("weights", "register or fetch a plugin's pretrained (ImageNet) weights")(_weights_args)
def _weights(args: argparse.Namespace) -> int:
    plugin = _plugin_named(args.model)
    if args.action == "add":
        if args.file is None:
            raise ValueError("weights add needs the file: catbuilder weights add MODEL FILE")
        where = plugin.add_weights(str(args.file))
    else:
        where = plugin.fetch_weights()
    print(f"{plugin.name}: pretrained weights at {where}")
    return 0


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("stack", help="image stack (.zarr) with labels, or a run file (.yaml)")
    output_option(p, "directory to save the trained model in (default: <stack>.model)")
    overwrite_option(p, "a model catbuilder saved there")
    p.add_argument(
        "--model",
        default=None,
        help=f"model plugin name, see `catbuilder plugins` {conf('train.model')}",
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
    p.add_argument(
        "--ensemble",
        type=int,
        default=None,
        metavar="K",
        help=f"train K models with successive seeds, saved as one {conf('train.ensemble')}",
    )
    p.add_argument(
        "--calibration",
        choices=["auto", "temperature", "isotonic", "none"],
        default=None,
        help=f"calibration fitted on the validation split {conf('train.calibration')}",
    )
    p.add_argument(
        "--soft-labels",
        action="store_true",
        default=None,
        help=f"train on the labels' vote fractions, weighted by votes {conf('train.soft-labels')}",
    )
    where_options(
        p, "this process; with a cluster, one Horovod rank (or ensemble member) per worker"
    )


@command("train", "train a plugin model on a labelled image stack")(_train_args)
def _train(args: argparse.Namespace) -> int:
    import json

    from catbuilder.training.run import run_training

    params = json.loads(args.params) if args.params else None
    if not args.no_progress:  # plugins report each epoch on the "catbuilder.training" logger
        import logging

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("catbuilder train: %(message)s"))
        log = logging.getLogger("catbuilder.training")
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    if args.output is not None and args.output.exists() and not args.overwrite:
        from catbuilder.errors import OutputExistsError

        raise OutputExistsError(f"{args.output} exists; add --overwrite to replace the model there")
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
        ensemble=args.ensemble,
        calibration=args.calibration,
        soft_labels=args.soft_labels,
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


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("stack", help="image stack (.zarr)")
    p.add_argument(
        "--model-dir",
        metavar="DIR",
        default=None,
        help="directory of a saved model (from catbuilder train)",
    )
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
        help=f"objects per batch {conf('infer.batch-size')}",
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
    where_options(p, "the active client, else a LocalCluster")


@command("predict", "classify a stack on Dask workers and write the catalog")(_predict_args)
def _predict(args: argparse.Namespace) -> int:
    from catbuilder.catalog import build_catalog, check_catalog_output, write_catalog
    from catbuilder.infer import predict

    model_dir = args.model_dir
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


def _count_or_fraction(text: str) -> int | float:
    """``300`` (a count) or ``0.4`` (a fraction), as scikit-learn's sizes."""
    from catbuilder.selftrain.policy import check_per_class

    try:
        return check_per_class(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _selftrain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("labelled", help="image stack of the labelled survey (A)")
    p.add_argument("unlabelled", help="image stack of the survey to adapt to (B)")
    p.add_argument("-o", "--output", type=Path, required=True, help="directory for models, tables")
    p.add_argument("--model", default=None, help=f"classifier plugin name {conf('train.model')}")
    p.add_argument(
        "--params", default=None, help="estimator parameters as a JSON object (default: none)"
    )
    p.add_argument("--rounds", type=int, default=None, help=conf("selftrain.rounds"))
    p.add_argument(
        "--per-class",
        type=_count_or_fraction,
        default=None,
        help="pseudo-labels added per class and round: a count, or a fraction of the pool "
        f"(0.4: 40%% of the pool's share of each class per round) {conf('selftrain.per-class')}",
    )
    p.add_argument(
        "--threshold", type=float, default=None, help="minimum probability of a pseudo-label"
    )
    p.add_argument(
        "--retrain",
        choices=["scratch", "fine-tune"],
        default=None,
        help=f"each round trains new weights, or starts from the last round's model "
        f"{conf('selftrain.retrain')}",
    )
    p.add_argument(
        "--seeds", type=csv_list, default=None, help=f"comma-separated {conf('selftrain.seeds')}"
    )
    p.add_argument(
        "--strategy",
        type=csv_list,
        default=None,
        help="which objects join: top, spread, agreement, curriculum, soft, noisy-student, or "
        f"control (A alone); comma-separated to compare them {conf('selftrain.strategy')}",
    )
    p.add_argument(
        "--student-params",
        default=None,
        help="the noisy student's estimator parameters, as a JSON object ('{\"dropout\": 0.85}')",
    )
    p.add_argument(
        "--curriculum-column",
        default=None,
        help="B's magnitude column that orders the curriculum "
        f"{conf('selftrain.curriculum-column')}",
    )
    where_options(p, "one seed after another in this process")


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
        strategy=args.strategy,
        student_params=json.loads(args.student_params) if args.student_params else None,
        curriculum_column=args.curriculum_column,
        cluster=args.cluster,
        workers=args.workers,
        progress=not args.no_progress,
    )
    print(res)
    print(f"models and tables in {args.output}")
    return 0
