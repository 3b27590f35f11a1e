"""Sky geometry: unit vectors, chords, and WCS transforms in the tile's own frame."""

from __future__ import annotations

import warnings
from functools import lru_cache
from typing import Any

import numpy as np


def sky_to_xyz(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Unit vectors (n, 3) for RA, Dec in degrees."""
    ra_r, dec_r = np.radians(ra), np.radians(dec)
    c = np.cos(dec_r)
    return np.column_stack([c * np.cos(ra_r), c * np.sin(ra_r), np.sin(dec_r)])


def chord(deg: float | np.ndarray) -> float | np.ndarray:
    return 2.0 * np.sin(np.radians(deg) / 2.0)


def _frame(w):
    """The celestial frame of ``w`` when it is not ICRS (FK5, FK4, Galactic...), else None."""
    from astropy.coordinates import ICRS
    from astropy.wcs.utils import wcs_to_celestial_frame

    try:
        frame = wcs_to_celestial_frame(w)
    except ValueError:
        return None
    return None if isinstance(frame, ICRS) else frame


def world_to_pixel(w, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """0-based pixel coordinates of ICRS positions (degrees) in the image of ``w``.

    The header's own frame (``RADESYS``/``EQUINOX``: FK5, FK4, Galactic, ...)
    is honoured: positions are transformed into it first.
    """
    frame = _frame(w)
    if frame is not None:
        from astropy.coordinates import SkyCoord

        c = SkyCoord(ra, dec, unit="deg", frame="icrs").transform_to(frame).spherical
        ra, dec = c.lon.deg, c.lat.deg
    return w.all_world2pix(ra, dec, 0)


def pixel_to_world(w, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ICRS positions (degrees) of 0-based pixel coordinates in the image of ``w``."""
    lon, lat = w.all_pix2world(x, y, 0)
    frame = _frame(w)
    if frame is None:
        return lon, lat
    from astropy.coordinates import SkyCoord

    ok = np.isfinite(lon) & np.isfinite(lat)
    ra, dec = np.full(np.shape(lon), np.nan), np.full(np.shape(lat), np.nan)
    if ok.any():
        c = SkyCoord(lon[ok], lat[ok], unit="deg", frame=frame).icrs
        ra[ok], dec[ok] = c.ra.deg, c.dec.deg
    return ra, dec


@lru_cache(maxsize=4096)
def wcs_from_text(text: str):
    """The celestial WCS of a header stored as text (cached: tiles share few headers)."""
    from astropy.io import fits
    from astropy.wcs import WCS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return WCS(fits.Header.fromstring(text), naxis=2)


def angle_arcsec(value: Any, what: str = "radius") -> float:
    """An angle in arcsec from a number (arcsec), a string with a unit
    (``"1 arcsec"``, ``"0.5 deg"``) or an astropy angle ``Quantity``.

    Raises
    ------
    ValueError
        For anything else, or an angle that is not positive, naming ``what``.
    """
    from astropy import units as u

    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        out = float(value)
    else:
        try:
            q = u.Quantity(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"{what} must be an angle such as '1 arcsec' or 1 * u.arcsec, got {value!r}"
            ) from None
        if q.unit == u.dimensionless_unscaled:
            out = float(q.value)
        elif q.unit.physical_type != "angle":
            raise ValueError(f"{what} must be an angle, got {value!r} ({q.unit.physical_type})")
        else:
            out = float(q.to_value(u.arcsec))
    if not np.isfinite(out) or out <= 0:
        raise ValueError(f"{what} must be a positive angle, got {value!r}")
    return out
