"""Every Galaxy Zoo label used: vote fractions as soft targets against the paper's
high-probability selection, scored on the mock survey's true classes.

Trains the small CNN with several seeds on (a) the high-probability sample
("hp", one-hot labels, the paper's recipe) and (b) every Galaxy Zoo galaxy
("fo", labelled by its larger vote fraction) with the vote fractions as soft
targets, each weighted by its votes. Both are scored against the mock's truth
on the galaxies neither trained on: the labelled ones of the test split and
every galaxy without a Galaxy Zoo label (fainter, the bulk of the survey).

    python examples/soft_labels.py catbuilder-calibration --seeds 3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", nargs="?", type=Path, default=Path("catbuilder-calibration"))
    ap.add_argument("--n-objects", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1, help="mock survey seed")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per recipe")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    from catbuilder import build_catalog, predict, train
    from catbuilder.sky import label_sources
    from catbuilder.stack import build_stack, open_stack
    from catbuilder.synth import make_survey

    work = args.workdir
    survey_dir = work / "survey"
    survey = make_survey(
        survey_dir, presets="des-like", n_objects=args.n_objects, seed=args.seed, reuse=True
    )
    tiles = survey["des-like"].directory / "tiles"
    sources = survey["des-like"].read_sources()
    galaxies = sources[sources["cls"] != "star"]
    stacks = {}
    for sample in ("hp", "fo"):
        path = work / f"{sample}.zarr"
        if not path.exists():
            table = label_sources(survey.read_labels(), survey["des-like"].sources, sample=sample)
            build_stack(table, tiles, path, size=64)
        stacks[sample] = open_stack(path)
    if not (work / "galaxies.zarr").exists():
        build_stack(galaxies, tiles, work / "galaxies.zarr", size=64)
    everyone = open_stack(work / "galaxies.zarr")
    fo = stacks["fo"].objects()
    used = set(fo.loc[fo["split"].isin(["train", "validation"]), "objid"])
    labelled = set(fo["objid"])
    truth = galaxies.set_index("objid")
    n_fo = int((fo["split"] == "train").sum())
    n_hp = int((stacks["hp"].objects()["split"] == "train").sum())
    print(f"training objects: hp {n_hp}, fo {n_fo} (soft targets, vote-weighted)")

    rows = []
    for seed in range(args.seeds):
        for recipe, sample, soft in (("hp, one-hot", "hp", False), ("fo, soft", "fo", True)):
            tag = f"{sample}-{'soft' if soft else 'hard'}-{seed}"
            model = work / f"{tag}.model"
            t0 = time.perf_counter()
            if not model.exists():
                train(stacks[sample], "keras.small-cnn", params={"batch_size": 32,
                      "stages": "whole-network", "epochs": args.epochs, "seed": seed},
                      soft_labels=soft, checkpoint_dir=work / f"{tag}.checkpoints",
                      output=model)  # fmt: skip
            cat = build_catalog(predict(everyone, model, output=work / f"all-{tag}.zarr",
                                        workers=args.workers, progress=False))  # fmt: skip
            cat = cat[~cat["objid"].isin(used) & cat["predicted"].notna()]
            right = cat["predicted"].to_numpy() == truth.loc[cat["objid"], "cls"].to_numpy()
            gz = cat["objid"].isin(labelled).to_numpy()
            rows.append({"recipe": recipe, "seed": seed,
                         "labelled test": right[gz].mean(), "n labelled": int(gz.sum()),
                         "unlabelled": right[~gz].mean(), "n unlabelled": int((~gz).sum()),
                         "all unseen": right.mean(),
                         "minutes": (time.perf_counter() - t0) / 60})  # fmt: skip
            print(rows[-1], flush=True)
    t = pd.DataFrame(rows)
    print(t.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for recipe, d in t.groupby("recipe", sort=False):
        print(f"{recipe}: " + ", ".join(
            f"{c} {d[c].mean():.4f} +- {d[c].std():.4f}"
            for c in ("labelled test", "unlabelled", "all unseen")))  # fmt: skip
    hard, soft = (t[t["recipe"] == r].set_index("seed")["all unseen"] for r in t["recipe"].unique())
    gain = soft - hard
    print(f"soft - hp on all unseen galaxies, per seed: {np.round(gain.to_numpy(), 4)}; "
          f"mean {gain.mean():+.4f} (std {gain.std():.4f})")  # fmt: skip


if __name__ == "__main__":
    main()
