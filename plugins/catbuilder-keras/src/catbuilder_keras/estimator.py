"""KerasClassifier: a scikit-learn style estimator around a tf-keras network."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin, TransformerMixin

from catbuilder import config
from catbuilder.models.estimator import (
    ImageEstimator,
    dihedral_view,
    fit_input,
    input_bands,
    iter_inputs,
    labels_of,
    mean_votes,
    prefetch,
)
from catbuilder_keras import architectures as arch
from catbuilder_keras.schedule import Stage, check_whole_network, stages_from_config
from catbuilder_keras.training import CatbuilderModel, RankInfo, fit_stages

__all__ = ["KerasClassifier"]


class KerasClassifier(ClassifierMixin, TransformerMixin, ImageEstimator):
    """A pretrained (or small, from-scratch) CNN with the paper's head.

    Parameters
    ----------
    architecture
        ``"xception"``, ``"resnet50"``, ``"inceptionv3"``, ``"vgg16"``,
        ``"vgg19"`` or ``"small-cnn"``.
    input_size
        Model input side in pixels (cutouts are resized on the fly);
        default the architecture's (299 for Xception, 64 for the small CNN).
    weights
        Base weights: ``"imagenet"`` (Keras's cached file, never downloaded
        unasked: ``catbuilder weights add``/``fetch``; the default of every
        ImageNet architecture's plugin), a path to a weights file, or None
        (random: only with stages that train the whole network, as the
        small CNN's default does).
    head_units
        Dense layers of the head; the last one is the embedding (1024-d).
    dropout
        Dropout after each dense layer (0.7 in the paper).
    stages
        Training stages (dicts or :class:`~catbuilder_keras.schedule.Stage`),
        or a schedule's name: ``"paper"`` (the ``keras.stages``
        configuration: the paper's three stages) or ``"whole-network"`` (one
        stage that trains every layer: the small CNN's default).
    epochs
        Epochs of every stage, overriding theirs (``catbuilder train --epochs``).
    batch_size
        Batch size (per worker when distributed); default ``train.batch-size``.
    augment
        ``"paper"`` (or True): flips, rotations to 45 deg, shifts and zoom to
        0.3, as in the paper; ``"rotations"``: flips and rotations only (the
        small CNN's default); False: none. Default ``keras.augment``.
    early_stopping_patience, lr_patience, lr_factor
        Early stopping on ``val_loss`` and learning-rate reduction on ``loss``.
    bands, rgb, stretch
        Bands of array inputs, the bands mapped to R, G, B, and the stretch.
    seed
        Seeds weights, shuffling and augmentation.
    verbose
        Keras verbosity while fitting.
    warm_start
        When fitted already, start the next :meth:`fit` from the current
        weights instead of new ones (fine-tuning; scikit-learn's meaning).
        The classes must be the same.
    soft_labels
        Train on the labels' vote fractions (``label_prob``) as soft targets,
        weighted by votes (``label_votes``) over their mean, instead of
        one-hot labels (:func:`catbuilder.models.estimator.soft_targets`).
    """

    def __init__(
        self,
        architecture: str = "xception",
        input_size: int | None = None,
        weights: str | None = None,
        head_units: tuple[int, ...] = (1024,),
        dropout: float = 0.7,
        stages: list | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        augment: bool | None = None,
        early_stopping_patience: int | None = None,
        lr_patience: int | None = None,
        lr_factor: float | None = None,
        bands: tuple[str, ...] = ("g", "r", "i"),
        rgb: tuple[str, ...] | None = None,
        stretch: str | None = None,
        seed: int = 0,
        verbose: int = 0,
        warm_start: bool = False,
        soft_labels: bool = False,
    ):
        self.architecture = architecture
        self.input_size = input_size
        self.weights = weights
        self.head_units = head_units
        self.dropout = dropout
        self.stages = stages
        self.epochs = epochs
        self.batch_size = batch_size
        self.augment = augment
        self.early_stopping_patience = early_stopping_patience
        self.lr_patience = lr_patience
        self.lr_factor = lr_factor
        self.bands = bands
        self.rgb = rgb
        self.stretch = stretch
        self.seed = seed
        self.verbose = verbose
        self.warm_start = warm_start
        self.soft_labels = soft_labels

    #: the rank function of a distributed fit (see catbuilder.training.distributed)
    distributed_entry = "catbuilder_keras.distributed:rank_main"
    #: packages whose versions a saved model's manifest records
    framework_packages = ("tensorflow", "tf-keras")

    # -- settings -------------------------------------------------------------

    def _size(self) -> int:
        return int(self.input_size or arch.spec(self.architecture).default_size)

    def _stages(self) -> list[Stage]:
        if self.stages is None and arch.spec(self.architecture).application is None:
            stages = stages_from_config("whole-network")  # from scratch: no frozen base
        else:
            stages = stages_from_config(self.stages)
        if self.epochs is not None:  # one number for every stage (catbuilder train --epochs)
            stages = [dataclasses.replace(s, epochs=int(self.epochs)) for s in stages]
        return stages

    def _check_random_base(self) -> None:
        s = arch.spec(self.architecture)
        if self.weights is None and s.application is not None:
            check_whole_network(self.architecture, s.all, self._stages())

    def _batch(self) -> int:
        return int(config.resolve("train.batch-size", self.batch_size))

    def _prep(self):
        from catbuilder.stack.preprocess import Preprocessor

        return Preprocessor(rgb=self.rgb, stretch=self.stretch)

    def _build(self, n_classes: int, weights: str | None):
        return arch.build_model(
            self.architecture,
            self._size(),
            n_classes,
            tuple(self.head_units),
            self.dropout,
            weights,
            CatbuilderModel,
        )

    def _signature(self, n_train: int, warm: bool = False) -> dict:
        return {
            "architecture": self.architecture,
            "input_size": self._size(),
            "classes": list(self.classes_),
            "head_units": list(self.head_units),
            "stages": [s.to_dict() for s in self._stages()],
            "batch_size": self._batch(),
            "n_train": int(n_train),
            "seed": self.seed,
            # a warm start's checkpoints are not a new fit's, nor a soft-label fit's
            **({"warm_start": True} if warm else {}),
            **({"soft_labels": True} if self.soft_labels else {}),
        }

    # -- fitting --------------------------------------------------------------

    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        validation_data: Any = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        resume: bool = True,
        rank: RankInfo | None = None,
        classes: list[str] | None = None,
        n_train: int | None = None,
    ) -> KerasClassifier:
        """Train through the stages on ``X`` (an ImageStack or an array).

        Parameters
        ----------
        X, y
            Training objects and labels (a stack's own labels by default;
            unlabelled objects are skipped).
        validation_data
            An ImageStack, or ``(X, y)``.
        checkpoint_dir
            Per-epoch checkpoints; a stopped fit resumes from them.
        resume
            Continue from matching checkpoints in ``checkpoint_dir``.
        rank
            Set by the distributed launcher (Horovod rank, size, steps).
        classes, n_train
            Set by the distributed launcher: every rank must know all classes
            and the whole training set's size, not just its shard's.
        """
        from catbuilder_keras.data import make_dataset

        keras = arch.keras
        keras.utils.set_random_seed(int(self.seed))
        labels = labels_of(X, y)
        if labels is None:
            raise ValueError("fit needs labels: pass y, or a stack with a label coordinate")
        if classes is None:
            classes = sorted({str(v) for v in labels if str(v) not in ("", "nan", "None")})
        if len(classes) < 2:
            raise ValueError(f"fit needs at least two classes, got {classes}")
        initial = self._warm_weights(classes)
        self.classes_ = np.array(classes, dtype=object)
        if n_train is None:
            n_train = int(np.isin(labels.astype(str), classes).sum())
        if initial is None:
            self._check_random_base()
            model, base = self._build(
                len(classes), arch.resolve_weights(self.architecture, self.weights)
            )
        else:
            model, base = self._build(len(classes), None)
            model.set_weights(initial)
        bands = input_bands(X, self.bands)
        self.fit_input_ = fit_input(X, self.bands)
        prep, size, batch = self._prep(), self._size(), self._batch()
        augment = config.resolve("keras.augment", self.augment)
        rank = rank or RankInfo()
        repeat = rank.steps_per_epoch is not None
        train_ds = make_dataset(
            X,
            bands=bands,
            size=size,
            preprocessor=prep,
            batch_size=batch,
            classes=classes,
            y=y,
            shuffle=True,
            seed=int(self.seed) + rank.rank,
            augment=augment,
            repeat=repeat,
            soft=bool(self.soft_labels),
            mean_votes=mean_votes(X) if self.soft_labels else None,
        )
        val_ds = None
        if validation_data is not None:
            vx, vy = (
                validation_data if isinstance(validation_data, tuple) else (validation_data, None)
            )
            val_ds = make_dataset(
                vx,
                bands=input_bands(vx, self.bands),
                size=size,
                preprocessor=prep,
                batch_size=batch,
                classes=classes,
                y=vy,
                repeat=repeat,
            )
        history = fit_stages(
            model,
            base,
            self.architecture,
            self._stages(),
            train_ds,
            val_ds,
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            signature=self._signature(n_train, warm=initial is not None),
            early_stopping_patience=int(
                config.resolve("keras.early-stopping-patience", self.early_stopping_patience)
            ),
            lr_patience=int(config.resolve("keras.lr-patience", self.lr_patience)),
            lr_factor=float(config.resolve("keras.lr-factor", self.lr_factor)),
            verbose=self.verbose,
            rank=rank,
        )
        model.hvd = None
        self.model_ = model
        self.history_ = _history_frame(history)
        self.n_train_ = n_train
        return self

    def _warm_weights(self, classes: list[str]) -> list | None:
        """The weights a warm-started fit begins from (None: new ones)."""
        if not self.warm_start or not hasattr(self, "model_"):
            return None
        if list(self.classes_) != list(classes):
            raise ValueError(
                f"warm_start needs the classes the model was fitted on, {list(self.classes_)}; "
                f"got {list(classes)}"
            )
        return self.model_.get_weights()

    def fitted_from_ranks(self, results: list[dict], classes: list[str]) -> KerasClassifier:
        """Become the model rank 0 trained (called by the distributed launcher)."""
        import pandas as pd

        self.classes_ = np.array(classes, dtype=object)
        model, _ = self._build(len(classes), None)
        model.set_weights(results[0]["weights"])
        self.model_ = model
        self.history_ = pd.DataFrame(results[0]["history"])
        if results[0].get("fit_input"):
            self.fit_input_ = results[0]["fit_input"]
        self.ranks_ = [{k: v for k, v in r.items() if k != "weights"} for r in results]
        self._both = None
        return self

    # -- inference ------------------------------------------------------------

    @property
    def n_features_out_(self) -> int:
        """Width of the embedding: the head's last dense layer."""
        self._check_fitted()
        return int(self.head_units[-1])

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this KerasClassifier is not fitted; call fit or load first")

    def _outputs_model(self):
        if getattr(self, "_both", None) is None:
            m = self.model_
            self._both = arch.keras.Model(
                m.inputs, [m.get_layer("probabilities").output, m.get_layer("embedding").output]
            )
        return self._both

    def _infer_fn(self, embed: bool, resize_from: int | None = None):
        """A compiled inference call, traced once for any batch size (cheaper per
        batch than ``predict_on_batch``, which builds a ``tf.data`` iterator per
        call). With ``resize_from``, inputs of that size are resized to the
        model's input inside the call with the CPU path's bilinear weights
        (``keras.resize-in-model``: on a GPU, the resize runs there)."""
        from catbuilder_keras.tf import tf

        fns = self.__dict__.setdefault("_fns", {})
        key = (embed, resize_from)
        if key not in fns or fns[key][0] is not self.model_:
            model = self._outputs_model() if embed else self.model_
            side = self._size()
            if resize_from is None:
                spec = [tf.TensorSpec([None, side, side, 3], tf.float32)]

                def call(x):
                    return model(x, training=False)
            else:  # the CPU's bilinear weights (corners aligned), as two tensor products
                from catbuilder.stack.preprocess import interpolation_matrix

                wy = tf.constant(interpolation_matrix(resize_from, side))
                spec = [tf.TensorSpec([None, resize_from, resize_from, 3], tf.float32)]

                def call(x):
                    return model(tf.einsum("hi,nijc,wj->nhwc", wy, x, wy), training=False)

            fns[key] = (self.model_, tf.function(call, input_signature=spec))
        return fns[key][1]

    def iter_predictions(
        self, X: Any, batch_size: int | None = None, embed: bool = True, tta: bool = False
    ):
        """Yield ``(probabilities, embeddings or None)`` per batch, in input order.

        With ``tta``, probabilities and embeddings are averaged over the eight
        flips and right-angle rotations of each image. Reading and
        preprocessing run a batch ahead in a background thread, so the model
        does not wait for I/O.
        """
        self._check_fitted()
        bands = input_bands(X, self.bands)
        prep, size = self._prep(), self._size()
        in_model = bool(config.get("keras.resize-in-model"))

        step = batch_size or max(self._batch(), 64)

        def run(x):  # a short batch padded to one shape: oneDNN keeps kernels per shape
            n, side = len(x), x.shape[1]
            x = np.concatenate([x, np.zeros((step - n, *x.shape[1:]), x.dtype)]) if n < step else x
            out = self._infer_fn(embed, None if side == size else side)(x)
            return [o.numpy()[:n] for o in out] if embed else out.numpy()[:n]

        def inputs():
            for b in iter_inputs(X, step, bands):
                side = b.pixels.shape[-1]
                native = in_model and b.pixels.shape[-2] == side  # resized by the model
                yield prep.transform(b.pixels, bands, b.magzero, size=side if native else size)

        for imgs in prefetch(inputs()):
            views = [dihedral_view(imgs, k, axes=(1, 2)) for k in range(8)] if tta else [imgs]
            outs = [run(np.ascontiguousarray(v)) for v in views]
            if embed:
                p = np.mean([o[0] for o in outs], axis=0)
                e = np.mean([o[1] for o in outs], axis=0)
                yield p.astype(np.float32), e.astype(np.float32)
            else:
                yield np.mean(outs, axis=0).astype(np.float32), None

    def predict_proba(self, X: Any, batch_size: int | None = None) -> np.ndarray:
        """Class probabilities ``(n, n_classes)`` in the order of ``classes_``."""
        parts = [p for p, _ in self.iter_predictions(X, batch_size, embed=False)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.classes_)), np.float32)

    def transform(self, X: Any, batch_size: int | None = None) -> np.ndarray:
        """Embeddings ``(n, head_units[-1])``: the penultimate (1024-d) layer."""
        parts = [e for _, e in self.iter_predictions(X, batch_size, embed=True)]
        return np.concatenate(parts) if parts else np.zeros((0, self.head_units[-1]), np.float32)

    # -- persistence ----------------------------------------------------------

    def save_state(self, path: Path) -> None:
        """Write ``estimator.json`` (parameters, classes, history) and ``model.weights.h5``.

        catbuilder writes the manifest (plugin, hashes, versions) around these.
        """
        self._check_fitted()
        path = Path(path)
        self.model_.save_weights(path / "model.weights.h5")
        params = self.get_params()
        params["stages"] = [s.to_dict() for s in self._stages()]
        params["epochs"] = None  # folded into the stages above
        params["weights"] = None  # trained weights are in model.weights.h5
        meta = {
            "params": _jsonable(params),
            "classes_": [str(c) for c in self.classes_],
            "history": self.history_.to_dict(orient="records") if hasattr(self, "history_") else [],
        }
        (path / "estimator.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load_state(cls, path: Path) -> KerasClassifier:
        """Rebuild a saved estimator (no ImageNet file needed: weights are saved)."""
        import pandas as pd

        path = Path(path)
        meta_path = path / "estimator.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"no saved KerasClassifier in {path} (no estimator.json)")
        meta = json.loads(meta_path.read_text())
        params = {k: v for k, v in meta["params"].items() if k in cls._get_param_names()}
        params["head_units"] = tuple(params["head_units"])
        params["bands"] = tuple(params["bands"])
        est = cls(**params)
        est.classes_ = np.array(meta["classes_"], dtype=object)
        model, _ = est._build(len(est.classes_), None)
        model.load_weights(path / "model.weights.h5")
        est.model_ = model
        est.history_ = pd.DataFrame(meta.get("history", []))
        return est


def _history_frame(rows):
    import pandas as pd

    df = pd.DataFrame(rows)
    front = [
        c
        for c in (
            "stage",
            "stage_index",
            "epoch",
            "loss",
            "accuracy",
            "val_loss",
            "val_accuracy",
            "lr",
        )
        if c in df.columns
    ]
    return df[front + [c for c in df.columns if c not in front]]


def _jsonable(v):
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, Stage):
        return v.to_dict()
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    return v
