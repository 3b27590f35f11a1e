"""Training: stage schedules, the training API, distributed training on Dask."""

from catbuilder.train.api import TrainResult, train
from catbuilder.train.schedule import Stage, stages_from_config

__all__ = ["Stage", "TrainResult", "stages_from_config", "train"]
