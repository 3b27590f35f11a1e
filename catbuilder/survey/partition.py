"""A source table split by sky: HEALPix partitions in the HATS layout, a batch at a time.

The table is read twice, never whole: once for a histogram of positions at
``survey.highest-order`` (only the position columns of a Parquet table are
read), from which pixels are merged, as HATS partitions a catalog, up to the
coarsest order that keeps each partition under ``survey.partition-rows``;
then batch by batch, each batch's rows written to their partition's
directory (``Norder=k/Dir=d/Npix=p/part-<batch>.parquet``). The process
holds one batch and the occupied pixels' counts, not the table.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from catbuilder import config, outputs
from catbuilder.sky.hats_catalogs import data_files, is_hats_catalog

#: written last: the partitioning is complete, and what it made
PARTITIONS_FILE = "partitions.parquet"


def parquet_files(sources: Any) -> list[Path] | None:
    """The Parquet files of a Parquet file, a directory or a HATS catalog (sorted), else None.

    Of a HATS catalog, only the files holding its rows (not its margins or
    thumbnail).
    """
    if isinstance(sources, pd.DataFrame):
        return None
    if is_hats_catalog(sources):
        return data_files(sources)
    path = Path(sources)
    if path.is_dir():
        return sorted(
            p for p in path.rglob("*") if p.is_file() and not p.name.startswith((".", "_"))
        )
    if path.suffix.lower() in (".parquet", ".pq", ".parq"):
        return [path]
    return None


def _batches(sources: Any, batch_rows: int, columns: list[str] | None) -> Iterator[pd.DataFrame]:
    """The table ``batch_rows`` rows at a time, in row order (only ``columns`` if given)."""
    files = parquet_files(sources)
    if files is not None:
        import pyarrow.parquet as pq

        # one row group at a time: over a whole file (or a dataset scanner)
        # pyarrow read ahead, and held the whole table (2.2 GB of 1.9 GB of
        # Parquet) before the loop ended
        for f in files:
            with pq.ParquetFile(f) as pf:
                for group in range(pf.metadata.num_row_groups):
                    for batch in pf.iter_batches(batch_size=batch_rows, row_groups=[group],
                                                 columns=columns):  # fmt: skip
                        if batch.num_rows:
                            yield batch.to_pandas()
        return
    if isinstance(sources, pd.DataFrame):
        df = sources
    else:  # FITS, CSV, VOTable ...: formats without row groups are read whole
        from catbuilder.sky.tables import read_table

        df = read_table(sources)
    for start in range(0, len(df), batch_rows):
        part = df.iloc[start : start + batch_rows]
        yield part if columns is None else part[columns]


def _column_names(sources: Any, ra_col, dec_col, id_col) -> tuple[str, str, str | None, str]:
    """The RA, Dec and id columns (id None: rows are numbered) and the table's name."""
    from catbuilder.sky.tables import source_columns

    files = parquet_files(sources)
    if files:
        import pyarrow.parquet as pq

        head = pd.DataFrame(columns=pq.read_schema(files[0]).names)
    else:
        head = next(_batches(sources, 1, None)).iloc[:0]
    name = "source table" if isinstance(sources, pd.DataFrame) else str(sources)
    return (*source_columns(head, ra_col, dec_col, id_col, name), name)


def _standard(df: pd.DataFrame, names: tuple, offset: int) -> pd.DataFrame:
    """One batch as a stack reads sources: ``objid, ra, dec``, then the other columns.

    Without an id column, objects are numbered by their row in the whole table.
    """
    from catbuilder.sky.tables import read_sources

    ra, dec, ids, name = names
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        std = read_sources(df, ra_col=ra, dec_col=dec, id_col=ids, warn_no_id=False)
    if ids is None:
        std["objid"] = np.arange(offset, offset + len(std), dtype=np.int64)
    unplaced = std["ra"].isna() | std["dec"].isna()
    if not unplaced.any():  # else the error below says it, not "kept and flagged"
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    else:
        first = std.loc[unplaced, "objid"].head(5).tolist()
        raise ValueError(
            f"{name}: {int(unplaced.sum())} source(s) in rows {offset}-{offset + len(df) - 1} "
            f"have no position (NaN RA or Dec), e.g. ids {first}; a survey run places every "
            "object in a sky partition: give them positions or leave them out"
        )
    return std


#: a partition's key holds its pixel in the low bits, its order above them
_PIXEL_BITS = 40


def partition_key(order: Any, pixel: Any) -> np.ndarray:
    """One integer per partition ``(order, pixel)``: sorted and searched as one column."""
    return np.asarray(order, np.int64) * (1 << _PIXEL_BITS) + np.asarray(pixel, np.int64)


