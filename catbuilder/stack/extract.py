"""Cut one output chunk of objects out of their tiles: the work of one Dask task.

Objects arrive ordered by reference tile, so a chunk touches few tiles. For
each (tile, band) image the task reads once the section that covers all of
its objects (FITS ``section``: only those rows are read, compressed images
included), and slices every object out of it at once with one fancy-indexing
gather. Bands on another pixel grid are reprojected onto the reference grid
(``reproject.reproject_interp``) before slicing.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from catbuilder.sky.geometry import pixel_to_world, wcs_from_text, world_to_pixel
from catbuilder.stack.flags import FLAG_BITS

__all__ = ["ImageReader", "extract_chunk"]


class ImageReader:
    """FITS files kept open across the chunks of a task, and sections read from them.

    Opening a file parses its headers, about a quarter of the time a chunk
    of 256 objects takes to cut from a few tiles; consecutive chunks are cut
    from the same tiles, so the ``max_open`` files used last stay open
    (memory maps: only the pages read count against memory, and they are
    the page cache's).

    Parameters
    ----------
    max_open
        Files kept open at most; the one used least recently is closed first.
    """

    def __init__(self, max_open: int = 16) -> None:
        self.max_open = max_open
        self.files: dict[str, Any] = {}  # least recently used first
        # per open file: its HDUs' pixels and scaling, each header read once
        self._images: dict[str, dict[int, _Image]] = {}

    def section(self, rec: dict, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Pixels [y0:y1, x0:x1] of an image, NaN where outside it.

        A box inside the image is returned as ``_Image.read`` gives it (a
        view of the memory map where no scaling applies), one that crosses
        an edge as a float32 copy padded with NaN.
        """
        from astropy.io import fits

        path = rec["path"]
        if path in self.files:
            self.files[path] = self.files.pop(path)  # now the most recently used
        else:
            while len(self.files) >= self.max_open:
                gone = next(iter(self.files))
                self.files.pop(gone).close()
                self._images.pop(gone, None)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                # raw values on a memory map; scaling is applied per section below
                hdul = fits.open(path, memmap=True, do_not_scale_image_data=True)
            for w in caught:
                if "truncated" in str(w.message).lower():
                    hdul.close()
                    raise OSError(f"truncated file: {w.message}")
            self.files[path] = hdul
        images = self._images.setdefault(path, {})
        hdu = int(rec["hdu"])
        if hdu not in images:
            images[hdu] = _Image(self.files[path][hdu])
        image = images[hdu]
        ya, yb = max(y0, 0), min(y1, int(rec["ny"]))
        xa, xb = max(x0, 0), min(x1, int(rec["nx"]))
        if (ya, yb, xa, xb) == (y0, y1, x0, x1):  # inside the image: no padding, no copy
            return image.read(ya, yb, xa, xb)
        out = np.full((y1 - y0, x1 - x0), np.nan, dtype=np.float32)
        if ya < yb and xa < xb:
            out[ya - y0 : yb - y0, xa - x0 : xb - x0] = image.read(ya, yb, xa, xb)
        return out

    def close(self) -> None:
        """Close every file still open."""
        for f in self.files.values():
            f.close()
        self.files.clear()
        self._images.clear()


class _Image:
    """One image HDU's raw pixels and FITS scaling, its header read once (the
    HDU opened with ``do_not_scale_image_data``)."""

    __slots__ = ("blank", "bscale", "bzero", "raw")

    def __init__(self, hdu) -> None:
        from astropy.io.fits import CompImageHDU

        # decompresses only the tiles a read needs; else a memory map
        self.raw = hdu.section if isinstance(hdu, CompImageHDU) else hdu.data
        hdr = hdu.header
        self.bscale = float(hdr.get("BSCALE", 1.0))
        self.bzero = float(hdr.get("BZERO", 0.0))
        self.blank = hdr.get("BLANK")  # applies to integer pixels only

    def read(self, ya: int, yb: int, xa: int, xb: int) -> np.ndarray:
        """Pixels [ya:yb, xa:xb], scaled as astropy scales them.

        Physical = BZERO + BSCALE * raw, in float32 for 8- and 16-bit
        integers and float64 for wider ones, and NaN where an integer pixel
        equals BLANK. Only these rows are read (a memory map, or the tiles of
        a compressed image that hold them).
        """
        raw = self.raw[ya:yb, xa:xb]
        blank = self.blank if raw.dtype.kind in "iu" else None
        if self.bscale == 1.0 and self.bzero == 0.0 and blank is None:
            return raw
        wide = raw.dtype.kind in "iu" and raw.dtype.itemsize > 2
        out = np.array(raw, dtype=np.float64 if wide or raw.dtype == np.float64 else np.float32)
        if self.bscale != 1.0:
            out *= self.bscale
        if self.bzero != 0.0:
            out += self.bzero
        if blank is not None:
            out[raw == int(blank)] = np.nan
        return out


def _shifted_wcs(text: str, dx: int, dy: int):
    """The WCS of an image section starting at pixel (dx, dy)."""
    from astropy.io import fits
    from astropy.wcs import WCS

    hdr = fits.Header.fromstring(text)
    hdr["CRPIX1"] = float(hdr["CRPIX1"]) - dx
    hdr["CRPIX2"] = float(hdr["CRPIX2"]) - dy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return WCS(hdr, naxis=2)


def _reprojected(images: ImageReader, src: dict, ref: dict, y0, y1, x0, x1) -> np.ndarray:
    """Band image ``src`` resampled onto the reference grid box [y0:y1, x0:x1]."""
    from reproject import reproject_interp

    ref_wcs = wcs_from_text(ref["wcs"])
    src_wcs = wcs_from_text(src["wcs"])
    bx = np.array([x0, x1, x0, x1], dtype=float) - 0.5
    by = np.array([y0, y0, y1, y1], dtype=float) - 0.5
    ra, dec = pixel_to_world(ref_wcs, bx, by)
    sx, sy = world_to_pixel(src_wcs, ra, dec)
    if not (np.all(np.isfinite(sx)) and np.all(np.isfinite(sy))):
        return np.full((y1 - y0, x1 - x0), np.nan, dtype=np.float32)
    sx0, sx1 = int(np.floor(sx.min())) - 2, int(np.ceil(sx.max())) + 3
    sy0, sy1 = int(np.floor(sy.min())) - 2, int(np.ceil(sy.max())) + 3
    data = np.asarray(images.section(src, sy0, sy1, sx0, sx1), dtype=np.float32)
    out = reproject_interp(
        (data, _shifted_wcs(src["wcs"], sx0, sy0)),
        _shifted_wcs(ref["wcs"], x0, y0),
        shape_out=(y1 - y0, x1 - x0),
        return_footprint=False,
    )
    # per-pixel values: scale by the ratio of pixel areas so fluxes add up
    return (out * (ref["pixel_scale"] / src["pixel_scale"]) ** 2).astype(np.float32)


def _strips(y_lo: np.ndarray, size: int, max_rows: int | None = None) -> list[np.ndarray]:
    """Group objects (by first row) into strips of at most ``max_rows`` rows.

    One read per strip: dense objects share reads, sparse ones do not pull
    in the rows between them.
    """
    max_rows = max_rows or 4 * size
    order = np.argsort(y_lo, kind="stable")
    ys = y_lo[order]
    out, start = [], 0
    for i in range(1, len(ys) + 1):
        if i == len(ys) or ys[i] + size - ys[start] > max_rows:
            out.append(order[start:i])
            start = i
    return out


def _nan_fractions(images: np.ndarray) -> np.ndarray:
    """The fraction of NaN pixels of each (object, band) image.

    A sum is NaN wherever its image holds a NaN, and summing is faster than
    testing every pixel: only the images whose sum is not finite are counted.
    """
    out = np.zeros(images.shape[:2], dtype=np.float64)
    some = ~np.isfinite(images.sum(axis=(2, 3)))
    if some.any():
        out[some] = np.isnan(images[some]).mean(axis=(1, 2))
    return out


def extract_chunk(
    plan: pd.DataFrame,
    records: dict[int, dict],
    bands: list[str],
    size: int,
    nan_fraction_max: float,
    reader: ImageReader | None = None,
) -> dict[str, Any]:
    """Cut the objects of ``plan`` (one output chunk) in every band.

    Parameters
    ----------
    plan
        Rows of :func:`catbuilder.stack.plan.plan_objects` for this chunk.
    records
        Tile-index rows (as dicts) by index row number, for every image used;
        where a row's ``weight_hdu`` is an HDU (>= 0), pixels whose weight is
        zero become NaN (bands on the reference grid).
    bands
        Band order of the output.
    size
        Cutout side in reference pixels.
    nan_fraction_max
        Above this fraction of NaN pixels the ``nan`` flag is set.
    reader
        Files kept open from the task's earlier chunks (closed by the
        caller); by default the chunk opens and closes its own.

    Returns
    -------
    dict
        ``images`` (n, band, size, size) float32, ``edge``, ``nan_fraction``
        (over all bands), ``nan`` (n, band: that band's NaN fraction is above
        ``nan_fraction_max``), ``missing_band`` (n, band), ``saturated``, ``flags``, ``magzero``
        (n, band), and ``problems`` (messages about images that could not be read).
    """
    n, nb = len(plan), len(bands)
    images = np.empty((n, nb, size, size), dtype=np.float32)
    cut_out = np.zeros((n, nb), dtype=bool)  # the windows written; NaN fills the others
    missing = np.zeros((n, nb), dtype=bool)
    magzero = np.full((n, nb), np.nan, dtype=np.float32)
    saturated = np.zeros(n, dtype=bool)
    edge = np.zeros(n, dtype=bool)
    off = plan["off_footprint"].to_numpy(dtype=bool)
    missing[off] = True
    problems: list[str] = []
    ref_rows = plan["ref_row"].to_numpy()
    # the first pixel of each cutout, as astropy's Cutout2D places it
    lo_x = np.ceil(plan["tile_x"].fillna(0).to_numpy() - size / 2.0).astype(np.int64)
    lo_y = np.ceil(plan["tile_y"].fillna(0).to_numpy() - size / 2.0).astype(np.int64)
    own = reader is None
    reader = ImageReader() if reader is None else reader
    try:
        for r_ref in np.unique(ref_rows[ref_rows >= 0]):
            ref = records[int(r_ref)]
            in_tile = np.flatnonzero(ref_rows == r_ref)
            x_lo, y_lo = lo_x[in_tile], lo_y[in_tile]
            edge[in_tile] = (
                (x_lo < 0) | (y_lo < 0) | (x_lo + size > ref["nx"]) | (y_lo + size > ref["ny"])
            )
            for bi, band in enumerate(bands):
                src_rows = plan[f"src_{band}"].to_numpy()[in_tile]
                same = plan[f"same_{band}"].to_numpy()[in_tile]
                missing[in_tile[src_rows < 0], bi] = True
                for r_src in np.unique(src_rows[src_rows >= 0]):
                    pick = np.flatnonzero(src_rows == r_src)
                    src = records[int(r_src)]
                    all_same = bool(same[pick].all())
                    for strip in _strips(y_lo[pick], size):
                        sel = pick[strip]
                        objs = in_tile[sel]
                        x0, y0 = int(x_lo[sel].min()), int(y_lo[sel].min())
                        x1, y1 = int(x_lo[sel].max()) + size, int(y_lo[sel].max()) + size
                        try:
                            if all_same:
                                box = reader.section(src, y0, y1, x0, x1)
                            else:
                                box = _reprojected(reader, src, ref, y0, y1, x0, x1)
                        except Exception as err:  # unreadable image: flag, keep going
                            missing[objs, bi] = True
                            problems.append(
                                f"{src['path']}[{src['hdu']}]: {type(err).__name__}: {err}"
                            )
                            break
                        # every object's size x size window of the box, gathered at once
                        at = (y_lo[sel] - y0, x_lo[sel] - x0)
                        cut = sliding_window_view(box, (size, size))[at]
                        kept = cut
                        if all_same and int(src.get("weight_hdu", -1)) >= 0:
                            # no data where the weight map is zero: hot columns,
                            # saturated cores, gaps (NaN, counted by the nan flag)
                            wbox = reader.section({**src, "hdu": src["weight_hdu"]}, y0, y1, x0, x1)
                            dead = sliding_window_view(wbox, (size, size))[at] <= 0
                            kept = np.where(dead, np.nan, cut)
                        images[objs, bi] = kept
                        cut_out[objs, bi] = True
                        magzero[objs, bi] = src["magzero"]
                        sat = src.get("saturate", np.nan)
                        if sat is not None and np.isfinite(sat):
                            with np.errstate(invalid="ignore"):
                                saturated[objs] |= (cut >= sat).any(axis=(1, 2))
                    else:
                        continue
                    # an unreadable image: every object of this group lacks the band
                    missing[in_tile[pick], bi] = True
    finally:
        if own:
            reader.close()
    images[~cut_out] = np.nan
    band_nan = _nan_fractions(images)
    nan_fraction = band_nan.mean(axis=1).astype(np.float32)
    nan_band = band_nan > nan_fraction_max  # one band all NaN is as bad as all bands
    flags = np.zeros(n, dtype=np.uint8)
    flags[off] |= FLAG_BITS["off_footprint"]
    flags[edge] |= FLAG_BITS["edge"]
    flags[nan_band.any(axis=1)] |= FLAG_BITS["nan"]
    flags[missing.any(axis=1)] |= FLAG_BITS["missing_band"]
    flags[saturated] |= FLAG_BITS["saturated"]
    return {
        "images": images,
        "edge": edge,
        "nan_fraction": nan_fraction,
        "nan": nan_band,
        "missing_band": missing,
        "saturated": saturated,
        "flags": flags,
        "magzero": magzero,
        "problems": problems,
    }
