"""A training stack of two surveys: one's labelled objects and the other's
pseudo-labelled ones, resampled to the first's pixel grid."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np


def training_stack(a_train, b_stack, b_pos, pseudo, path: Path, confidence=None):
    """A's training objects plus B's chosen ones (resampled to A's grid) as a Zarr stack.

    With ``confidence`` (the model's probability of each pseudo-label) the
    stack carries ``label_prob`` (and A's ``label_votes``) for soft targets:
    A's vote fractions and B's probabilities.
    """
    import dask.array as da
    import xarray as xr

    from catbuilder.stack.preprocess import resize
    from catbuilder.stack.store import ImageStack
    from catbuilder.zarr_store import as_strings

    size = a_train.size
    keep = ["objid", "ra", "dec", "label", "split", "flags", "magzero"]
    if confidence is not None:
        keep += ["label_prob", "label_votes"]
    a = a_train.ds[["images"]].assign_coords({k: a_train.ds[k] for k in keep if k in a_train.ds})
    b = b_stack.isel(np.asarray(b_pos)).ds
    imgs = b["images"].data
    if imgs.shape[-1] != size:
        imgs = da.map_blocks(
            lambda x: resize(x, size), imgs.rechunk({1: -1, 2: -1, 3: -1}),
            dtype=np.float32, chunks=(imgs.chunks[0], imgs.chunks[1], (size,), (size,)),
        )  # fmt: skip
    b_ds = xr.Dataset(
        {"images": (("object", "band", "y", "x"), imgs)},
        coords={
            "objid": ("object", b["objid"].values),
            "ra": ("object", b["ra"].values),
            "dec": ("object", b["dec"].values),
            "label": ("object", np.asarray(pseudo, dtype=object)),
            "split": ("object", np.array(["train"] * len(b_pos), dtype=object)),
            "flags": ("object", np.zeros(len(b_pos), np.uint8)),
            "magzero": (("object", "band"), b["magzero"].values),
            "band": a["band"].values,
        },
    )
    if confidence is not None:
        n = len(b_pos)
        b_ds = b_ds.assign_coords(
            label_prob=("object", np.asarray(confidence, dtype=np.float32)),
            label_votes=("object", np.full(n, np.nan, dtype=np.float32)),
        )
        for k in ("label_prob", "label_votes"):  # A without votes: soft targets of one-hot
            if k not in a.coords:
                a = a.assign_coords({k: ("object", np.full(a.sizes["object"], np.nan, np.float32))})
    a = a.drop_vars([v for v in a.coords if v not in keep + ["band"]])
    a_split = as_strings(np.asarray(a["split"].values))
    if not (a_split == "train").any():  # A without splits: hold out validation by id
        from catbuilder.sky.selection import assign_splits

        a_split = assign_splits(a["objid"].values, test=0.0).astype(str)
    a = a.assign_coords(label=("object", as_strings(np.asarray(a["label"].values)).astype(object)))
    a = a.assign_coords(split=("object", np.asarray(a_split).astype(object)))
    both = xr.concat([a.drop_vars("object", errors="ignore"), b_ds], dim="object")
    both = both.assign_coords(object=np.arange(both.sizes["object"]))
    both["written"] = ("object", np.ones(both.sizes["object"], bool))
    both.attrs = {
        "catbuilder": {
            "kind": "image-stack",
            "complete": True,
            "parameters": {"size": size, "bands": [str(x) for x in a["band"].values]},
        }
    }
    for v in both.variables.values():
        v.encoding.clear()
    both = both.assign_coords({k: both[k].load() for k in both.coords})  # small: in memory
    both["images"] = both["images"].chunk({"object": 256})
    if path.exists():
        shutil.rmtree(path)
    both.to_zarr(path, mode="w", consolidated=False)
    return ImageStack.open(path)
