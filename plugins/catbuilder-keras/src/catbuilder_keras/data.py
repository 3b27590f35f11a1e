"""tf.data input pipelines over catbuilder inputs: lazy, preprocessed, augmented."""

from __future__ import annotations

from typing import Any

import numpy as np

from catbuilder.models.estimator import input_bands, iter_inputs, soft_targets, vote_weights
from catbuilder_keras.tf import keras, tf

__all__ = ["augmenter", "make_dataset"]


AUGMENTATIONS = ("paper", "rotations")


def augmenter(kind: str = "paper", seed: int | None = None) -> keras.Sequential:
    """On-the-fly augmentation.

    ``"paper"``: Khan et al. (2019), Appendix B: flips, rotations to 45 deg,
    shifts and zoom up to 0.3. ``"rotations"``: flips and rotations only,
    which keep each galaxy whole and centred (better for small models trained
    from scratch on a few thousand objects).
    """
    if kind not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, True or False; got {kind!r}")
    layers = [
        keras.layers.RandomFlip("horizontal_and_vertical", seed=seed),
        keras.layers.RandomRotation(45.0 / 360.0, fill_mode="nearest", seed=seed),
    ]
    if kind == "paper":
        layers += [
            keras.layers.RandomTranslation(0.3, 0.3, fill_mode="nearest", seed=seed),
            keras.layers.RandomZoom((-0.3, 0.3), fill_mode="nearest", seed=seed),
        ]
    return keras.Sequential(layers, name="augment")


def make_dataset(
    X: Any,
    *,
    bands,
    size: int,
    preprocessor,
    batch_size: int,
    classes: list[str] | None = None,
    y: Any = None,
    shuffle: bool = False,
    seed: int = 0,
    augment: bool | str = False,
    repeat: bool = False,
    soft: bool = False,
    mean_votes: float | None = None,
) -> tf.data.Dataset:
    """A dataset of ``(images, one-hot labels)`` (or images only without ``classes``).

    With ``soft``, the targets are the labels' vote fractions
    (:func:`catbuilder.models.estimator.soft_targets`) and a third element
    weighs each object by its votes over ``mean_votes`` (1 where a stack has
    no ``label_votes``).

    Batches are read from the stack or array lazily by a Python generator
    (:func:`catbuilder.models.estimator.iter_inputs`), preprocessed to ``size`` px
    in [-1, 1], augmented on the fly when training, and prefetched so the
    model never waits on I/O. Objects whose label is not in ``classes`` are
    skipped. With ``shuffle``, each pass uses a new order.
    """
    xb = input_bands(X, bands)
    epoch = {"n": 0}

    def images_only():
        for b in iter_inputs(X, batch_size, xb, shuffle=shuffle, seed=seed):
            yield preprocessor.transform(b.pixels, xb, b.magzero, size=size)

    def with_labels():
        lookup = {c: i for i, c in enumerate(classes)}
        epoch["n"] += 1
        for b in iter_inputs(X, batch_size, xb, y=y, shuffle=shuffle, seed=seed + epoch["n"]):
            idx = np.array([lookup.get(str(v), -1) for v in b.labels])
            keep = idx >= 0
            if not keep.any():
                continue
            imgs = preprocessor.transform(
                b.pixels[keep], xb, None if b.magzero is None else b.magzero[keep], size=size
            )
            if not soft:
                yield imgs, np.eye(len(classes), dtype=np.float32)[idx[keep]]
                continue
            objects = None if b.objects is None else b.objects[keep]
            weights = vote_weights(objects, mean_votes)
            if weights is None:
                weights = np.ones(int(keep.sum()), dtype=np.float32)
            yield imgs, soft_targets(b.labels[keep], objects, classes), weights

    img_spec = tf.TensorSpec((None, size, size, 3), tf.float32)
    if classes is None:
        ds = tf.data.Dataset.from_generator(images_only, output_signature=img_spec)
    else:
        target_spec = tf.TensorSpec((None, len(classes)), tf.float32)
        weight_spec = (tf.TensorSpec((None,), tf.float32),) if soft else ()
        ds = tf.data.Dataset.from_generator(
            with_labels, output_signature=(img_spec, target_spec, *weight_spec)
        )
        if augment:
            aug = augmenter("paper" if augment is True else augment, seed)
            ds = ds.map(
                lambda x, *rest: (aug(x, training=True), *rest),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
    if repeat:
        ds = ds.repeat()
    return ds.prefetch(tf.data.AUTOTUNE)
