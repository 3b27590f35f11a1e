"""Surveys run by sky partition: a driver whose memory does not grow with the survey.

:func:`run_survey` splits the source table into HEALPix partitions (HATS
layout), runs each partition (cutouts, predictions, its part of a HATS
catalog) as one Dask task, and keeps only the partition list and their
summaries; with ``dry_run=True`` it returns a :class:`SurveyPlan` (tasks,
bytes, projected time and nodes) without reading a pixel.
"""

from __future__ import annotations

from catbuilder.survey.partition import partition_sources, read_partition
from catbuilder.survey.plan import MEASURED_RATES, SurveyPlan
from catbuilder.survey.run import SurveyRun, run_survey

__all__ = [
    "MEASURED_RATES",
    "SurveyPlan",
    "SurveyRun",
    "partition_sources",
    "read_partition",
    "run_survey",
]
