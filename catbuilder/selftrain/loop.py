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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from catbuilder import config
from catbuilder.selftrain.policy import (
    check_per_class,
    check_retrain,
    curriculum_magnitudes,
    evaluate_round,
    is_evaluation,
    round_count,
)
from catbuilder.selftrain.result import SelfTrainResult
from catbuilder.selftrain.strategies import check_strategies, choose

__all__ = ["SelfTrainResult", "self_train"]

_MARKER = "catbuilder-selftrain.json"


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
    """One seed's rounds for every strategy, in this process (a Dask task when
    seeds run in parallel); round 0, trained on A alone, is shared."""
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
    brightness = None
    if "curriculum" in settings["strategies"]:
        brightness = curriculum_magnitudes(b, settings["curriculum_column"])[pool]
    # the objects every round trains and validates on: A's labelled train and validation splits
    a_fit = a_part.select(split=["train", "validation"]) if len(a_train) else a_part
    root = Path(outdir) / f"seed-{seed}"
    root.mkdir(parents=True, exist_ok=True)
    objid_b = read_values(b.ds["objid"])

    def fit(make_stack, rdir: Path, est, r: int, strategy: str):
        saved = rdir / "model"
        if (saved / MANIFEST).exists():  # this round finished before: resume after it
            return load_model(saved)
        stack = make_stack()
        student = settings["student_params"] if strategy == "noisy-student" else {}
        p = {**params, **student, "seed": int(seed)}
        if r > 0 and settings["retrain"] == "fine-tune":  # from the last round's weights
            est.set_params(**p, warm_start=True)
            p, model_r = None, est
        else:
            model_r = model
        ckpt = rdir / "checkpoints"
        out = train(
            stack,
            model_r,
            params=p,
            checkpoint_dir=ckpt,
            output=saved,
            soft_labels=strategy == "soft",
        ).model
        shutil.rmtree(rdir / "train.zarr", ignore_errors=True)
        shutil.rmtree(ckpt, ignore_errors=True)
        return out

    def scored(r, est, chosen, pseudo, saved) -> tuple[dict, pd.DataFrame]:
        """A round's row and confidence curve (without its strategy)."""
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
        return row, curve.assign(seed=seed, round=r) if len(curve) else curve

    def record(strategy, row, curve, rows, curves):
        rows.append({"strategy": strategy, **row})
        if len(curve):
            curves.append(
                curve.assign(strategy=strategy)[
                    ["strategy", "seed", "round", "fraction", "accuracy"]
                ]
            )

    est0 = fit(lambda: a, root / "round-0", None, 0, "")
    none = np.array([], dtype=object)
    first = scored(0, est0, none, none, root / "round-0" / "model")  # shared by the strategies
    rows, added_rows, curves = [], [], []
    for strategy in settings["strategies"]:
        record(strategy, *first, rows, curves)
        # fine-tuning changes a model in place: every strategy starts from round 0's file
        est, previous = load_model(root / "round-0" / "model"), None
        for r in range(1, int(settings["rounds"]) + 1):
            rdir = root / strategy / f"round-{r}"
            k = round_count(settings["per_class"], r, len(pool), len(classes))
            pick, lab, conf = choose(
                strategy, est, b.isel(pool), classes, k, settings["threshold"], r,
                int(settings["rounds"]), brightness,
            )  # fmt: skip
            chosen, pseudo = pool[pick], np.asarray(classes, dtype=object)[lab]
            now = set(zip(objid_b[chosen].tolist(), pseudo.tolist()))
            if strategy != "control" and now == (previous or set()):
                rows[-1]["stopped"] = (
                    "the added set stopped changing" if now else "no object to add"
                )
                break
            previous = now
            for o, lab_, p in zip(objid_b[chosen], pseudo, conf):
                added_rows.append(
                    {"strategy": strategy, "seed": seed, "round": r, "objid": o,
                     "pseudo_label": lab_, "confidence": p}
                )  # fmt: skip

            def make_stack(chosen=chosen, pseudo=pseudo, conf=conf, rdir=rdir, s=strategy):
                if s == "control":
                    return a
                from catbuilder.stack.combine import training_stack

                return training_stack(
                    a_fit, b, chosen, pseudo, rdir / "train.zarr",
                    confidence=conf if s == "soft" else None,
                )  # fmt: skip

            est = fit(make_stack, rdir, est, r, strategy)
            record(strategy, *scored(r, est, chosen, pseudo, rdir / "model"), rows, curves)
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
    strategy: str | list[str] | None = None,
    student_params: dict | None = None,
    curriculum_column: str | None = None,
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
    strategy
        Which objects become pseudo-labels, or a list of strategies to
        compare on the same round-0 models (:mod:`catbuilder.selftrain.strategies`:
        ``top``, ``spread``, ``agreement``, ``curriculum``, ``soft``, and
        ``control``, which trains on A alone as long). Default
        ``selftrain.strategy``.
    student_params
        Estimator parameters of the ``noisy-student`` strategy's rounds after
        the first, e.g. a stronger dropout; default ``selftrain.student-params``.
    curriculum_column
        B's per-object magnitude column (an extra column of its stack) that
        orders the ``curriculum`` strategy, bright to faint; default
        ``selftrain.curriculum-column``.
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
        "strategies": check_strategies(c("selftrain.strategy", strategy)),
        "student_params": dict(c("selftrain.student-params", student_params) or {}),
        "curriculum_column": str(c("selftrain.curriculum-column", curriculum_column)),
        "fractions": (1.0, 0.75, 0.5, 0.25),
    }
    if "curriculum" in settings["strategies"]:
        curriculum_magnitudes(ImageStack.open(paths[1]), settings["curriculum_column"])
    if "noisy-student" in settings["strategies"] and not settings["student_params"]:
        raise ValueError(
            "the noisy-student strategy needs student parameters (its stronger noise), e.g. "
            "student_params={'dropout': 0.85} or selftrain.student-params"
        )
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
                # each strategy has its own rounds: another strategy may join a rerun
                **{
                    k: v
                    for k, v in settings.items()
                    if k not in ("fractions", "pool", "strategies")
                },
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
        columns=["strategy", "seed", "round", "objid", "pseudo_label", "confidence"],
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
