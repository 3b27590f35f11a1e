"""Plan a cutout build: where each object is, in which image per band, in which chunk."""

from __future__ import annotations

import numpy as np
import pandas as pd

from catbuilder.sky.geometry import pixel_to_world, world_to_pixel
from catbuilder.sky.tiles import TileIndex

__all__ = ["plan_objects", "size_in_pixels"]


def size_in_pixels(size: int | str | object, index: TileIndex, reference_band: str) -> int:
    """Cutout side in pixels of the reference band.

    ``size`` is an int (pixels), a string with a unit (``"20 arcsec"``) or an
    astropy angle Quantity.
    """
    from astropy import units as u

    if isinstance(size, (int, np.integer)):
        npix = int(size)
    else:
        try:
            q = u.Quantity(size)
        except TypeError as err:
            raise ValueError(f"cutout size must be pixels or an angle, got {size!r}") from err
        if q.unit == u.dimensionless_unscaled:
            npix = round(q.value)
        elif q.unit.physical_type != "angle":
            raise ValueError(f"cutout size must be pixels or an angle, got {size!r}")
        else:
            scale = index.table.loc[index.table["band"] == reference_band, "pixel_scale"]
            npix = round(q.to_value(u.arcsec) / float(np.median(scale)))
    if npix < 2:
        raise ValueError(f"cutout size must be at least 2 pixels, got {size!r} -> {npix}")
    return npix


def _same_grid(index: TileIndex, a: int, b: int) -> bool:
    """Whether index rows ``a`` and ``b`` share one pixel grid (within 1e-3 px)."""
    ta, tb = index.table.loc[a], index.table.loc[b]
    if (ta["nx"], ta["ny"]) != (tb["nx"], tb["ny"]):
        return False
    wa, wb = index.wcs(a), index.wcs(b)
    px = np.array([0.0, ta["nx"] - 1, 0.0, (ta["nx"] - 1) / 2])
    py = np.array([0.0, 0.0, ta["ny"] - 1, (ta["ny"] - 1) / 2])
    ra, dec = pixel_to_world(wa, px, py)
    qx, qy = world_to_pixel(wb, ra, dec)
    return bool(np.all(np.abs(qx - px) < 1e-3) and np.all(np.abs(qy - py) < 1e-3))


def plan_objects(
    sources: pd.DataFrame, index: TileIndex, bands: list[str], reference_band: str
) -> pd.DataFrame:
    """Locate every object and choose the image it is cut from in each band.

    The reference band decides the footprint and the pixel grid: an object is
    placed in the reference tile where it is most central. In another band
    it is cut from the same-named tile when that tile holds it, else from the
    band's tile where it is most central (and reprojected onto the reference
    grid when the grids differ).

    Returns
    -------
    pandas.DataFrame
        The sources in stack order (by reference tile, then ``y``; objects on
        no tile last) with ``row`` (input row), ``tile``, ``tile_x``, ``tile_y``
        (0-based pixel position in the reference tile),
        ``ref_row`` (index row, -1 if off the footprint), ``off_footprint`` and
        per band ``src_<band>`` (index row, -1 if none) and ``same_<band>``
        (that image shares the reference grid).
    """
    plan = sources.copy()
    plan["row"] = np.arange(len(plan), dtype=np.int64)
    ra, dec = plan["ra"].to_numpy(), plan["dec"].to_numpy()
    ref = index.locate(ra, dec, reference_band)
    plan["tile"] = ref["tile"].to_numpy()
    plan["tile_x"] = ref["x"].to_numpy()
    plan["tile_y"] = ref["y"].to_numpy()
    plan["ref_row"] = ref["row"].to_numpy()
    plan["off_footprint"] = plan["ref_row"].to_numpy() < 0
    table = index.table
    key = {(t, b): i for i, t, b in zip(table.index, table["tile"], table["band"])}
    for band in bands:
        if band == reference_band:
            plan[f"src_{band}"] = plan["ref_row"].to_numpy()
            plan[f"same_{band}"] = ~plan["off_footprint"].to_numpy()
            continue
        same_name = np.array([key.get((t, band), -1) for t in plan["tile"]], dtype=np.int64)
        src = np.full(len(plan), -1, dtype=np.int64)
        # same-named tile, if it holds the object
        for r in np.unique(same_name[same_name >= 0]):
            sel = np.flatnonzero(same_name == r)
            x, y = world_to_pixel(index.wcs(int(r)), ra[sel], dec[sel])
            rec = table.loc[r]
            inside = (x >= -0.5) & (x < rec["nx"] - 0.5) & (y >= -0.5) & (y < rec["ny"] - 0.5)
            src[sel[inside]] = r
        todo = np.flatnonzero((src < 0) & ~plan["off_footprint"].to_numpy())
        if len(todo):
            other = index.locate(ra[todo], dec[todo], band)
            src[todo] = other["row"].to_numpy()
        plan[f"src_{band}"] = src
        same = np.zeros(len(plan), dtype=bool)
        for r_ref, r_src in set(zip(plan["ref_row"].to_numpy(), src)):
            if r_ref >= 0 and r_src >= 0:
                ok = _same_grid(index, int(r_ref), int(r_src))
                same[(plan["ref_row"].to_numpy() == r_ref) & (src == r_src)] = ok
        plan[f"same_{band}"] = same
    order = np.lexsort(
        (
            plan["row"].to_numpy(),
            plan["tile_y"].fillna(0).to_numpy(),
            plan["tile"].to_numpy().astype(str),
            plan["off_footprint"].to_numpy(),
        )
    )
    return plan.iloc[order].reset_index(drop=True)
