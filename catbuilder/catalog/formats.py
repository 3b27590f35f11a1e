"""The output catalog: one row per object, written as Parquet, FITS, VOTable or HATS."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from catbuilder import config, outputs
from catbuilder.catalog import schema as catalog_schema
from catbuilder.errors import OutputExistsError

__all__ = [
    "FORMATS",
    "catalog_format",
    "check_catalog_output",
    "is_catbuilder_catalog",
    "read_catalog",
    "to_table",
    "write_catalog",
]

FORMATS = ("parquet", "fits", "votable", "hats")


_SUFFIX_FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".fits": "fits",
    ".fit": "fits",
    ".vot": "votable",
    ".xml": "votable",
}
#: what lsdb writes at the top of a HATS catalog directory, and our marker
_HATS_ENTRIES = re.compile(
    r"^(catbuilder\.json|hats\.properties|collection\.properties|properties|"
    r"partition_info\.csv|dataset|"
    r"point_map\.fits|skymap(\.\d+)?\.fits|data_thumbnail\.parquet|README.*)$"
)


def _hats_primary(path: Path) -> Path:
    """The catalog directory of a HATS catalog or collection (lsdb writes collections)."""
    coll = path / "collection.properties"
    if coll.is_file():
        for line in coll.read_text(errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "hats_primary_table_url" and value.strip():
                return path / value.strip()
    return path


def catalog_format(path: str | os.PathLike[str], format: str | None = None) -> str:
    """The format a catalog is written in: ``format``, else the file name's suffix.

    A name without a suffix takes ``catalog.format``.

    Raises
    ------
    ValueError
        For an unknown format or suffix, or a suffix that contradicts ``format``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    by_name = _SUFFIX_FORMATS.get(suffix)
    if format is not None:
        if format not in FORMATS:
            raise ValueError(f"unknown catalog format {format!r}; use one of {', '.join(FORMATS)}")
        if by_name is not None and by_name != format:
            raise ValueError(
                f"{path.name} has a {by_name} suffix but the format asked for is {format}; "
                "make the name and the format agree"
            )
        return format
    if by_name is not None:
        return by_name
    if suffix:
        raise ValueError(
            f"cannot tell the catalog format from {path.name!r}: use a name ending in "
            f"{', '.join(_SUFFIX_FORMATS)} or give the format (--format {'|'.join(FORMATS)})"
        )
    fmt = config.get("catalog.format")
    if fmt not in FORMATS:
        raise ValueError(f"unknown catalog format {fmt!r}; use one of {', '.join(FORMATS)}")
    return fmt


