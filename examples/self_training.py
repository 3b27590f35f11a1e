"""The paper's cross-survey step: train on SDSS-like labels, self-train on DES-like data.

    python examples/self_training.py [WORKDIR] [--n-objects 6000] [--seeds 3] [--rounds 2]

Makes both mock surveys over the same sky, carries the Galaxy-Zoo-like
high-probability labels onto the ``sdss-like`` sources (survey A) and,
as hidden truth, onto the ``des-like`` sources (survey B: its test split
scores each round and is never pseudo-labelled; ``--truth all`` scores on
every labelled B object instead; ``--truth unlabelled`` scores on a random
half of B's unlabelled galaxies by the mock's class, the paper's unlabelled
sample, and hides every other label), cuts both at the same
angular size (20 arcsec: 51 px at 0.396"/px, 76 px at 0.263"/px), and runs
:func:`catbuilder.selftrain.self_train` with several seeds: round 0 is the
model trained on A alone, round r adds the most confident ``min(1, 0.4 r)``
of B's galaxies outside the scored objects, per class (``--per-class``: a
fraction of that pool, or a count), and trains from round r - 1's model
(``--retrain fine-tune``) or from new weights. The script prints accuracy per
round as mean and spread over seeds, the accuracy-vs-confidence curve before
and after, and whether the gain exceeds the spread; ``--control`` also
fine-tunes each round-0 model on A alone for as many rounds, so that the gain
of B's pseudo-labels is told apart from that of training longer. ``--pixels
64`` cuts both surveys at 64 px instead (different angular sizes: the gap
self-training has to close). The run reported in docs::

    python examples/self_training.py --pixels 64 --truth unlabelled --retrain fine-tune --control
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _score_unlabelled(table):
    """B's unlabelled galaxies, a random half of them with the mock's class as truth
    (the ``test`` split that scores every round); no other B object keeps a label."""
    from catbuilder.sky.selection import assign_splits

    unlabelled = (table["label"].fillna("").astype(str) == "") & (table["cls"] != "star")
    half = assign_splits(table["objid"].to_numpy(), validation=0.0, test=0.5) == "test"
    scored = unlabelled & half
    table = table.assign(split="", label="")
    table.loc[scored, "split"] = "test"
    table.loc[scored, "label"] = table.loc[scored, "cls"]
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", nargs="?", type=Path, default=Path("catbuilder-selftrain"))
    ap.add_argument("--n-objects", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=3, help="mock survey seed")
    ap.add_argument("--seeds", type=int, default=3, help="self-training runs")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--per-class",
        default="0.4",
        help="pseudo-labels per class and round: a count (300) or a fraction of the pool (0.4)",
    )
    ap.add_argument(
        "--truth",
        choices=("test", "all", "unlabelled"),
        default="test",
        help="B's objects that score each round: its test split, every labelled one (all), "
        "or half of its unlabelled galaxies by the mock's truth (unlabelled)",
    )
    ap.add_argument(
        "--retrain",
        choices=("scratch", "fine-tune"),
        default=None,
        help="each round trains new weights, or starts from the last round's model "
        "(default: configuration selftrain.retrain)",
    )
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--pixels", type=int, default=None, help="cut at this many pixels instead")
    ap.add_argument(
        "--threshold", type=float, default=None, help="minimum pseudo-label probability"
    )
    ap.add_argument(
        "--all-objects", action="store_true", help="pseudo-label stars too (not only galaxies)"
    )
    ap.add_argument("--workers", type=int, default=None, help="seeds in parallel on a LocalCluster")
    ap.add_argument(
        "--control",
        action="store_true",
        help="also fine-tune each round-0 model on A alone, round after round: is the gain "
        "from B's pseudo-labels or from training longer?",
    )
    args = ap.parse_args()

    from catbuilder import config
    from catbuilder.selftrain import self_train
    from catbuilder.sky import label_sources
    from catbuilder.stack import build_stack, open_stack
    from catbuilder.synth import make_survey

    work = args.workdir
    retrain = args.retrain or config.get("selftrain.retrain")
    t0 = time.perf_counter()
    sdir = work / "survey"
    survey = make_survey(sdir, n_objects=args.n_objects, seed=args.seed, reuse=True)
    print(f"survey: {time.perf_counter() - t0:.0f} s")
    size = args.pixels or "20 arcsec"
    tag = f"{args.pixels}px" if args.pixels else "20arcsec"
    stacks = {}
    for name, keep in (("sdss-like", False), ("des-like", True)):
        truth = f"-truth-{args.truth}" if keep else ""
        path = work / f"{name}-{tag}{truth}.zarr"
        if not path.exists():
            table = label_sources(survey.read_labels(), survey[name].sources, keep_unlabelled=keep)
            if keep and args.truth == "all":  # B's labels are hidden truth: all of them score
                table.loc[table["label"].fillna("").astype(str) != "", "split"] = "test"
            if keep and args.truth == "unlabelled":
                table = _score_unlabelled(table)
            build_stack(table, survey[name].directory / "tiles", path, size=size)
        stacks[name] = open_stack(path)
        print(stacks[name])
    # the paper's unlabelled sample is galaxies: the mock's class stands in for a
    # survey's star/galaxy separation (DES: EXTENDED_CLASS_COADD)
    des = survey["des-like"].read_sources()
    galaxies = des.loc[des["cls"] != "star", "objid"].to_numpy()
    t0 = time.perf_counter()
    res = self_train(
        stacks["sdss-like"],
        stacks["des-like"],
        "keras.small-cnn",
        outdir=work / f"selftrain-{tag}-{args.truth}-{args.per_class}-{retrain}",
        params={"input_size": 64, "epochs": args.epochs},
        rounds=args.rounds,
        per_class=args.per_class,
        seeds=list(range(args.seeds)),
        pool=None if args.all_objects else galaxies,
        threshold=args.threshold,
        retrain=retrain,
        cluster="local" if args.workers else None,
        workers=args.workers,
    )
    print(f"self-training: {(time.perf_counter() - t0) / 60:.1f} min")
    print(res)
    curves = res.curves.groupby(["round", "fraction"])["accuracy"].agg(["mean", "std"])
    print("accuracy of the most confident fraction of B's test objects (mean, std over seeds):")
    print(curves.unstack("round").round(4).to_string())
    pseudo = res.added.merge(des[["objid", "cls"]], on="objid")
    right = (pseudo["pseudo_label"] == pseudo["cls"]).mean()
    print(f"pseudo-labels that are the mock's true class: {right:.3f} of {len(pseudo)}")
    print(res.rounds[["seed", "round", "n_added", "accuracy", "n_eval"]].to_string(index=False))
    first = res.rounds.loc[res.rounds["round"] == 0, "accuracy"].std(ddof=1)
    for r in range(1, int(res.rounds["round"].max()) + 1):
        gain, spread = res.gain(r)
        verdict = "exceeds" if gain > max(spread, first) else "does not exceed"
        print(
            f"round {r}: gain {gain:+.4f} {verdict} the spread over seeds (std of the gains "
            f"{spread:.4f}, of round 0 {first:.4f}; standard error of the mean gain "
            f"{spread / len(res.rounds['seed'].unique()) ** 0.5:.4f})"
        )
    if args.control:
        _control(res, stacks, args.epochs)


def _control(res, stacks, epochs: int) -> None:
    """Each seed's round-0 model fine-tuned on A alone for as many rounds, scored as
    self-training scored its rounds; the gain of self-training over it, per round."""
    import shutil

    import pandas as pd

    from catbuilder.models.saved import load_model
    from catbuilder.selftrain import evaluation_set, score
    from catbuilder.training.api import train

    scored = evaluation_set(stacks["des-like"], res.classes)
    rows = []
    for _, row in res.rounds[res.rounds["round"] == 0].iterrows():
        est = load_model(row["model"])
        for r in range(1, int(res.rounds["round"].max()) + 1):
            est.set_params(warm_start=True, epochs=epochs)
            ckpt = Path(row["model"]).parent.parent / f"control-{r}-checkpoints"
            est = train(stacks["sdss-like"], est, checkpoint_dir=ckpt, resume=False).model
            shutil.rmtree(ckpt, ignore_errors=True)  # as self-training drops a round's
            rows.append(
                {"seed": row["seed"], "round": r, "control": score(est, scored, res.classes)}
            )
    both = pd.DataFrame(rows).merge(res.rounds, on=["seed", "round"])
    both["gain"] = both["accuracy"] - both["control"]
    print("A alone, fine-tuned as long (control) against self-training, per round:")
    for r, g in both.groupby("round"):
        print(
            f"round {r}: control {g['control'].mean():.4f} +- {g['control'].std(ddof=1):.4f}, "
            f"self-training {g['accuracy'].mean():.4f} +- {g['accuracy'].std(ddof=1):.4f}, "
            f"gain {g['gain'].mean():+.4f} (std of the gains {g['gain'].std(ddof=1):.4f})"
        )


if __name__ == "__main__":
    main()
