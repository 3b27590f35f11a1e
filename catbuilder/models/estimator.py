"""The estimator contract every plugin model follows, and input handling.

Plugin models follow scikit-learn's conventions: ``__init__`` only stores its
keyword arguments; ``fit`` returns ``self`` and sets attributes ending in
``_`` (``classes_``); ``predict``, ``predict_proba`` and, for embedders,
``transform``; ``get_params``/``set_params``/``clone`` from
:class:`sklearn.base.BaseEstimator`. On top of that, ``save_state(path)`` and
the class method ``load_state(path)`` for the plugin's own files; everything
else the core calls is provided by :class:`ImageEstimator`.

Inputs are either an :class:`~catbuilder.stack.ImageStack` (read lazily in
batches; labels from its ``label`` coordinate when ``y`` is not given) or a
numpy array of native cutouts ``(n, band, y, x)`` whose bands are the
estimator's ``bands`` parameter.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator

__all__ = [
    "ImageEstimator",
    "InputBatch",
    "dihedral_view",
    "dihedral_views",
    "fit_input",
    "iter_inputs",
    "labels_of",
    "mean_votes",
    "n_inputs",
    "prefetch",
    "soft_targets",
    "vote_weights",
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
        from catbuilder.zarr_store import as_strings, read_values

        return as_strings(read_values(X.ds["label"]))
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


def soft_targets(labels: np.ndarray, objects: Any, classes: list[str]) -> np.ndarray:
    """Training targets ``(n, classes)`` from labels and their vote fractions.

    The label's class gets its vote fraction ``label_prob`` (at least
    ``1 / len(classes)``: the label is the class most voted for) and the other
    classes share the rest equally; a label without a vote fraction (or
    ``objects`` without ``label_prob``) is one-hot. Rows of labels outside
    ``classes`` are zero.

    Parameters
    ----------
    labels
        Class names.
    objects
        The batch's per-object table (its ``label_prob`` column), or None.
    classes
        The model's classes, in output order.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from catbuilder.models.estimator import soft_targets
    >>> soft_targets(np.array(["spiral", "elliptical"]),
    ...              pd.DataFrame({"label_prob": [0.7, np.nan]}), ["elliptical", "spiral"])
    array([[0.3, 0.7],
           [1. , 0. ]], dtype=float32)
    """
    k = len(classes)
    lookup = {c: i for i, c in enumerate(classes)}
    idx = np.array([lookup.get(str(v), -1) for v in labels], dtype=np.int64)
    q = np.ones(len(idx))
    if objects is not None and "label_prob" in objects:
        q = np.asarray(objects["label_prob"], dtype=np.float64)
        q = np.where(np.isfinite(q), np.clip(q, 1.0 / k, 1.0), 1.0)
    out = np.repeat(((1.0 - q) / max(k - 1, 1))[:, None], k, axis=1)
    known = idx >= 0
    out[np.flatnonzero(known), idx[known]] = q[known]
    out[~known] = 0.0
    return out.astype(np.float32)


def mean_votes(X: Any) -> float | None:
    """The mean ``label_votes`` of a stack's labelled objects (None without votes).

    The scale of :func:`vote_weights`: a label of average votes weighs 1.
    """
    if not _is_stack(X):
        return None
    t = X.objects()
    if "label_votes" not in t:
        return None
    v = t.loc[t["label"].astype(str) != "", "label_votes"].to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else None


def vote_weights(objects: Any, mean_votes: float | None) -> np.ndarray | None:
    """Per-object training weights: votes over the training set's mean votes.

    None when ``objects`` has no ``label_votes`` column (or ``mean_votes`` is
    unknown); a label without a vote count weighs 1.
    """
    if objects is None or "label_votes" not in objects or not mean_votes:
        return None
    v = np.asarray(objects["label_votes"], dtype=np.float64) / float(mean_votes)
    return np.where(np.isfinite(v), v, 1.0).astype(np.float32)


def prefetch(iterator: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Run ``iterator`` in a background thread, ``depth`` items ahead.

    Reading Zarr chunks and numpy preprocessing release the GIL for most of
    their time, so the next batch is ready while the model works on this one.
    An exception in the producer is raised in the consumer.
    """
    import queue
    import threading

    from catbuilder.runtime.thread_cpu import thread_ended

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
        finally:
            thread_ended("read + preprocess")

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
    """The contract between catbuilder and a plugin model.

    A plugin's estimator subclasses this (it is a scikit-learn
    :class:`~sklearn.base.BaseEstimator`; :class:`~sklearn.base.ClassifierMixin`
    and :class:`~sklearn.base.TransformerMixin` combine with it as usual).
    ``X`` is always an :class:`~catbuilder.stack.ImageStack` or an array of
    native cutouts ``(n, band, y, x)``; read either with :func:`iter_inputs`.

    **A plugin implements** ``fit``, ``predict_proba`` (classifiers),
    ``transform`` (embedders), and ``save_state`` / ``load_state`` (its own
    files only). **catbuilder provides** ``predict``, ``iter_predictions``
    (batches, with test-time augmentation), and ``save`` / ``load``, which
    wrap the plugin's state in a manifest (``catbuilder-model.json``: the
    plugin and the distribution that provides it, the SHA-256 of every file,
    versions, classes, and what the model was fitted on). Override
    ``iter_predictions`` only to be faster (a deep-learning plugin may run a
    compiled model a batch behind a reading thread).

    Distributed training (capability ``"distributed"``): set
    ``distributed_entry`` to ``"module:function"``, the function each Horovod
    rank runs on its shard, and implement :meth:`fitted_from_ranks`.
    """

    #: ``"module:function"`` run by every rank of a distributed fit (None: unsupported)
    distributed_entry: ClassVar[str | None] = None
    #: the calibration :func:`catbuilder.train` fits by default (``train.calibration: auto``):
    #: ``"temperature"`` suits a softmax, ``"isotonic"`` other scores
    calibration_method: ClassVar[str] = "temperature"

    # -- what a plugin implements ------------------------------------------------

    def fit(self, X: Any, y: Any = None, **fit_params: Any) -> ImageEstimator:
        """Fit on ``X`` (labels from ``y``, else the stack's ``label``); return ``self``.

        Sets ``classes_`` (sorted class names). ``fit_params`` may hold
        ``validation_data`` (a stack), ``checkpoint_dir`` and ``resume``, which
        an estimator may use or ignore.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement fit")

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities ``(n, len(classes_))``, rows summing to 1."""
        raise NotImplementedError(f"{type(self).__name__} does not implement predict_proba")

    def save_state(self, path: Path) -> None:
        """Write the fitted state into the (existing) directory ``path``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement save_state")

    @classmethod
    def load_state(cls, path: Path) -> ImageEstimator:
        """Rebuild a fitted estimator from what :meth:`save_state` wrote."""
        raise NotImplementedError(f"{cls.__name__} does not implement load_state")

    def fitted_from_ranks(self, results: list[dict], classes: list[str]) -> ImageEstimator:
        """Become the model that distributed training produced; return ``self``.

        ``results`` are the rank functions' return values, ordered by rank
        (rank 0 first); ``classes`` the class names all ranks trained on.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support distributed training")

    # -- what catbuilder provides ------------------------------------------------

    def predict(self, X: Any) -> np.ndarray:
        """Class names of the highest probability."""
        proba = self.predict_proba(X)
        return np.asarray(self.classes_, dtype=object)[np.argmax(proba, axis=1)]

    def iter_predictions(
        self,
        X: Any,
        batch_size: int | None = None,
        embed: bool = False,
        tta: bool = False,
    ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Yield ``(probabilities, embeddings or None)`` per batch, in input order.

        This is what :func:`catbuilder.predict` calls on its workers. The
        default slices ``X`` into batches and calls :meth:`predict_proba` (and
        ``transform`` when ``embed``); with ``tta`` each batch is seen in its
        eight flips and right-angle rotations and the outputs are averaged.

        Parameters
        ----------
        X
            A stack (or selection) or an array ``(n, band, y, x)``.
        batch_size
            Objects per batch (default 256).
        embed
            Also return embeddings (needs ``transform``).
        tta
            Average over the dihedral views of every cutout.
        """
        if embed and not hasattr(self, "transform"):
            raise ValueError(f"{type(self).__name__} has no transform: it cannot embed")
        step = int(batch_size or 256)
        for start in range(0, n_inputs(X), step):
            part = _take(X, start, start + step)
            views = dihedral_views(part) if tta else [part]
            P = np.mean([np.asarray(self.predict_proba(v), np.float64) for v in views], axis=0)
            E = None
            if embed:
                E = np.mean([np.asarray(self.transform(v), np.float64) for v in views], axis=0)
                E = E.astype(np.float32)
            yield P.astype(np.float32), E

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save into directory ``path``: the plugin's state and catbuilder's manifest.

        Returns
        -------
        pathlib.Path
        """
        from catbuilder.models.saved import save_model

        return save_model(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ImageEstimator:
        """Load a model saved with :meth:`save` (its manifest names the class)."""
        from catbuilder.models.saved import load_model

        est = load_model(path)
        if not isinstance(est, cls):
            raise TypeError(f"{path} holds a {type(est).__name__}, not a {cls.__name__}")
        return est


def _take(X: Any, start: int, stop: int) -> Any:
    if _is_stack(X):
        return X.isel(slice(start, min(stop, len(X))))
    return np.asarray(X)[start:stop]


def dihedral_views(X: Any) -> list[Any]:
    """The eight flips and right-angle rotations of every cutout of ``X``.

    Arrays ``(n, band, y, x)`` are transformed directly; a stack (selection)
    is read into memory once and returned as eight in-memory stacks.
    """
    if not _is_stack(X):
        arr = np.asarray(X)
        return [dihedral_view(arr, k) for k in range(8)]
    from catbuilder.stack.store import ImageStack

    ds = X.ds.load()
    pixels = ds["images"].values
    out = []
    for k in range(8):
        view = ds.copy()
        view["images"] = (ds["images"].dims, np.ascontiguousarray(dihedral_view(pixels, k)))
        out.append(ImageStack(view, None))
    return out


def dihedral_view(a: np.ndarray, k: int, axes: tuple[int, int] = (-2, -1)) -> np.ndarray:
    """View ``k`` (0-7) of the dihedral group of the image plane ``axes``.

    Views 0-3 rotate by ``k`` right angles, 4-7 also flip along ``axes[1]``:
    the eight views test-time augmentation averages over. The core's arrays
    are ``(n, band, y, x)`` (the default axes); a framework's channels-last
    batches pass ``axes=(1, 2)``.
    """
    b = np.rot90(a, k % 4, axes=axes)
    return np.flip(b, axis=axes[1]) if k >= 4 else b
