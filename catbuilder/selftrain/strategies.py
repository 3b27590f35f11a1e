"""Which of survey B's objects become pseudo-labels, by strategy.

Every strategy adds the same number of objects per class and round (the
``per_class`` rule of :func:`~catbuilder.selftrain.policy.round_count`); they
differ in which:

``top``
    the most confident of each predicted class (the paper's rule);
``spread``
    objects spread evenly over each class's confidence ranking, so the hard
    ones join as well as the easy ones;
``agreement``
    the most confident among those whose class is the same in all eight
    flips and right-angle rotations of the cutout (test-time views);
``curriculum``
    the most confident among the brightest ``r / rounds`` of the pool in
    round ``r`` (a per-object magnitude column of B), bright to faint;
``soft``
    the ``top`` objects, trained on as soft targets: the label's probability
    is the model's (the plugin needs ``soft_labels``);
``noisy-student``
    the ``top`` objects, and the rounds after the first train with the
    ``student_params`` (stronger dropout or augmentation: a noisy student);
``control``
    no pseudo-labels: every round trains on survey A alone as long, the
    baseline a strategy must beat to show that B's objects, not the extra
    training, made the gain.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from catbuilder.selftrain.policy import ranked_per_class, select_pseudo_labels

__all__ = ["STRATEGIES", "check_strategies", "choose"]

STRATEGIES = ("top", "spread", "agreement", "curriculum", "soft", "noisy-student", "control")


def check_strategies(value: Any) -> list[str]:
    """A strategy name or a list of them, checked (unique, known, in order)."""
    names = [value] if isinstance(value, str) else list(value or [])
    if not names:
        raise ValueError(f"selftrain needs a strategy; known: {', '.join(STRATEGIES)}")
    bad = [n for n in names if n not in STRATEGIES]
    if bad:
        raise ValueError(
            f"unknown selftrain strategy {bad[0]!r}; known strategies: {', '.join(STRATEGIES)}"
        )
    return list(dict.fromkeys(names))


def spread_pseudo_labels(
    proba: np.ndarray, classes: list[str], n_per_class: int, threshold: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced objects spread evenly over each class's confidence ranking."""
    best, per = ranked_per_class(proba, len(classes), threshold)
    n = min([n_per_class] + [len(p) for p in per])
    if n <= 0:
        return np.array([], dtype=int), np.array([], dtype=int)
    chosen = np.concatenate(
        [p[np.unique(np.linspace(0, len(p) - 1, n).round().astype(int))] for p in per]
    )
    return chosen, best[chosen]


def view_agreement(model: Any, X: Any, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Mean probabilities over the eight dihedral views, and whether every view
    predicts the same class, per object of ``X``."""
    from catbuilder.models.estimator import dihedral_views

    probas, agree = [], []
    for start in range(0, len(X), batch_size):
        views = dihedral_views(X.isel(slice(start, min(start + batch_size, len(X)))))
        P = np.stack([np.asarray(model.predict_proba(v), np.float64) for v in views])
        best = P.argmax(axis=2)
        agree.append((best == best[0]).all(axis=0))
        probas.append(P.mean(axis=0))
    return np.concatenate(probas), np.concatenate(agree)


def choose(
    strategy: str,
    model: Any,
    pool_stack: Any,
    classes: list[str],
    n_per_class: int,
    threshold: float | None,
    round_: int,
    rounds: int,
    brightness: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions in ``pool_stack`` that join round ``round_``, their class indices
    (into ``classes``) and the model's probability of that class.

    Parameters
    ----------
    strategy
        One of :data:`STRATEGIES`.
    model
        The last round's fitted model.
    pool_stack
        B's objects that may be pseudo-labelled.
    classes
        Class order of the returned indices.
    n_per_class, threshold
        How many of each class, and the least probability.
    round_, rounds
        This round (from 1) and the number of rounds (``curriculum``).
    brightness
        Per pool object, a magnitude (smaller: brighter), for ``curriculum``.
    """
    none = np.array([], dtype=int)
    if strategy == "control":
        return none, none, np.array([], dtype=float)
    order = [list(model.classes_).index(c) for c in classes]
    if strategy == "agreement":
        proba, agree = view_agreement(model, pool_stack)
        proba = proba[:, order]
        candidates = np.flatnonzero(agree)
    else:
        proba = np.asarray(model.predict_proba(pool_stack), np.float64)[:, order]
        candidates = np.arange(len(proba))
    if strategy == "curriculum":
        if brightness is None:
            raise ValueError("the curriculum strategy needs a magnitude per object of B")
        cut = np.nanquantile(brightness, min(1.0, round_ / max(rounds, 1)))
        candidates = np.flatnonzero(brightness <= cut)  # no magnitude (NaN): never joins
    pick = spread_pseudo_labels if strategy == "spread" else select_pseudo_labels
    sub, lab = pick(proba[candidates], classes, n_per_class, threshold)
    chosen = candidates[sub]
    return chosen, lab, proba[chosen, lab]
