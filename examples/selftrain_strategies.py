"""Self-training strategies where the labels stop short of the survey, against a control.

    python examples/selftrain_strategies.py catbuilder-strategies --seeds 5 --rounds 2

On a des-like mock in the ``hard`` regime Galaxy Zoo labels reach only
r < 17.7, while most of the survey's galaxies are fainter, smaller and
noisier. Survey A is the labelled high-probability sample; survey B is every
des-like galaxy without a label: a random half, scored by the mock's true
class, is the truth each round is scored on (never pseudo-labelled), the other
half (``--pool`` of it at most) is the pool. Every strategy of
:mod:`catbuilder.selftrain.strategies` starts from the same round-0 model of
each seed and trains as many rounds; ``control`` trains on A alone as long, and
``noisy-student`` is ``top`` with a higher dropout (``--student-dropout``) in
the rounds after the first. The script prints the strategy x round table (mean +- std over seeds)
and each strategy's gain over the control, seed by seed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", nargs="?", type=Path, default=Path("catbuilder-strategies"))
    ap.add_argument("--n-objects", type=int, default=12000)
    ap.add_argument("--seed", type=int, default=1, help="mock survey seed")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=8, help="epochs of each round's training")
    ap.add_argument("--per-class", type=float, default=0.4)
    ap.add_argument("--pool", type=int, default=2000, help="pool objects at most")
    ap.add_argument("--workers", type=int, default=2, help="seeds in parallel")
    ap.add_argument(
        "--strategies", default="top,spread,agreement,curriculum,soft,noisy-student,control",
        help="comma-separated strategies to compare",
    )  # fmt: skip
    ap.add_argument("--student-dropout", type=float, default=0.85)
    args = ap.parse_args()

    from catbuilder.selftrain import self_train
    from catbuilder.sky import label_sources
    from catbuilder.sky.selection import assign_splits
    from catbuilder.stack import build_stack, open_stack
    from catbuilder.synth import make_survey

    work = args.workdir
    t0 = time.perf_counter()
    sdir = work / "survey"
    survey = make_survey(
        sdir,
        presets="des-like",
        n_objects=args.n_objects,
        seed=args.seed,
        regime="hard",
        reuse=True,
    )
    tiles = survey["des-like"].directory / "tiles"
    if not (work / "a.zarr").exists():
        table = label_sources(survey.read_labels(), survey["des-like"].sources, sample="hp")
        build_stack(table, tiles, work / "a.zarr", size=64)
    if not (work / "b.zarr").exists():
        table = label_sources(survey.read_labels(), survey["des-like"].sources,
                              keep_unlabelled=True)  # fmt: skip
        unlabelled = (table["label"].fillna("").astype(str) == "") & (table["cls"] != "star")
        half = assign_splits(table["objid"].to_numpy(), validation=0.0, test=0.5) == "test"
        table = table[unlabelled].assign(split="", label="")
        scored = half[unlabelled.to_numpy()]
        table.loc[scored, "split"] = "test"
        table.loc[scored, "label"] = table.loc[scored, "cls"]
        build_stack(table, tiles, work / "b.zarr", size=64, extra_columns=["mag_r"])
    a, b = open_stack(work / "a.zarr"), open_stack(work / "b.zarr")
    objs = b.objects()
    pool = objs.loc[(objs["split"] != "test") & (objs["flags"] == 0), "objid"].to_numpy()
    pool = np.random.default_rng(0).permutation(pool)[: args.pool]
    scored = objs[objs["split"] == "test"]
    print(f"A: {len(a.select(split='train'))} labelled training objects (median r "
          f"{a.objects()['mag_r'].median() if 'mag_r' in a.objects() else float('nan'):.2f}); "
          f"B: {len(scored)} scored, pool {len(pool)} (median r {objs['mag_r'].median():.2f}); "
          f"{time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip

    common = dict(
        params={"input_size": 64, "epochs": args.epochs, "batch_size": 32},
        rounds=args.rounds, per_class=args.per_class, seeds=list(range(args.seeds)),
        pool=pool, cluster="local" if args.workers > 1 else None, workers=args.workers,
    )  # fmt: skip
    t0 = time.perf_counter()
    res = self_train(a, b, "keras.small-cnn", outdir=work / "strategies",
                     strategy=args.strategies.split(","),
                     student_params={"dropout": args.student_dropout}, **common)  # fmt: skip
    print(f"self-training: {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    table = res.against("control")
    pd.set_option("display.width", 200)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    added = res.added
    truth = survey["des-like"].read_sources().set_index("objid")
    added["right"] = added["pseudo_label"].to_numpy() == truth.loc[added["objid"], "cls"].to_numpy()
    print("pseudo-labels that are the true class, per strategy and round:")
    print(added.groupby(["strategy", "round"])["right"].agg(["mean", "count"]).to_string())


if __name__ == "__main__":
    main()
