"""Recursive self-training across surveys (Khan et al. 2019, section 4).

A model trained on a labelled stack (survey A, e.g. SDSS with Galaxy Zoo
labels) classifies an unlabelled stack (survey B, e.g. DES); the most
confident objects of each class are added to the training set with their
predicted class as label, and the model is trained again, round after
round. Several seeds run side by side (one Dask task each), and every round
is scored on B's objects with known truth (its evaluation split, never
used as pseudo-labels), so the gain is reported with its spread over seeds.

Cutouts of both surveys should cover the same angle (``size="20 arcsec"``);
B's cutouts are resampled to A's pixel grid when they join the training set,
and every input is resized to the model's input size as usual.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from catbuilder import config
from catbuilder.selftrain.policy import (
    check_per_class,
    check_retrain,
    evaluate_round,
    is_evaluation,
    round_count,
    select_pseudo_labels,
)

__all__ = ["SelfTrainResult", "self_train"]

_MARKER = "catbuilder-selftrain.json"


@dataclass
class SelfTrainResult:
    """What each round of each seed did.

    Attributes
    ----------
    rounds
        One row per seed and round: ``seed, round`` (0: trained on A only),
        ``n_train``, ``n_added`` and ``added_<class>``, ``accuracy`` and
        ``n_eval`` on B's evaluation objects, ``top_half_accuracy``, ``model``
        (the saved model's directory), ``stopped`` (on a seed's last round
        before ``rounds``: why no further round was trained).
    added
        The pseudo-labelled objects of B: ``seed, round, objid, pseudo_label,
        confidence`` (and ``label``, the truth where B has one).
    curves
        Accuracy against the fraction of most confident evaluation objects
        kept: ``seed, round, fraction, accuracy``.
    outdir
        Where models and tables are.
    """

    rounds: pd.DataFrame
    added: pd.DataFrame
    curves: pd.DataFrame
    outdir: Path | None = None
    classes: list[str] = field(default_factory=list)

    def summary(self) -> pd.DataFrame:
        """Accuracy per round over seeds: ``mean, std, min, max, seeds``."""
        g = self.rounds.groupby("round")["accuracy"]
        out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "min": g.min(), "max": g.max()})
        out["seeds"] = g.count()
        out["n_added_mean"] = self.rounds.groupby("round")["n_added"].mean()
        return out.reset_index()

    def gain(self, round: int | None = None) -> tuple[float, float]:
        """Mean accuracy gain of a round (default: each seed's last) over round 0, and the
        spread of that gain over seeds (standard deviation of the per-seed differences)."""
        r = self.rounds
        if round is None:
            pick = r.groupby("seed")["round"].transform("max") == r["round"]
        else:
            pick = r["round"] == round
        first = r[r["round"] == 0].set_index("seed")["accuracy"]
        later = r[pick].set_index("seed")["accuracy"]
        diff = (later - first).dropna()
        return float(diff.mean()), float(diff.std(ddof=1)) if len(diff) > 1 else float("nan")

    def __str__(self) -> str:
        s = self.summary()
        lines = ["round  accuracy on B (mean +- std over seeds)  added per seed"]
        for _, r in s.iterrows():
            lines.append(
                f"{int(r['round']):>5}  {r['mean']:.4f} +- {r['std']:.4f} "
                f"[{r['min']:.4f}, {r['max']:.4f}] ({int(r['seeds'])} seeds)"
                f"  {r['n_added_mean']:.0f}"
            )
        why = self.rounds.get("stopped", pd.Series(dtype=str)).fillna("").astype(str)
        for i in why[why != ""].index:
            r = self.rounds.loc[i]
            lines.append(f"seed {r['seed']} stopped after round {r['round']}: {r['stopped']}")
        for r in sorted(set(self.rounds["round"]) - {0}):
            gain, spread = self.gain(r)
            lines.append(
                f"gain of round {r} over round 0: {gain:+.4f} (std over seeds {spread:.4f})"
            )
        return "\n".join(lines)


def _check_outdir(outdir: Path) -> None:
    from catbuilder.errors import OutputExistsError

    ours = (outdir / _MARKER).exists()
    if outdir.exists() and (not outdir.is_dir() or (any(outdir.iterdir()) and not ours)):
        raise OutputExistsError(
            f"{outdir} exists and is not a self-training directory catbuilder wrote; "
            "choose another output path"
        )


def _one_seed(
    seed: int,
    labelled: str,
    unlabelled: str,
    model: str,
    params: dict,
    settings: dict,
    outdir: str,
) -> dict:
    """One seed's rounds, in this process (a Dask task when seeds run in parallel)."""
    from catbuilder.models.saved import MANIFEST, load_model
    from catbuilder.stack.store import ImageStack
    from catbuilder.training.api import split_for_training, train
    from catbuilder.zarr_store import read_values

    a = ImageStack.open(labelled)
    b = ImageStack.open(unlabelled)
    a_train, _ = split_for_training(a)
    a_part = a.select(labelled=True, exclude=list(config.get("train.exclude-flags")))
    classes = sorted(a_part.classes)
    clean_b = read_values(b.ds["flags"]) == 0
    is_eval = is_evaluation(b, classes, settings["evaluation"])
    evalset = b.isel(np.flatnonzero(is_eval & clean_b))  # what evaluation_set returns
    allowed = np.ones(len(b), bool)
    if settings.get("pool") is not None:
        allowed = np.isin(read_values(b.ds["objid"]), np.asarray(settings["pool"]))
    pool = np.flatnonzero(clean_b & ~is_eval & allowed)  # never the evaluation objects
    # the objects every round trains and validates on: A's labelled train and validation splits
    a_fit = a_part.select(split=["train", "validation"]) if len(a_train) else a_part
    root = Path(outdir) / f"seed-{seed}"
    root.mkdir(parents=True, exist_ok=True)
    rows, added_rows, curves = [], [], []
    previous: set = set()
    est = None
    objid_b = read_values(b.ds["objid"])
    for r in range(int(settings["rounds"]) + 1):
        rdir = root / f"round-{r}"
        saved = rdir / "model"
        chosen = np.array([], dtype=int)
        pseudo = np.array([], dtype=object)
        if r > 0:
            proba = est.predict_proba(b.isel(pool))
            order = [list(est.classes_).index(c) for c in classes]
            proba = proba[:, order]
            k = round_count(settings["per_class"], r, len(pool), len(classes))
            pick, lab = select_pseudo_labels(proba, classes, k, settings["threshold"])
            chosen, pseudo = pool[pick], np.asarray(classes, dtype=object)[lab]
            now = set(zip(objid_b[chosen].tolist(), pseudo.tolist()))
            if now == previous:  # this round would train on what the last one did
                rows[-1]["stopped"] = (
                    "the added set stopped changing" if now else "no object to add"
                )
                break
            previous = now
            for o, lab_, p in zip(objid_b[chosen], pseudo, proba[pick].max(axis=1)):
                added_rows.append(
                    {"seed": seed, "round": r, "objid": o, "pseudo_label": lab_, "confidence": p}
                )
        if (saved / MANIFEST).exists():  # this round finished before: resume after it
            est = load_model(saved)
        else:
            if r == 0:
                stack = a
            else:
                from catbuilder.stack.combine import training_stack

                stack = training_stack(a_fit, b, chosen, pseudo, rdir / "train.zarr")
            p = {**params, "seed": int(seed)}
            if r > 0 and settings["retrain"] == "fine-tune":  # from the last round's weights
                est.set_params(**p, warm_start=True)
                p, model_r = None, est
            else:
                model_r = model
            ckpt = rdir / "checkpoints"
            est = train(stack, model_r, params=p, checkpoint_dir=ckpt, output=saved).model
            shutil.rmtree(rdir / "train.zarr", ignore_errors=True)
            shutil.rmtree(rdir / "checkpoints", ignore_errors=True)
        acc, n_eval, half, curve = evaluate_round(est, evalset, classes, settings["fractions"])
        row = {
            "seed": seed,
            "round": r,
            "n_train": len(a_train) + len(chosen),
            "n_added": len(chosen),
            **{f"added_{c}": int((pseudo == c).sum()) for c in classes},
            "accuracy": acc,
            "n_eval": n_eval,
            "top_half_accuracy": half,
            "model": str(saved),
            "stopped": "",
        }
        rows.append(row)
        if len(curve):
            curves.append(
                curve.assign(seed=seed, round=r)[["seed", "round", "fraction", "accuracy"]]
            )
    return {
        "rounds": rows,
        "added": added_rows,
        "curves": pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(),
        "classes": classes,
    }


def self_train(
    labelled: Any,
    unlabelled: Any,
    model: str | None = None,
    *,
    outdir: str | os.PathLike[str],
    params: dict | None = None,
    rounds: int | None = None,
    per_class: int | float | None = None,
    threshold: float | None = None,
    retrain: str | None = None,
    seeds: list[int] | int | None = None,
    evaluation: str | None = None,
    pool: Any = None,
    cluster: Any = None,
    workers: int | None = None,
    progress: bool = True,
) -> SelfTrainResult:
    """Train on survey A, pseudo-label survey B's most confident objects, retrain; repeat.

    Parameters
    ----------
    labelled
        Image stack (or path) of survey A with labels and splits (its
        ``train``/``validation`` splits train every round's model).
    unlabelled
        Image stack (or path) of survey B. Objects of its ``evaluation``
        split that have a label are the truth every round is scored on and
        are never pseudo-labelled; flagged objects are never added.
    model
        A classifier plugin name (default ``train.model``).
    outdir
        Directory for each seed's and round's saved model and the tables; a
        rerun with the same directory resumes after the last finished round.
    params
        Estimator parameters (``seed`` is set per seed).
    rounds
        Rounds after the first training (default ``selftrain.rounds``).
    per_class
        Objects of each class added per round: a count (round ``r`` holds the
        ``r * per_class`` most confident of each class) or a fraction of the
        pool (``0.4``: round ``r`` holds the most confident ``min(1, 0.4 r)``
        of the pool's share of each class, pool size / number of classes);
        classes are balanced (default ``selftrain.per-class``).
    threshold
        Only objects at least this probable are added (default none).
    retrain
        ``"scratch"``: every round trains new weights; ``"fine-tune"``: round
        r starts from round r - 1's model (the plugin's estimator needs a
        ``warm_start`` parameter, scikit-learn's convention). Default
        ``selftrain.retrain``.
    seeds
        Seeds (or a count) trained independently (default ``selftrain.seeds``).
    evaluation
        B's split with truth (default ``selftrain.evaluation-split``).
    pool
        Object ids of B that may be pseudo-labelled (default: all of B's
        clean objects outside the evaluation split), e.g. B's galaxies by
        the survey's star/galaxy separation, as the paper's unlabelled
        sample was.
    cluster, workers
        Where the seeds run, one Dask task each (default: one after another
        in this process).
    progress
        Print each round's score as it is made.

    Returns
    -------
    SelfTrainResult
        Written as ``rounds.csv``, ``added.parquet`` and ``curves.csv`` in
        ``outdir`` too.

    Examples
    --------
    >>> from catbuilder import self_train
    >>> result = self_train("sdss.zarr", "des.zarr", "keras.small-cnn",
    ...                     outdir="selftrain", rounds=2, seeds=[0, 1, 2])  # doctest: +SKIP
    >>> result.summary()  # doctest: +SKIP
    """
    import dask

    from catbuilder.runtime import compute
    from catbuilder.stack.store import ImageStack

    c = config.resolve
    outdir = Path(outdir)
    _check_outdir(outdir)
    paths = []
    for s in (labelled, unlabelled):
        st = s if isinstance(s, ImageStack) else ImageStack.open(s)
        if st.path is None:
            raise ValueError("self-training needs stacks on disk (built with build_stack)")
        paths.append(str(Path(st.path).resolve()))
    seeds = c("selftrain.seeds", seeds)
    seeds = list(range(int(seeds))) if isinstance(seeds, int) else [int(s) for s in seeds]
    model = str(c("train.model", model))
    settings = {
        "pool": None if pool is None else [x.item() if hasattr(x, "item") else x for x in pool],
        "rounds": int(c("selftrain.rounds", rounds)),
        "per_class": check_per_class(c("selftrain.per-class", per_class)),
        "threshold": c("selftrain.threshold", threshold),
        "retrain": check_retrain(c("selftrain.retrain", retrain), model, params),
        "evaluation": str(c("selftrain.evaluation-split", evaluation)),
        "fractions": (1.0, 0.75, 0.5, 0.25),
    }
    outdir.mkdir(parents=True, exist_ok=True)
    record = json.loads(
        json.dumps(
            {
                "labelled": paths[0],
                "unlabelled": paths[1],
                "model": model,
                "params": params or {},
                "seeds": seeds,
                "pool": None if pool is None else len(settings["pool"]),
                **{k: v for k, v in settings.items() if k not in ("fractions", "pool")},
            }
        )
    )
    marker = outdir / _MARKER
    if marker.exists() and json.loads(marker.read_text()) != record:
        raise ValueError(
            f"{outdir} holds a self-training run made with other settings; its rounds "
            "would be resumed as if they were this one's: choose another outdir"
        )
    marker.write_text(json.dumps(record, indent=1))
    tasks = [
        dask.delayed(_one_seed, pure=False)(
            s, paths[0], paths[1], model, dict(params or {}), settings, str(outdir.resolve())
        )
        for s in seeds
    ]
    if cluster is None:
        results = [t.compute(scheduler="sync") for t in tasks]
    else:
        results = compute(
            tasks, cluster=cluster, workers=workers, progress=progress, desc="seeds", unit="seed"
        )
    rounds_df = pd.DataFrame([r for res in results for r in res["rounds"]])
    added = pd.DataFrame(
        [a for res in results for a in res["added"]],
        columns=["seed", "round", "objid", "pseudo_label", "confidence"],
    )
    b = ImageStack.open(paths[1])
    truth = b.objects()[["objid", "label"]]
    truth["label"] = truth["label"].where(truth["label"] != "", None)  # no truth: null
    added = added.merge(truth, on="objid", how="left")
    curves = pd.concat([res["curves"] for res in results], ignore_index=True)
    rounds_df.to_csv(outdir / "rounds.csv", index=False)
    added.to_parquet(outdir / "added.parquet", index=False)
    curves.to_csv(outdir / "curves.csv", index=False)
    return SelfTrainResult(rounds_df, added, curves, outdir, results[0]["classes"])
