"""Recursive self-training across surveys (Khan et al. 2019, section 4).

A model trained on a labelled stack (survey A, e.g. SDSS with Galaxy Zoo
labels) classifies an unlabelled stack (survey B, e.g. DES); the most
confident objects of each class are added to the training set with their
predicted class as label, and the model is trained again, round after
round. :mod:`~catbuilder.selftrain.policy` says what joins and how a round is
scored; :mod:`~catbuilder.selftrain.loop` runs the rounds, one Dask task per
seed.
"""

from __future__ import annotations

from catbuilder.selftrain.loop import SelfTrainResult, self_train
from catbuilder.selftrain.policy import evaluation_set, score

__all__ = ["SelfTrainResult", "evaluation_set", "score", "self_train"]
