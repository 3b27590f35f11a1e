"""Train the small CNN and the morphology baseline on a Galaxy Zoo HP sample.

    python examples/train_classifiers.py [WORKDIR] [--n-objects 10000]

Makes a des-like mock survey, carries the Galaxy-Zoo-like high-probability
labels (p_spiral > 0.985, p_elliptical > 0.926, as in Khan et al. 2019) onto
it by crossmatch, cuts 64 px g,r,i stacks, and trains

* ``keras.small-cnn`` (tf-keras, from scratch), and
* ``morphology.gradient-boosting`` (statmorph features on Dask + scikit-learn),

then prints each one's test accuracy and the CPU time it took. A few
thousand labelled objects, a few CPU minutes each on a laptop.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np


def cpu_minutes() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime) / 60


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", nargs="?", type=Path, default=Path("catbuilder-example"))
    ap.add_argument("--n-objects", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument(
        "--morphology-train",
        type=int,
        default=600,
        help="objects the morphology baseline is fitted on (statmorph: ~0.4 s each)",
    )
    args = ap.parse_args()

    from catbuilder.sky import label_sources
    from catbuilder.stack import build_stack, open_stack
    from catbuilder.synth import make_survey
    from catbuilder.training import train

    work = args.workdir
    survey_dir = work / "survey"
    survey = make_survey(
        survey_dir, presets="des-like", n_objects=args.n_objects, seed=args.seed, reuse=True
    )
    stack_path = work / "hp.zarr"
    if not stack_path.exists():
        table = label_sources(survey.read_labels(), survey["des-like"].sources, sample="hp")
        build_stack(table, survey["des-like"].directory / "tiles", stack_path, size=64)
    stack = open_stack(stack_path)
    test = stack.select(split="test", exclude=["off_footprint", "missing_band"])
    n_train = len(stack.select(split="train"))
    print(f"\n{stack}\n  train {n_train}, test {len(test)} (Galaxy Zoo high-probability sample)")

    results = []
    c0, t0 = cpu_minutes(), time.perf_counter()
    cnn = train(
        stack,
        "keras.small-cnn",
        checkpoint_dir=work / "small-cnn.checkpoints",
        params={
            "batch_size": 32,
            "stages": "whole-network",
            "epochs": args.epochs,
        },
    )
    acc = float((cnn.model.predict(test) == test.objects()["label"].to_numpy()).mean())
    cnn.model.save(work / "small-cnn.model")
    results.append(("keras.small-cnn", acc, cpu_minutes() - c0, time.perf_counter() - t0))

    c0, t0 = cpu_minutes(), time.perf_counter()
    sub = stack.select(split="train", exclude=["off_footprint", "missing_band"])
    sub = sub.isel(np.arange(min(args.morphology_train, len(sub))))
    morph = train(sub, "morphology.gradient-boosting", validation=None)
    acc_m = float((morph.model.predict(test) == test.objects()["label"].to_numpy()).mean())
    morph.model.save(work / "morphology.model")
    results.append(
        (
            f"morphology.gradient-boosting ({len(sub)} train)",
            acc_m,
            cpu_minutes() - c0,
            time.perf_counter() - t0,
        )
    )

    print(f"\n{'model':<44}{'test accuracy':>14}{'CPU min':>9}{'wall min':>10}")
    for name, a, cpu, wall in results:
        print(f"{name:<44}{a:>14.3f}{cpu:>9.1f}{wall / 60:>10.1f}")
    print("\ntargets: small CNN >= 0.97, morphology >= 0.90")
    print(
        cnn.history[
            ["stage", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr"]
        ].to_string(index=False, float_format=lambda v: f"{v:.4g}")
    )


if __name__ == "__main__":
    main()
