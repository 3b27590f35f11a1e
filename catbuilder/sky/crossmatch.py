"""Sky crossmatch with astropy, partitioned into declination strips on Dask.

Small tables are matched in one call of
:meth:`astropy.coordinates.SkyCoord.match_to_catalog_sky`. Large ones are cut
into declination strips of about equal numbers of left-hand rows; each strip
is matched on a Dask worker against the right-hand rows within the strip plus
the match radius, so every pair closer than the radius is found exactly once.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from catbuilder import config
from catbuilder.sky.geometry import angle_arcsec
from catbuilder.sky.tables import read_sources

__all__ = ["MatchResult", "crossmatch"]


@dataclass
class MatchResult:
    """The outcome of :func:`crossmatch`.

    Attributes
    ----------
    left, right
        The standardised input tables (``objid, ra, dec`` first).
    matches
        One row per matched left row: ``left`` and ``right`` (row positions)
        and ``sep_arcsec``.
    radius_arcsec
        The match radius.
    """

    left: pd.DataFrame
    right: pd.DataFrame
    matches: pd.DataFrame
    radius_arcsec: float

    @property
    def unmatched_left(self) -> pd.DataFrame:
        """Left rows with no right row within the radius."""
        return self.left.drop(index=self.matches["left"].to_numpy())

    @property
    def unmatched_right(self) -> pd.DataFrame:
        """Right rows that no left row matched."""
        return self.right.drop(index=np.unique(self.matches["right"].to_numpy()))

    @property
    def shared(self) -> pd.DataFrame:
        """Matches whose right row is the nearest neighbour of several left rows."""
        dup = self.matches["right"].duplicated(keep=False)
        return self.matches[dup]

    def join(self, suffixes: tuple[str, str] = ("", "_2")) -> pd.DataFrame:
        """Matched pairs side by side, with ``sep_arcsec``."""
        lt = self.left.iloc[self.matches["left"].to_numpy()].reset_index(drop=True)
        rt = self.right.iloc[self.matches["right"].to_numpy()].reset_index(drop=True)
        rt.columns = [f"{c}{suffixes[1]}" if c in lt.columns else c for c in rt.columns]
        lt.columns = [f"{c}{suffixes[0]}" for c in lt.columns]
        out = pd.concat([lt, rt], axis=1)
        out["sep_arcsec"] = self.matches["sep_arcsec"].to_numpy()
        return out

    def summary(self) -> str:
        """A short report: matched, unmatched on each side, shared matches."""
        n_l, n_r, n_m = len(self.left), len(self.right), len(self.matches)
        sep = self.matches["sep_arcsec"]
        med = f', median separation {sep.median():.3f}"' if n_m else ""
        return (
            f'crossmatch within {self.radius_arcsec}": {n_m}/{n_l} left rows matched{med}; '
            f"{n_l - n_m} left and {len(self.unmatched_right)}/{n_r} right rows unmatched; "
            f"{len(self.shared)} matches share their right row"
        )


def _match_block(lra, ldec, lidx, rra, rdec, ridx, radius_arcsec):
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    if len(lra) == 0 or len(rra) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    c1 = SkyCoord(lra * u.deg, ldec * u.deg)
    c2 = SkyCoord(rra * u.deg, rdec * u.deg)
    i, sep, _ = c1.match_to_catalog_sky(c2)
    sep = sep.to_value(u.arcsec)
    ok = sep <= radius_arcsec
    return lidx[ok], ridx[i[ok]], sep[ok]


def crossmatch(
    left: pd.DataFrame | str | os.PathLike[str],
    right: pd.DataFrame | str | os.PathLike[str],
    radius: float | str | Any | None = None,
    *,
    partitioned: bool | None = None,
    partition_rows: int | None = None,
    cluster: Any = None,
    workers: int | None = None,
    progress: bool = False,
) -> MatchResult:
    """Match each left source to its nearest right source within a radius.

    Parameters
    ----------
    left, right
        Tables, astropy ``Table``/``SkyCoord`` or paths (read with
        :func:`catbuilder.sky.read_sources`).
    radius
        Match radius: a number of arcsec, ``"1 arcsec"`` or an astropy
        angle (default ``crossmatch.radius-arcsec``, 1").
    partitioned
        Cut the sky into declination strips matched on Dask; default when the
        left table has more than ``crossmatch.min-partitioned`` rows.
    partition_rows
        Left rows per strip (default ``crossmatch.partition-rows``).
    cluster, workers
        Where the strips of a partitioned match run (see
        :func:`catbuilder.runtime.compute`; default: the active client, else a
        process pool).
    progress
        Show a progress bar over strips.

    Returns
    -------
    MatchResult
        Matches, unmatched rows and a :meth:`~MatchResult.summary`.

    Examples
    --------
    >>> import pandas as pd
    >>> from catbuilder import crossmatch
    >>> a = pd.DataFrame({"objid": [1, 2], "ra": [150.0, 150.1], "dec": [2.0, 2.1]})
    >>> b = pd.DataFrame({"objid": [10, 20], "ra": [150.0001, 151.0], "dec": [2.0, 2.1]})
    >>> match = crossmatch(a, b, radius="1 arcsec")
    >>> match.join()[["objid", "objid_2"]]
       objid  objid_2
    0      1       10
    """
    lt = read_sources(left, warn_no_id=False)  # rows are matched; ids only label them
    rt = read_sources(right, warn_no_id=False)
    radius = angle_arcsec(config.resolve("crossmatch.radius-arcsec", radius), "radius")
    big = len(lt) > int(config.get("crossmatch.min-partitioned"))
    part = big if partitioned is None else partitioned
    lra, ldec = lt["ra"].to_numpy(), lt["dec"].to_numpy()
    rra, rdec = rt["ra"].to_numpy(), rt["dec"].to_numpy()
    lok = np.flatnonzero(np.isfinite(lra) & np.isfinite(ldec))
    rok = np.flatnonzero(np.isfinite(rra) & np.isfinite(rdec))
    if not part:
        li, ri, sep = _match_block(lra[lok], ldec[lok], lok, rra[rok], rdec[rok], rok, radius)
    else:
        li, ri, sep = _partitioned(
            lra[lok],
            ldec[lok],
            lok,
            rra[rok],
            rdec[rok],
            rok,
            radius,
            int(config.resolve("crossmatch.partition-rows", partition_rows)),
            (cluster, workers),
            progress,
        )
    order = np.argsort(li, kind="stable")
    matches = pd.DataFrame({"left": li[order], "right": ri[order], "sep_arcsec": sep[order]})
    return MatchResult(lt, rt, matches, radius)


def _partitioned(lra, ldec, lidx, rra, rdec, ridx, radius, rows, where, progress):
    import dask

    from catbuilder.runtime import compute

    n_parts = max(1, int(np.ceil(len(lra) / max(rows, 1))))
    lorder = np.argsort(ldec, kind="stable")
    lra, ldec, lidx = lra[lorder], ldec[lorder], lidx[lorder]
    rorder = np.argsort(rdec, kind="stable")
    rra, rdec, ridx = rra[rorder], rdec[rorder], ridx[rorder]
    bounds = np.linspace(0, len(lra), n_parts + 1).astype(int)
    margin = radius / 3600.0
    tasks = []
    for a, b in itertools.pairwise(bounds):
        if a == b:
            continue
        lo, hi = ldec[a] - margin, ldec[b - 1] + margin
        ra_, rb_ = (
            np.searchsorted(rdec, [lo, hi], side="left")[0],
            np.searchsorted(rdec, hi, side="right"),
        )
        tasks.append(
            dask.delayed(_match_block, pure=False)(
                lra[a:b],
                ldec[a:b],
                lidx[a:b],
                rra[ra_:rb_],
                rdec[ra_:rb_],
                ridx[ra_:rb_],
                radius,
            )
        )
    results = compute(
        tasks,
        cluster=where[0],
        workers=where[1],
        progress=progress,
        desc="crossmatch",
        unit="strip",
    )
    if not results:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    li = np.concatenate([r[0] for r in results])
    ri = np.concatenate([r[1] for r in results])
    sep = np.concatenate([r[2] for r in results])
    return li, ri, sep
