"""An ensemble of fitted models, saved, loaded and predicted with as one.

The paper reports the mean of ten models trained with different seeds; an
:class:`Ensemble` is that mean as a model: its probabilities are the mean of
its members', its per-object uncertainty the spread between them. It is
built by :func:`catbuilder.train` with ``ensemble=k`` (the members are
trained as Dask tasks in parallel) or from fitted estimators, and is saved
as a directory of saved members (``member-0``, ``member-1``, ...) under one
manifest, so :func:`catbuilder.predict` and :func:`catbuilder.load_model`
take it like any model.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from catbuilder.models.estimator import ImageEstimator

__all__ = ["Ensemble"]


class Ensemble(ImageEstimator):
    """The mean of fitted classifiers that share classes and inputs.

    Parameters
    ----------
    members
        Fitted estimators (of any plugins) with the same ``classes_``.

    Attributes
    ----------
    members_
        The fitted members (``members`` once checked).
    classes_
        Their classes.

    Notes
    -----
    Embeddings are the first member's: the members' feature spaces are
    unrelated, so their mean would mean nothing.

    Examples
    --------
    >>> from catbuilder.models.ensemble import Ensemble
    >>> ens = Ensemble([model_a, model_b]).fit()  # doctest: +SKIP
    >>> ens.save("pair.model")  # doctest: +SKIP
    """

    def __init__(self, members: Sequence[Any] = ()):
        self.members = members

    def fit(self, X: Any = None, y: Any = None, **fit_params: Any) -> Ensemble:
        """Check the (already fitted) members agree; return ``self``."""
        members = list(self.members)
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two fitted members; got {len(members)}")
        classes = [list(map(str, getattr(m, "classes_", []))) for m in members]
        if not classes[0] or any(c != classes[0] for c in classes):
            raise ValueError(f"ensemble members must share their classes; got {classes}")
        self.members_ = members
        self.classes_ = np.array(classes[0], dtype=object)
        first = members[0]
        if getattr(first, "fit_input_", None) is not None:
            self.fit_input_ = first.fit_input_
        if hasattr(first, "transform") and getattr(first, "n_features_out_", None):
            self.n_features_out_ = int(first.n_features_out_)
        return self

    @property
    def framework_packages(self) -> tuple[str, ...]:
        """The members' framework packages (their versions go in the manifest)."""
        names: list[str] = []
        for m in getattr(self, "members_", ()):
            names += [n for n in getattr(m, "framework_packages", ()) if n not in names]
        return tuple(names)

    def predict_proba(self, X: Any) -> np.ndarray:
        """The mean of the members' probabilities ``(n, classes)``."""
        return np.mean([np.asarray(m.predict_proba(X), np.float64) for m in self.members_], 0)

    def transform(self, X: Any) -> np.ndarray:
        """The first member's embedding."""
        return self.members_[0].transform(X)

    def iter_member_predictions(
        self, X: Any, batch_size: int | None = None, embed: bool = False, tta: bool = False
    ) -> Iterator[tuple[np.ndarray, np.ndarray | None, np.ndarray]]:
        """Yield ``(mean probabilities, embeddings or None, member probabilities)`` per batch.

        Each member runs its own ``iter_predictions`` (a plugin's fast path
        included) over the same batches; member probabilities are
        ``(members, n, classes)``.
        """
        streams = [
            m.iter_predictions(X, batch_size=batch_size, embed=embed and i == 0, tta=tta)
            for i, m in enumerate(self.members_)
        ]
        for outs in zip(*streams, strict=True):
            members = np.stack([np.asarray(p, np.float32) for p, _ in outs])
            yield members.mean(axis=0), outs[0][1], members

    def iter_predictions(
        self, X: Any, batch_size: int | None = None, embed: bool = False, tta: bool = False
    ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Yield ``(mean probabilities, embeddings or None)`` per batch."""
        for mean, emb, _ in self.iter_member_predictions(X, batch_size, embed, tta):
            yield mean, emb

    def save_state(self, path: Path) -> None:
        """Save every member, with its own manifest, as ``member-<i>``."""
        from catbuilder.models.saved import save_model

        for i, m in enumerate(self.members_):
            save_model(m, Path(path) / f"member-{i}")

    @classmethod
    def load_state(cls, path: Path) -> Ensemble:
        """Load the members :meth:`save_state` wrote."""
        from catbuilder.models.saved import load_model

        dirs = sorted(Path(path).glob("member-*"), key=lambda p: int(p.name.split("-")[1]))
        if not dirs:
            raise ValueError(f"{path} holds no ensemble members (member-0, member-1, ...)")
        return cls([load_model(d) for d in dirs]).fit()
