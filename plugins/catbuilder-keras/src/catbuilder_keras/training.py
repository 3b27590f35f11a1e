"""The stage loop: compile, fit, checkpoint every epoch, resume; Horovod-aware.

One code path serves a single process and each Horovod rank: with
``RankInfo.hvd`` set, gradients are averaged through
``hvd.DistributedGradientTape`` inside :meth:`CatbuilderModel.train_step`
(or, with ``train.backward-passes-per-step`` > 1, summed over that many
batches and averaged by one grouped allreduce),
rank 0's variables (and the optimizer's) are broadcast after the first batch
of every stage, epoch metrics are averaged over ranks, the learning rate is
scaled by the number of ranks after a warm-up, and only rank 0 writes
checkpoints.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catbuilder import config
from catbuilder_keras.architectures import set_trainable
from catbuilder_keras.tf import keras, tf

__all__ = ["CatbuilderModel", "RankInfo", "fit_stages"]

_log = logging.getLogger("catbuilder.training")


class CatbuilderModel(keras.Model):
    """A functional model whose ``train_step`` averages gradients over Horovod ranks.

    With ``backward_passes`` > 1 the gradients of that many batches are summed
    on each rank and only their mean is allreduced and applied: one update
    (and one allreduce) per ``backward_passes`` batches, the update of a batch
    that many times larger. :meth:`prepare_updates` makes the sums for the
    variables of a compiled stage; a group a stage ends inside is dropped
    (distributed fits run whole groups per epoch).
    """

    hvd: Any = None
    backward_passes: int = 1

    def prepare_updates(self) -> None:
        """Zeroed gradient sums for this stage's trainable variables (after compile).

        They are kept out of Keras's tracking: they are no weights of the
        model and are in no checkpoint or saved file.
        """
        if self.backward_passes <= 1:
            return
        self.optimizer.build(self.trainable_variables)  # not inside the update's tf.cond
        sums = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.trainable_variables]
        object.__setattr__(self, "_grad_sums", (sums, tf.Variable(0, dtype=tf.int64)))

    def train_step(self, data):
        x, y, w = keras.utils.unpack_x_y_sample_weight(data)  # w: soft labels' vote weights
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compiled_loss(y, y_pred, w, regularization_losses=self.losses)
        if self.backward_passes > 1:
            self._accumulate(tape.gradient(loss, self.trainable_variables))
        else:
            if self.hvd is not None:
                tape = self.hvd.DistributedGradientTape(tape)
            grads = tape.gradient(loss, self.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        self.compiled_metrics.update_state(y, y_pred, w)
        return {m.name: m.result() for m in self.metrics}

    def _accumulate(self, grads) -> None:
        sums, passes = self.__dict__["_grad_sums"]
        k = self.backward_passes
        for s, g in zip(sums, grads):
            s.assign_add(g)
        passes.assign_add(1)

        def update():
            mean = [s / k for s in sums]
            if self.hvd is not None:  # one fused allreduce for all of them
                mean = self.hvd.grouped_allreduce(mean, op=self.hvd.Average)
            self.optimizer.apply_gradients(zip(mean, self.trainable_variables))
            for s in sums:
                s.assign(tf.zeros_like(s))
            return tf.constant(True)

        tf.cond(passes % k == 0, update, lambda: tf.constant(False))


@dataclass
class RankInfo:
    """Where this process stands in a (possibly distributed) run."""

    rank: int = 0
    size: int = 1
    hvd: Any = None
    steps_per_epoch: int | None = None
    validation_steps: int | None = None
    warmup_epochs: int = 0
    samples_per_step: int | None = None
    backward_passes: int | None = None  # None: train.backward-passes-per-step


class _Broadcast(keras.callbacks.Callback):
    """Give every rank rank 0's variables after the first batch of a stage."""

    def __init__(self, hvd):
        super().__init__()
        self.hvd, self.done = hvd, False

    def on_train_batch_end(self, batch, logs=None):
        if not self.done:
            self.hvd.broadcast_variables(self.model.variables, root_rank=0)
            self.hvd.broadcast_variables(self.model.optimizer.variables(), root_rank=0)
            self.done = True


