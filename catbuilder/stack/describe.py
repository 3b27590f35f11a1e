"""What a stack's arrays mean: CF-style attributes, band metadata and per-cutout WCS.

A stack explains itself without its tiles: every variable has ``long_name``
(and ``units`` where it has one), the bands carry their effective wavelength,
zeropoint and pixel unit, the image axes are offsets on the sky, and every
cutout stores its own linear (TAN) WCS, fitted to its tile's WCS at the
cutout's centre, so :meth:`catbuilder.stack.ImageStack.wcs` places it on the
sky after the tiles are gone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from catbuilder.sky.geometry import pixel_to_world
from catbuilder.sky.tiles import TileIndex
from catbuilder.stack.flags import FLAG_BITS

__all__ = ["WCS_VARS", "cutout_wcs", "cutout_wcs_values", "describe_dataset"]

#: per-object WCS coordinates of a stack (FITS keywords, lower case)
WCS_VARS = ("wcs_crval1", "wcs_crval2", "wcs_cd1_1", "wcs_cd1_2", "wcs_cd2_1", "wcs_cd2_2")

_OBJECT_ATTRS: dict[str, dict[str, Any]] = {
    "objid": {"long_name": "object id from the source table"},
    "ra": {"long_name": "right ascension (ICRS)", "units": "deg"},
    "dec": {"long_name": "declination (ICRS)", "units": "deg"},
    "tile": {"long_name": "reference-band tile the cutout is cut from"},
    "tile_x": {"long_name": "x position in the reference tile (0-based)", "units": "pixel"},
    "tile_y": {"long_name": "y position in the reference tile (0-based)", "units": "pixel"},
    "row": {"long_name": "row of the source table"},
    "label": {"long_name": "class from the label table (empty: no label)"},
    "split": {"long_name": "train, validation or test (empty: no label)"},
    "label_objid": {
        "long_name": "id of the matched object in the label survey",
        "comment": "integer ids: -9223372036854775808 where there is none; text ids: empty",
    },
    "label_prob": {"long_name": "vote fraction of the label", "units": "1"},
    "label_votes": {"long_name": "votes the label's fraction is of", "units": "1"},
    "off_footprint": {"long_name": "position on no reference-band tile"},
    "edge": {"long_name": "cutout crosses its tile's edge"},
    "nan_fraction": {"long_name": "fraction of NaN pixels over all bands", "units": "1"},
    "nan": {"long_name": "this band's NaN fraction is above cutouts.nan-fraction-max"},
    "missing_band": {"long_name": "no image of this band at this position"},
    "saturated": {"long_name": "a pixel reaches its tile's SATURATE level"},
    "magzero": {"long_name": "AB magnitude zeropoint of the source image", "units": "mag"},
    "wcs_crval1": {"long_name": "RA of the cutout's reference pixel (WCS CRVAL1)", "units": "deg"},
    "wcs_crval2": {"long_name": "Dec of the cutout's reference pixel (WCS CRVAL2)", "units": "deg"},
    **{
        f"wcs_cd{i}_{j}": {"long_name": f"WCS CD{i}_{j} of the cutout", "units": "deg/pixel"}
        for i in (1, 2)
        for j in (1, 2)
    },
}


def _tangent(ra0, dec0, ra, dec) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic (TAN) intermediate coordinates, degrees, about (ra0, dec0)."""
    a0, d0, a, d = (np.radians(v) for v in (ra0, dec0, ra, dec))
    cos_c = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    xi = np.cos(d) * np.sin(a - a0) / cos_c
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cos_c
    return np.degrees(xi), np.degrees(eta)


def cutout_wcs_values(plan: pd.DataFrame, index: TileIndex, size: int) -> dict[str, np.ndarray]:
    """Per-object TAN WCS of each cutout (NaN off the footprint).

    The reference pixel is the cutout's centre; ``CRVAL`` is its sky position
    in the tile's WCS and ``CD`` the tile WCS's local derivative there
    (central differences of one pixel), so distortions of the tile (SIP, TPV)
    are followed to first order across the cutout.
    """
    n = len(plan)
    out = {k: np.full(n, np.nan) for k in WCS_VARS}
    ref = plan["ref_row"].to_numpy()
    c = (size - 1) / 2.0
    lo_x = np.ceil(plan["tile_x"].fillna(0).to_numpy() - size / 2.0)
    lo_y = np.ceil(plan["tile_y"].fillna(0).to_numpy() - size / 2.0)
    for r in np.unique(ref[ref >= 0]):
        sel = np.flatnonzero(ref == r)
        w = index.wcs(int(r))
        px, py = lo_x[sel] + c, lo_y[sel] + c
        ra0, dec0 = pixel_to_world(w, px, py)
        steps = ((1, 0), (-1, 0), (0, 1), (0, -1))
        ra, dec = pixel_to_world(
            w,
            np.concatenate([px + dx for dx, _ in steps]),
            np.concatenate([py + dy for _, dy in steps]),
        )
        xi, eta = _tangent(np.tile(ra0, 4), np.tile(dec0, 4), ra, dec)
        xi, eta = xi.reshape(4, -1), eta.reshape(4, -1)
        out["wcs_crval1"][sel], out["wcs_crval2"][sel] = ra0, dec0
        out["wcs_cd1_1"][sel] = (xi[0] - xi[1]) / 2
        out["wcs_cd1_2"][sel] = (xi[2] - xi[3]) / 2
        out["wcs_cd2_1"][sel] = (eta[0] - eta[1]) / 2
        out["wcs_cd2_2"][sel] = (eta[2] - eta[3]) / 2
    return out