def is_catbuilder_catalog(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a catalog that catbuilder wrote (by its provenance marker)."""
    path = Path(path)
    if path.is_dir():
        props = _hats_primary(path) / "hats.properties"
        ours = (path / "catbuilder.json").is_file() or (
            props.is_file() and "\ncatbuilder." in props.read_text(errors="replace")
        )
        return ours and all(
            _HATS_ENTRIES.match(p.name) or (p / "hats.properties").is_file() for p in path.iterdir()
        )
    try:
        head = path.read_bytes()[:8]
        if head.startswith(b"PAR1"):
            import pyarrow.parquet as pq

            return b"catbuilder" in (pq.read_schema(path).metadata or {})
        if head.startswith(b"SIMPLE"):
            from astropy.io import fits

            with fits.open(path) as hdul:
                hdr = hdul[1].header if len(hdul) > 1 else {}
                return "CBVER" in hdr or "CATBUILDER VERSION" in hdr
        text = path.read_bytes()[:1_000_000]
        return b"catbuilder-provenance:" in text or b'name="catbuilder.' in text
    except Exception:
        return False


def check_catalog_output(path: str | os.PathLike[str], format: str | None = None) -> str:
    """Check, before any work, that a catalog can be written at ``path``; its format.

    Raises
    ------
    ValueError
        For an unknown format or suffix.
    OutputExistsError
        When ``path`` holds something catbuilder did not write as a catalog.
    """
    fmt = catalog_format(path, format)
    _check_replaceable(Path(path))
    return fmt


def _check_replaceable(path: Path) -> None:
    if not (path.exists() or path.is_symlink()):
        return
    if path.is_symlink() or not is_catbuilder_catalog(path):
        what = "a directory" if path.is_dir() else "a file"
        raise OutputExistsError(
            f"{path} exists and is {what} catbuilder did not write as a catalog: catbuilder "
            "replaces only its own catalogs; choose another output path"
        )


def write_catalog(
    catalog: pd.DataFrame, path: str | os.PathLike[str], format: str | None = None
) -> Path:
    """Write a catalog that describes itself: units, UCDs, descriptions, provenance.

    Every column's unit, UCD and description come from
    :mod:`catbuilder.catalog.schema`; nulls stay nulls. Per format:

    - Parquet: field metadata (``unit``, ``ucd``, ``description``), the
      IVOA VOTable-Parquet header (TOPCAT), astropy's column header (units in
      ``Table.read``), and the provenance as JSON (``catbuilder`` key);
    - FITS: ``TUNITn``, ``TUCDn`` and ``TCOMMn`` cards, the main provenance as
      ``HIERARCH CATBUILDER ...`` cards and all of it in a ``PROVENANCE``
      table HDU (``key``, ``value``);
    - VOTable: ``unit``, ``ucd`` and ``<DESCRIPTION>`` per FIELD, provenance as
      ``<INFO name="catbuilder...." value="..."/>`` elements;
    - HATS (via lsdb): units etc. as field metadata of the dataset schema,
      provenance as ``catbuilder.*`` entries of ``hats.properties``.

    The catalog is written beside ``path`` and moved into place when complete.
    An existing ``path`` is replaced only if it is a catalog catbuilder wrote.

    Parameters
    ----------
    catalog
        From :func:`build_catalog`.
    path
        Output file (a directory for HATS).
    format
        ``parquet``, ``fits``, ``votable`` or ``hats`` (a HEALPix-partitioned
        catalog via lsdb, for crossmatching at scale); by default from the
        suffix, and ``catalog.format`` for a name without one.

    Returns
    -------
    Path

    Raises
    ------
    ValueError
        For an unknown format or suffix (see :func:`catalog_format`).
    OutputExistsError
        When ``path`` holds something catbuilder did not write as a catalog.

    Examples
    --------
    >>> from catbuilder import write_catalog
    >>> write_catalog(catalog, "catalog.parquet")  # doctest: +SKIP
    PosixPath('catalog.parquet')
    """
    path = Path(path)
    fmt = check_catalog_output(path, format)
    meta = catalog.attrs.get("catbuilder", {})
    with outputs.atomic_path(path) as tmp:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(arrow_table(catalog, meta), tmp)
        elif fmt == "fits":
            _fits_hdus(catalog, meta).writeto(tmp)
        elif fmt == "votable":
            _votable(catalog, meta).to_xml(str(tmp))
        else:
            _write_hats(catalog, meta, tmp, path.name)
            if path.exists():  # ours (checked above): make way for the new one
                shutil.rmtree(path)
    return path


#: provenance entries also written as FITS header cards (the rest: PROVENANCE HDU)
_HEADER_KEYS = {
    "catbuilder.catbuilder_version": "VERSION",
    "catbuilder.model.plugin": "MODEL PLUGIN",
    "catbuilder.model.weights_sha256": "MODEL WEIGHTS SHA256",
    "catbuilder.classes": "CLASSES",
    "catbuilder.tta": "TTA",
    "catbuilder.stack": "STACK",
    "catbuilder.predictions": "PREDICTIONS",
}


def arrow_table(catalog: pd.DataFrame, meta: dict):
    """The catalog as a pyarrow Table with field and schema metadata."""
    import io

    import pyarrow as pa
    from astropy.table.meta import get_yaml_from_table

    t = pa.Table.from_pandas(catalog, preserve_index=False)
    fields = [_described(field) for field in t.schema]
    head = catalog_schema.to_astropy(catalog.iloc[:1])
    head.meta["catbuilder"] = meta
    vot = io.BytesIO()
    _votable(catalog.iloc[:0], meta).to_xml(vot)
    # the VOTable-Parquet header: fields only, the rows are this file's
    xml = re.sub(
        rb"<DATA>.*</DATA>", b'<PARQUET type="Parquet-local-XML"/>', vot.getvalue(), flags=re.S
    )
    md = dict(t.schema.metadata or {})
    md[b"catbuilder"] = json.dumps(meta).encode()
    md[b"table_meta_yaml"] = "\n".join(get_yaml_from_table(head)).encode()
    md[b"IVOA.VOTable-Parquet.version"] = b"1.0"
    md[b"IVOA.VOTable-Parquet.content"] = xml
    return pa.Table.from_arrays(t.columns, schema=pa.schema(fields, metadata=md))


def _fits_hdus(catalog: pd.DataFrame, meta: dict):
    from astropy.io import fits

    t = catalog_schema.to_astropy(catalog)
    hdu = fits.table_to_hdu(t)
    hdu.name = "CATALOG"
    for i, name in enumerate(t.colnames, start=1):
        col = catalog_schema.describe(name)
        if col.ucd:
            hdu.header[f"TUCD{i}"] = col.ucd
        if col.description:
            hdu.header[f"TCOMM{i}"] = col.description
    flat = catalog_schema.flatten(meta)
    for key, card in _HEADER_KEYS.items():
        if key in flat and len(flat[key]) <= 40:
            hdu.header[f"HIERARCH CATBUILDER {card}"] = flat[key]
    keys, values = list(flat), list(flat.values())
    prov = fits.BinTableHDU.from_columns(
        [
            fits.Column("key", format=f"{max(map(len, keys), default=1)}A", array=keys),
            fits.Column("value", format=f"{max(map(len, values), default=1)}A", array=values),
        ],
        name="PROVENANCE",
    )
    prov.header["COMMENT"] = "catbuilder provenance: dotted keys, values as text (JSON if not text)"
    return fits.HDUList([fits.PrimaryHDU(), hdu, prov])


def _votable(catalog: pd.DataFrame, meta: dict):
    from astropy.io.votable.tree import Info, VOTableFile

    t = catalog_schema.to_astropy(catalog)
    for name in t.colnames:  # VOTable has no unsigned 64-bit integer: its digits, as text
        if t[name].dtype == np.uint64:
            t[name] = t[name].astype(str)
    vot = VOTableFile.from_table(t)
    table = vot.get_first_table()
    table.description = "catbuilder catalog: one row per object; provenance in the INFO elements"
    for field in table.fields:
        col = catalog_schema.describe(field.name)
        field.ucd = col.ucd
        field.description = col.description or None
    for key, value in catalog_schema.flatten(meta).items():
        table.infos.append(Info(name=key, value=value))
    return vot


def _write_hats(catalog: pd.DataFrame, meta: dict, tmp: Path, name: str) -> None:
    import lsdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = catalog.reset_index(drop=True)
    for col in df.columns:  # typed text: a partition of nulls alone is still text
        if df[col].dtype == object:
            df[col] = df[col].astype("string[pyarrow]")
    cat = lsdb.from_dataframe(df, ra_column="ra", dec_column="dec", catalog_name=name)
    cat.to_hats(tmp, catalog_name=name, addl_hats_properties=catalog_schema.flatten(meta))
    for common in tmp.glob("**/dataset/_common_metadata"):  # the catalog and its margin
        schema = pq.read_schema(common)
        fields = [_described(field) for field in schema]
        pq.write_metadata(pa.schema(fields, metadata=schema.metadata), common)


def _described(field):
    """A pyarrow field with its column's unit, UCD and description (unknown columns: as is)."""
    md = catalog_schema.field_metadata(field.name)
    return field.with_metadata(md) if md else field


