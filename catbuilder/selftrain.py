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

__all__ = ["SelfTrainResult", "evaluation_set", "score", "self_train"]

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


def _select(
    proba: np.ndarray, classes: list[str], n_per_class: int, threshold: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced most confident objects: indices and pseudo-labels.

    For each class, the objects predicted as it, most probable first, above
    ``threshold``; every class then contributes the same number (the
    smallest class's count, at most ``n_per_class``).
    """
    best = np.argmax(proba, axis=1)
    conf = proba[np.arange(len(proba)), best]
    per: list[np.ndarray] = []
    for c in range(len(classes)):
        idx = np.flatnonzero(best == c)
        if threshold is not None:
            idx = idx[conf[idx] >= threshold]
        per.append(idx[np.argsort(-conf[idx], kind="stable")])
    n = min([n_per_class] + [len(p) for p in per])
    chosen = np.concatenate([p[:n] for p in per]) if n > 0 else np.array([], dtype=int)
    return chosen, best[chosen]


def _per_class(value: Any) -> int | float:
    """``per_class`` as given: a count (int >= 1) or a fraction of the pool (float in (0, 1])."""
    if isinstance(value, bool):
        raise ValueError(f"selftrain per-class must be a count or a fraction, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            pass  # refused below, with the rule
    if isinstance(value, float) and value.is_integer() and value > 1:
        value = int(value)
    if isinstance(value, int | np.integer) and value >= 1:
        return int(value)
    if isinstance(value, float) and 0.0 < value <= 1.0:
        return float(value)
    raise ValueError(
        "selftrain per-class must be a count of objects (an integer >= 1) or a fraction of "
        f"the pool (a number in (0, 1]), got {value!r}"
    )


def _retrain(value: Any, model: str, params: dict | None) -> str:
    """``retrain`` checked: "scratch", or "fine-tune" for a plugin that can warm start."""
    from catbuilder.plugins import make_model

    if value not in ("scratch", "fine-tune"):
        raise ValueError(f"selftrain retrain must be 'scratch' or 'fine-tune', got {value!r}")
    if (
        value == "fine-tune"
        and "warm_start" not in make_model(model, **(params or {})).get_params()
    ):
        raise ValueError(
            f"model {model!r} cannot fine-tune (its estimator has no warm_start parameter); "
            "use selftrain retrain 'scratch'"
        )
    return value


def _round_count(per_class: int | float, r: int, n_pool: int, n_classes: int) -> int:
    """Objects of each class that round ``r`` holds: ``r * per_class``, or for a
    fraction ``f``, ``min(1, r * f)`` of the pool's share of one class."""
    if isinstance(per_class, float):
        return int(np.ceil(min(1.0, r * per_class) * n_pool / n_classes))
    return int(per_class) * r


def _training_stack(a_train, b_stack, b_pos, pseudo, path: Path):
    """A's training objects plus B's chosen ones (resampled to A's grid) as a Zarr stack."""
    import dask.array as da
    import xarray as xr

    from catbuilder.stack.preprocess import resize
    from catbuilder.stack.store import ImageStack
    from catbuilder.zarr_store import as_strings

    size = a_train.size
    keep = ["objid", "ra", "dec", "label", "split", "flags", "magzero"]
    a = a_train.ds[["images"]].assign_coords({k: a_train.ds[k] for k in keep if k in a_train.ds})
    b = b_stack.isel(np.asarray(b_pos)).ds
    imgs = b["images"].data
    if imgs.shape[-1] != size:
        imgs = da.map_blocks(
            lambda x: resize(x, size), imgs.rechunk({1: -1, 2: -1, 3: -1}),
            dtype=np.float32, chunks=(imgs.chunks[0], imgs.chunks[1], (size,), (size,)),
        )  # fmt: skip
    b_ds = xr.Dataset(
        {"images": (("object", "band", "y", "x"), imgs)},
        coords={
            "objid": ("object", b["objid"].values),
            "ra": ("object", b["ra"].values),
            "dec": ("object", b["dec"].values),
            "label": ("object", np.asarray(pseudo, dtype=object)),
            "split": ("object", np.array(["train"] * len(b_pos), dtype=object)),
            "flags": ("object", np.zeros(len(b_pos), np.uint8)),
            "magzero": (("object", "band"), b["magzero"].values),
            "band": a["band"].values,
        },
    )
    a = a.drop_vars([v for v in a.coords if v not in keep + ["band"]])
    a_split = as_strings(np.asarray(a["split"].values))
    if not (a_split == "train").any():  # A without splits: hold out validation by id
        from catbuilder.sky.selection import assign_splits

        a_split = assign_splits(a["objid"].values, test=0.0).astype(str)
    a = a.assign_coords(label=("object", as_strings(np.asarray(a["label"].values)).astype(object)))
    a = a.assign_coords(split=("object", np.asarray(a_split).astype(object)))
    both = xr.concat([a.drop_vars("object", errors="ignore"), b_ds], dim="object")
    both = both.assign_coords(object=np.arange(both.sizes["object"]))
    both["written"] = ("object", np.ones(both.sizes["object"], bool))
    both.attrs = {
        "catbuilder": {
            "kind": "image-stack",
            "complete": True,
            "parameters": {"size": size, "bands": [str(x) for x in a["band"].values]},
        }
    }
    for v in both.variables.values():
        v.encoding.clear()
    both = both.assign_coords({k: both[k].load() for k in both.coords})  # small: in memory
    both["images"] = both["images"].chunk({"object": 256})
    if path.exists():
        shutil.rmtree(path)
    both.to_zarr(path, mode="w", consolidated=False)
    return ImageStack.open(path)


def evaluation_set(stack: Any, classes: list[str], split: str | None = None) -> Any:
    """The objects of survey B that self-training scores every round on.

    Parameters
    ----------
    stack
        Survey B's image stack (or its path).
    classes
        The classes of the model (``SelfTrainResult.classes``).
    split
        B's split with truth (default ``selftrain.evaluation-split``).

    Returns
    -------
    ImageStack
        The objects of ``split`` labelled with one of ``classes`` and not
        flagged; they are never pseudo-labelled.
    """
    from catbuilder.stack.store import ImageStack
    from catbuilder.zarr_store import read_values

    if not isinstance(stack, ImageStack):
        stack = ImageStack.open(stack)
    split = str(config.resolve("selftrain.evaluation-split", split))
    clean = read_values(stack.ds["flags"]) == 0
    return stack.isel(np.flatnonzero(_is_evaluation(stack, classes, split) & clean))


def _is_evaluation(stack: Any, classes: list[str], split: str) -> np.ndarray:
    """Objects of ``split`` with a label among ``classes`` (flagged ones included)."""
    from catbuilder.zarr_store import as_strings, read_values

    labels = as_strings(read_values(stack.ds["label"]))
    return (as_strings(read_values(stack.ds["split"])) == split) & np.isin(labels, classes)


def score(model: Any, evalset: Any, classes: list[str] | None = None) -> float:
    """Accuracy of a fitted classifier on labelled objects, as each round is scored.

    Parameters
    ----------
    model
        A fitted estimator (``predict_proba`` and ``classes_``).
    evalset
        Labelled objects, e.g. from :func:`evaluation_set`.
    classes
        Classes a prediction may take (default: the model's).

    Returns
    -------
    float
        The fraction whose most probable class is their label (NaN for none).
    """
    return _evaluate(model, evalset, classes or list(model.classes_), ())[0]


def _evaluate(model, evalset, classes, fractions) -> tuple[float, int, float, list]:
    from catbuilder.evaluate.metrics import confidence_curve
    from catbuilder.zarr_store import as_strings, read_values

    if evalset is None or len(evalset) == 0:
        return float("nan"), 0, float("nan"), []
    y = as_strings(read_values(evalset.ds["label"]))
    proba = model.predict_proba(evalset)
    order = [list(model.classes_).index(c) for c in classes]
    proba = proba[:, order]
    acc = float((np.asarray(classes)[np.argmax(proba, axis=1)] == y).mean())
    if not fractions:
        return acc, len(y), float("nan"), []
    curve = confidence_curve(y, proba, classes, fractions)
    half = curve.loc[np.isclose(curve["fraction"], 0.5), "accuracy"]
    return acc, len(y), float(half.iloc[0]) if len(half) else float("nan"), curve


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
    from catbuilder.models.saved import MANIFEST, load_model, save_model
    from catbuilder.stack.store import ImageStack
    from catbuilder.train.api import split_for_training, train
    from catbuilder.zarr_store import read_values

    a = ImageStack.open(labelled)
    b = ImageStack.open(unlabelled)
    a_train, _ = split_for_training(a)
    a_part = a.select(labelled=True, exclude=list(config.get("train.exclude-flags")))
    classes = sorted(a_part.classes)
    clean_b = read_values(b.ds["flags"]) == 0
    is_eval = _is_evaluation(b, classes, settings["evaluation"])
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
            k = _round_count(settings["per_class"], r, len(pool), len(classes))
            pick, lab = _select(proba, classes, k, settings["threshold"])
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
                stack = _training_stack(a_fit, b, chosen, pseudo, rdir / "train.zarr")
            p = {**params, "seed": int(seed)}
            if r > 0 and settings["retrain"] == "fine-tune":  # from the last round's weights
                est.set_params(**p, warm_start=True)
                est = train(stack, est, checkpoint_dir=rdir / "checkpoints").model
            else:
                est = train(stack, model, params=p, checkpoint_dir=rdir / "checkpoints").model
            save_model(est, saved)
            shutil.rmtree(rdir / "train.zarr", ignore_errors=True)
            shutil.rmtree(rdir / "checkpoints", ignore_errors=True)
        acc, n_eval, half, curve = _evaluate(est, evalset, classes, settings["fractions"])
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

    Returns
    -------
    SelfTrainResult
        Written as ``rounds.csv``, ``added.parquet`` and ``curves.csv`` in
        ``outdir`` too.
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
        "per_class": _per_class(c("selftrain.per-class", per_class)),
        "threshold": c("selftrain.threshold", threshold),
        "retrain": _retrain(c("selftrain.retrain", retrain), model, params),
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
    # a marker from before "retrain" existed: that run trained every round from scratch
    if marker.exists() and {"retrain": "scratch", **json.loads(marker.read_text())} != record:
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
