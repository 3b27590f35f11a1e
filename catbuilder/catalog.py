"""The output catalog: one row per object, written as Parquet, FITS, VOTable or HATS."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from catbuilder import config, outputs
from catbuilder.errors import OutputExistsError

__all__ = [
    "FORMATS",
    "build_catalog",
    "catalog_format",
    "check_catalog_output",
    "crossmatch_catalog",
    "is_catbuilder_catalog",
    "read_catalog",
    "write_catalog",
]

FORMATS = ("parquet", "fits", "votable", "hats")
_UNRELIABLE = ("off_footprint",)  # no pixels: no prediction


def build_catalog(predictions, stack=None) -> pd.DataFrame:
    """Join predictions with the stack's per-object table.

    Parameters
    ----------
    predictions
        :class:`catbuilder.infer.Predictions` (or the path of one).
    stack
        The stack predicted on (default: the one recorded in the predictions).

    Returns
    -------
    pandas.DataFrame
        One row per object: ``objid, ra, dec``, ``p_<class>`` for each class,
        ``predicted`` (class name), ``confidence`` (its probability), the
        flags (``flags`` bits and each flag), ``tile``, ``label`` and ``split``
        where known. Objects off the footprint have no probabilities (NaN) and
        an empty ``predicted``. ``df.attrs["catbuilder"]`` holds the model's
        and the stack's provenance.
    """
    from catbuilder.infer import Predictions, open_predictions
    from catbuilder.stack.store import ImageStack

    if not isinstance(predictions, Predictions):
        predictions = open_predictions(predictions)
    meta = predictions.meta
    if stack is None:
        stack = ImageStack.open(meta["stack"]["path"])
    elif not isinstance(stack, ImageStack):
        stack = ImageStack.open(stack)
    positions = np.asarray(predictions.ds["position"].values)
    objects = stack.isel(positions).objects().reset_index(drop=True)
    proba = predictions.probabilities()
    classes = predictions.classes
    if len(objects) != len(proba):
        raise ValueError("predictions and stack disagree on the number of objects")
    off = objects["off_footprint"].to_numpy(dtype=bool)
    proba = proba.astype(np.float32).copy()
    proba[off] = np.nan
    cat = pd.DataFrame({"objid": objects["objid"], "ra": objects["ra"], "dec": objects["dec"]})
    for i, c in enumerate(classes):
        cat[f"p_{c}"] = proba[:, i]
    best = np.argmax(np.nan_to_num(proba, nan=-1.0), axis=1)
    cat["predicted"] = np.where(off, "", np.asarray(classes, dtype=object)[best])
    cat["confidence"] = np.where(off, np.nan, np.nanmax(np.where(off[:, None], 0, proba), axis=1))
    cat["flags"] = objects["flags"].astype(np.uint8)
    for name in ("off_footprint", "edge", "saturated"):
        cat[name] = objects[name].astype(bool)
    cat["nan_fraction"] = objects["nan_fraction"].astype(np.float32)
    miss = [c for c in objects.columns if c.startswith("missing_band_")]
    cat["missing_band"] = objects[miss].any(axis=1) if miss else False
    for col in ("tile", "label", "split"):
        if col in objects:
            cat[col] = objects[col].astype(str)
    cat.attrs["catbuilder"] = {
        "model": meta.get("model"),
        "predictions": str(predictions.path),
        "stack": meta.get("stack", {}).get("path"),
        "classes": classes,
        "tta": meta.get("parameters", {}).get("tta"),
        "catbuilder_version": __import__("catbuilder").__version__,
    }
    return cat


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
    r"^(catbuilder\.json|hats\.properties|properties|partition_info\.csv|dataset|"
    r"point_map\.fits|skymap(\.\d+)?\.fits|data_thumbnail\.parquet|README.*)$"
)


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
        return (path / "catbuilder.json").is_file() and all(
            _HATS_ENTRIES.match(p.name) for p in path.iterdir()
        )
    try:
        head = path.read_bytes()[:8]
        if head.startswith(b"PAR1"):
            import pyarrow.parquet as pq

            return b"catbuilder" in (pq.read_schema(path).metadata or {})
        if head.startswith(b"SIMPLE"):
            from astropy.io import fits

            with fits.open(path) as hdul:
                return len(hdul) > 1 and "CBVER" in hdul[1].header
        return b"catbuilder-provenance:" in path.read_bytes()[:1_000_000]
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
    """Write a catalog with its provenance.

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
    """
    path = Path(path)
    fmt = check_catalog_output(path, format)
    meta = catalog.attrs.get("catbuilder", {})
    with outputs.atomic_path(path) as tmp:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            t = pa.Table.from_pandas(catalog, preserve_index=False)
            md = dict(t.schema.metadata or {})
            md[b"catbuilder"] = json.dumps(meta).encode()
            pq.write_table(t.replace_schema_metadata(md), tmp)
        elif fmt in ("fits", "votable"):
            from astropy.table import Table

            t = Table.from_pandas(catalog)
            model = meta.get("model") or {}
            t.meta["MODEL"] = str(model.get("plugin"))
            t.meta["WSHA256"] = str(model.get("weights_sha256"))
            t.meta["CLASSES"] = ",".join(meta.get("classes", []))
            t.meta["CBVER"] = str(meta.get("catbuilder_version"))
            if fmt == "votable":  # VOTable keeps a description (re-wrapped), nothing else
                blob = base64.b64encode(json.dumps(meta).encode()).decode()
                t.meta = {"description": f"catbuilder-provenance:{blob}"}
            t.write(tmp, format="fits" if fmt == "fits" else "votable")
        else:
            import lsdb

            cat = lsdb.from_dataframe(
                catalog.reset_index(drop=True),
                ra_column="ra",
                dec_column="dec",
                catalog_name=path.name,
            )
            cat.to_hats(tmp, catalog_name=path.name)
            (tmp / "catbuilder.json").write_text(json.dumps(meta, indent=1))
            if path.exists():  # ours (checked above): make way for the new one
                shutil.rmtree(path)
    return path


def read_catalog(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a catalog written by :func:`write_catalog` (any format)."""
    path = Path(path)
    if path.is_dir():
        import lsdb

        df = lsdb.read_hats(path).compute().reset_index(drop=True)
        if (path / "catbuilder.json").exists():
            df.attrs["catbuilder"] = json.loads((path / "catbuilder.json").read_text())
        return df
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        t = pq.read_table(path)
        df = t.to_pandas()
        raw = (t.schema.metadata or {}).get(b"catbuilder")
        if raw:
            df.attrs["catbuilder"] = json.loads(raw)
        return df
    from astropy.table import Table

    from catbuilder.sky.tables import read_table

    df = read_table(path)
    meta = Table.read(path).meta
    desc = "".join(str(meta.get("description", "")).split())
    if desc.startswith("catbuilder-provenance:"):
        raw = base64.b64decode(desc.split(":", 1)[1])
        df.attrs["catbuilder"] = json.loads(raw)
    elif "MODEL" in meta:
        df.attrs["catbuilder"] = {
            "model": {"plugin": meta["MODEL"], "weights_sha256": meta.get("WSHA256")},
            "classes": str(meta.get("CLASSES", "")).split(","),
            "catbuilder_version": meta.get("CBVER"),
        }
    return df


