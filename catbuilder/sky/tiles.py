"""TileIndex: what FITS tiles there are, their bands and footprints on the sky.

Scans files or directories of FITS images (plain ``.fits``, compressed
``.fits.fz``, ``.fits.gz``, ``.fits.bz2``, multi-extension files; one file per band or bands as
extensions), records each (tile, band) image with its WCS, pixel scale and
footprint, and persists the index as Parquet. Files that cannot be used
(missing, truncated, corrupt, without a celestial WCS) are listed in
:attr:`TileIndex.problems` with the reason, never silently dropped.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from catbuilder import config
from catbuilder.sky.fits import UnusableFile, expand_inputs, scan_file
from catbuilder.sky.geometry import chord, sky_to_xyz, wcs_from_text, world_to_pixel

__all__ = ["TileIndex"]

COLUMNS = [
    "tile", "band", "path", "hdu", "weight_hdu", "nx", "ny", "ra", "dec", "radius",
    "pixel_scale", "magzero", "saturate", "bunit", "wcs",
]  # fmt: skip


class TileIndex:
    """An index of FITS tiles: one row per (tile, band) image.

    Build it with :meth:`build`, save it with :meth:`to_parquet`, reopen it
    with :meth:`read_parquet`, and find the tiles that hold positions with
    :meth:`locate`.

    Parameters
    ----------
    table
        The index table (see Attributes); usually made by :meth:`build`.
    problems
        ``(path, reason)`` of inputs that could not be indexed.

    Attributes
    ----------
    table
        One row per (tile, band): ``tile, band, path, hdu, weight_hdu, nx, ny,
        ra, dec`` (centre), ``radius`` (deg, centre to farthest corner),
        ``pixel_scale`` (arcsec), ``magzero``, ``saturate``, ``bunit`` (the
        header's pixel unit, "" if none), ``wcs`` (header text).
    problems
        ``(path, reason)`` for every input that could not be indexed.

    Examples
    --------
    >>> from catbuilder import TileIndex
    >>> index = TileIndex.build("mock/des-like/tiles")  # doctest: +SKIP
    >>> index.bands, len(index.tiles)  # doctest: +SKIP
    (['g', 'i', 'r'], 4)
    >>> index.to_parquet("des-index.parquet")  # doctest: +SKIP
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
        files = expand_inputs(inputs)
        if not files:
            raise FileNotFoundError(f"no FITS files found in {inputs!r}")
        rows: list[dict] = []
        problems: list[tuple[str, str]] = []
        for path in tqdm(files, desc="indexing tiles", unit="file", disable=not progress):
            try:
                rows.extend(scan_file(path, keywords, band_re, tile_re, sci, wext))
            except UnusableFile as err:
                problems.append((str(path), str(err)))
        table = pd.DataFrame(rows, columns=COLUMNS)
        dup = table.duplicated(["tile", "band"], keep="first")
        for _, r in table[dup].iterrows():
            first = table[(table.tile == r.tile) & (table.band == r.band)].iloc[0]
            problems.append(
                (r.path, f"duplicate tile {r.tile!r} band {r.band!r}; using {first.path}")
            )
        table = table[~dup]
        if table.empty and all(why == "file not found" for _, why in problems):
            raise FileNotFoundError(f"no FITS files found in {inputs!r}")
        if table.empty:  # one line: the first reason, and how many more
            path, why = problems[0]
            more = f" (and {len(problems) - 1} more not indexed)" if len(problems) > 1 else ""
            raise ValueError(f"no usable FITS image: {path}: {why}{more}")
        if problems:
            shown = "; ".join(f"{p}: {why}" for p, why in problems[:5])
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            warnings.warn(f"{len(problems)} FITS input(s) not indexed: {shown}{more}", stacklevel=2)
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
                cand = tree.query_ball_point(centres[k], chord(rec["radius"] * 1.02))
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
