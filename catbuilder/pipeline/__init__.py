"""Runs of the whole workflow from one YAML file (``catbuilder run``), and the demo.

>>> from catbuilder.pipeline import Pipeline
>>> Pipeline.from_yaml("examples/pipeline.yaml").run()  # doctest: +SKIP
"""

from __future__ import annotations

from catbuilder.pipeline.demo import demo, demo_file
from catbuilder.pipeline.run import Pipeline, PipelineResult, PlannedStep, run_pipeline
from catbuilder.pipeline.spec import PipelineFileError, load_spec
from catbuilder.pipeline.steps import STEP_NAMES

__all__ = [
    "STEP_NAMES",
    "Pipeline",
    "PipelineFileError",
    "PipelineResult",
    "PlannedStep",
    "demo",
    "demo_file",
    "load_spec",
    "run_pipeline",
]
