"""Growing a stack: resume a stopped build, append objects, roll back a cut-short append."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from catbuilder import config, outputs
from catbuilder import zarr_store as zs
from catbuilder.provenance import now
from catbuilder.sky.tiles import TileIndex
from catbuilder.stack.build import (
    KIND,
    chunk_pieces,
    finish_build,
    prepare_sources,
    resume_build,
    run_chunks,
    stack_template,
)
from catbuilder.stack.describe import WCS_VARS
from catbuilder.stack.limits import check_bands
from catbuilder.stack.plan import plan_objects
from catbuilder.stack.store import ImageStack
from catbuilder.stack.variables import CUTOUT_VARIABLES


def _roll_back_unfinished_append(path: Path) -> None:
    """Undo an append stopped inside its template write (arrays of unequal length).

    Every array along ``object`` is cut back to the length it had before the
    append (Zarr ``resize``: chunks beyond it are dropped), so the stack is
    what it was, and the append can start again.
    """
    import zarr

    meta = outputs.store_meta(path) or {}
    pending = meta.get("pending_append")
    if not pending:
        return
    start = int(pending["start"])
    group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    for _, arr in group.arrays():
        dims = getattr(arr.metadata, "dimension_names", None) or ()
        if dims and dims[0] == "object" and arr.shape[0] != start:
            arr.resize((start, *arr.shape[1:]))
    del meta["pending_append"]
    meta["complete"] = bool(pending.get("was_complete", True))
    zs.write_meta(path, meta)
    zs.consolidate(path)


def append_to_stack(
    stack: str | os.PathLike[str],
    sources: pd.DataFrame | str | os.PathLike[str],
    tiles: TileIndex | str | os.PathLike[str] | list,
    *,
    ra_col: str | None = None,
    dec_col: str | None = None,
    id_col: str | None = None,
    label_col: str = "label",
    split_col: str = "split",
    extra_columns: list[str] | None = None,
    cluster: Any = None,
    workers: int | None = None,
    progress: bool = True,
) -> ImageStack:
    """Append new objects to an existing stack, with its size, bands and chunks.

    Objects whose id is already in the stack are an error, so nothing is
    stored twice. An append that was stopped is finished by calling it
    again with the same sources.

    Returns
    -------
    ImageStack
        The whole, reopened stack.
    """
    where = (cluster, workers)
    path = Path(stack)
    if outputs.store_kind(path) != KIND:
        raise FileNotFoundError(f"no image stack at {path}")
    _roll_back_unfinished_append(path)
    meta = zs.live_meta(path)
    if meta is None:
        raise FileNotFoundError(f"no image stack at {path}")
    params = meta["parameters"]
    index = TileIndex.from_any(tiles)
    bands, chunk, npix = params["bands"], params["chunk_objects"], params["size"]
    check_bands(index, bands, params["reference_band"])
    src, src_name, extra_specs = prepare_sources(
        sources, ra_col, dec_col, id_col, label_col, split_col, extra_columns
    )
    have_extra = meta.get("extra_columns") or {}
    if extra_specs != have_extra:
        raise ValueError(
            f"{src_name}: the stack carries extra columns {have_extra or 'none'}; append with "
            f"the same (extra_columns={sorted(have_extra)}, of the same types)"
        )
    ds = zs.open_zarr(path, live=True)
    have = ds["objid"].values
    already = src["objid"].isin(have).to_numpy()
    if already.all() and not meta.get("complete", True):
        return resume_build(path, src, index, meta, where, progress)  # finish a stopped append
    if already.any():
        ids = src.loc[already, "objid"].tolist()
        raise ValueError(f"{src_name}: {len(ids)} object id(s) already in {path}, e.g. {ids[:10]}")
    extra = set(src.columns) ^ {c for c, v in ds.coords.items() if v.dims == ("object",)} - {
        "row",
        "tile",
        "tile_x",
        "tile_y",
        "off_footprint",
        "object",
        *(v.name for v in CUTOUT_VARIABLES if v.flag and not v.dims),
        *WCS_VARS,
    }
    if extra - {"written"}:
        raise ValueError(
            f"appended sources must carry the same columns as the stack; "
            f"differences: {sorted(extra - {'written'})}"
        )
    start = int(ds.sizes["object"])
    plan = plan_objects(src, index, bands, params["reference_band"])
    plan["row"] = plan["row"] + int(ds["row"].values.max(initial=-1)) + 1
    # until the template is whole, a rerun rolls the arrays back to `start` and starts over
    meta["pending_append"] = {"start": start, "was_complete": bool(meta.get("complete", True))}
    meta["complete"] = False
    zs.write_meta(path, meta)
    zs.consolidate(path)  # from here on no reader takes the store for complete
    tmpl = stack_template(plan, bands, npix, chunk, start, index, params["reference_band"])
    tmpl = tmpl.drop_vars([n for n, v in tmpl.variables.items() if "object" not in v.dims])
    ds_attrs = dict(ds.attrs)
    ds_attrs["catbuilder"] = meta
    tmpl.attrs = ds_attrs  # appending replaces the group attributes
    tmpl.to_zarr(path, append_dim="object", compute=False, safe_chunks=False, consolidated=False)
    del meta["pending_append"]  # the template is whole: a rerun now resumes the chunks
    zs.write_meta(path, meta)
    zs.consolidate(path)  # readers must see the new shape and complete: false at once
    problems = run_chunks(
        path,
        chunk_pieces(plan, start, chunk),
        index,
        bands,
        npix,
        float(config.get("cutouts.nan-fraction-max")),
        where,
        progress,
        params,
    )
    meta["parameters"]["n_objects"] = start + len(plan)
    meta["history"].append(
        {
            "action": "append",
            "n_objects": len(plan),
            "sources": src_name,
            "at": now(),
        }
    )
    finish_build(path, meta, problems)
    return ImageStack.open(path)
