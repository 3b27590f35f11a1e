"""Read source tables (FITS, CSV, Parquet, HATS) with configurable column names."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from catbuilder import config
from catbuilder.errors import warn
from catbuilder.sky.hats_catalogs import is_hats_catalog, read_hats_table

__all__ = ["find_column", "read_sources", "read_table"]

_SUFFIXES = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".fits": "fits",
    ".fit": "fits",
    ".fits.gz": "fits",
    ".fz": "fits",
    ".csv.gz": "csv",
    ".vot": "votable",
    ".xml": "votable",
    ".ecsv": "ecsv",
}


def _kind(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return _SUFFIXES[suffix]
    raise ValueError(
        f"{path}: cannot tell the table format from the name; use one of "
        f"{', '.join(sorted(set(_SUFFIXES)))}"
    )


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a FITS, CSV, Parquet, ECSV or VOTable file, or a HATS catalog, into a DataFrame.

    Multidimensional FITS columns are dropped with a warning; byte strings
    become str.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When the file cannot be parsed, naming it.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"source table not found: {path}")
    if is_hats_catalog(path):
        return read_hats_table(path)
    kind = _kind(path)
    try:
        if kind == "parquet":
            return pd.read_parquet(path)
        if kind == "csv":
            return pd.read_csv(path)
        from astropy.table import Table

        fmt = {"fits": "fits", "votable": "votable", "ecsv": "ascii.ecsv"}[kind]
        t = Table.read(path, format=fmt)
    except (OSError, ValueError, TypeError) as err:
        raise ValueError(f"{path}: cannot read as {kind}: {err}") from err
    return from_astropy(t, str(path))


def is_astropy_table(obj: Any) -> bool:
    """Whether ``obj`` is an astropy ``Table``/``QTable`` or ``SkyCoord`` (without
    importing astropy when it is not loaded)."""
    import sys

    if "astropy" not in sys.modules:
        return False
    from astropy.coordinates import SkyCoord
    from astropy.table import Table

    return isinstance(obj, (Table, SkyCoord))


def from_astropy(table: Any, source: str = "source table") -> pd.DataFrame:
    """An astropy ``Table``/``QTable`` (or a ``SkyCoord``) as a DataFrame.

    A ``SkyCoord`` (alone, or as a column) becomes ``ra`` and ``dec`` in ICRS
    degrees; angle columns are taken in degrees, other quantities in their
    own unit; masked values become nulls (nullable integers and booleans, so
    64-bit ids stay exact); multidimensional columns are dropped with a
    warning; byte strings become ``str``.
    """
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from astropy.table import Table

    if isinstance(table, SkyCoord):
        icrs = table.icrs
        return pd.DataFrame({"ra": icrs.ra.deg.ravel(), "dec": icrs.dec.deg.ravel()})
    t = Table(table, copy=False)  # a QTable's quantities become columns with units
    for name in list(t.colnames):
        col = table[name] if name in table.colnames else t[name]
        if isinstance(col, SkyCoord):
            t.remove_column(name)
            icrs = col.icrs
            t["ra"], t["dec"] = icrs.ra.deg, icrs.dec.deg
        elif getattr(col, "unit", None) is not None and col.unit.physical_type == "angle":
            t[name] = u.Quantity(col).to_value(u.deg)
    multi = [n for n in t.colnames if len(t[n].shape) > 1]
    if multi:
        warnings.warn(f"{source}: dropping multidimensional columns {multi}", stacklevel=2)
        t.remove_columns(multi)
    df = t.to_pandas()
    for col in df.columns:
        if df[col].dtype != object:
            continue
        vals = df[col].tolist()
        if any(isinstance(v, (bytes, str)) for v in vals):
            # FITS gives bytes, and masks empty strings: both back to str
            df[col] = [
                v.decode("utf-8").strip()
                if isinstance(v, bytes)
                else ("" if v is None or (isinstance(v, float) and np.isnan(v)) else v)
                for v in vals
            ]
    return df


def _ids(col: pd.Series, name: str, source: str) -> np.ndarray:
    """Object ids as they are: integers stay integers, strings stay strings.

    Raises
    ------
    ValueError
        For missing (null, NaN, empty) ids, or non-integral float ids.
    """
    values = col.to_numpy()
    if values.dtype.kind == "O":
        missing = col.isna().to_numpy() | (col.astype(str).str.strip() == "").to_numpy()
    else:
        missing = col.isna().to_numpy()
    if missing.any():
        rows = np.flatnonzero(missing)[:5].tolist()
        raise ValueError(
            f"{source}: {int(missing.sum())} missing object id(s) in column {name!r} "
            f"(rows {rows}); every object needs an id"
        )
    if values.dtype.kind == "f":
        if not np.all(np.floor(values) == values) or np.abs(values).max() >= 2**53:
            raise ValueError(
                f"{source}: id column {name!r} holds non-integer or inexact float values; "
                "store ids as integers or strings"
            )
        values = values.astype(np.int64)
    return values


def find_column(
    df: pd.DataFrame, given: str | None, aliases: list[str], what: str, source: str
) -> str:
    """The column to use for ``what``: ``given`` if set, else the first alias present.

    Raises
    ------
    ValueError
        Naming the table, the missing column and the columns it has.
    """
    if given is not None:
        if given not in df.columns:
            raise ValueError(
                f"{source}: no column {given!r} for {what}; columns are: "
                f"{', '.join(map(str, df.columns))}"
            )
        return given
    for name in aliases:
        if name in df.columns:
            return name
    lower = {str(c).lower(): c for c in df.columns}
    for name in aliases:
        if name.lower() in lower:
            return lower[name.lower()]
    raise ValueError(
        f"{source}: no {what} column; looked for {', '.join(aliases)}. "
        f"Columns are: {', '.join(map(str, df.columns))}. Name it with the "
        f"{what}_col argument or the 'sources.{what}-columns' configuration."
    )


def source_columns(
    df: pd.DataFrame, ra_col: str | None, dec_col: str | None, id_col: str | None, source: str
) -> tuple[str, str, str | None]:
    """The RA, Dec and id columns of ``df`` (id None: there is none and none was named).

    Raises
    ------
    ValueError
        For a missing position column, or a named column that is not there.
    """
    ra = find_column(df, ra_col, list(config.get("sources.ra-columns")), "ra", source)
    dec = find_column(df, dec_col, list(config.get("sources.dec-columns")), "dec", source)
    try:
        ids = find_column(df, id_col, list(config.get("sources.id-columns")), "id", source)
    except ValueError:
        if id_col is not None:
            raise
        ids = None
    return ra, dec, ids


def _sexagesimal(values: pd.Series, std: str, name: str, source: str, err: Exception):
    """Degrees from sexagesimal text (RA in hours, Dec in degrees), as GZ1 publishes them."""
    from astropy.coordinates import Angle

    text = values.astype(str).str.strip()
    if not text.str.contains(r"^[+-]?\d+[:h d]\s*\d+", regex=True).all():
        raise ValueError(f"{source}: column {name!r} ({std}) is not numeric: {err}") from None
    try:
        angle = Angle(text.to_numpy(), unit="hourangle" if std == "ra" else "deg")
    except (ValueError, TypeError) as bad:
        raise ValueError(f"{source}: column {name!r} ({std}) is not an angle: {bad}") from None
    return angle.to_value("deg").astype(np.float64)


def read_sources(
    table: str | os.PathLike[str] | pd.DataFrame,
    *,
    ra_col: str | None = None,
    dec_col: str | None = None,
    id_col: str | None = None,
    keep: list[str] | None = None,
    warn_no_id: bool = True,
) -> pd.DataFrame:
    """Read a source table and standardise its id and position columns.

    Parameters
    ----------
    table
        A path (FITS, CSV, Parquet, ECSV, VOTable), a DataFrame, an astropy
        ``Table``/``QTable`` (a ``SkyCoord`` column counts as ``ra``, ``dec``)
        or a ``SkyCoord`` (rows numbered as ids).
    ra_col, dec_col, id_col
        Column names; by default the first of the configured aliases present
        (``sources.ra-columns`` etc., which include ``ra``, ``RA``,
        ``ALPHAWIN_J2000`` ...). Without an id column, ids are the row numbers
        (with an :class:`~catbuilder.errors.InputWarning`).
    keep
        Other columns to keep (default: all).
    warn_no_id
        Warn when there is no id column and rows are numbered instead (False
        where row numbers are what the caller wants, as in a crossmatch).

    Returns
    -------
    pandas.DataFrame
        ``objid``, ``ra``, ``dec`` (float64 degrees; sexagesimal text is read
        as hours for RA and degrees for Dec; RA in [-360, 0) or
        [360, 720) is wrapped into [0, 360) with a warning) followed by the
        other columns.

    Raises
    ------
    ValueError
        For an empty table, missing or non-numeric position columns, RA
        outside [-360, 720) or Dec beyond +-90 deg, and missing ids, naming the table.
    """
    if isinstance(table, pd.DataFrame):
        df, source = table.copy(), "source table"
    elif is_astropy_table(table):
        df, source = from_astropy(table), "source table"
    else:
        df, source = read_table(table), str(table)
    if len(df) == 0:
        raise ValueError(f"{source}: the table has no rows")
    ra_name, dec_name, id_name = source_columns(df, ra_col, dec_col, id_col, source)
    if id_name is None:
        like = [str(c) for c in df.columns if re.search(r"id(_|\d|$)", str(c).lower())]
        hint = f" (columns that look like ids: {', '.join(like)})" if like else ""
        if warn_no_id or like:
            warn(
                f"{source}: no id column; looked for "
                f"{', '.join(config.get('sources.id-columns'))}{hint}. Objects are numbered "
                "by row (0, 1, ...); name the id column with id_col / --id-col or the "
                "'sources.id-columns' configuration"
            )
    out = pd.DataFrame(index=df.index)
    if id_name:
        out["objid"] = _ids(df[id_name], id_name, source)
    else:
        out["objid"] = np.arange(len(df), dtype=np.int64)
    for std, name in (("ra", ra_name), ("dec", dec_name)):
        try:
            out[std] = pd.to_numeric(df[name], errors="raise").astype(np.float64)
        except (ValueError, TypeError) as err:
            out[std] = _sexagesimal(df[name], std, name, source, err)
    ra = out["ra"].to_numpy()
    with np.errstate(invalid="ignore"):
        beyond = (ra < -360) | (ra >= 720) | np.isinf(ra)
        wrapped = ((ra < 0) | (ra >= 360)) & ~beyond
    if beyond.any():
        rows = np.flatnonzero(beyond)[:5].tolist()
        raise ValueError(
            f"{source}: {ra_name} outside [-360, 720) deg in {int(beyond.sum())} row(s), "
            f"e.g. rows {rows} ({ra[beyond][:3].tolist()}); is the column in degrees?"
        )
    if wrapped.any():
        warn(
            f"{source}: {int(wrapped.sum())} {ra_name} value(s) outside [0, 360) deg (rows "
            f"{np.flatnonzero(wrapped)[:5].tolist()}) are wrapped into [0, 360)"
        )
    out["ra"] = np.where(np.isnan(ra), ra, ra % 360.0)
    dec = out["dec"].to_numpy()
    with np.errstate(invalid="ignore"):
        bad_dec = (np.abs(dec) > 90) | np.isinf(dec)
    if bad_dec.any():
        rows = np.flatnonzero(bad_dec)[:5].tolist()
        raise ValueError(f"{source}: |{dec_name}| > 90 deg in rows {rows}")
    unplaced = np.isnan(out["ra"].to_numpy()) | np.isnan(dec)
    if unplaced.any():  # kept (a cutout flags them off the footprint), but said
        warn(
            f"{source}: {int(unplaced.sum())} row(s) have no position ({ra_name} or {dec_name} "
            f"is NaN; rows {np.flatnonzero(unplaced)[:5].tolist()}): they are kept and flagged "
            "off_footprint"
        )
    rest = [c for c in df.columns if c not in {ra_name, dec_name, id_name, "objid", "ra", "dec"}]
    if keep is not None:
        missing = [c for c in keep if c not in df.columns]
        if missing:
            raise ValueError(f"{source}: no column(s) {missing}")
        rest = [c for c in keep if c in rest]
    for c in rest:
        out[c] = df[c]  # as it is: nullable integers stay exact
    return out.reset_index(drop=True)
