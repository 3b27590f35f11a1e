"""One Horovod rank of a distributed fit, run inside a Dask worker.

Called by :func:`catbuilder.training.distributed.run_rank` after it has set the
rank's Horovod/Gloo environment. Each rank opens the Zarr stack itself and
reads only its shard of it.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["rank_main"]


def _threads(n: int) -> None:
    from catbuilder_keras.tf import tf

    try:  # only possible before TensorFlow's runtime starts in this process
        tf.config.threading.set_intra_op_parallelism_threads(n)
        # two: tf.data's Python generator needs a thread beside the training step
        tf.config.threading.set_inter_op_parallelism_threads(2)
    except RuntimeError:
        pass


def rank_main(payload: dict) -> dict:
    """Fit this rank's shard; returns its history, and rank 0's weights."""
    import os

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow is imported
    import dask
    import horovod.tensorflow as hvd

    _threads(int(payload.get("threads") or 1))
    hvd.init()
    try:
        # reads inside this task must not go through the cluster, whose
        # threads are busy running the ranks (see catbuilder.stack.store._values)
        with dask.config.set(scheduler="synchronous"):
            return _fit_rank(payload, hvd)
    finally:
        hvd.shutdown()


def _fit_rank(payload: dict, hvd) -> dict:
    from catbuilder.stack import open_stack
    from catbuilder_keras.estimator import KerasClassifier
    from catbuilder_keras.tf import keras
    from catbuilder_keras.training import RankInfo

    keras.backend.clear_session()
    stack = open_stack(payload["stack"])
    train = stack.isel(np.asarray(payload["train"]))
    val = None
    if payload["validation"] is not None:
        val = stack.isel(np.asarray(payload["validation"]))
    est = KerasClassifier(**payload["params"])
    rank = RankInfo(
        rank=hvd.rank(),
        size=hvd.size(),
        hvd=hvd,
        steps_per_epoch=payload["steps_per_epoch"],
        validation_steps=payload["validation_steps"] if val is not None else None,
        warmup_epochs=payload["warmup_epochs"],
        backward_passes=payload.get("backward_passes"),
        samples_per_step=est._batch() * hvd.size(),
    )
    est.fit(
        train,
        validation_data=val,
        checkpoint_dir=payload["checkpoint_dir"],
        resume=payload["resume"],
        rank=rank,
        classes=payload["classes"],
        n_train=payload["n_train"],
    )
    weights = est.model_.get_weights()
    digest = hashlib.sha256(
        b"".join(np.ascontiguousarray(w).tobytes() for w in weights)
    ).hexdigest()
    out = {
        "rank": hvd.rank(),
        "size": hvd.size(),
        "local_rank": hvd.local_rank(),
        "local_size": hvd.local_size(),
        "cross_rank": hvd.cross_rank(),
        "history": est.history_.to_dict(orient="records"),
        "n_shard": len(train),
        "weights_digest": digest,
        "fit_input": getattr(est, "fit_input_", None),
    }
    if hvd.rank() == 0:
        out["weights"] = weights
    return out