def read_catalog(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a catalog written by :func:`write_catalog` (any format).

    Nulls come back as nulls (``None`` in text columns, ``<NA>`` in integer
    ones, NaN in floats); ``df.attrs["catbuilder"]`` is the provenance and
    ``df.attrs["units"]`` the unit of each column that has one.

    Parameters
    ----------
    path
        A catalog file (``.parquet``, ``.fits``, ``.vot``) or HATS directory.

    Returns
    -------
    pandas.DataFrame
        One row per object, as :func:`build_catalog` made it.

    Examples
    --------
    >>> from catbuilder import read_catalog
    >>> catalog = read_catalog("catalog.parquet")  # doctest: +SKIP
    >>> catalog.attrs["units"]["ra"]  # doctest: +SKIP
    'deg'
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no catalog at {path}")
    if path.is_dir():
        df, meta = _read_hats(path)
    elif path.suffix.lower() in (".parquet", ".pq") or path.read_bytes()[:4] == b"PAR1":
        import pyarrow.parquet as pq

        t = pq.read_table(path)
        df = t.to_pandas()
        raw = (t.schema.metadata or {}).get(b"catbuilder")
        meta = json.loads(raw) if raw else None
    else:
        df, meta = _read_astropy(path)
    if meta is not None:
        df.attrs["catbuilder"] = meta
    units = {c: catalog_schema.describe(str(c)).unit for c in df.columns}
    df.attrs["units"] = {c: u for c, u in units.items() if u is not None}
    return df


def _read_hats(path: Path) -> tuple[pd.DataFrame, dict | None]:
    from hats.catalog.dataset.table_properties import TableProperties

    from catbuilder.sky.hats_catalogs import read_hats_table

    df = read_hats_table(path)
    if (path / "catbuilder.json").exists():  # written before provenance moved to properties
        return df, json.loads((path / "catbuilder.json").read_text())
    props = TableProperties.read_from_dir(_hats_primary(path))
    extra = {str(k): str(v) for k, v in props.extra_dict(by_alias=True).items()}
    return df, catalog_schema.unflatten(extra) or None


def _read_astropy(path: Path) -> tuple[pd.DataFrame, dict | None]:
    from astropy.table import Table

    from catbuilder.sky.tables import read_table

    head = path.read_bytes()[:6]
    if head.startswith(b"SIMPLE"):
        from astropy.io import fits

        with fits.open(path) as hdul:
            if "PROVENANCE" in hdul:
                rows = hdul["PROVENANCE"].data
                flat = {str(k).strip(): str(v).strip() for k, v in zip(rows["key"], rows["value"])}
                return _nulls(Table.read(hdul, hdu=1)), catalog_schema.unflatten(flat)
        return read_table(path), None
    from astropy.io.votable import parse

    vot = parse(str(path))
    table = vot.get_first_table()
    flat = {i.name: i.value for i in table.infos}
    meta = catalog_schema.unflatten(flat)
    return _nulls(table.to_table()), meta


def _nulls(t) -> pd.DataFrame:
    """An astropy table as a DataFrame, masked values as nulls (FITS: empty text too)."""
    from astropy.table import MaskedColumn

    cols = {}
    for name in t.colnames:
        col = t[name]
        data = np.asarray(col)
        mask = np.asarray(col.mask) if isinstance(col, MaskedColumn) else None
        if data.dtype.kind in "SU":
            text = np.char.strip(data.astype(str))
            series = pd.Series(text, dtype=object)
            null = (text == "") if mask is None else (mask | (text == ""))
            cols[name] = series.where(~null, None)
        elif data.dtype.kind in "iu" and mask is not None and mask.any():
            cols[name] = pd.array(np.where(mask, 0, data), dtype="Int64")
            cols[name][mask] = pd.NA
        else:
            cols[name] = data.astype(data.dtype.newbyteorder("="))
    return pd.DataFrame(cols)


def to_table(catalog: pd.DataFrame, *, quantities: bool = True) -> Any:
    """The catalog as an astropy ``QTable`` (or ``Table``), with units, UCDs and
    descriptions from the column schema and the provenance in ``meta``.

    Parameters
    ----------
    catalog
        A catalog (:func:`catbuilder.build_catalog`, :func:`read_catalog`).
    quantities
        A ``QTable`` whose columns with units are ``Quantity`` (``ra`` in deg);
        False: a ``Table`` whose columns carry the units.

    Returns
    -------
    astropy.table.QTable or astropy.table.Table
        Nulls are masked; each column's ``description`` and ``meta["ucd"]``
        come from :mod:`catbuilder.catalog.schema`.

    Examples
    --------
    >>> from catbuilder import read_catalog
    >>> from catbuilder.catalog import to_table
    >>> t = to_table(read_catalog("catalog.parquet"))  # doctest: +SKIP
    >>> t["ra"].unit  # doctest: +SKIP
    Unit("deg")
    """
    from astropy.table import QTable

    t = catalog_schema.to_astropy(catalog)
    if catalog.attrs.get("catbuilder"):
        t.meta["catbuilder"] = catalog.attrs["catbuilder"]
    return QTable(t) if quantities else t