class _AverageMetrics(keras.callbacks.Callback):
    """Average epoch logs over ranks (before early stopping and lr schedules see them)."""

    def __init__(self, hvd):
        super().__init__()
        self.hvd = hvd

    def on_epoch_end(self, epoch, logs=None):
        if logs:
            for k in sorted(logs):
                v = tf.constant(float(logs[k]), dtype=tf.float32)
                logs[k] = float(self.hvd.allreduce(v, op=self.hvd.Average, name=f"avg_{k}"))


class _AverageState(keras.callbacks.Callback):
    """Average non-trainable variables (BatchNorm statistics) over ranks each epoch.

    Gradients are averaged, so trainable weights agree; moving statistics
    follow each rank's own batches and would not. Averaging them at every
    epoch end gives every rank, the checkpoint and early stopping's best
    weights one model.
    """

    def __init__(self, hvd):
        super().__init__()
        self.hvd = hvd

    def on_epoch_end(self, epoch, logs=None):
        for i, v in enumerate(self.model.non_trainable_variables):
            v.assign(self.hvd.allreduce(v, op=self.hvd.Average, name=f"state_{i}"))


class _WarmUp(keras.callbacks.Callback):
    """Ramp the learning rate from ``lr`` to ``lr * size`` over the first epochs."""

    def __init__(self, base_lr, size, epochs, steps):
        super().__init__()
        self.base, self.size, self.epochs, self.steps = base_lr, size, epochs, max(1, steps)
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.epoch >= self.epochs:
            return
        done = (self.epoch * self.steps + batch + 1) / (self.epochs * self.steps)
        lr = self.base * (1.0 + (self.size - 1.0) * min(done, 1.0))
        self.model.optimizer.learning_rate.assign(lr)


class _Recorder(keras.callbacks.Callback):
    """One history row per epoch; rank 0 saves a checkpoint and the run state."""

    def __init__(self, run, stage_index, stage_name, epochs: int = 0, report: bool = True):
        super().__init__()
        self.run, self.i, self.name = run, stage_index, stage_name
        self.epochs, self.report = epochs, report
        self.t0 = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        dt = time.perf_counter() - self.t0
        row = {"stage": self.name, "stage_index": self.i, "epoch": epoch + 1}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        row["lr"] = float(keras.backend.get_value(self.model.optimizer.learning_rate))
        row["seconds"] = dt
        n = self.run.samples_per_epoch
        if n:
            row["samples_per_s"] = n / dt
        self.run.history.append(row)
        self.run.save(stage=self.i, epoch=epoch + 1)
        if self.report:  # one line per epoch: `catbuilder train` shows it on stderr
            shown = " ".join(
                f"{k} {row[k]:.4g}"
                for k in ("loss", "accuracy", "val_loss", "val_accuracy")
                if k in row
            )
            _log.info(
                "stage %s epoch %d/%d: %s (%.1f s)", self.name, epoch + 1, self.epochs, shown, dt
            )


class _Run:
    """Checkpoints and run state (``state.json``) in a checkpoint directory."""

    def __init__(self, model, directory, signature, rank, resume, samples_per_epoch=None):
        self.model, self.rank, self.signature = model, rank, signature
        self.dir = Path(directory) if directory is not None else None
        self.history: list[dict] = []
        self.samples_per_epoch = samples_per_epoch
        self.state = {"stage": 0, "epoch": 0, "done": False}
        if self.dir is None:
            return
        state_path = self.dir / "state.json"
        if resume and state_path.exists():
            saved = json.loads(state_path.read_text())
            if saved.get("signature") == signature:
                self.state = {k: saved[k] for k in ("stage", "epoch", "done")}
                self.history = saved.get("history", [])
            else:
                warnings.warn(
                    f"checkpoints in {self.dir} are from a different model or data; "
                    "training from the start",
                    RuntimeWarning,
                    stacklevel=4,
                )
                if rank == 0:
                    shutil.rmtree(self.dir / "ckpt", ignore_errors=True)
        elif rank == 0 and self.dir.exists() and not resume:
            shutil.rmtree(self.dir / "ckpt", ignore_errors=True)

    def _manager(self):
        ckpt = tf.train.Checkpoint(model=self.model, optimizer=self.model.optimizer)
        return ckpt, tf.train.CheckpointManager(ckpt, str(self.dir / "ckpt"), max_to_keep=2)

    def restore(self, optimizer: bool = True) -> bool:
        """Load the last checkpoint into the model (and optimizer); False if none.

        The optimizer state belongs to one stage: at a stage boundary only the
        weights are restored, into the next stage's fresh optimizer.
        """
        if self.dir is None or not (self.dir / "ckpt").exists():
            return False
        ckpt, manager = self._manager()
        if manager.latest_checkpoint is None:
            return False
        target = ckpt if optimizer else tf.train.Checkpoint(model=self.model)
        target.restore(manager.latest_checkpoint).expect_partial()
        return True

    def save(self, stage: int, epoch: int, done: bool = False) -> None:
        self.state = {"stage": stage, "epoch": epoch, "done": done}
        if self.dir is None or self.rank != 0:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        _, manager = self._manager()
        manager.save()
        tmp = self.dir / "state.json.part"
        tmp.write_text(
            json.dumps(
                {**self.state, "signature": self.signature, "history": self.history}, indent=1
            )
        )
        tmp.replace(self.dir / "state.json")


