"""Running a pipeline file: plan, skip what is done, resume what was cut short.

Each step gets a fingerprint from its parameters (:func:`step_params`), the
fingerprints of the steps it reads from, and the SHA-256 of the input files
it reads. A step is

- **skipped** when the manifest records it complete with that fingerprint and
  its outputs exist;
- **resumed** when it was started with that fingerprint and not finished (a
  stack, the predictions and the training checkpoints carry on from where
  they stopped);
- **replaced** when its outputs were made with other parameters (only paths
  the manifest records as this run's own);
- **run** otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from catbuilder.errors import CatbuilderError
from catbuilder.pipeline import steps as S
from catbuilder.pipeline.context import PipelineResult, PlannedStep, StepContext, log
from catbuilder.pipeline.manifest import Manifest
from catbuilder.pipeline.spec import PipelineFileError, PipelineSpec, load_spec
from catbuilder.provenance import fingerprint, now, versions

__all__ = ["Pipeline", "PipelineResult", "PlannedStep", "StepContext"]


class Pipeline:
    """A run of catbuilder's workflow described by one YAML file.

    Parameters
    ----------
    spec
        A checked pipeline file (:func:`catbuilder.pipeline.spec.load_spec`).
    progress
        Print progress bars and a line per step.

    Examples
    --------
    >>> from catbuilder import Pipeline
    >>> result = Pipeline.from_yaml("examples/pipeline.yaml").run()  # doctest: +SKIP
    >>> print(result.summary())  # doctest: +SKIP
    """

    def __init__(self, spec: PipelineSpec, *, progress: bool = True):
        self.spec = spec
        self.workdir = spec.workdir
        self.progress = progress
        self.manifest = Manifest.open(self.workdir) or Manifest(self.workdir / "manifest.json")
        self._stack = contextlib.ExitStack()
        self._client = None

    @classmethod
    def from_yaml(
        cls,
        path: str | os.PathLike[str],
        *,
        workdir: str | os.PathLike[str] | None = None,
        overrides: dict[str, Any] | None = None,
        progress: bool = True,
    ) -> Pipeline:
        """Read and check a pipeline file (nothing runs yet).

        Raises
        ------
        PipelineFileError
            Naming the bad key or value, what is allowed, the nearest known key.
        """
        return cls(load_spec(path, workdir=workdir, overrides=overrides), progress=progress)

    # -- planning ------------------------------------------------------------

    def outputs_of(self, name: str) -> dict[str, str]:
        if name == "catalog":
            from catbuilder import config

            return S.catalog_paths(S.catalog_formats(config.get("catalog.format")))
        return dict(S.STEPS[name].outputs)

    def _input_files(self, name: str) -> list[Path]:
        inputs = self.spec.section("inputs")
        if name == "tiles":
            from catbuilder.sky.fits import expand_inputs

            return expand_inputs(self.spec.tile_inputs())
        if name == "labels":
            out = [self.spec.resolve(inputs["sources"])]
            if inputs.get("labels"):
                out.append(self.spec.resolve(inputs["labels"]))
            return out
        if name == "selftrain":
            from catbuilder.sky.fits import expand_inputs

            given = self.spec.labelled_inputs()
            extra = [self.spec.resolve(given[k]) for k in ("sources", "labels") if given.get(k)]
            return expand_inputs(self.spec.tile_inputs("selftrain")) + extra
        if name == "predict" and self.spec.section("model").get("saved"):
            root = self.spec.resolve(self.spec.section("model")["saved"])
            return sorted(p for p in root.rglob("*") if p.is_file())
        return []

    def _fingerprint(self, name: str, fps: dict[str, str | None]) -> str | None:
        # the steps it reads: this run's, or a complete earlier run's when `steps`
        # leaves them out, so a subset of steps sees the same fingerprints
        upstream: dict[str, str | None] = {}
        for r in S.STEPS[name].reads:
            done = self.manifest.steps.get(r) or {}
            if r in self._steps:
                upstream[r] = fps.get(r)
            elif done.get("status") == "complete":
                upstream[r] = done.get("fingerprint")
        if any(v is None for v in upstream.values()):
            return None  # known once the step before it has run
        mock = (self.workdir / "mock").resolve()
        files = {}
        for f in self._input_files(name):
            # named relative to the work directory or the pipeline file where they
            # are inside it, so that a run moved with its inputs keeps its fingerprints
            key = self._relative_name(f)
            if upstream.get("mock") and f.resolve().is_relative_to(mock):
                files[key] = f"mock:{upstream['mock']}"  # made by this run
            elif not f.is_file():
                return None if "mock" in upstream else "missing:" + key
            else:
                files[key] = self.manifest.checksum(f)["fingerprint"]
        return fingerprint(
            {"step": name, "params": S.step_params(name, self.spec), "upstream": upstream,
             "files": files}
        )  # fmt: skip

    def _relative_name(self, f: Path) -> str:
        r = f.resolve()
        for root, tag in ((self.workdir.resolve(), "{workdir}"), (self.spec.base.resolve(), ".")):
            if r.is_relative_to(root):
                return f"{tag}/{r.relative_to(root)}"
        return str(r)

    def _decide(self, name: str, fp: str | None) -> tuple[str, str]:
        rec = self.manifest.steps.get(name)
        if rec is None:
            return "run", "not run before"
        written = rec.get("outputs") or {}  # what it wrote (may be less than it may write)
        exists = all((self.workdir / p).exists() for p in written.values())
        if fp is not None and rec.get("fingerprint") == fp:
            if rec.get("status") == "complete" and exists:
                return "skip", "complete, same parameters and inputs"
            if rec.get("status") == "complete":
                return "run", "an output is missing"
            return "resume", "interrupted"
        if fp is None and rec.get("status") == "complete" and exists:
            return "replace?", "depends on a step that runs first"
        return "replace", "parameters or inputs changed"

    @property
    def _steps(self) -> list[str]:
        return self.spec.steps()

    def plan(self) -> list[PlannedStep]:
        """What :meth:`run` would do now, step by step, without doing it."""
        from catbuilder import config

        out: list[PlannedStep] = []
        fps: dict[str, str | None] = {}
        with config.set(self.spec.config):
            for name in self._steps:
                fp = self._fingerprint(name, fps)
                action, reason = self._decide(name, fp)
                if action == "replace?":
                    action = "run"
                upstream_runs = any(
                    p.action != "skip" for p in out if p.name in S.STEPS[name].reads
                )
                if action == "skip" and upstream_runs:
                    action, reason = "run", "a step it reads runs first"
                fps[name] = fp
                out.append(PlannedStep(name, action, reason, fp, self.outputs_of(name)))
        return out

    def job_script(self) -> str | None:
        """The batch script a jobqueue cluster would submit per job (None for other
        clusters); nothing is started."""
        from catbuilder import config
        from catbuilder.runtime import JOBQUEUE_CLASSES, job_script

        with config.set(self.spec.config):
            if config.get("cluster.kind") not in JOBQUEUE_CLASSES:
                return None
            return job_script()

    # -- running -------------------------------------------------------------

    def client(self):
        """The run's Dask client, started on first use and closed at the end."""
        if self._client is None:
            from catbuilder import config
            from catbuilder.runtime import connect

            kind = config.get("cluster.kind")
            workers = config.get("cluster.workers")
            self._client = self._stack.enter_context(connect(kind, workers))
            log.info("cluster: %s", self._client)
        return self._client

    def remove_own(self, path: Path) -> None:
        """Delete a directory a step wrote, file by file as the manifest lists them.

        Raises
        ------
        CatbuilderError
            When the manifest lists no files for it (it was never finished) or
            it holds anything else; nothing is deleted then.
        """
        path = Path(path).resolve()
        if not (path.exists() or path.is_symlink()):
            return
        listed = None
        for rec in self.manifest.steps.values():
            for key, rel in (rec.get("outputs") or {}).items():
                if (self.workdir / rel).resolve() == path:
                    listed = (rec.get("listing") or {}).get(key)
        if listed is None or path.is_symlink() or not path.is_dir():
            raise CatbuilderError(
                f"{path} exists and this run's manifest does not list what is in it: "
                "catbuilder deletes only what it wrote; move it away and run again"
            )
        found = {str(p.relative_to(path)) for p in path.rglob("*") if not p.is_dir()}
        foreign = sorted(found - set(listed))
        if foreign:
            raise CatbuilderError(
                f"{path} holds files catbuilder did not write ({', '.join(foreign[:5])}); "
                "move them out and run again"
            )
        for rel in found:
            (path / rel).unlink()
        for d in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            d.rmdir()
        path.rmdir()

    def _record_files(self, name: str, written: dict[str, Path]) -> None:
        """SHA-256 of the step's file outputs, and the listing of its deletable directories."""
        from catbuilder.outputs import file_sha256

        rec = self.manifest.steps[name]
        rec["sha256"] = {
            key: file_sha256(Path(p)) for key, p in written.items() if Path(p).is_file()
        }
        listing = {}
        for key, p in written.items():
            if key in S.STEPS[name].listed:
                root = Path(p)
                listing[key] = sorted(
                    str(f.relative_to(root)) for f in root.rglob("*") if not f.is_dir()
                )
        if listing:
            rec["listing"] = listing

    def _check_workdir(self) -> None:
        wd = self.workdir
        if wd.exists() and not wd.is_dir():
            raise CatbuilderError(f"workdir {wd} exists and is not a directory")
        if wd.is_dir() and not (wd / "manifest.json").exists():
            entries = sorted(p.name for p in wd.iterdir())
            if entries:
                raise CatbuilderError(
                    f"workdir {wd} holds files ({', '.join(entries[:5])}) and no catbuilder "
                    "manifest: a run writes only into a new or empty directory, or one a "
                    "run made; choose another workdir"
                )
        if (wd / "manifest.json").exists() and Manifest.open(wd) is None:
            raise CatbuilderError(f"{wd / 'manifest.json'} is not a catbuilder run manifest")

    def _check_outputs(self, name: str) -> None:
        """Before a step writes: each of its outputs is absent or this run's own,
        and a file is unchanged since the run wrote it."""
        from catbuilder.outputs import file_sha256

        own = self.manifest.own_paths()
        rec = self.manifest.steps.get(name) or {}
        for key, rel in self.outputs_of(name).items():
            p = (self.workdir / rel).resolve()
            if not (p.exists() or p.is_symlink()):
                continue
            if p not in own:
                raise CatbuilderError(
                    f"{p} exists and this run did not write it (the manifest does not "
                    "record it): move it away or choose another workdir"
                )
            recorded = (rec.get("sha256") or {}).get(key)
            if p.is_file() and recorded and file_sha256(p) != recorded:
                raise CatbuilderError(
                    f"{p} changed since this run wrote it: catbuilder will not replace "
                    "a file someone edited; move it away and run again"
                )

    def run(self, *, dry_run: bool = False) -> PipelineResult:
        """Run every step that is not already complete with the same parameters.

        Parameters
        ----------
        dry_run
            Only print (and return) the plan, and the batch job script for a
            jobqueue cluster.

        Returns
        -------
        PipelineResult
        """
        from catbuilder import config
        from catbuilder.pipeline.checks import check_pipeline

        with config.set(self.spec.config):  # the whole run, checked before anything runs
            check_pipeline(self.spec, self._steps)
        if dry_run:
            plan = self.plan()
            print(f"catbuilder run {self.spec.name}: plan in {self.workdir}")
            for p in plan:
                print("  " + p.line())
            script = self.job_script()
            if script:
                print("batch job script for each worker:\n" + script)
            return PipelineResult(self.workdir, plan)

        self._check_workdir()
        self.workdir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.workdir / "run.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root = logging.getLogger("catbuilder")
        old_level, old_propagate = root.level, root.propagate
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False  # into run.log; the terminal gets the step lines and bars
        m = self.manifest
        m.data.update(
            name=self.spec.name,
            pipeline={
                "file": str(self.spec.path) if self.spec.path else None,
                "sections": self.spec.data,
                "configuration": self.spec.config,
            },
            versions=versions(plugins=True),
            started=now(),
        )
        m.data.pop("finished", None)
        done: list[PlannedStep] = []
        seconds: dict[str, float] = {}
        fps: dict[str, str | None] = {}
        try:
            with config.set(self.spec.config):
                log.info("run %s in %s", self.spec.name, self.workdir)
                m.data["inputs"] = {}
                for name in self._steps:
                    fp = self._fingerprint(name, fps)
                    if fp is None:
                        missing = [str(f) for f in self._input_files(name) if not f.is_file()]
                        raise CatbuilderError(
                            f"{name}: input missing: {', '.join(missing[:3]) or 'unknown'}"
                        )
                    action, reason = self._decide(name, fp)
                    m.data["inputs"].update(
                        {str(f): m.checksum(f) for f in self._input_files(name) if f.is_file()}
                    )
                    if action == "skip":
                        log.info("%s: skipped (%s)", name, reason)
                        if self.progress:
                            print(f"[{name}] kept: {reason}", flush=True)
                        fps[name] = fp
                        summary = m.steps[name].get("summary", "")
                        done.append(
                            PlannedStep(name, action, reason, fp, self.outputs_of(name), summary)
                        )
                        continue
                    self._check_outputs(name)  # only this run's own, unedited outputs
                    log.info("%s: %s (%s)", name, action, reason)
                    if self.progress:
                        print(f"[{name}] {action}: {reason}", flush=True)
                    before = m.steps.get(name) or {}
                    m.add_written(self.outputs_of(name).values())
                    m.steps[name] = {
                        # what the earlier outputs were, until this run replaces them
                        **{k: before[k] for k in ("sha256", "listing") if k in before},
                        "status": "running",
                        "fingerprint": fp,
                        "params": S.step_params(name, self.spec),
                        "outputs": self.outputs_of(name),
                        "started": now(),
                    }
                    m.save()
                    t0 = time.perf_counter()
                    ctx = StepContext(self, name, replace=action in ("replace", "run"))
                    try:
                        written = S.STEPS[name].run(ctx)
                    except BaseException as err:
                        log.error(
                            "%s: stopped: %s: %s",
                            name,
                            type(err).__name__,
                            err,
                            exc_info=not isinstance(err, CatbuilderError | KeyboardInterrupt),
                        )
                        m.steps[name]["stopped"] = f"{type(err).__name__}: {err}"
                        m.save()
                        raise
                    seconds[name] = time.perf_counter() - t0
                    m.steps[name].pop("stopped", None)
                    self._record_files(name, written)
                    m.steps[name].update(
                        summary=ctx.summary,
                        status="complete",
                        finished=now(),
                        seconds=round(seconds[name], 2),
                        outputs={k: os.path.relpath(v, self.workdir) for k, v in written.items()},
                    )
                    m.save()
                    log.info("%s: done in %.1f s", name, seconds[name])
                    fps[name] = fp
                    done.append(
                        PlannedStep(name, action, reason, fp, self.outputs_of(name), ctx.summary)
                    )
            m.data["finished"] = now()
            m.save()
        finally:
            self._stack.close()
            self._client = None
            root.removeHandler(handler)
            root.setLevel(old_level)
            root.propagate = old_propagate
            handler.close()
        result = PipelineResult(
            self.workdir,
            done,
            seconds,
            manifest=m.path,
            report=self.workdir / S.STEPS["report"].outputs["report"] if "report" in self._steps
            else None,
            log=self.workdir / "run.log",
        )  # fmt: skip
        if self.progress:
            print(result.summary(), flush=True)
        return result


def run_pipeline(path: str | os.PathLike[str], **kwargs: Any) -> PipelineResult:
    """Shorthand for ``Pipeline.from_yaml(path).run()``."""
    dry = kwargs.pop("dry_run", False)
    return Pipeline.from_yaml(path, **kwargs).run(dry_run=dry)


__all__ += ["PipelineFileError", "run_pipeline"]
