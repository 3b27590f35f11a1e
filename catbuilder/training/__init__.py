"""Training: the training API, and distributed training on Dask.

A model's own training settings (the Keras plugin's three stages, say) belong
to its plugin; this package fits whatever estimator a plugin makes.
"""

from catbuilder.training.api import TrainResult, train

__all__ = ["TrainResult", "train"]
