"""TileIndex: what FITS tiles there are, their bands and footprints on the sky.

Scans files or directories of FITS images (plain ``.fits``, compressed
``.fits.fz``, ``.fits.gz``, ``.fits.bz2``, multi-extension files; one file per band or bands as
extensions), records each (tile, band) image with its WCS, pixel scale and
footprint, and persists the index as Parquet. Files that cannot be used
(missing, truncated, corrupt, without a celestial WCS) are listed in
:attr:`TileIndex.problems` with the reason, never silently dropped.
"""

from __future__ import annotations

import glob
import os
import re
import warnings
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from catbuilder import config

__all__ = ["TileIndex", "pixel_to_world", "sky_to_xyz", "wcs_from_text", "world_to_pixel"]

#: file names indexed in a directory; the longest match is stripped from tile names
FITS_SUFFIXES = tuple(
    f"{stem}{comp}" for stem in (".fits", ".fit", ".fts") for comp in (".fz", ".gz", ".bz2", "")
) + (".fz",)
_WEIGHT_NAMES = {"WEIGHT", "WGT", "IVAR", "INVVAR", "WHT"}
_SKIP_NAMES = {"PSF", "MASK", "MSK", "BPM", "FLAGS"}
_ZP_KEYWORDS = ("MAGZERO", "MAGZP", "MAGZPT", "PHOTZP", "ZP")
COLUMNS = [
    "tile", "band", "path", "hdu", "weight_hdu", "nx", "ny", "ra", "dec", "radius",
    "pixel_scale", "magzero", "saturate", "bunit", "wcs",
]  # fmt: skip