def healpix(order: int, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Nested HEALPix pixel of each position at ``order`` (as HATS numbers them)."""
    from hats.pixel_math.healpix_shim import radec2pix

    return np.asarray(radec2pix(order, np.asarray(ra, float), np.asarray(dec, float)))


def _histogram(sources, names, highest: int, batch_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Occupied pixels of order ``highest`` and their counts (sparse: O(occupied pixels))."""
    pixels, counts = np.empty(0, np.int64), np.empty(0, np.int64)
    columns = [c for c in names[:3] if c is not None]
    offset = 0
    for df in _batches(sources, batch_rows, columns):
        std = _standard(df, names, offset)
        offset += len(df)
        pix = healpix(highest, std["ra"].to_numpy(), std["dec"].to_numpy())
        pixels, inverse = np.unique(np.concatenate([pixels, pix]), return_inverse=True)
        weights = np.concatenate([counts, np.ones(len(pix), np.int64)])
        counts = np.bincount(inverse, weights=weights, minlength=len(pixels)).astype(np.int64)
    if offset == 0:
        raise ValueError(f"{names[3]}: the table has no rows")
    return pixels, counts


def align(pixels: np.ndarray, counts: np.ndarray, highest: int, rows: int) -> np.ndarray:
    """The partition of each occupied pixel: ``(order, pixel)`` rows.

    Top down, as HATS partitions: a pixel of order 0, 1, ... whose objects
    number at most ``rows`` is a partition; a fuller one is split into its
    four children. Only occupied pixels are visited.
    """
    dest = np.full((len(pixels), 2), -1, dtype=np.int64)
    open_ = np.ones(len(pixels), dtype=bool)  # not yet in a partition
    for order in range(highest + 1):
        anc = pixels >> (2 * (highest - order))
        uniq, inverse = np.unique(anc, return_inverse=True)
        sums = np.bincount(inverse, weights=counts, minlength=len(uniq))
        fits = (sums <= rows)[inverse] & open_
        dest[fits, 0] = order
        dest[fits, 1] = anc[fits]
        open_ &= ~fits
    if open_.any():
        raise ValueError(
            f"{int(counts[open_].max())} sources fall in one HEALPix pixel of order {highest}, "
            f"more than partition_rows={rows}: raise survey.highest-order (finer pixels) or "
            "survey.partition-rows"
        )
    return dest


def partition_sources(
    sources: Any,
    directory: str | os.PathLike[str],
    *,
    ra_col: str | None = None,
    dec_col: str | None = None,
    id_col: str | None = None,
    partition_rows: int | None = None,
    highest_order: int | None = None,
    batch_rows: int | None = None,
) -> pd.DataFrame:
    """Split a source table into HEALPix partitions (HATS layout), a batch at a time.

    Parameters
    ----------
    sources
        A Parquet file, a directory of Parquet files or a HATS catalog (read
        in row batches), any table :func:`catbuilder.sky.read_sources` reads
        (read whole), or a DataFrame.
    directory
        Where the partitions are written; made by this function. A partitioning
        that stopped before its end is started again.
    ra_col, dec_col, id_col
        Column names (default: the configured aliases). Without an id column
        objects are numbered by their row in the whole table.
    partition_rows, highest_order, batch_rows
        Defaults ``survey.partition-rows``, ``survey.highest-order``,
        ``survey.batch-rows``.

    Returns
    -------
    pandas.DataFrame
        One row per partition: ``order``, ``pixel``, ``n`` (objects), sorted.

    Raises
    ------
    ValueError
        For an empty table, missing columns, or sources without a position.
    """
    directory = Path(directory)
    rows = int(config.resolve("survey.partition-rows", partition_rows))
    highest = int(config.resolve("survey.highest-order", highest_order))
    batch = int(config.resolve("survey.batch-rows", batch_rows))
    done = directory / PARTITIONS_FILE
    if done.is_file():
        return pd.read_parquet(done)
    if directory.exists():  # a partitioning that stopped: ours (checked by the caller)
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    names = _column_names(sources, ra_col, dec_col, id_col)
    pixels, counts = _histogram(sources, names, highest, batch)
    dest = align(pixels, counts, highest, rows)
    sizes: dict[tuple[int, int], int] = {}
    offset = 0
    for b, df in enumerate(_batches(sources, batch, None)):
        std = _standard(df, names, offset)
        offset += len(df)
        to = dest[np.searchsorted(pixels, healpix(highest, std["ra"].to_numpy(),
                                                  std["dec"].to_numpy()))]  # fmt: skip
        key = partition_key(to[:, 0], to[:, 1])
        order = np.argsort(key, kind="stable")  # rows keep their table order
        keys, starts = np.unique(key[order], return_index=True)
        for k, (start, stop) in zip(keys, zip(starts, [*starts[1:], len(order)])):
            part = (int(k >> _PIXEL_BITS), int(k & ((1 << _PIXEL_BITS) - 1)))
            rows_of = std.iloc[order[start:stop]]
            folder = partition_directory(directory, *part)
            folder.mkdir(parents=True, exist_ok=True)
            rows_of.to_parquet(folder / f"part-{b:06d}.parquet", index=False)
            sizes[part] = sizes.get(part, 0) + len(rows_of)
    table = pd.DataFrame(
        [(o, p, n) for (o, p), n in sorted(sizes.items())], columns=["order", "pixel", "n"]
    )
    with outputs.atomic_path(done) as tmp:
        table.to_parquet(tmp, index=False)
    return table


def partition_directory(root: str | os.PathLike[str], order: int, pixel: int) -> Path:
    """``root/Norder=k/Dir=d/Npix=p``: a partition's folder in the HATS layout."""
    return Path(root) / f"Norder={order}" / f"Dir={pixel // 10000 * 10000}" / f"Npix={pixel}"


def read_partition(root: str | os.PathLike[str], order: int, pixel: int) -> pd.DataFrame:
    """Every source of one partition, in the order of the table they came from."""
    folder = partition_directory(root, order, pixel)
    files = sorted(folder.glob("part-*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
