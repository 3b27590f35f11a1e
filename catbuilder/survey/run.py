"""A survey run by sky partition: the driver holds partitions, never objects.

``run_survey`` partitions the source table (a batch at a time,
:mod:`catbuilder.survey.partition`), then submits one task per partition
(:func:`catbuilder.survey.task.run_partition`), a bounded window of them at
a time, and receives from each only its summary. Each partition's cutouts,
predictions and catalog part are written by its worker. When every
partition is done the driver writes the HATS catalog's metadata (partition
list, ``_metadata`` from the parts' footers, ``hats.properties``) and the
survey's totals. What the driver holds grows with the number of partitions
(thousands for 10^8 objects), not with the number of objects.

A stopped run started again with the same arguments keeps every finished
partition and resumes the others.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from catbuilder import config, outputs
from catbuilder._version import __version__
from catbuilder.errors import OutputExistsError
from catbuilder.survey.partition import parquet_files, partition_sources
from catbuilder.survey.plan import SurveyPlan, plan_partitions
from catbuilder.survey.task import catalog_part, part_directory, read_summary, run_partition

MARKER = "catbuilder-survey.json"
KIND = "survey"


@dataclass
class SurveyRun:
    """A survey run by sky partition: where its products are, and its totals.

    Attributes
    ----------
    path
        The run's directory.
    partitions
        One row per partition: ``order``, ``pixel`` (HEALPix, nested), ``n``.
    summaries
        Per partition: object, class, flag and label counts (what evaluation
        needs, without reading the catalog).
    """

    path: Path
    partitions: pd.DataFrame
    summaries: list[dict] = field(repr=False)

    @property
    def catalog_path(self) -> Path:
        """The HATS catalog (read it with :func:`catbuilder.read_catalog` or lsdb)."""
        return self.path / "catalog"

    @property
    def n_objects(self) -> int:
        """Objects in the catalog: every source once."""
        return int(sum(s["n"] for s in self.summaries))

    def totals(self) -> dict[str, Any]:
        """Objects, predicted classes and flags over every partition."""
        predicted: Counter[str] = Counter()
        flags: Counter[str] = Counter()
        for s in self.summaries:
            predicted.update(s["predicted"])
            flags.update(s["flags"])
        return {
            "n_objects": self.n_objects,
            "partitions": len(self.summaries),
            "predicted": dict(predicted),
            "flags": dict(flags),
            "flagged": int(sum(s["flagged"] for s in self.summaries)),
        }

    def confusion(self) -> pd.DataFrame:
        """Labelled objects: true label (rows) against predicted class (columns)."""
        cells: Counter[tuple[str, str]] = Counter()
        for s in self.summaries:
            for true, row in s["confusion"].items():
                cells.update({(true, pred): n for pred, n in row.items()})
        if not cells:
            return pd.DataFrame(dtype=np.int64)
        s = pd.Series(cells)
        return s.unstack(fill_value=0).astype(np.int64)

    def stack(self, order: int, pixel: int):
        """One partition's :class:`~catbuilder.stack.ImageStack`."""
        from catbuilder.stack.store import ImageStack

        return ImageStack.open(part_directory(self.path, order, pixel) / "stack.zarr")

    def predictions(self, order: int, pixel: int):
        """One partition's :class:`~catbuilder.predictions.Predictions`."""
        from catbuilder.predictions import open_predictions

        return open_predictions(part_directory(self.path, order, pixel) / "predictions.zarr")


def _sources_fingerprint(sources: Any) -> str:
    """The sources' fingerprint: of every file the partitioning reads, or of a DataFrame."""
    from catbuilder.fingerprints import file_fingerprint

    if isinstance(sources, pd.DataFrame):
        return "frame:" + str(int(pd.util.hash_pandas_object(sources, index=False).sum()))
    files = parquet_files(sources) or [Path(sources)]
    text = json.dumps([(str(f.resolve()), file_fingerprint(f)) for f in files])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_output(path: Path, params: dict) -> None:
    """Refuse an output that is not ours, or ours with other parameters (one line)."""
    marker = path / MARKER
    if marker.is_file():
        old = json.loads(marker.read_text())
        if old.get("parameters") != params:
            from catbuilder.zarr_store import describe_difference

            why = describe_difference(old.get("parameters", {}), params)
            raise OutputExistsError(
                f"{path} holds a survey run made with other arguments ({why}); choose another "
                "output directory (catbuilder replaces no survey run)"
            )
        return
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise OutputExistsError(
            f"{path} exists and is not a survey run catbuilder started: choose another output "
            "directory"
        )


