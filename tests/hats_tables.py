"""HATS catalogs for tests, written by lsdb (as users' catalogs are)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def write_hats(table: pd.DataFrame, path: Path, *, as_collection: bool = False) -> pd.DataFrame:
    """Write ``table`` and 3,000 sources spread over the sky as a HATS catalog of several
    partitions (a mock survey alone fits in one); the rows written."""
    rng = np.random.default_rng(0)
    n = 3000
    field = table.sample(n, replace=True, random_state=0)  # the other columns, typed alike
    field["objid"] = np.arange(n, dtype=np.int64) + int(table["objid"].max()) + 1
    field["ra"] = rng.uniform(0, 360, n)
    field["dec"] = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    rows = pd.concat([table, field], ignore_index=True)
    import lsdb

    cat = lsdb.from_dataframe(rows, ra_column="ra", dec_column="dec", partition_rows=1000,
                              catalog_name=path.name)  # fmt: skip
    cat.to_hats(path, as_collection=as_collection)
    return rows
