"""Resumable per-object Zarr stores: what image stacks and predictions share.

A store is an xarray Dataset on Zarr v3 whose first dimension is ``object``.
It is written as xarray recommends for parallel writes, made safe to stop:

1. :func:`prepare` decides where the write goes: a store made with the same
   parameters is resumed; a new one is started; with ``overwrite``, a
   replacement is built aside (``.<name>.catbuilder-tmp-replacement``) and
   swapped in by :func:`swap_in` only when complete, so the old store stays
   whole until then. Anything at the path that is not a catbuilder store of
   this kind is refused (see :mod:`catbuilder.outputs`).
2. :func:`write_template` writes the lazy template (metadata and the
   coordinates known up front) into a temporary sibling and renames it into
   place: a kill leaves nothing, or a store that resumes.
3. Tasks write their regions straight into the Zarr arrays, then
   :func:`mark_written` sets the per-object ``written`` mark.
4. :func:`finish` records ``complete: true`` and consolidates the metadata.

The store's parameters live in its ``catbuilder`` attribute (a mapping with
``kind``, ``complete`` and ``parameters``), read by :func:`read_meta`.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from catbuilder import outputs
from catbuilder.errors import OutputExistsError

__all__ = [
    "as_strings",
    "consolidate",
    "describe_difference",
    "finish",
    "is_consolidated",
    "live_meta",
    "mark_written",
    "open_zarr",
    "prepare",
    "read_meta",
    "read_values",
    "sibling",
    "swap_in",
    "write_meta",
    "write_template",
    "written",
]


def sibling(path: str | os.PathLike[str], suffix: str) -> Path:
    """A path next to a store: ``hp.zarr`` -> ``hp<suffix>``."""
    p = Path(str(path).rstrip("/"))
    stem = p.name[: -len(".zarr")] if p.name.endswith(".zarr") else p.name
    return p.with_name(stem + suffix)


def open_zarr(path: str | os.PathLike[str], live: bool = False):
    """Open a Zarr store lazily, with consolidated metadata when it has them.

    Stores being written have none (they are consolidated when a write
    finishes) and are read from their per-array metadata without a warning;
    ``live=True`` always reads the per-array metadata (what writers do).
    """
    import xarray as xr

    if live:
        return xr.open_zarr(path, consolidated=False)
    try:
        return xr.open_zarr(path, consolidated=True)
    except (KeyError, ValueError, OSError):
        return xr.open_zarr(path, consolidated=False)


def read_meta(source: Any) -> dict[str, Any]:
    """The ``catbuilder`` attribute of a dataset, or of the store at a path ({} if none)."""
    if isinstance(source, (str, os.PathLike)):
        return outputs.store_meta(source) or {}
    raw = source.attrs.get("catbuilder", {})
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


def write_meta(path: str | os.PathLike[str], meta: dict[str, Any]) -> None:
    """Replace the store's ``catbuilder`` attribute (Zarr writes it atomically)."""
    import zarr

    group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    group.attrs["catbuilder"] = json.loads(json.dumps(meta))  # a mapping, JSON-clean


def read_values(var) -> np.ndarray:
    """Read a (dask-backed) variable in the calling thread.

    Reads use Dask's synchronous scheduler: inside a task on a distributed
    worker the default scheduler would be the cluster itself, whose threads
    may all be busy running that very task (training ranks are), and the read
    would wait forever. Reading a few chunks gains nothing from parallelism.
    """
    data = var.data
    if hasattr(data, "compute"):
        return np.asarray(data.compute(scheduler="synchronous"))
    return np.asarray(data)


def as_strings(values: np.ndarray) -> np.ndarray:
    """String array as Python str objects (Zarr v3 returns numpy StringDType)."""
    return np.array([str(v) for v in values.tolist()], dtype=object)


def describe_difference(old: dict, new: dict) -> str:
    """Which parameters differ, for an error message (digests by name only)."""
    keys = [k for k in new if old.get(k) != new.get(k)]
    return (
        ", ".join(
            f"{k}: {old.get(k)!r} != {new[k]!r}"
            if "digest" not in k
            else f"{k.replace('_digest', '')} differ"
            for k in keys
        )
        or "unknown"
    )


