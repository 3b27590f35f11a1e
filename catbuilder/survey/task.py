"""One partition of a survey, done by one Dask task: cutouts, predictions, catalog part.

Everything a partition makes stays on the worker and on disk: its stack and
predictions (``parts/Norder=k/Dir=d/Npix=p/``), its part of the HATS catalog
(``catalog/dataset/Norder=k/Dir=d/Npix=p.parquet``), and last a small
``summary.json`` (counts, flags, classes, labelled objects against their
predictions) that is all the driver receives. A partition with a summary is
done; one without resumes its stack and predictions where they stopped (they
are resumable stores) and rewrites its catalog part.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from catbuilder import outputs
from catbuilder.runtime import release_freed_memory
from catbuilder.survey.partition import healpix, partition_directory, read_partition

SUMMARY_FILE = "summary.json"


def part_directory(root: str | os.PathLike[str], order: int, pixel: int) -> Path:
    """Where one partition's stack, predictions and summary are."""
    return partition_directory(Path(root) / "parts", order, pixel)


def catalog_part(root: str | os.PathLike[str], order: int, pixel: int) -> Path:
    """One partition's file of the survey's HATS catalog."""
    folder = partition_directory(Path(root) / "catalog" / "dataset", order, pixel)
    return folder.with_name(f"{folder.name}.parquet")


def read_summary(root: str | os.PathLike[str], order: int, pixel: int) -> dict | None:
    """A finished partition's summary, or None."""
    path = part_directory(root, order, pixel) / SUMMARY_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def nearby_tiles(index, ra: np.ndarray, dec: np.ndarray):
    """The index rows whose tiles can hold these positions (every band kept).

    A tile is kept when its centre lies within the positions' enclosing cone
    plus its own radius. A band with no such tile keeps its nearest one, so
    the partition's objects are flagged (off the footprint, missing band)
    exactly as with the whole index.
    """
    from catbuilder.sky.geometry import sky_to_xyz
    from catbuilder.sky.tiles import TileIndex

    xyz = sky_to_xyz(ra, dec)
    axis = xyz.mean(axis=0)
    axis /= np.linalg.norm(axis) or 1.0
    cone = np.degrees(np.arccos(np.clip(xyz @ axis, -1, 1)).max())
    t = index.table
    sep = np.degrees(np.arccos(np.clip(sky_to_xyz(t["ra"], t["dec"]) @ axis, -1, 1)))
    keep = sep <= cone + t["radius"].to_numpy() * 1.02
    for band in t["band"].unique():
        of_band = (t["band"] == band).to_numpy()
        if not (keep & of_band).any():
            keep[np.flatnonzero(of_band)[np.argmin(sep[of_band])]] = True
    return TileIndex(t[keep].copy(), index.problems)


def _summary(cat: pd.DataFrame, classes: list[str], order: int, pixel: int) -> dict:
    """What evaluation and the report need of a partition: counts, not objects."""
    from catbuilder.stack.flags import FLAG_BITS

    flags = [c for c in FLAG_BITS if c in cat.columns]
    labelled = cat["label"].notna() & cat["label"].isin(classes) & cat["predicted"].notna()
    confusion = pd.crosstab(cat.loc[labelled, "label"], cat.loc[labelled, "predicted"])
    return {
        "order": order,
        "pixel": pixel,
        "n": len(cat),
        "predicted": {str(k): int(v) for k, v in cat["predicted"].value_counts().items()},
        "flags": {f: int(cat[f].astype(bool).sum()) for f in flags},
        "flagged": int((cat["flags"] != 0).sum()),
        "confusion": {
            str(t): {str(p): int(n) for p, n in row.items() if n} for t, row in confusion.iterrows()
        },
    }


def _write_catalog_part(cat: pd.DataFrame, meta: dict, path: Path) -> None:
    """The partition's catalog rows, sorted by HATS's spatial index, written atomically."""
    import pyarrow.parquet as pq

    from catbuilder.catalog.formats import arrow_table

    cat = cat.copy()
    cat["_healpix_29"] = healpix(29, cat["ra"].to_numpy(), cat["dec"].to_numpy())
    cat = cat.sort_values("_healpix_29", kind="stable").reset_index(drop=True)
    for col in cat.columns:  # typed text, so that every partition has one schema
        if cat[col].dtype == object:
            cat[col] = cat[col].astype("string[pyarrow]")
    path.parent.mkdir(parents=True, exist_ok=True)
    with outputs.atomic_path(path) as tmp:
        pq.write_table(arrow_table(cat, meta), tmp)


def run_partition(root: str, order: int, pixel: int, settings: dict[str, Any]) -> dict:
    """Cut, predict and catalog one partition; its summary (see the module).

    ``settings`` holds what every partition shares: ``model`` (a saved
    model's path), ``stack`` (``build_stack`` keywords), ``predict``
    (``predict`` keywords), ``classes`` and ``meta`` (the catalog's
    provenance). Warnings are recorded in the summary, not shown here.
    """
    done = read_summary(root, order, pixel)
    if done is not None:
        return done
    part = part_directory(root, order, pixel)
    part.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = _run(root, order, pixel, settings, part)
    # said once by the driver for all the partitions that said it
    summary["warnings"] = sorted(
        {(w.category.__name__, str(w.message).replace(str(part), "<partition>")) for w in caught}
    )
    with outputs.atomic_path(part / SUMMARY_FILE) as tmp:
        tmp.write_text(json.dumps(summary))
    # a worker runs many partitions in turn: without this its peak grows with
    # the survey by the freed fragments glibc keeps (docs/scale.md)
    release_freed_memory()
    return summary


def _run(root: str, order: int, pixel: int, settings: dict, part: Path) -> dict:
    from catbuilder.catalog import build_catalog
    from catbuilder.infer import predict
    from catbuilder.sky.tiles import TileIndex
    from catbuilder.stack import build_stack

    src = read_partition(Path(root) / "sources", order, pixel)
    index = nearby_tiles(TileIndex.read_parquet(Path(root) / "tiles.parquet"),
                         src["ra"].to_numpy(), src["dec"].to_numpy())  # fmt: skip
    stack = build_stack(src, index, part / "stack.zarr", **settings["stack"],
                        ra_col="ra", dec_col="dec", id_col="objid",
                        cluster="sync", progress=False)  # fmt: skip
    preds = predict(stack, settings["model"], output=part / "predictions.zarr",
                    **settings["predict"], cluster="sync", progress=False)  # fmt: skip
    cat = build_catalog(preds, stack)
    _write_catalog_part(cat, settings["meta"], catalog_part(root, order, pixel))
    return _summary(cat, settings["classes"], order, pixel)
