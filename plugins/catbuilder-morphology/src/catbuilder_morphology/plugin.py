"""Entry-point classes (metadata only; statmorph and sklearn load on create)."""

from __future__ import annotations

from typing import Any, ClassVar

from catbuilder.plugins import ModelPlugin

_URL = "https://github.com/catbuilder/catbuilder/tree/main/plugins/catbuilder-morphology"


class _Morphology(ModelPlugin):
    framework = "statmorph + scikit-learn"
    url = _URL
    capabilities = frozenset({"classify", "embed"})
    estimator = "catbuilder_morphology.estimator:MorphologyClassifier"


class RandomForestPlugin(_Morphology):
    description = "Random forest on statmorph morphology and colours (classical baseline)"
    fixed_params: ClassVar[dict[str, Any]] = {"model": "random-forest"}


class GradientBoostingPlugin(_Morphology):
    description = "Gradient boosting on statmorph morphology and colours (classical baseline)"
    fixed_params: ClassVar[dict[str, Any]] = {"model": "gradient-boosting"}


class StatmorphPlugin(_Morphology):
    description = "statmorph non-parametric morphology + colours as a feature vector"
    capabilities = frozenset({"embed"})
    estimator = "catbuilder_morphology.estimator:MorphologyEmbedder"
