"""Reading FITS tiles as archives ship them: which files, which HDUs, band, zeropoint."""

from __future__ import annotations

import glob
import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from catbuilder.errors import InputWarning
from catbuilder.sky.geometry import pixel_to_world, sky_to_xyz

#: file names indexed in a directory; the longest match is stripped from tile names
FITS_SUFFIXES = tuple(
    f"{stem}{comp}" for stem in (".fits", ".fit", ".fts") for comp in (".fz", ".gz", ".bz2", "")
) + (".fz",)


_WEIGHT_NAMES = {"WEIGHT", "WGT", "IVAR", "INVVAR", "WHT"}


_SKIP_NAMES = {"PSF", "MASK", "MSK", "BPM", "FLAGS"}


_ZP_KEYWORDS = ("MAGZERO", "MAGZP", "MAGZPT", "PHOTZP", "ZP")


def _strip_suffix(name: str) -> str:
    low = name.lower()
    for s in FITS_SUFFIXES:
        if low.endswith(s):
            return name[: -len(s)]
    return name


def expand_inputs(inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = [f for f in sorted(p.rglob("*")) if f.name.lower().endswith(FITS_SUFFIXES)]
            files.extend(found)
        elif any(ch in str(item) for ch in "*?["):
            files.extend(Path(f) for f in sorted(glob.glob(str(item), recursive=True)))
        else:
            files.append(p)  # a missing file is reported as a problem by the scan
    return list(dict.fromkeys(files))


def _band_of(header, keywords: list[str], primary) -> str | None:
    for hdr in (header, primary):
        if hdr is None:
            continue
        for key in keywords:
            value = hdr.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip().split()[0]
    return None


def _band_token(stem: str) -> str | None:
    """A one-letter band at the end of a file name (``tile_g``, ``tile-r``), if any."""
    m = re.search(r"[_\-.]([ugrizyY])$", stem)
    return m.group(1) if m else None


def _magzero(header, primary) -> float:
    for hdr in (header, primary):
        if hdr is None:
            continue
        for key in _ZP_KEYWORDS:
            if key in hdr:
                try:
                    return float(hdr[key])
                except (TypeError, ValueError):
                    pass
        if "nanomagg" in str(hdr.get("BUNIT", "")).lower():
            return 22.5
    return float("nan")


class UnusableFile(Exception):
    pass


def scan_file(path: Path, keywords, band_re, tile_re, sci, wext) -> list[dict]:
    from astropy.io import fits
    from astropy.io.fits.verify import VerifyWarning
    from astropy.wcs import WCS

    if not path.exists():
        raise UnusableFile("file not found")
    if path.stat().st_size == 0:
        raise UnusableFile("empty file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
        except (OSError, ValueError, TypeError, IndexError) as err:
            raise UnusableFile(f"corrupt or not FITS ({err})") from None
    for w in caught:
        msg = str(w.message)
        if "truncated" in msg.lower():
            hdul.close()
            raise UnusableFile(f"truncated: {msg}")
        if issubclass(w.category, VerifyWarning) and "corrupt" in msg.lower():
            hdul.close()
            raise UnusableFile(f"corrupt: {msg}")
    with hdul:
        primary = hdul[0].header
        images = []
        weights = []
        for i, hdu in enumerate(hdul):
            if not hdu.is_image or hdu.header.get("NAXIS", 0) != 2:
                continue
            name = str(hdu.header.get("EXTNAME", "")).strip().upper()
            if wext is not None and (name == str(wext).upper() or i == wext):
                weights.append(i)
            elif name in _WEIGHT_NAMES and wext is None:
                weights.append(i)
            elif name in _SKIP_NAMES:
                continue
            elif sci is None or name == str(sci).upper() or i == sci:
                images.append(i)
        if not images:
            raise UnusableFile("no 2-D image HDU")
        stem = _strip_suffix(path.name)
        m = band_re.search(path.name)
        file_band = m.group("band") if m else None
        named = file_band is not None  # a band_pattern the user gave: the file name decides
        token = file_band or _band_token(stem)
        out = []
        # several science HDUs with different bands: bands as extensions
        hdu_bands = {}
        for i in images:
            hdr = hdul[i].header
            extname = str(hdr.get("EXTNAME", "")).strip()
            band = _band_of(hdr, keywords, None)
            if band is None and len(images) > 1 and extname and len(extname) <= 2:
                band = extname.lower()  # astropy upper-cases EXTNAME
            hdu_bands[i] = band
        multi = len(images) > 1 and len({b for b in hdu_bands.values() if b}) > 1
        use = images if multi else images[:1]
        for i in use:
            hdr = hdul[i].header
            header_band = hdu_bands[i] or _band_of({}, keywords, primary)
            band = (file_band if named else header_band) or file_band
            if not multi and header_band and token and header_band != token and not named:
                warnings.warn(
                    f"{path.name}: the header says band {header_band!r}, the file name "
                    f"{token!r}; using the header's. To take the file name's, give "
                    f"tiles.band-pattern (band_pattern=, --band-pattern), e.g. "
                    f"'[_-](?P<band>[a-zA-Z])\\.fits'",
                    InputWarning,
                    stacklevel=2,
                )
            if band is None:
                raise UnusableFile(
                    f"HDU {i}: band unknown (no {'/'.join(keywords)} keyword and the "
                    "file name does not match tiles.band-pattern)"
                )
            if tile_re is not None:
                tm = tile_re.search(path.name)
                if not tm:
                    raise UnusableFile(f"file name does not match tile pattern {tile_re.pattern!r}")
                tile = tm.group("tile")
            elif multi:
                tile = stem
            else:
                tile = re.sub(rf"([_\-.]){re.escape(band)}(?=([_\-.]|$))", "", stem, count=1)
                tile = tile or stem
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    w = WCS(hdr, naxis=2)
                except Exception as err:  # astropy raises several types for bad WCS
                    raise UnusableFile(f"HDU {i}: bad WCS ({err})") from None
            if not w.has_celestial:
                raise UnusableFile(f"HDU {i}: no celestial WCS")
            nx, ny = int(hdr["NAXIS1"]), int(hdr["NAXIS2"])
            cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
            corners_x = np.array([-0.5, nx - 0.5, -0.5, nx - 0.5, cx])
            corners_y = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5, cy])
            ra, dec = pixel_to_world(w, corners_x, corners_y)
            if not np.all(np.isfinite(ra)):
                raise UnusableFile(f"HDU {i}: WCS gives no sky position for the corners")
            cvec = sky_to_xyz(ra[4:], dec[4:])[0]
            dots = np.clip(sky_to_xyz(ra[:4], dec[:4]) @ cvec, -1, 1)
            radius = float(np.degrees(np.arccos(dots)).max())
            from astropy.wcs.utils import proj_plane_pixel_scales

            scale = float(np.mean(proj_plane_pixel_scales(w.celestial)) * 3600.0)
            wh = (
                weights[use.index(i)]
                if len(weights) == len(use)
                else (weights[0] if weights else -1)
            )
            out.append(
                {
                    "tile": tile,
                    "band": band,
                    "path": str(path.resolve()),
                    "hdu": i,
                    "weight_hdu": wh,
                    "nx": nx,
                    "ny": ny,
                    "ra": float(ra[4]),
                    "dec": float(dec[4]),
                    "radius": radius,
                    "pixel_scale": scale,
                    "magzero": _magzero(hdr, primary),
                    "saturate": float(hdr.get("SATURATE", primary.get("SATURATE", np.nan))),
                    "bunit": str(hdr.get("BUNIT", primary.get("BUNIT", ""))).strip(),
                    "wcs": w.to_header_string(relax=True),
                }
            )
        return out