def _settings(index, model_path: str, kw: dict) -> tuple[dict, dict]:
    """What every partition shares (``run_partition``'s settings) and the run's parameters."""
    from catbuilder.models.saved import read_manifest
    from catbuilder.stack.limits import check_bands, parse_bands, positive_int
    from catbuilder.stack.plan import size_in_pixels

    c = config.resolve
    bands = parse_bands(c("cutouts.bands", kw["bands"]))
    ref = kw["reference_band"]
    ref = bands[0] if ref is None and len(bands) == 1 else ref
    ref = str(c("cutouts.reference-band", ref)).strip()
    check_bands(index, bands, ref)
    stack = {
        "size": size_in_pixels(c("cutouts.size", kw["size"]), index, ref),
        "bands": bands,
        "reference_band": ref,
        "chunk_objects": positive_int(
            c("cutouts.chunk-objects", kw["chunk_objects"]), "chunk_objects"
        ),
        "extra_columns": list(kw["extra_columns"] or []) or None,
    }
    pred = {
        "embed": bool(c("infer.embed", kw["embed"])),
        "tta": bool(c("infer.tta", kw["tta"])),
        "batch_size": int(c("infer.batch-size", kw["batch_size"])),
    }
    manifest = read_manifest(model_path)
    classes = [str(k) for k in manifest.get("classes", [])]
    meta = {
        "catbuilder_version": __version__,
        "model": {
            "path": model_path,
            "plugin": manifest.get("plugin"),
            "weights_sha256": manifest.get("weights_sha256"),
        },
        "classes": classes,
        "tta": pred["tta"],
        "cutouts": stack,
    }
    settings = {"model": model_path, "stack": stack, "predict": pred, "classes": classes,
                "meta": meta}  # fmt: skip
    return settings, {"stack": stack, "predict": pred,
                      "mask_zero_weight": bool(config.get("cutouts.mask-zero-weight")),
                      "weights": meta["model"]["weights_sha256"]}  # fmt: skip