def cutout_wcs(values: dict[str, float] | pd.Series, size: int):
    """An :class:`astropy.wcs.WCS` from one object's ``wcs_*`` values."""
    from astropy.wcs import WCS

    if not np.isfinite(float(values["wcs_crval1"])):
        raise ValueError("this object is off the footprint: its cutout has no WCS")
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.radesys = "ICRS"
    w.wcs.crpix = [(size + 1) / 2.0] * 2  # FITS pixels are 1-based: the cutout's centre
    w.wcs.crval = [float(values["wcs_crval1"]), float(values["wcs_crval2"])]
    w.wcs.cd = [
        [float(values["wcs_cd1_1"]), float(values["wcs_cd1_2"])],
        [float(values["wcs_cd2_1"]), float(values["wcs_cd2_2"])],
    ]
    w.wcs.set()
    return w


def _band_info(index: TileIndex, bands: list[str]) -> dict[str, np.ndarray]:
    from catbuilder import config

    waves = {str(k): v for k, v in (config.get("cutouts.band-wavelengths") or {}).items()}
    t = index.table
    wave, zp, unit = [], [], []
    for b in bands:
        rows = t[t["band"] == b]
        wave.append(float(waves.get(b, np.nan)))
        zps = rows["magzero"].to_numpy(dtype=float)
        zp.append(float(np.nanmedian(zps)) if np.isfinite(zps).any() else np.nan)
        units = set(rows["bunit"]) - {""} if "bunit" in rows else set()
        unit.append(units.pop() if len(units) == 1 else "")
    return {
        "wavelength_eff": np.array(wave),
        "magzero_band": np.array(zp, dtype=np.float32),
        "pixel_unit": np.array(unit, dtype=object),
    }


def describe_dataset(ds, index: TileIndex, bands: list[str], reference_band: str, size: int):
    """Add CF-style attributes, band metadata and sky-offset image axes to a template."""
    scale = float(np.median(index.table.loc[index.table["band"] == reference_band, "pixel_scale"]))
    info = _band_info(index, bands)
    offsets = (np.arange(size) - (size - 1) / 2.0) * scale
    ds = ds.assign_coords(
        x=("x", offsets, {"long_name": "offset from the cutout centre along x", "units": "arcsec"}),
        y=("y", offsets, {"long_name": "offset from the cutout centre along y", "units": "arcsec"}),
        wavelength_eff=(
            "band",
            info["wavelength_eff"],
            {
                "long_name": "effective wavelength of the band",
                "units": "Angstrom",
                "comment": "from cutouts.band-wavelengths (SDSS filters by default)",
            },
        ),
        magzero_band=(
            "band",
            info["magzero_band"],
            {"long_name": "median AB zeropoint of the band's images", "units": "mag"},
        ),
        pixel_unit=(
            "band",
            info["pixel_unit"],
            {"long_name": "BUNIT of the band's images (empty: not in their headers)"},
        ),
    )
    ds["band"].attrs.update({"long_name": "photometric band"})
    ds["object"].attrs.update({"long_name": "position of the object in the stack"})
    units = {u for u in info["pixel_unit"] if u}
    img = {
        "long_name": "cutout pixels, native values of the source images",
        "comment": (
            "flux in nanomaggies = pixel * 10**(-0.4 * (magzero - 22.5)); "
            "per-band units in pixel_unit; "
            "the WCS of each cutout: wcs_* coordinates (ImageStack.wcs)"
        ),
        "pixel_scale_arcsec": scale,
    }
    if len(units) == 1 and all(info["pixel_unit"]):
        img["units"] = units.pop()
    ds["images"].attrs.update(img)
    ds["flags"].attrs.update(
        {
            "long_name": "quality flag bits",
            "flag_masks": [int(v) for v in FLAG_BITS.values()],
            "flag_meanings": " ".join(FLAG_BITS),
        }
    )
    for name, attrs in _OBJECT_ATTRS.items():
        if name in ds.variables:
            ds[name].attrs.update(attrs)
    if "written" in ds:
        ds["written"].attrs["long_name"] = "the object's chunk is written (for resuming)"
    ds.attrs.update(
        {
            "title": "catbuilder image stack: one cutout per object and band",
            "pixel_scale_arcsec": scale,
            "size_pixels": int(size),
            "size_arcsec": float(size * scale),
            "reference_band": reference_band,
            "wcs_crpix": [(size + 1) / 2.0] * 2,
        }
    )
    return ds
