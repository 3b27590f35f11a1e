"""Models: the estimator contract every plugin follows, and saved models.

:class:`~catbuilder.models.estimator.ImageEstimator` is the contract (a
scikit-learn estimator plus ``save_state``/``load_state``);
:func:`save_model` and :func:`load_model` wrap a plugin's files in
catbuilder's manifest (plugin, distribution, classes, embedding width,
checksums, versions). Plugins are found through :mod:`catbuilder.plugins`.
"""

from __future__ import annotations

from catbuilder.models.estimator import ImageEstimator
from catbuilder.models.saved import MANIFEST, load_model, read_manifest, save_model

__all__ = ["MANIFEST", "ImageEstimator", "load_model", "read_manifest", "save_model"]