def run_survey(
    sources: pd.DataFrame | str | os.PathLike[str],
    tiles: Any,
    model: Any,
    output: str | os.PathLike[str],
    *,
    size: int | str | None = None,
    bands: list[str] | str | None = None,
    reference_band: str | None = None,
    chunk_objects: int | None = None,
    ra_col: str | None = None,
    dec_col: str | None = None,
    id_col: str | None = None,
    extra_columns: list[str] | None = None,
    embed: bool | None = None,
    tta: bool | None = None,
    batch_size: int | None = None,
    partition_rows: int | None = None,
    highest_order: int | None = None,
    batch_rows: int | None = None,
    cluster: Any = None,
    workers: int | None = None,
    progress: bool = True,
    dry_run: bool = False,
    rates: dict[str, float] | None = None,
) -> SurveyRun | SurveyPlan:
    """Cut, classify and catalog a survey by sky partition, in bounded driver memory.

    The source table is split into HEALPix partitions (HATS layout, at most
    ``partition_rows`` objects each); each partition is one Dask task that
    cuts its objects, predicts them and writes its part of the catalog.
    Nothing of the size of the survey passes through this process: it holds
    the tile index, the partition list and each partition's summary.

    Parameters
    ----------
    sources
        Source table: a Parquet file or directory, or a HATS catalog (read a
        batch at a time), or any table :func:`catbuilder.sky.read_sources`
        reads (read whole).
    tiles
        A :class:`~catbuilder.sky.TileIndex`, a saved index, or FITS files /
        directories / globs.
    model
        A saved model directory, or a fitted estimator (saved in the run).
    output
        The run's directory: ``sources/`` (the partitioned table),
        ``parts/`` (each partition's stack, predictions and summary),
        ``catalog/`` (the HATS catalog).
    size, bands, reference_band, chunk_objects, ra_col, dec_col, id_col, extra_columns
        As for :func:`catbuilder.build_stack`.
    embed, tta, batch_size
        As for :func:`catbuilder.predict`.
    partition_rows, highest_order, batch_rows
        Partitioning (defaults ``survey.*``): objects per partition at
        most, the finest HEALPix order, and rows read at a time.
    cluster, workers
        Where partitions run (see :func:`catbuilder.runtime.connect`);
        ``"sync"`` runs them one after another in this process.
    progress
        Show a progress bar over objects.
    dry_run
        Partition the sources (kept for the run) and return the plan: tasks,
        bytes per task, projected core-hours and nodes; no pixel is read.
    rates
        Core-milliseconds per object by stage for the plan's projection
        (default :data:`catbuilder.survey.plan.MEASURED_RATES`).

    Returns
    -------
    SurveyRun or SurveyPlan
        The finished run, or with ``dry_run`` its plan.

    Raises
    ------
    OutputExistsError
        When ``output`` holds something else, or a run made with other arguments.
    ValueError
        For bad sources (no position, missing columns) or bands in no tile.

    Examples
    --------
    >>> from catbuilder import run_survey
    >>> run = run_survey("des/sources.parquet", "des/tiles", "small-cnn.model",
    ...                  "des-run", size=32, workers=8)  # doctest: +SKIP
    >>> run.totals()["predicted"]  # doctest: +SKIP
    {'spiral': 5210344, 'elliptical': 3977021}
    """
    from catbuilder.sky.tiles import TileIndex

    root = Path(output).resolve()
    index = TileIndex.from_any(tiles)
    model_path = str(Path(model).resolve()) if isinstance(model, (str, os.PathLike)) else None
    kw = dict(size=size, bands=bands, reference_band=reference_band, chunk_objects=chunk_objects,
              extra_columns=extra_columns, embed=embed, tta=tta, batch_size=batch_size)  # fmt: skip
    if model_path is None:  # an estimator: its saved copy is known only once it is saved
        from catbuilder.models.saved import save_model

        if not (root / MARKER).is_file():
            _check_output(root, {})  # nothing of someone else's is written into
        model_path = str(root / "model")
        if not Path(model_path).exists():
            root.mkdir(parents=True, exist_ok=True)
            save_model(model, model_path)
    settings, params = _settings(index, model_path, kw)
    t = index.table
    params.update(
        sources=_sources_fingerprint(sources),
        tiles=hashlib.sha256(
            pd.util.hash_pandas_object(t[["tile", "band", "path", "hdu", "wcs"]], index=False)
            .to_numpy()
            .tobytes()
        ).hexdigest()[:16],
        columns=[ra_col, dec_col, id_col],
        partition_rows=int(config.resolve("survey.partition-rows", partition_rows)),
        highest_order=int(config.resolve("survey.highest-order", highest_order)),
    )
    _check_output(root, params)
    root.mkdir(parents=True, exist_ok=True)
    marker = {"kind": KIND, "parameters": params, "complete": False}
    if not (root / MARKER).is_file():
        with outputs.atomic_path(root / MARKER) as tmp:
            tmp.write_text(json.dumps(marker, indent=1))
    if not (root / "tiles.parquet").is_file():
        index.to_parquet(root / "tiles.parquet")
    parts = partition_sources(
        sources, root / "sources", ra_col=ra_col, dec_col=dec_col, id_col=id_col,
        partition_rows=params["partition_rows"], highest_order=params["highest_order"],
        batch_rows=batch_rows,
    )  # fmt: skip
    if dry_run:
        from catbuilder.models.saved import read_manifest

        manifest = read_manifest(model_path)
        calibrated = 2 if manifest.get("calibration") else 1
        width = len(settings["classes"]) * calibrated + (
            int(manifest.get("embedding_dim") or 0) if settings["predict"]["embed"] else 0
        )
        return plan_partitions(parts, index, settings["stack"], width, rates)
    summaries = _run_partitions(root, parts, settings, cluster, workers, progress)
    _say_warnings(summaries)
    run = SurveyRun(root, parts, summaries)
    _finish_catalog(root, parts, run.n_objects, settings["meta"])
    marker.update(complete=True, totals=run.totals())
    with outputs.atomic_path(root / MARKER) as tmp:
        tmp.write_text(json.dumps(marker, indent=1))
    return run


