"""What a run's steps and its caller share: the step context, the plan, the result."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catbuilder.errors import CatbuilderError

__all__ = ["PipelineResult", "PlannedStep", "StepContext"]

log = logging.getLogger("catbuilder.pipeline")


@dataclass
class PlannedStep:
    """One line of a plan: what will happen to a step and why."""

    name: str
    action: str  # run | skip | resume | replace
    reason: str
    fingerprint: str | None
    outputs: dict[str, str]
    summary: str = ""

    def line(self) -> str:
        outs = ", ".join(self.outputs.values())
        return f"{self.name:<11} {self.action:<8} {self.reason}" + (f"  -> {outs}" if outs else "")


@dataclass
class PipelineResult:
    """What a run did: per step its action and seconds, and where things are."""

    workdir: Path
    steps: list[PlannedStep]
    seconds: dict[str, float] = field(default_factory=dict)
    manifest: Path | None = None
    report: Path | None = None
    log: Path | None = None

    @property
    def ran(self) -> list[str]:
        return [s.name for s in self.steps if s.action != "skip"]

    def summary(self) -> str:
        lines = [f"catbuilder run in {self.workdir}"]
        for s in self.steps:
            t = self.seconds.get(s.name)
            took = f"{t:7.1f} s" if t is not None else "   kept  "
            lines.append(f"  {s.name:<11} {took}  {s.summary}".rstrip())
        if self.manifest:
            lines.append(f"  manifest    {self.manifest}")
        if self.log:
            lines.append(f"  log         {self.log}")
        if self.report and self.report.exists():
            lines.append(f"  report      {self.report}")
        return "\n".join(lines)


class StepContext:
    """What a step function sees: the spec, its paths, the run's cluster.

    ``pipeline`` is the running :class:`catbuilder.pipeline.Pipeline`.
    """

    def __init__(self, pipeline: Any, name: str, replace: bool):
        self.pipeline = pipeline
        self.spec = pipeline.spec
        self.workdir = pipeline.workdir
        self.name = name
        self.replace = replace
        self.progress = pipeline.progress
        self.summary = ""

    def path(self, key: str) -> Path:
        return self.workdir / self.pipeline.outputs_of(self.name)[key]

    def input(self, step: str, key: str) -> Path:
        rec = self.pipeline.manifest.steps.get(step)
        if rec and key in (rec.get("outputs") or {}):
            return self.workdir / rec["outputs"][key]
        return self.workdir / self.pipeline.outputs_of(step)[key]

    def model_path(self) -> Path:
        """The model that classifies: ``model.saved``, self-training's, or the train step's."""
        saved = self.spec.section("model").get("saved")
        if saved:
            return self.spec.resolve(saved)
        done = self.pipeline.manifest.steps.get("selftrain") or {}
        if "selftrain" in self.pipeline.spec.steps() or done.get("status") == "complete":
            return self.input("selftrain", "model")
        return self.input("train", "model")

    def catalog(self):
        from catbuilder.catalog import read_catalog

        outs = self.pipeline.manifest.steps["catalog"]["outputs"]
        first = next(iter(outs.values()))
        return read_catalog(self.workdir / first)

    def client(self):
        return self.pipeline.client()

    def log(self, message: str, *, summary: bool = False) -> None:
        """A line in run.log (and on screen with progress); ``summary``: also the
        step's line in the run's summary and its manifest entry."""
        if summary:
            self.summary = message
        log.info("%s: %s", self.name, message)
        if self.progress:
            print(f"[{self.name}] {message}", flush=True)

    def error(self, message: str) -> CatbuilderError:
        return CatbuilderError(message)

    def remove_own(self, path: Path) -> None:
        """Delete ``path`` if the manifest records it as this run's output."""
        self.pipeline.remove_own(path)