def crossmatch_catalog(
    catalog: pd.DataFrame | str | os.PathLike[str],
    other: Any,
    radius_arcsec: float | None = None,
    *,
    method: str = "auto",
) -> pd.DataFrame:
    """Match a catalog to another table by position; one row per matched object.

    ``method="astropy"`` uses :func:`catbuilder.sky.crossmatch` (in memory,
    partitioned on Dask when large); ``"lsdb"`` uses lsdb's HEALPix-partitioned
    crossmatch (either side may be a HATS catalog directory); ``"auto"``
    picks lsdb when either side is a HATS directory.
    """
    from catbuilder.sky import crossmatch

    radius = float(config.resolve("crossmatch.radius-arcsec", radius_arcsec))
    hats = any(isinstance(x, (str, os.PathLike)) and Path(x).is_dir() for x in (catalog, other))
    if method == "auto":
        method = "lsdb" if hats else "astropy"
    if method == "astropy":
        left = catalog if isinstance(catalog, pd.DataFrame) else read_catalog(catalog)
        right = other if isinstance(other, pd.DataFrame) else read_catalog(other)
        return crossmatch(left, right, radius).join(suffixes=("", "_other"))
    if method != "lsdb":
        raise ValueError(f"method must be auto, astropy or lsdb, got {method!r}")
    import lsdb

    def as_lsdb(x, name):
        if isinstance(x, pd.DataFrame):
            return lsdb.from_dataframe(
                x.reset_index(drop=True), ra_column="ra", dec_column="dec", catalog_name=name
            )
        return lsdb.read_hats(x)

    left, right = as_lsdb(catalog, "left"), as_lsdb(other, "right")
    # suffix only the columns both sides have, as the astropy path does
    out = left.crossmatch(
        right,
        n_neighbors=1,
        radius_arcsec=radius,
        suffixes=("", "_other"),
        suffix_method="overlapping_columns",
    )
    df = out.compute().reset_index(drop=True)
    if "_dist_arcsec" in df:
        df = df.rename(columns={"_dist_arcsec": "sep_arcsec"})
    return df