def _run_partitions(root: Path, parts: pd.DataFrame, settings: dict, cluster, workers,
                    progress: bool) -> list[dict]:  # fmt: skip
    """Every partition's summary: read for those done, computed (largest first) for the rest."""
    from tqdm.auto import tqdm

    keys = list(zip(parts["order"].tolist(), parts["pixel"].tolist()))
    summaries: dict[tuple[int, int], dict] = {}
    for k in keys:
        s = read_summary(root, *k)
        if s is not None:
            summaries[k] = s
    sizes = dict(zip(keys, parts["n"].tolist()))
    todo = sorted((k for k in keys if k not in summaries), key=lambda k: -sizes[k])
    bar = tqdm(total=int(parts["n"].sum()), initial=sum(s["n"] for s in summaries.values()),
               desc="survey", unit="obj", disable=not progress)  # fmt: skip
    with bar:
        if cluster == "sync":
            for k in todo:
                summaries[k] = run_partition(str(root), *k, settings)
                bar.update(sizes[k])
        elif todo:
            _on_cluster(root, todo, settings, cluster, workers, summaries, bar)
    return [summaries[k] for k in keys]


def _on_cluster(root, todo, settings, cluster, workers, summaries, bar) -> None:
    from catbuilder.runtime import connect, run_windowed

    per = int(config.get("survey.tasks-per-worker"))
    with connect(cluster, workers) as client:
        window = max(2, per * (sum(client.nthreads().values()) or 1))

        def submit(idx: list[int]) -> list:
            return [client.submit(run_partition, str(root), *todo[i], settings, pure=False,
                                  key=f"catbuilder-partition-{todo[i][0]}-{todo[i][1]}")
                    for i in idx]  # fmt: skip

        def done(summary: dict) -> None:
            summaries[(summary["order"], summary["pixel"])] = summary
            bar.update(summary["n"])

        run_windowed(client, len(todo), submit, window=window, done=done)


def _say_warnings(summaries: list[dict]) -> None:
    """Each distinct warning of the partitions once, with how many partitions gave it."""
    import warnings

    from catbuilder import errors

    said: dict[tuple[str, str], int] = {}
    for s in summaries:
        for category, message in s.get("warnings", []):
            said[(category, message)] = said.get((category, message), 0) + 1
    for (category, message), n in said.items():
        cls = getattr(errors, category, None)
        cls = cls if isinstance(cls, type) and issubclass(cls, Warning) else UserWarning
        warnings.warn(f"{message} (in {n} of {len(summaries)} partitions)", cls, stacklevel=3)


def _finish_catalog(root: Path, parts: pd.DataFrame, n: int, meta: dict) -> None:
    """The HATS catalog's metadata, from the partition list and the parts' footers."""
    from hats.catalog import PartitionInfo, TableProperties
    from hats.io import write_parquet_metadata
    from hats.pixel_math import HealpixPixel

    from catbuilder.catalog.schema import flatten

    cat = root / "catalog"
    pixels = [HealpixPixel(int(o), int(p)) for o, p in zip(parts["order"], parts["pixel"])]
    missing = [p for p in pixels if not catalog_part(root, p.order, p.pixel).is_file()]
    if missing:  # a summary without its part: never written in that order
        raise RuntimeError(f"{root}: catalog parts missing for {len(missing)} partition(s)")
    PartitionInfo.from_healpix(pixels).write_to_file(catalog_path=cat)
    write_parquet_metadata(cat)
    props = TableProperties(
        catalog_name="catalog", catalog_type="object", total_rows=n, ra_column="ra",
        dec_column="dec", healpix_column="_healpix_29", healpix_order=29,
        npix_suffix=".parquet", **flatten(meta),
    )  # fmt: skip
    props.to_properties_file(cat)
