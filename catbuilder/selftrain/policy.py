"""What self-training adds each round and how a round is scored.

The most confident objects of each class join the training set, a count or a
fraction of the pool's share of the class per round (scikit-learn's
int-or-float convention); every round is scored on survey B's evaluation
objects, which never become pseudo-labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from catbuilder import config


def select_pseudo_labels(
    proba: np.ndarray, classes: list[str], n_per_class: int, threshold: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced most confident objects: indices and pseudo-labels.

    For each class, the objects predicted as it, most probable first, above
    ``threshold``; every class then contributes the same number (the
    smallest class's count, at most ``n_per_class``).
    """
    best, per = ranked_per_class(proba, len(classes), threshold)
    n = min([n_per_class] + [len(p) for p in per])
    chosen = np.concatenate([p[:n] for p in per]) if n > 0 else np.array([], dtype=int)
    return chosen, best[chosen]


def ranked_per_class(
    proba: np.ndarray, n_classes: int, threshold: float | None
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each object's most probable class, and per class the objects predicted as
    it (at least ``threshold`` probable), most probable first."""
    best = np.argmax(proba, axis=1)
    conf = proba[np.arange(len(proba)), best]
    per: list[np.ndarray] = []
    for c in range(n_classes):
        idx = np.flatnonzero(best == c)
        if threshold is not None:
            idx = idx[conf[idx] >= threshold]
        per.append(idx[np.argsort(-conf[idx], kind="stable")])
    return best, per


def check_per_class(value: Any) -> int | float:
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


def check_retrain(value: Any, model: str, params: dict | None) -> str:
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


def round_count(per_class: int | float, r: int, n_pool: int, n_classes: int) -> int:
    """Objects of each class that round ``r`` holds: ``r * per_class``, or for a
    fraction ``f``, ``min(1, r * f)`` of the pool's share of one class."""
    if isinstance(per_class, float):
        return int(np.ceil(min(1.0, r * per_class) * n_pool / n_classes))
    return int(per_class) * r


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
    return stack.isel(np.flatnonzero(is_evaluation(stack, classes, split) & clean))


def is_evaluation(stack: Any, classes: list[str], split: str) -> np.ndarray:
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
    return evaluate_round(model, evalset, classes or list(model.classes_), ())[0]


def evaluate_round(model, evalset, classes, fractions) -> tuple[float, int, float, list]:
    from catbuilder.evaluation.metrics import confidence_curve
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


def curriculum_magnitudes(stack: Any, column: str) -> np.ndarray:
    """Per object of ``stack``, the magnitude column that orders a curriculum.

    Raises
    ------
    ValueError
        When the stack does not carry ``column`` (build it with
        ``extra_columns=[column]``).
    """
    table = stack.objects()
    if column not in table:
        raise ValueError(
            f"the curriculum strategy orders survey B by {column!r}, which its stack does not "
            f"carry: build it with build_stack(..., extra_columns=[{column!r}]) or set "
            "selftrain.curriculum-column"
        )
    return pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