def _replacement(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    return path.with_name(f".{path.name}.catbuilder-tmp-replacement")


def live_meta(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The store's metadata as a writer sees it (per-array, not consolidated);
    None when there is no readable store at ``path``."""
    try:
        return read_meta(open_zarr(path, live=True)) or None
    except Exception:
        return None


def prepare(
    path: str | os.PathLike[str], kind: str, params: dict[str, Any], overwrite: bool
) -> tuple[Path, dict[str, Any] | None]:
    """Where a write of ``params`` to ``path`` goes, and the metadata to resume from.

    Returns
    -------
    (target, meta)
        ``meta`` is the existing store's metadata when ``target`` holds a
        write with the same parameters to resume (complete or not), else
        None and ``target`` is free for a new template. ``target`` is ``path``,
        or the replacement built aside when ``path`` holds an older store to
        overwrite; pass it to :func:`swap_in` when the write is complete.

    Raises
    ------
    OutputExistsError
        When ``path`` holds anything but a catbuilder store of ``kind``, or
        one made with other parameters and ``overwrite`` is false.
    """
    path = Path(path)
    for stale in outputs.stale_temporaries(path, "template-"):
        outputs.remove_temporary(stale)  # a template write that was killed
    replacement = _replacement(path)
    if replacement.exists():  # an overwrite that was stopped
        pending = live_meta(replacement)
        if pending is not None and pending.get("parameters") == params:
            return replacement, pending
        outputs.remove_store(replacement, kind)
    if not (path.exists() or path.is_symlink()):
        return path, None
    outputs.check_replaceable(path, kind)  # refuses anything that is not our store
    existing = live_meta(path)
    if existing is not None and existing.get("parameters") == params and not overwrite:
        return path, existing
    if not overwrite:
        why = (
            describe_difference(existing.get("parameters", {}), params)
            if existing
            else "unreadable"
        )
        what = {"image-stack": "an image stack"}.get(kind, kind)
        raise OutputExistsError(
            f"{path} holds {what} made with other arguments ({why}); pass "
            "overwrite=True (--overwrite) to replace it, or choose another output path"
        )
    return replacement, None


def swap_in(target: Path, path: str | os.PathLike[str], kind: str) -> Path:
    """Make the complete store at ``target`` the one at ``path`` (a no-op when equal)."""
    path = Path(path)
    if Path(os.path.abspath(target)) == Path(os.path.abspath(path)):
        return path
    if path.exists():
        outputs.remove_store(path, kind)
    os.rename(target, path)
    return path


def write_template(ds, target: str | os.PathLike[str]) -> None:
    """Write the lazy template ``ds`` aside, then move it to ``target`` in one rename."""
    tmp = outputs.temporary_sibling(target, "template-")
    try:
        ds.to_zarr(tmp, mode="w-", compute=False, zarr_format=3, consolidated=False)
        os.rename(tmp, target)
    finally:
        if tmp.exists():
            outputs.remove_temporary(tmp)


def write_region(arrays: dict, region: slice, values: dict[str, np.ndarray]) -> None:
    """Write each variable's ``values`` into ``region`` of its array, all at once.

    One trip to Zarr's event loop for all the arrays (``asyncio.gather`` of
    their asynchronous writes), instead of one trip per array, each waiting
    for the one before: a chunk of cutouts is one large image chunk and
    several per-object chunks of a few hundred bytes, whose cost is the
    trip and the file's creation rather than their bytes. If a write fails,
    the first failure is raised once the others have finished.
    """
    import asyncio

    from zarr.core.sync import sync  # how zarr's own Array runs its coroutines

    async def write_all():
        # every write finishes before the first failure is raised: none is
        # left running while the caller cleans up after it
        return await asyncio.gather(
            *(arrays[v].async_array.setitem(region, vals) for v, vals in values.items()),
            return_exceptions=True,
        )

    for outcome in sync(write_all()):
        if isinstance(outcome, BaseException):
            raise outcome


def mark_written(group, region: slice) -> None:
    """Mark a region's objects written: the last write of the task that made them.

    ``group`` is the store's Zarr group, or a mapping of its opened arrays.
    """
    group["written"][region] = np.ones(region.stop - region.start, dtype=bool)


def written(path: str | os.PathLike[str]) -> np.ndarray:
    """The per-object ``written`` marks of the store at ``path``."""
    import zarr

    return np.asarray(zarr.open_array(str(Path(path) / "written"), mode="r")[:], dtype=bool)


def consolidate(path: str | os.PathLike[str]) -> None:
    """Consolidate the store's metadata (Zarr writes ``zarr.json`` atomically)."""
    import zarr

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(str(path))


def is_consolidated(path: str | os.PathLike[str]) -> bool:
    """Whether the store's metadata were consolidated (its write was finished)."""
    try:
        root = json.loads((Path(path) / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(root.get("consolidated_metadata"))


def finish(path: str | os.PathLike[str], meta: dict[str, Any]) -> None:
    """Record the write as complete, then consolidate the metadata."""
    meta["complete"] = True
    write_meta(path, meta)
    consolidate(path)
