"""The output catalog: one row per object, written as Parquet, FITS, VOTable or HATS.

:func:`build_catalog` joins predictions with the stack's per-object table;
:mod:`catbuilder.catalog.schema` is the one place columns are described;
:mod:`catbuilder.catalog.formats` writes and reads every format from it.
"""

from __future__ import annotations

from catbuilder.catalog.build import build_catalog
from catbuilder.catalog.crossmatch import crossmatch_catalog
from catbuilder.catalog.formats import (
    FORMATS,
    catalog_format,
    check_catalog_output,
    is_catbuilder_catalog,
    read_catalog,
    to_table,
    write_catalog,
)

__all__ = [
    "FORMATS",
    "build_catalog",
    "catalog_format",
    "check_catalog_output",
    "crossmatch_catalog",
    "is_catbuilder_catalog",
    "read_catalog",
    "to_table",
    "write_catalog",
]