def sky_to_xyz(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Unit vectors (n, 3) for RA, Dec in degrees."""
    ra_r, dec_r = np.radians(ra), np.radians(dec)
    c = np.cos(dec_r)
    return np.column_stack([c * np.cos(ra_r), c * np.sin(ra_r), np.sin(dec_r)])


def _chord(deg: float | np.ndarray) -> float | np.ndarray:
    return 2.0 * np.sin(np.radians(deg) / 2.0)


def _strip_suffix(name: str) -> str:
    low = name.lower()
    for s in FITS_SUFFIXES:
        if low.endswith(s):
            return name[: -len(s)]
    return name


def _expand(inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
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


class TileIndex:
    """An index of FITS tiles: one row per (tile, band) image.

    Build it with :meth:`build`, save it with :meth:`to_parquet`, reopen it
    with :meth:`read_parquet`, and find the tiles that hold positions with
    :meth:`locate`.

    Attributes
    ----------
    table
        One row per (tile, band): ``tile, band, path, hdu, weight_hdu, nx, ny,
        ra, dec`` (centre), ``radius`` (deg, centre to farthest corner),
        ``pixel_scale`` (arcsec), ``magzero``, ``saturate``, ``bunit`` (the
        header's pixel unit, "" if none), ``wcs`` (header text).
    problems
        ``(path, reason)`` for every input that could not be indexed.
    """

    def __init__(self, table: pd.DataFrame, problems: list[tuple[str, str]] | None = None):
        self.table = table.reset_index(drop=True)
        self.problems = list(problems or [])
        self._wcs_cache: dict[int, object] = {}

    # -- construction -----------------------------------------------------------

    @classmethod
    def build(
        cls,
        inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        *,
        band_keywords: list[str] | None = None,
        band_pattern: str | None = None,
        tile_pattern: str | None = None,
        science_extension: str | int | None = None,
        weight_extension: str | int | None = None,
        progress: bool = False,
    ) -> TileIndex:
        """Scan FITS files, directories or glob patterns.

        Parameters
        ----------
        inputs
            Paths, directories (searched recursively for FITS suffixes) or glob
            patterns.
        band_keywords
            Header keywords naming the band (first word of the value is used);
            default ``tiles.band-keywords``.
        band_pattern
            Regular expression with a ``(?P<band>...)`` group matched against
            file names; used when no keyword names the band.
        tile_pattern
            Regular expression with a ``(?P<tile>...)`` group; by default the
            tile name is the file name without suffix and without the band
            token (``DES0203-0041_g.fits.fz`` -> ``DES0203-0041``).
        science_extension, weight_extension
            HDU name or number of the image and of its inverse variance; by
            default the first 2-D image HDU, and a ``WEIGHT``/``WGT``/``IVAR`` one.
        progress
            Show a progress bar over files.

        Returns
        -------
        TileIndex
            With :attr:`problems` listing unusable files; a warning names them.
        """
        from tqdm.auto import tqdm

        keywords = list(config.resolve("tiles.band-keywords", band_keywords))
        band_re = re.compile(config.resolve("tiles.band-pattern", band_pattern) or "(?!x)x")
        tpat = config.resolve("tiles.tile-pattern", tile_pattern)
        tile_re = re.compile(tpat) if tpat else None
        sci = config.resolve("tiles.science-extension", science_extension)
        wext = config.resolve("tiles.weight-extension", weight_extension)
        files = _expand(inputs)
        if not files:
            raise FileNotFoundError(f"no FITS files found in {inputs!r}")
        rows: list[dict] = []
        problems: list[tuple[str, str]] = []
        for path in tqdm(files, desc="indexing tiles", unit="file", disable=not progress):
            try:
                rows.extend(_scan_file(path, keywords, band_re, tile_re, sci, wext))
            except _Unusable as err:
                problems.append((str(path), str(err)))
        table = pd.DataFrame(rows, columns=COLUMNS)
        dup = table.duplicated(["tile", "band"], keep="first")
        for _, r in table[dup].iterrows():
            first = table[(table.tile == r.tile) & (table.band == r.band)].iloc[0]
            problems.append(
                (r.path, f"duplicate tile {r.tile!r} band {r.band!r}; using {first.path}")
            )
        table = table[~dup]
        if problems:
            shown = "; ".join(f"{p}: {why}" for p, why in problems[:5])
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            warnings.warn(f"{len(problems)} FITS input(s) not indexed: {shown}{more}", stacklevel=2)
        if table.empty and all(why == "file not found" for _, why in problems):
            raise FileNotFoundError(f"no FITS files found in {inputs!r}")
        if table.empty:
            raise ValueError(f"no usable FITS images in {inputs!r}: {problems[:5]}")
        return cls(table, problems)

    @classmethod
    def read_parquet(cls, path: str | os.PathLike[str]) -> TileIndex:
        """Reopen an index saved with :meth:`to_parquet`."""
        import json

        import pyarrow.parquet as pq

        t = pq.read_table(path)
        meta = (t.schema.metadata or {}).get(b"catbuilder.problems", b"[]")
        return cls(t.to_pandas(), [tuple(p) for p in json.loads(meta)])

    def to_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Save the index (and its problem list) as Parquet.

        An existing file is replaced only if catbuilder wrote it.
        """
        import json

        import pyarrow as pa

        from catbuilder.outputs import write_parquet

        t = pa.Table.from_pandas(self.table, preserve_index=False)
        meta = dict(t.schema.metadata or {})
        meta[b"catbuilder.problems"] = json.dumps(self.problems).encode()
        return write_parquet(t.replace_schema_metadata(meta), path, "tile index")

    @classmethod
    def from_any(cls, tiles: TileIndex | str | os.PathLike[str] | Iterable, **kwargs) -> TileIndex:
        """An index from an index, a saved ``.parquet`` index, or FITS inputs."""
        if isinstance(tiles, TileIndex):
            return tiles
        if isinstance(tiles, (str, os.PathLike)) and str(tiles).endswith(".parquet"):
            return cls.read_parquet(tiles)
        return cls.build(tiles, **kwargs)

    # -- queries ----------------------------------------------------------------

    @property
    def bands(self) -> list[str]:
        return sorted(self.table["band"].unique())

    @property
    def tiles(self) -> list[str]:
        return sorted(self.table["tile"].unique())

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        return (
            f"<TileIndex: {len(self.tiles)} tiles, bands {','.join(self.bands)}, "
            f"{len(self.table)} images, {len(self.problems)} problems>"
        )

    def row(self, tile: str, band: str) -> pd.Series | None:
        """The index row of one (tile, band) image, or None."""
        sel = self.table[(self.table["tile"] == tile) & (self.table["band"] == band)]
        return None if sel.empty else sel.iloc[0]

    def wcs(self, row: int):
        """The astropy WCS of table row ``row`` (cached)."""
        if row not in self._wcs_cache:
            self._wcs_cache[row] = wcs_from_text(self.table.at[row, "wcs"])
        return self._wcs_cache[row]

    def locate(self, ra: np.ndarray, dec: np.ndarray, band: str) -> pd.DataFrame:
        """Find, for each position, the ``band`` tile where it is most central.

        Vectorised: a KD-tree over the positions gives each tile its
        candidates, which are projected with the tile's WCS in one call; the
        loop runs over tiles, never over objects.

        Parameters
        ----------
        ra, dec
            Positions in degrees (NaN positions are found in no tile).
        band
            Band whose tiles are searched.

        Returns
        -------
        pandas.DataFrame
            Per position: ``row`` (index table row, -1 if none), ``tile`` ("" if
            none), ``x``, ``y`` (0-based pixel coordinates in that tile) and
            ``margin`` (pixels to the nearest tile edge).
        """
        from scipy.spatial import cKDTree

        ra = np.asarray(ra, dtype=np.float64)
        dec = np.asarray(dec, dtype=np.float64)
        n = len(ra)
        best = np.full(n, -1, dtype=np.int64)
        best_margin = np.full(n, -np.inf)
        bx = np.full(n, np.nan)
        by = np.full(n, np.nan)
        ok = np.isfinite(ra) & np.isfinite(dec)
        sub = self.table[self.table["band"] == band]
        if n and ok.any() and not sub.empty:
            okidx = np.flatnonzero(ok)
            tree = cKDTree(sky_to_xyz(ra[ok], dec[ok]))
            centres = sky_to_xyz(sub["ra"].to_numpy(), sub["dec"].to_numpy())
            for k, (ridx, rec) in enumerate(sub.iterrows()):
                cand = tree.query_ball_point(centres[k], _chord(rec["radius"] * 1.02))
                if not cand:
                    continue
                cand = okidx[np.asarray(cand)]
                x, y = world_to_pixel(self.wcs(ridx), ra[cand], dec[cand])
                margin = np.minimum.reduce(
                    [x + 0.5, rec["nx"] - 0.5 - x, y + 0.5, rec["ny"] - 0.5 - y]
                )
                better = margin > best_margin[cand]
                sel = cand[better]
                best[sel] = ridx
                best_margin[sel] = margin[better]
                bx[sel] = x[better]
                by[sel] = y[better]
        found = best_margin >= 0
        best[~found] = -1
        tiles = np.where(found, self.table["tile"].to_numpy()[np.maximum(best, 0)], "")
        return pd.DataFrame(
            {
                "row": best,
                "tile": tiles.astype(object),
                "x": np.where(found, bx, np.nan),
                "y": np.where(found, by, np.nan),
                "margin": np.where(found, best_margin, np.nan),
            }
        )


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


class _Unusable(Exception):
    pass


def _scan_file(path: Path, keywords, band_re, tile_re, sci, wext) -> list[dict]:
    from astropy.io import fits
    from astropy.io.fits.verify import VerifyWarning
    from astropy.wcs import WCS

    if not path.exists():
        raise _Unusable("file not found")
    if path.stat().st_size == 0:
        raise _Unusable("empty file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
        except (OSError, ValueError, TypeError, IndexError) as err:
            raise _Unusable(f"corrupt or not FITS ({err})") from None
    for w in caught:
        msg = str(w.message)
        if "truncated" in msg.lower():
            hdul.close()
            raise _Unusable(f"truncated: {msg}")
        if issubclass(w.category, VerifyWarning) and "corrupt" in msg.lower():
            hdul.close()
            raise _Unusable(f"corrupt: {msg}")
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
            raise _Unusable("no 2-D image HDU")
        stem = _strip_suffix(path.name)
        m = band_re.search(path.name)
        file_band = m.group("band") if m else None
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
            band = hdu_bands[i] or _band_of({}, keywords, primary) or file_band
            if band is None:
                raise _Unusable(
                    f"HDU {i}: band unknown (no {'/'.join(keywords)} keyword and the "
                    "file name does not match tiles.band-pattern)"
                )
            if tile_re is not None:
                tm = tile_re.search(path.name)
                if not tm:
                    raise _Unusable(f"file name does not match tile pattern {tile_re.pattern!r}")
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
                    raise _Unusable(f"HDU {i}: bad WCS ({err})") from None
            if not w.has_celestial:
                raise _Unusable(f"HDU {i}: no celestial WCS")
            nx, ny = int(hdr["NAXIS1"]), int(hdr["NAXIS2"])
            cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
            corners_x = np.array([-0.5, nx - 0.5, -0.5, nx - 0.5, cx])
            corners_y = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5, cy])
            ra, dec = pixel_to_world(w, corners_x, corners_y)
            if not np.all(np.isfinite(ra)):
                raise _Unusable(f"HDU {i}: WCS gives no sky position for the corners")
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
