"""Entry-point classes (metadata only; statmorph and sklearn load on create)."""

from __future__ import annotations

from typing import Any

from catbuilder.plugins import ModelPlugin

_URL = "https://github.com/catbuilder/catbuilder/tree/main/plugins/catbuilder-morphology"


class _Morphology(ModelPlugin):
    framework = "statmorph + scikit-learn"
    url = _URL
    capabilities = frozenset({"classify", "embed"})
    estimator = "catbuilder_morphology.estimator:MorphologyClassifier"


class RandomForestPlugin(_Morphology):
    description = "Random forest on statmorph morphology and colours (classical baseline)"

    def create(self, **params: Any):
        return self.estimator_class()(model="random-forest", **params)


class GradientBoostingPlugin(_Morphology):
    description = "Gradient boosting on statmorph morphology and colours (classical baseline)"

    def create(self, **params: Any):
        return self.estimator_class()(model="gradient-boosting", **params)


class StatmorphPlugin(_Morphology):
    description = "statmorph non-parametric morphology + colours as a feature vector"
    capabilities = frozenset({"embed"})
    estimator = "catbuilder_morphology.estimator:MorphologyEmbedder"
