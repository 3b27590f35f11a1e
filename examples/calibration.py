"""Calibrated probabilities and ensemble uncertainty on a mock survey.

Trains an ensemble of small CNNs (successive seeds, one Dask task each) on a
Galaxy Zoo high-probability mock sample, calibrated by temperature scaling on
its validation split, then reports for each member alone and for the
ensemble, on the test split:

- accuracy, the expected calibration error (ECE) before and after calibration;
- the ROC AUC with which each per-object uncertainty (``1 - confidence``,
  ``entropy``, the members' spread ``member_std``) ranks the errors above the
  right answers;

and the same, scored by the mock's true class, on the survey's galaxies that
neither training nor calibration saw: those as bright as Galaxy Zoo's
labels (r < 17.7), all of them (most fainter than any labelled one), and
per r-magnitude bin.

    python examples/calibration.py catbuilder-calibration --members 5 --workers 2
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import pandas as pd


def _figures(cat: pd.DataFrame, truth: pd.DataFrame | None = None) -> dict:
    from catbuilder import evaluate

    ev = evaluate(cat, truth, truth_col="cls" if truth is not None else "label", by=None)
    m = ev.metrics[(ev.metrics["group"] == "all") & (ev.metrics["class"] == "all")]
    return dict(zip(m["metric"], m["value"]))


def _by_magnitude(cat: pd.DataFrame, truth: pd.DataFrame, edges) -> pd.DataFrame:
    rows = []
    joined = cat.merge(truth[["objid", "mag_r"]], on="objid")
    for lo, hi in itertools.pairwise(edges):
        part = joined[(joined["mag_r"] >= lo) & (joined["mag_r"] < hi)]
        if len(part) < 20:
            continue
        f = _figures(part.drop(columns="mag_r"), truth)
        rows.append({"mag_r": f"{lo:g}-{hi:g}", **{k: f.get(k) for k in COLUMNS}})
    return pd.DataFrame(rows)


COLUMNS = [
    "n",
    "accuracy",
    "ece_uncalibrated",
    "ece",
    "error_auroc_confidence",
    "error_auroc_entropy",
    "error_auroc_member_std",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", nargs="?", type=Path, default=Path("catbuilder-calibration"))
    ap.add_argument("--n-objects", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1, help="mock survey seed")
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    from catbuilder import build_catalog, load_model, predict, save_model, train
    from catbuilder.sky import label_sources
    from catbuilder.stack import build_stack, open_stack
    from catbuilder.synth import make_survey
    from catbuilder.training.ensemble import calibrate

    work = args.workdir
    t0 = time.perf_counter()
    survey_dir = work / "survey"
    survey = make_survey(
        survey_dir, presets="des-like", n_objects=args.n_objects, seed=args.seed, reuse=True
    )
    sources = survey["des-like"].read_sources()
    if not (work / "hp.zarr").exists():
        table = label_sources(survey.read_labels(), survey["des-like"].sources, sample="hp")
        build_stack(table, survey["des-like"].directory / "tiles", work / "hp.zarr", size=64)
    galaxies = sources[sources["cls"] != "star"]
    if not (work / "galaxies.zarr").exists():
        build_stack(galaxies, survey["des-like"].directory / "tiles", work / "galaxies.zarr",
                    size=64)  # fmt: skip
    hp, everyone = open_stack(work / "hp.zarr"), open_stack(work / "galaxies.zarr")
    flags = ["off_footprint", "missing_band"]
    val = hp.select(split="validation", exclude=flags)
    test = hp.select(split="test", exclude=flags)
    print(f"train {len(hp.select(split='train'))}, validation {len(val)}, test {len(test)}; "
          f"{len(everyone)} galaxies; {time.perf_counter() - t0:.0f} s")  # fmt: skip

    t0 = time.perf_counter()
    ckpt = work / "ensemble.checkpoints"
    ens_path = work / "ensemble.model"
    if not ens_path.exists():
        train(hp, "keras.small-cnn", params={"batch_size": 32, "stages": "whole-network",
              "epochs": args.epochs}, ensemble=args.members, cluster="local",
              workers=args.workers, checkpoint_dir=ckpt, output=ens_path)  # fmt: skip
    print(f"ensemble of {args.members} trained: {time.perf_counter() - t0:.0f} s")
    models = {}
    for i in range(args.members):  # each member alone, calibrated on the same split
        path = work / f"member-{i}.model"
        if not path.exists():
            save_model(calibrate(load_model(ckpt / f"member-{i}.model"), val), path)
        models[f"member {i}"] = path
    models[f"ensemble of {args.members}"] = ens_path

    truth = galaxies[["objid", "cls", "mag_r"]]
    seen = hp.objects()
    seen = set(seen.loc[seen["split"].isin(["train", "validation"]), "objid"])
    bright = set(truth.loc[truth["mag_r"] < 17.7, "objid"])
    rows, faint = [], {}
    for name, path in models.items():
        tag = name.replace(" ", "-")
        run = {"workers": args.workers, "overwrite": True, "progress": False}
        cat = build_catalog(predict(test, path, output=work / f"test-{tag}.zarr", **run))
        cat_all = build_catalog(predict(everyone, path, output=work / f"all-{tag}.zarr", **run))
        cat_all = cat_all[~cat_all["objid"].isin(seen)]  # neither trained nor calibrated on
        for on, figures in (
            ("HP test split", _figures(cat)),
            ("unseen, r < 17.7", _figures(cat_all[cat_all["objid"].isin(bright)], truth)),
            ("unseen, all", _figures(cat_all, truth)),
        ):
            rows.append({"model": name, "on": on, **{k: figures.get(k) for k in COLUMNS}})
        if name.startswith("ensemble") or name == "member 0":
            faint[name] = _by_magnitude(cat_all, truth, np.arange(14.0, 23.01, 1.0))
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    members = table[table["model"].str.startswith("member")]
    for on, d in members.groupby("on", sort=False):
        print(f"members on {on}: " + ", ".join(
            f"{c} {d[c].mean():.4f} +- {d[c].std():.4f}" for c in COLUMNS[1:6]))  # fmt: skip
    for name, t in faint.items():
        print(f"\n{name}, unseen galaxies by r magnitude (mock truth):")
        print(t.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
