"""Estimators: statmorph features as an embedding; sklearn classifiers on them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import ClassifierMixin, TransformerMixin

from catbuilder.models.estimator import ImageEstimator, input_bands, labels_of
from catbuilder_morphology.features import compute_features, feature_names

__all__ = ["MorphologyClassifier", "MorphologyEmbedder"]


class MorphologyEmbedder(TransformerMixin, ImageEstimator):
    """Non-parametric morphology and colours of each object (statmorph).

    Parameters
    ----------
    band
        Band measured by statmorph (colours use every band).
    bands
        Bands of array inputs.
    batch_size
        Objects per Dask task.
    cluster
        Where features are measured (see :func:`catbuilder.runtime.compute`;
        default: the active client, else a process pool).
    """

    def __init__(
        self,
        band: str = "r",
        bands: tuple[str, ...] = ("g", "r", "i"),
        batch_size: int = 16,
        cluster: Any = None,
    ):
        self.band = band
        self.bands = bands
        self.batch_size = batch_size
        self.cluster = cluster

    def fit(self, X: Any, y: Any = None, **fit_params: Any) -> MorphologyEmbedder:
        self.feature_names_out_ = np.array(feature_names(input_bands(X, self.bands)), dtype=object)
        self.n_features_out_ = len(self.feature_names_out_)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """``(n, n_features)``; NaN where a measurement failed."""
        return compute_features(
            X,
            input_bands(X, self.bands),
            band=self.band,
            batch_size=self.batch_size,
            cluster=self.cluster,
        )

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.array(feature_names(list(self.bands)), dtype=object)

    def save_state(self, path: Path) -> None:
        _save(self, path)

    @classmethod
    def load_state(cls, path: Path) -> MorphologyEmbedder:
        return _load(path)


class MorphologyClassifier(ClassifierMixin, ImageEstimator):
    """A scikit-learn classifier on statmorph morphology and colours.

    Parameters
    ----------
    model
        ``"random-forest"`` or ``"gradient-boosting"``.
    n_estimators
        Trees (random forest) or boosting iterations.
    band, bands, batch_size, cluster
        As for :class:`MorphologyEmbedder`.
    random_state
        Seed of the classifier.
    """

    #: a forest's vote fractions are no softmax: scikit-learn's isotonic calibration
    calibration_method: ClassVar[str] = "isotonic"

    def __init__(
        self,
        model: str = "random-forest",
        n_estimators: int = 300,
        band: str = "r",
        bands: tuple[str, ...] = ("g", "r", "i"),
        batch_size: int = 16,
        cluster: Any = None,
        random_state: int = 0,
    ):
        self.model = model
        self.n_estimators = n_estimators
        self.band = band
        self.bands = bands
        self.batch_size = batch_size
        self.cluster = cluster
        self.random_state = random_state

    def _pipeline(self):
        from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline

        if self.model == "random-forest":
            clf = RandomForestClassifier(
                n_estimators=self.n_estimators, n_jobs=-1, random_state=self.random_state
            )
        elif self.model == "gradient-boosting":
            clf = HistGradientBoostingClassifier(
                max_iter=self.n_estimators, random_state=self.random_state
            )
        else:
            raise ValueError(
                f"model must be 'random-forest' or 'gradient-boosting', got {self.model!r}"
            )
        return make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), clf)

    def features(self, X: Any) -> np.ndarray:
        """The feature matrix of ``X`` (computed on Dask)."""
        return compute_features(
            X,
            input_bands(X, self.bands),
            band=self.band,
            batch_size=self.batch_size,
            cluster=self.cluster,
        )

    def fit(
        self, X: Any, y: Any = None, *, features: np.ndarray | None = None, **fit_params: Any
    ) -> MorphologyClassifier:
        """Measure features (or take ``features``) and fit the classifier.

        Objects without a label are skipped. Extra keyword arguments of the
        training API (``validation_data``, ``checkpoint_dir``, ``resume``)
        are accepted and ignored: one fit takes seconds.
        """
        labels = labels_of(X, y)
        if labels is None:
            raise ValueError("fit needs labels: pass y, or a stack with a label coordinate")
        labels = labels.astype(str)
        keep = ~np.isin(labels, ["", "nan", "None"])
        F = self.features(X) if features is None else np.asarray(features)
        classes = sorted(set(labels[keep]))
        if len(classes) < 2:
            raise ValueError(f"fit needs at least two classes, got {classes}")
        self.pipeline_ = self._pipeline().fit(F[keep], labels[keep])
        self.classes_ = np.array(self.pipeline_.classes_, dtype=object)
        self.feature_names_in_ = np.array(feature_names(input_bands(X, self.bands)), dtype=object)
        self.n_features_out_ = len(self.feature_names_in_)  # its embedding: the features
        return self

    def predict_proba(self, X: Any, features: np.ndarray | None = None) -> np.ndarray:
        self._check()
        F = self.features(X) if features is None else np.asarray(features)
        return self.pipeline_.predict_proba(F)

    def predict(self, X: Any, features: np.ndarray | None = None) -> np.ndarray:
        proba = self.predict_proba(X, features)
        return self.classes_[np.argmax(proba, axis=1)]

    def transform(self, X: Any) -> np.ndarray:
        """The morphology features: this classifier's embedding."""
        return self.features(X)

    def iter_predictions(
        self, X: Any, batch_size: int | None = None, embed: bool = True, tta: bool = False
    ):
        """One block of ``(probabilities, features)`` for all of ``X``."""
        F = self.features(X)
        yield (
            self.pipeline_.predict_proba(F).astype(np.float32),
            (F.astype(np.float32) if embed else None),
        )

    def _check(self) -> None:
        if not hasattr(self, "pipeline_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this MorphologyClassifier is not fitted")

    def save_state(self, path: Path) -> None:
        _save(self, path)

    @classmethod
    def load_state(cls, path: Path) -> MorphologyClassifier:
        return _load(path)


def _save(est, path: Path) -> None:
    import joblib

    joblib.dump(est, Path(path) / "estimator.joblib")


def _load(path: Path):
    import joblib

    f = Path(path) / "estimator.joblib"
    if not f.exists():
        raise FileNotFoundError(f"no saved morphology estimator in {path}")
    return joblib.load(f)