def fit_stages(
    model: keras.Model,
    base: keras.Model,
    architecture: str,
    stages,
    train_ds,
    val_ds,
    *,
    checkpoint_dir=None,
    resume: bool = True,
    signature: dict | None = None,
    early_stopping_patience: int = 3,
    lr_patience: int = 2,
    lr_factor: float = 0.5,
    verbose: int = 0,
    rank: RankInfo | None = None,
    extra_callbacks: list | None = None,
) -> list[dict]:
    """Train ``model`` through ``stages``; returns the history rows.

    A run with checkpoints in ``checkpoint_dir`` made with the same
    ``signature`` continues where it stopped (its stage and epoch, with the
    optimizer state); a finished run only restores its final weights.
    """
    rank = rank or RankInfo()
    if rank.hvd is not None:
        model.hvd = rank.hvd
    passes = int(rank.backward_passes or config.get("train.backward-passes-per-step"))
    if passes < 1:
        raise ValueError(f"train.backward-passes-per-step must be >= 1, got {passes}")
    model.backward_passes = passes
    samples = (rank.steps_per_epoch or 0) * (rank.samples_per_step or 0) or None
    run = _Run(model, checkpoint_dir, signature or {}, rank.rank, resume, samples)
    start_stage, start_epoch = run.state["stage"], run.state["epoch"]
    restored = False
    for i, stage in enumerate(stages):
        if i < start_stage and not run.state["done"]:
            continue
        set_trainable(base, architecture, stage.trainable_from)
        lr = stage.learning_rate
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=lr),
            loss="categorical_crossentropy",
            metrics=["accuracy"],
        )
        model.prepare_updates()
        if run.state["done"]:
            run.restore(optimizer=False)
            return run.history
        initial_epoch = start_epoch if i == start_stage else 0
        if not restored and (start_stage, start_epoch) != (0, 0):
            model.optimizer.build(model.trainable_variables)
            restored = run.restore(optimizer=initial_epoch > 0)
        if initial_epoch >= stage.epochs:
            run.save(stage=i + 1, epoch=0)
            continue
        monitor = "val_loss" if val_ds is not None else "loss"
        callbacks = []
        if rank.hvd is not None:
            callbacks += [_Broadcast(rank.hvd), _AverageState(rank.hvd), _AverageMetrics(rank.hvd)]
            if rank.warmup_epochs > 0 and rank.size > 1:
                callbacks.append(
                    _WarmUp(lr, rank.size, rank.warmup_epochs, rank.steps_per_epoch or 1)
                )
        callbacks += [
            keras.callbacks.EarlyStopping(
                monitor=monitor, patience=early_stopping_patience, restore_best_weights=True
            ),
            keras.callbacks.ReduceLROnPlateau(
                monitor="loss", factor=lr_factor, patience=lr_patience, min_lr=lr * 1e-3
            ),
            _Recorder(run, i, stage.name, stage.epochs, report=rank.rank == 0),
        ] + list(extra_callbacks or [])
        if rank.hvd is not None and rank.size > 1 and rank.warmup_epochs == 0:
            model.optimizer.learning_rate.assign(lr * rank.size)
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=stage.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=rank.steps_per_epoch,
            validation_steps=rank.validation_steps if val_ds is not None else None,
            callbacks=callbacks,
            verbose=verbose if rank.rank == 0 else 0,
        )
        run.save(stage=i + 1, epoch=0)
    run.save(stage=len(stages), epoch=0, done=True)
    return run.history
