"""ImageStack: an xarray Dataset of cutouts on a chunked Zarr store.

Dimensions ``(object, band, y, x)``; ``images`` holds native float32 pixels.
Per-object coordinates: ``objid, ra, dec, tile, tile_x, tile_y`` (0-based pixel
position in the reference tile; ``x``/``y`` name the image axes), ``row`` (row
of the source table), ``label, split`` and
the flags ``off_footprint, edge, nan_fraction, nan (object, band),
missing_band (object, band), saturated, flags`` (bits in
:data:`catbuilder.stack.flags.FLAG_BITS`), ``magzero (object, band)``,
``label_objid``/``label_prob`` (the label survey's object, when labels were
crossmatched) and each cutout's WCS (``wcs_crval1 ... wcs_cd2_2``, see
:meth:`ImageStack.wcs`). ``x``/``y`` are offsets from the cutout centre in
arcsec; per band: ``wavelength_eff``, ``magzero_band``, ``pixel_unit``. Every
variable has CF ``long_name``/``units`` attributes; the dataset's
``catbuilder`` attribute (a mapping) records provenance.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from catbuilder.errors import IncompleteStoreError
from catbuilder.stack.flags import FLAG_BITS
from catbuilder.stack.variables import FLAG_VARS, PER_BAND_FLAGS
from catbuilder.zarr_store import as_strings, open_zarr, read_meta, read_values, sibling

__all__ = [
    "NO_LABEL_ID",
    "Batch",
    "ImageStack",
    "IncompleteStackError",
    "label_ids",
    "open_stack",
    "open_zarr",
    "sibling",
]

# variables written per chunk that are per-object metadata, shown as coordinates


#: stored in a stack's integer ``label_objid`` where there is no label object
NO_LABEL_ID = np.iinfo(np.int64).min


def label_ids(values: pd.Series) -> pd.Series:
    """A stack's ``label_objid`` values as a column with nulls.

    Integer ids become a nullable ``Int64`` column (the stack stores
    :data:`NO_LABEL_ID` where none); string ids stay strings, null where empty.
    """
    values = pd.Series(values).reset_index(drop=True)
    if values.dtype.kind in "iu":
        ids = values.to_numpy()
        out = pd.Series(pd.array(ids, dtype="Int64"))
        out[ids == NO_LABEL_ID] = pd.NA
        return out
    text = values.astype(str)
    return text.where(~text.isin(["", "None", "nan", "<NA>"]), None).astype(object)


class IncompleteStackError(IncompleteStoreError):
    """The store holds a build that did not finish."""


@dataclass
class Batch:
    """A batch of cutouts: pixels and the per-object table."""

    images: np.ndarray
    objects: pd.DataFrame

    def __len__(self) -> int:
        return len(self.images)


class ImageStack:
    """Cutouts on a Zarr store, opened lazily through xarray.

    Use :func:`open_stack` (or :meth:`open`) to open one and
    :func:`catbuilder.stack.build_stack` to make one.

    Parameters
    ----------
    ds
        The dataset (flags as coordinates).
    path
        The Zarr store, if the stack lives on disk.
    """

    def __init__(self, ds, path: str | os.PathLike[str] | None = None, _table=None):
        self.ds = ds
        self.path = Path(path) if path is not None else None
        self._table = _table  # the per-object table, once read (selections slice it)

    # -- opening ----------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], allow_incomplete: bool = False) -> ImageStack:
        """Open a stack lazily.

        Raises
        ------
        FileNotFoundError
            When there is no store at ``path``.
        IncompleteStackError
            When the build that wrote it did not finish (resume it by calling
            the build again with the same arguments), unless ``allow_incomplete``.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no image stack at {path}")
        from catbuilder.outputs import store_meta

        if (store_meta(path) or {}).get("pending_append") and not allow_incomplete:
            raise IncompleteStackError(
                f"an append to image stack {path} was stopped while its arrays were being "
                "extended: run the same append again to finish it (the stack is kept as it was)"
            )
        try:
            ds = open_zarr(path)
        except Exception as err:
            raise ValueError(f"{path} is not a readable Zarr image stack: {err}") from err
        meta = read_meta(ds)
        if not meta.get("complete", False) and not allow_incomplete:
            written = read_values(ds["written"])
            raise IncompleteStackError(
                f"image stack {path} is incomplete ({int(written.sum())}/{written.size} objects "
                "written): resume the build with the same arguments"
            )
        ds = ds.set_coords([v for v in FLAG_VARS if v in ds.data_vars])
        if "written" in ds:
            ds = ds.drop_vars("written")
        return cls(ds, path)

    # -- description ------------------------------------------------------------

    @property
    def images(self):
        """The ``images`` DataArray (object, band, y, x), lazy."""
        return self.ds["images"]

    @property
    def bands(self) -> list[str]:
        return [str(b) for b in self.ds["band"].values]

    @property
    def size(self) -> int:
        return int(self.ds.sizes["y"])

    @property
    def meta(self) -> dict[str, Any]:
        """Provenance and build parameters."""
        return read_meta(self.ds)

    @property
    def classes(self) -> list[str]:
        """Sorted non-empty labels present in the stack."""
        labels = as_strings(read_values(self.ds["label"]))
        return sorted(set(labels[labels != ""]))

    def __len__(self) -> int:
        return int(self.ds.sizes["object"])

    def __repr__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return (
            f"<ImageStack{where}: {len(self)} objects, bands {','.join(self.bands)}, "
            f"{self.size}x{self.size} px, classes {self.classes}>"
        )

    @property
    def pixel_scale(self) -> float:
        """Pixel scale of the cutouts (arcsec per pixel; NaN for stacks made before it was kept)."""
        return float(self.ds.attrs.get("pixel_scale_arcsec", np.nan))

    def wcs(self, i: int):
        """The WCS of the ``i``-th cutout of this stack (read from the stack alone).

        A TAN projection centred on the cutout, fitted to its tile's WCS at the
        cutout's centre (see :mod:`catbuilder.stack.describe`): plot with
        ``plt.subplot(projection=stack.wcs(i))`` or place pixels on the sky
        with ``stack.wcs(i).pixel_to_world(x, y)``; valid for every band.

        Raises
        ------
        ValueError
            For an object off the footprint, or a stack made before cutouts
            kept their WCS.
        """
        from catbuilder.stack.describe import WCS_VARS, cutout_wcs

        row = self.objects().iloc[int(i)]
        if not set(WCS_VARS) <= set(row.index):
            raise ValueError(
                "this stack was made before cutouts kept their WCS; rebuild it to get one"
            )
        return cutout_wcs(row, self.size)

    def objects(self) -> pd.DataFrame:
        """The per-object table (every 1-D coordinate along ``object``).

        Read once per stack object (and sliced, not read again, by its
        selections); each call returns a copy.
        """
        if self._table is None:
            self._table = self._read_objects()
        return self._table.copy()

    def _read_objects(self) -> pd.DataFrame:
        import dask

        one = [n for n, v in self.ds.coords.items() if v.dims == ("object",) and n != "object"]
        per_band = [n for n in PER_BAND_FLAGS if n in self.ds.coords]
        values = [self._read_stored(n) for n in one + per_band]
        lazy = [i for i, v in enumerate(values) if v is None]
        # one synchronous compute for the rest: a graph each costs more than the read
        got = dask.compute(
            *[self.ds[(one + per_band)[i]].data for i in lazy], scheduler="synchronous"
        )
        for i, v in zip(lazy, got):
            values[i] = v
        cols = {}
        for name, vals in zip(one, values[: len(one)]):
            vals = np.asarray(vals)
            cols[name] = as_strings(vals) if vals.dtype.kind in "TUSO" else vals
        for name, vals in zip(per_band, values[len(one) :]):
            vals = np.asarray(vals)
            for i, b in enumerate(self.bands):
                cols[f"{name}_{b}"] = vals[:, i]
        if "label_objid" in cols:  # integer ids: nulls where the stack stores its sentinel
            cols["label_objid"] = label_ids(cols["label_objid"]).array
        from catbuilder.stack.columns import NULL_SUFFIX, decode

        for name, spec in (self.meta.get("extra_columns") or {}).items():
            if name in cols:  # the source's own type, value and nulls
                cols[name] = decode(cols[name], cols.pop(name + NULL_SUFFIX, None), spec).array
        return pd.DataFrame(cols, index=pd.Index(self.ds["object"].values, name="object"))

    # -- selection --------------------------------------------------------------

    def isel(self, index) -> ImageStack:
        """Positional selection along ``object``."""
        index = _as_slice(index)
        table = None
        if self._table is not None:
            table = self._table.iloc[index if isinstance(index, slice) else np.atleast_1d(index)]
        return ImageStack(self.ds.isel(object=index), self.path, table)

    def select(
        self,
        *,
        clean: bool = False,
        exclude: list[str] | None = None,
        label: str | list[str] | None = None,
        split: str | list[str] | None = None,
        labelled: bool | None = None,
        region: tuple[float, float, float] | dict[str, tuple[float, float]] | None = None,
        objid: Any = None,
    ) -> ImageStack:
        """Select objects by flag, label, split, sky region or id (lazily).

        Parameters
        ----------
        clean
            Drop objects with any flag set.
        exclude
            Flag names to drop objects for (see ``FLAG_BITS``).
        label, split
            Keep these labels / splits.
        labelled
            Keep only objects with (True) or without (False) a label.
        region
            ``(ra, dec, radius_deg)`` cone, or ``{"ra": (lo, hi), "dec": (lo, hi)}``.
        objid
            Keep these object ids.
        """
        keep = np.ones(len(self), dtype=bool)
        coords = self.ds.coords
        flags = read_values(coords["flags"])
        if clean:
            keep &= flags == 0
        for name in exclude or []:
            if name not in FLAG_BITS:
                raise ValueError(f"unknown flag {name!r}; flags are {', '.join(FLAG_BITS)}")
            keep &= (flags & FLAG_BITS[name]) == 0
        if label is not None:
            keep &= np.isin(as_strings(read_values(coords["label"])), np.atleast_1d(label))
        if split is not None:
            keep &= np.isin(as_strings(read_values(coords["split"])), np.atleast_1d(split))
        if labelled is not None:
            has = as_strings(read_values(coords["label"])) != ""
            keep &= has if labelled else ~has
        if region is not None:
            ra, dec = read_values(coords["ra"]), read_values(coords["dec"])
            if isinstance(region, dict):
                lo, hi = region.get("ra", (0, 360))
                keep &= ((ra >= lo) & (ra <= hi)) if lo <= hi else ((ra >= lo) | (ra <= hi))
                dlo, dhi = region.get("dec", (-90, 90))
                keep &= (dec >= dlo) & (dec <= dhi)
            else:
                from catbuilder.sky.geometry import sky_to_xyz

                c = sky_to_xyz(np.array([region[0]]), np.array([region[1]]))[0]
                cosd = sky_to_xyz(ra, dec) @ c
                keep &= cosd >= np.cos(np.radians(region[2]))
        if objid is not None:
            keep &= np.isin(read_values(coords["objid"]), np.atleast_1d(objid))
        return self.isel(np.flatnonzero(keep))

    # -- reading ----------------------------------------------------------------

    def batches(
        self,
        batch_size: int = 64,
        *,
        shuffle: bool = False,
        seed: int | None = None,
        shuffle_buffer: int = 8,
        transform: Any = None,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        """Iterate over batches, reading the store lazily.

        Contiguous runs of objects are read together, so a batch costs about
        one chunk read and memory holds at most ``shuffle_buffer`` batches.
        With ``shuffle``, blocks of ``batch_size`` objects are visited in random
        order and ``shuffle_buffer`` of them are pooled and mixed before being
        cut into batches (objects are stored by tile, so neighbours on disk are
        neighbours on the sky).

        Parameters
        ----------
        batch_size
            Objects per batch.
        shuffle, seed
            Randomise the order.
        shuffle_buffer
            Blocks mixed together when shuffling.
        transform
            Applied to each batch as ``transform(pixels, objects, bands)``, e.g. a
            :class:`catbuilder.stack.preprocess.Preprocessor`.
        drop_last
            Skip a final, smaller batch.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        n = len(self)
        table = self.objects()
        starts = list(range(0, n, batch_size))
        rng = np.random.default_rng(seed)
        if shuffle:
            rng.shuffle(starts)
        window = max(1, shuffle_buffer) if shuffle else 1
        for w in range(0, len(starts), window):
            idx = np.concatenate(
                [np.arange(s, min(s + batch_size, n)) for s in sorted(starts[w : w + window])]
            )
            pixels = self._pixels(idx)
            sub = table.iloc[idx]
            if shuffle:
                perm = rng.permutation(len(idx))
                pixels, sub = pixels[perm], sub.iloc[perm]
            for a in range(0, len(idx), batch_size):
                px, ob = pixels[a : a + batch_size], sub.iloc[a : a + batch_size]
                if drop_last and len(px) < batch_size:
                    continue
                if transform is not None:
                    px = transform(px, ob, self.bands)
                yield Batch(px, ob)

    def _stored(self, name: str):
        """The Zarr array behind variable ``name`` when its values can be read
        as stored (no encoding for xarray to undo, no selection but along
        ``object``); else None. Opened once per stack object."""
        cache = self.__dict__.setdefault("_zarrays", {})
        if name not in cache:
            cache[name] = None
            var = self.ds[name]
            if self.path is not None and isinstance(var.data, _dask_array_type()):
                import zarr

                try:
                    arr = zarr.open_array(str(self.path / name), mode="r")
                except Exception:
                    arr = None
                encoded = {"scale_factor", "add_offset", "dtype"}
                if (
                    arr is not None
                    and (arr.dtype == var.dtype or arr.dtype.kind in "TUSO")
                    and arr.shape[1:] == var.shape[1:]
                    and not encoded & set(arr.attrs)
                    and " since " not in str(arr.attrs.get("units", ""))  # CF times
                ):
                    cache[name] = arr
        return cache[name]

    def _read_stored(self, name: str, idx: np.ndarray | None = None) -> np.ndarray | None:
        """Values of ``name`` at positions ``idx`` of this stack (all when None),
        read with Zarr itself, or None where xarray must read them.

        A stack's ``object`` coordinate is the position in the store, and a run
        of them is one slice: this skips building a Dask graph per read, which
        costs as much as the read.
        """
        arr = self._stored(name)
        if arr is None:
            return None
        stored = np.asarray(self.ds["object"].values)
        if idx is not None:
            stored = stored[idx]
        sel = _as_slice(stored)
        rest = (slice(None),) * (arr.ndim - 1)
        if isinstance(sel, slice):
            return np.asarray(arr[(sel, *rest)])
        return np.asarray(arr.get_orthogonal_selection((stored, *rest)))

    def _pixels(self, idx: np.ndarray) -> np.ndarray:
        """Pixels of positions ``idx`` of this stack (a selection's own order)."""
        got = self._read_stored("images", idx)
        if got is None:
            return read_values(self.ds["images"].isel(object=_as_slice(idx)))
        return got

    def load(self) -> np.ndarray:
        """All pixels as one numpy array (only for small stacks)."""
        return read_values(self.ds["images"])


def _dask_array_type():
    import dask.array as da

    return da.Array


def _as_slice(index: Any) -> Any:
    """A run of consecutive positions as a slice (a cheap read); else unchanged."""
    if isinstance(index, slice) or np.ndim(index) != 1:
        return index
    idx = np.asarray(index)
    if idx.dtype.kind not in "iu" or len(idx) == 0:
        return index
    if (len(idx) == 1 or np.all(np.diff(idx) == 1)) and idx[0] >= 0:
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return index


def open_stack(path: str | os.PathLike[str], allow_incomplete: bool = False) -> ImageStack:
    """Open an image stack written by :func:`catbuilder.stack.build_stack`.

    Parameters
    ----------
    path
        The stack's Zarr directory.
    allow_incomplete
        Open a stack whose build has not finished (its missing objects read as
        NaN); by default that is an error saying how to finish it.

    Returns
    -------
    ImageStack
        The stack, lazily: pixels are read from Zarr as batches ask for them.

    Examples
    --------
    >>> from catbuilder import open_stack
    >>> stack = open_stack("des.zarr")  # doctest: +SKIP
    >>> for batch in stack.select(clean=True).batches(64):  # doctest: +SKIP
    ...     batch.pixels.shape
    """
    return ImageStack.open(path, allow_incomplete=allow_incomplete)
