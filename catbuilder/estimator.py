"""The estimator contract every plugin model follows, and input handling.

Plugin models follow scikit-learn's conventions: ``__init__`` only stores its
keyword arguments; ``fit`` returns ``self`` and sets attributes ending in
``_`` (``classes_``); ``predict``, ``predict_proba`` and, for embedders,
``transform``; ``get_params``/``set_params``/``clone`` from
:class:`sklearn.base.BaseEstimator`. On top of that, ``save(path)`` and the
class method ``load(path)``.

Inputs are either an :class:`~catbuilder.stack.ImageStack` (read lazily in
batches; labels from its ``label`` coordinate when ``y`` is not given) or a
numpy array of native cutouts ``(n, band, y, x)`` whose bands are the
estimator's ``bands`` parameter.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

__all__ = [
    "ImageEstimator",
    "InputBatch",
    "fit_input",
    "iter_inputs",
    "labels_of",
    "n_inputs",
    "prefetch",
]


class InputBatch:
    """Native pixels of a batch, with magzero and labels when known."""

    __slots__ = ("labels", "magzero", "objects", "pixels")

    def __init__(self, pixels, magzero=None, labels=None, objects=None):
        self.pixels = pixels
        self.magzero = magzero
        self.labels = labels
        self.objects = objects


def _is_stack(X: Any) -> bool:
    from catbuilder.stack.store import ImageStack

    return isinstance(X, ImageStack)


def n_inputs(X: Any) -> int:
    """Number of objects in ``X``."""
    return len(X) if _is_stack(X) else int(np.asarray(X).shape[0])


def labels_of(X: Any, y: Any = None) -> np.ndarray | None:
    """Labels of ``X`` as str: ``y`` when given, else a stack's ``label`` coordinate."""
    if y is not None:
        y = np.asarray(y).astype(str).astype(object)
        if len(y) != n_inputs(X):
            raise ValueError(f"X has {n_inputs(X)} objects but y has {len(y)} labels")
        return y
    if _is_stack(X):
        from catbuilder.stack.store import _strings, _values

        return _strings(_values(X.ds["label"]))
    return None


def iter_inputs(
    X: Any,
    batch_size: int,
    bands: tuple[str, ...] | list[str],
    *,
    y: Any = None,
    shuffle: bool = False,
    seed: int | None = None,
) -> Iterator[InputBatch]:
    """Batches of native pixels from a stack or an array, lazily.

    Parameters
    ----------
    X
        An ImageStack, or an array ``(n, band, y, x)`` with bands ``bands``.
    batch_size
        Objects per batch.
    bands
        The bands of an array input (a stack knows its own).
    y
        Labels (default: a stack's ``label`` coordinate).
    shuffle, seed
        Randomise the order (stacks: chunk-friendly shuffling).
    """
    if _is_stack(X):
        # given labels are looked up by object; else each batch's table has them
        labels = labels_of(X, y) if y is not None else None
        table_pos = None
        if labels is not None:
            table_pos = {o: i for i, o in enumerate(X.ds["object"].values.tolist())}
        for b in X.batches(batch_size, shuffle=shuffle, seed=seed):
            zp = b.objects[[f"magzero_{band}" for band in X.bands]].to_numpy(np.float32)
            if labels is not None:
                lab = labels[[table_pos[o] for o in b.objects.index]]
            elif "label" in b.objects:
                lab = b.objects["label"].to_numpy()
            else:
                lab = None
            yield InputBatch(b.images, zp, lab, b.objects)
        return
    labels = labels_of(X, y)
    arr = np.asarray(X)
    if arr.ndim != 4:
        raise ValueError(
            f"expected an ImageStack or an array (n, band, y, x); got shape {arr.shape}"
        )
    if arr.shape[1] != len(bands):
        raise ValueError(
            f"array has {arr.shape[1]} bands on axis 1 but the estimator's bands are {bands}"
        )
    order = np.arange(len(arr))
    if shuffle:
        order = np.random.default_rng(seed).permutation(len(arr))
    for s in range(0, len(arr), batch_size):
        idx = order[s : s + batch_size]
        yield InputBatch(arr[idx], None, None if labels is None else labels[idx], None)


def prefetch(iterator: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Run ``iterator`` in a background thread, ``depth`` items ahead.

    Reading Zarr chunks and numpy preprocessing release the GIL for most of
    their time, so the next batch is ready while the model works on this one.
    An exception in the producer is raised in the consumer.
    """
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    done = object()
    stop = threading.Event()

    def produce():
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("done", done))
        except BaseException as err:  # handed to the consumer
            q.put(("error", err))

    t = threading.Thread(target=produce, daemon=True, name="catbuilder-prefetch")
    t.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()


def fit_input(X: Any, bands: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """What a model was fitted on, for its manifest: native cutout side and bands.

    :func:`catbuilder.predict` compares it with the stack it is given, so a
    model is never applied to cutouts of another size without a warning.
    """
    if _is_stack(X):
        return {"cutout_size": int(X.size), "bands": list(X.bands)}
    return {"cutout_size": int(np.shape(X)[-1]), "bands": list(bands)}


def input_bands(X: Any, bands: tuple[str, ...] | list[str]) -> list[str]:
    """The band names of ``X``'s pixels."""
    return list(X.bands) if _is_stack(X) else list(bands)


class ImageEstimator(BaseEstimator):
    """Base class for plugin models; subclasses implement the methods below.

    The mixins :class:`sklearn.base.ClassifierMixin` (``score``) and
    :class:`sklearn.base.TransformerMixin` combine with it as usual.
    """

    def fit(self, X: Any, y: Any = None, **fit_params: Any) -> ImageEstimator:
        raise NotImplementedError

    def predict_proba(self, X: Any) -> np.ndarray:
        raise NotImplementedError

    def predict(self, X: Any) -> np.ndarray:
        """Class names of the highest probability."""
        proba = self.predict_proba(X)
        return np.asarray(self.classes_, dtype=object)[np.argmax(proba, axis=1)]

    def save(self, path: str | os.PathLike[str]) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ImageEstimator:
        raise NotImplementedError
