"""The default training recipes on the hard mock regime, scored by the mock's truth.

Makes a des-like mock in the ``hard`` regime (:mod:`catbuilder.synth.regimes`:
fainter and smaller galaxies, lower S/N, a PSF varying per tile, saturated
stars, hot columns, uncatalogued neighbours, 3% wrong labels, Galaxy Zoo
labels only to r < 17.7) or, with ``--regime default``, in the default one;
trains the small CNN with several seeds on (a) the high-probability sample,
one-hot, and (b) every labelled galaxy's vote fractions as soft targets;
and reports, against the mock's true classes, the accuracy on the training
objects, on every des-like galaxy no model trained on, per r-magnitude bin,
for each seed and for the seeds' average (an ensemble). ``--upper-bound``
also trains the same CNN on half of all the galaxies with their true class
and scores it on the other half: what the pixels allow.

    python examples/hard_regime.py catbuilder-hard --regime hard --seeds 3
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import time
from pathlib import Path

import numpy as np
import pandas as pd

EDGES = (14.0, 16.0, 17.0, 17.7, 18.5, 19.0, 19.5, 20.0, 21.0, 23.0)


def _scores(cat: pd.DataFrame, truth: pd.DataFrame, name: str) -> list[dict]:
    """Accuracy vs truth over all objects of ``cat`` and per r-magnitude bin, and what a
    cut at p > 0.9 keeps: the fraction of objects and their accuracy; the ECE of all."""
    from catbuilder.models.calibration import expected_calibration_error

    joined = cat.merge(truth[["objid", "cls", "mag_r"]], on="objid")
    right = joined["predicted"].to_numpy() == joined["cls"].to_numpy()
    sure = joined["confidence"].to_numpy() > 0.9

    def row(sel: np.ndarray, label: str) -> dict:
        kept = sel & sure
        return {"recipe": name, "mag_r": label, "n": int(sel.sum()), "accuracy": right[sel].mean(),
                "p>0.9": sure[sel].mean(),
                "p>0.9 accuracy": right[kept].mean() if kept.any() else np.nan}  # fmt: skip

    cols = [c for c in joined.columns if c.startswith("p_")]
    y = np.array([[c[2:] for c in cols].index(v) for v in joined["cls"]])
    rows = [{**row(np.ones(len(joined), bool), "all"),
             "ece": expected_calibration_error(y, joined[cols].to_numpy())}]  # fmt: skip
    for lo, hi in itertools.pairwise(EDGES):
        sel = ((joined["mag_r"] >= lo) & (joined["mag_r"] < hi)).to_numpy()
        if sel.sum() >= 20:
            rows.append(row(sel, f"{lo:g}-{hi:g}"))
    return rows


def _average(cats: list[pd.DataFrame]) -> pd.DataFrame:
    """The seeds' mean probabilities and the class they make most probable."""
    cols = [c for c in cats[0].columns if c.startswith("p_")]
    mean = sum(c.set_index("objid")[cols] for c in cats) / len(cats)
    return pd.DataFrame({"objid": mean.index, **{c: mean[c].to_numpy() for c in cols},
                         "predicted": mean.idxmax(axis=1).str[2:].to_numpy(),
                         "confidence": mean.max(axis=1).to_numpy()})  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", nargs="?", type=Path, default=Path("catbuilder-hard"))
    ap.add_argument("--regime", choices=["default", "hard"], default="hard")
    ap.add_argument("--n-objects", type=int, default=12000)
    ap.add_argument("--seed", type=int, default=1, help="mock survey seed")
    ap.add_argument("--seeds", type=int, default=3, help="models per recipe")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--upper-bound", action="store_true",
                    help="also train on half the galaxies with their true class")  # fmt: skip
    ap.add_argument("--mask-zero-weight", action="store_true",
                    help="cut with cutouts.mask-zero-weight: NaN where weight is 0")  # fmt: skip
    args = ap.parse_args()

    from catbuilder import build_catalog, config, predict, train
    from catbuilder.sky import label_sources
    from catbuilder.stack import build_stack, open_stack
    from catbuilder.synth import make_survey

    work = args.workdir
    settings = contextlib.ExitStack()  # held to the end of the script
    if args.mask_zero_weight:
        settings.enter_context(config.set({"cutouts.mask-zero-weight": True}))
    t0 = time.perf_counter()
    survey_dir = work / "survey"
    survey = make_survey(
        survey_dir,
        presets="des-like",
        n_objects=args.n_objects,
        seed=args.seed,
        regime=args.regime,
        reuse=True,
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
    truth = galaxies[["objid", "cls", "mag_r"]]
    used = set()
    for st in stacks.values():
        o = st.objects()
        used |= set(o.loc[o["split"].isin(["train", "validation"]), "objid"])
    labels = survey.read_labels()
    print(f"{args.regime} regime: {len(galaxies)} des-like galaxies (median r "
          f"{galaxies['mag_r'].median():.2f}), {len(labels)} labelled "
          f"({labels['flipped'].mean():.1%} wrong), training objects: "
          + ", ".join(f"{k} {int((s.objects()['split'] == 'train').sum())}"
                      for k, s in stacks.items())
          + f"; {len(galaxies) - len(used & set(galaxies['objid']))} unseen; "
          f"{time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip

    rows, cats = [], {}
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
            run = {"workers": args.workers, "progress": False}
            cat = build_catalog(predict(everyone, model, output=work / f"all-{tag}.zarr", **run))
            fit = stacks[sample].select(split="train")
            cat_fit = build_catalog(predict(fit, model, output=work / f"fit-{tag}.zarr", **run))
            cat = cat[~cat["objid"].isin(used) & cat["predicted"].notna()]
            cats.setdefault(recipe, []).append(cat)
            for r in _scores(cat_fit, truth, recipe)[:1]:
                rows.append({**r, "seed": seed, "mag_r": "train split"})
            scores = _scores(cat, truth, recipe)
            rows += [{**r, "seed": seed} for r in scores]
            print(f"{recipe} seed {seed}: unseen {scores[0]['accuracy']:.4f}, "
                  f"{(time.perf_counter() - t0) / 60:.1f} min", flush=True)  # fmt: skip
    if args.upper_bound:  # the same CNN, trained where the labels are missing, with truth
        from catbuilder.sky.selection import assign_splits

        if not (work / "truth.zarr").exists():
            split = assign_splits(galaxies["objid"].to_numpy(), validation=0.1, test=0.5)
            build_stack(galaxies.assign(label=galaxies["cls"], split=split), tiles,
                        work / "truth.zarr", size=64)  # fmt: skip
        known = open_stack(work / "truth.zarr")
        model = work / "truth-0.model"
        if not model.exists():
            train(known, "keras.small-cnn", params={"batch_size": 32, "stages": "whole-network",
                  "epochs": args.epochs, "seed": 0}, checkpoint_dir=work / "truth.checkpoints",
                  output=model)  # fmt: skip
        test = known.select(split="test")
        cat = build_catalog(predict(test, model, output=work / "truth-test.zarr",
                                    workers=args.workers, progress=False))  # fmt: skip
        rows += [{**r, "seed": 0} for r in _scores(cat, truth, "upper bound: truth-trained")]
    for recipe, cs in cats.items():
        rows += [{**r, "seed": "mean"} for r in _scores(_average(cs), truth, f"{recipe}, ensemble")]
    t = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    per = t[t["seed"] != "mean"].groupby(["recipe", "mag_r"], sort=False)
    table = per["accuracy"].agg(["mean", "std"]).join(per["n"].first())
    table = table.join(per[["p>0.9", "p>0.9 accuracy", "ece"]].mean())
    ens = t[t["seed"] == "mean"].set_index(["recipe", "mag_r"])[
        ["accuracy", "n", "p>0.9", "p>0.9 accuracy", "ece"]
    ]
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    print(ens.to_string(float_format=lambda v: f"{v:.4f}"))
    t.to_csv(work / "scores.csv", index=False)


if __name__ == "__main__":
    main()
