"""Checks made before anything is written: bands, sizes, a task's memory against a worker's."""

from __future__ import annotations

import os
from typing import Any

from catbuilder.errors import ResourceLimitError
from catbuilder.sky.tiles import TileIndex


def parse_bands(bands: list[str] | str) -> list[str]:
    """Band names from a list or a comma-separated string, stripped.

    Raises
    ------
    ValueError
        For an empty name or a band named twice.
    """
    items = bands.split(",") if isinstance(bands, str) else list(bands)
    out = [str(b).strip() for b in items]
    if not out or any(not b for b in out):
        raise ValueError(f"bands must be non-empty names, got {bands!r}")
    dup = sorted({b for b in out if out.count(b) > 1})
    if dup:
        raise ValueError(f"band(s) {dup} are named twice in {bands!r}")
    return out


def positive_int(value: Any, name: str) -> int:
    bad = ValueError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(value, bool):
        raise bad
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise bad from None
    if (isinstance(value, float) and out != value) or out < 1:
        raise bad
    return out


def check_bands(index: TileIndex, bands: list[str], reference_band: str) -> None:
    have = set(index.bands)
    absent = [b for b in bands if b not in have]
    if absent:
        raise ValueError(
            f"band(s) {absent} are in no tile; the tile index has bands {', '.join(sorted(have))}"
        )
    if reference_band not in bands:
        raise ValueError(
            f"reference band {reference_band!r} is not among bands {bands}; name the band whose "
            "pixel grid the others follow with reference_band= (--reference-band)"
        )


def _worker_memory(cluster: Any) -> tuple[float, str]:
    """Bytes of memory one cutout task may use, and where that figure comes from."""
    import psutil
    from distributed import Client

    from catbuilder.runtime import active_client, workers_now

    client = cluster if isinstance(cluster, Client) else None
    if cluster is None:
        client = active_client()
    if client is not None:
        limits = [w.get("memory_limit") or 0 for w in workers_now(client).values()]
        limits = [m for m in limits if m]
        if limits:
            return float(min(limits)), "the smallest Dask worker's memory limit"
    avail = float(psutil.virtual_memory().available)
    if cluster in ("sync", "synchronous", "single-threaded"):
        return avail, "the available memory"
    n = os.cpu_count() or 1
    return avail / n, f"the available memory shared by {n} worker processes"


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def check_cutout_memory(
    npix: int, n_bands: int, chunk: int, index: TileIndex, reference_band: str, cluster=None
) -> None:
    """Refuse, up front, a build whose tasks could not fit in a worker's memory.

    A task holds its chunk of cutouts about three times (the pixels, their
    compressed copy, and the read buffers), plus one strip of tile rows per
    band read in float64.

    Raises
    ------
    ValueError
        When the cutout is larger than every reference tile.
    ResourceLimitError
        When one task would need more than a worker has, saying what to lower.
    """
    ref = index.table[index.table["band"] == reference_band]
    side = int(max(ref["nx"].max(), ref["ny"].max()))
    if npix > side:
        raise ValueError(
            f"cutout size {npix} px is larger than every {reference_band}-band tile (at most "
            f"{side} px a side): every cutout would be mostly outside its tile; use a smaller "
            "--size"
        )
    per_object = n_bands * npix * npix * 4
    strip = n_bands * 4 * npix * side * 8
    need = 3 * chunk * per_object + strip
    have, where = _worker_memory(cluster)
    if need > 0.8 * have:
        fit = int((0.8 * have - strip) // (3 * per_object))
        what = (
            f"lower --chunk-objects (chunk_objects) to at most {fit}"
            if fit >= 1
            else "use a smaller --size"
        )
        raise ResourceLimitError(
            f"cutouts of {npix} px in {n_bands} band(s), {chunk} a chunk, need about "
            f"{_gib(need)} per task, more than 80% of {_gib(have)} ({where}); {what}"
        )
