"""Galaxy Zoo style label selection and deterministic train/validation/test splits."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from catbuilder import config

__all__ = ["assign_splits", "label_sources", "select_galaxy_zoo"]


def select_galaxy_zoo(
    labels: pd.DataFrame,
    sample: str = "hp",
    *,
    spiral_threshold: float | None = None,
    elliptical_threshold: float | None = None,
    spiral_col: str | None = None,
    elliptical_col: str | None = None,
) -> pd.DataFrame:
    """Label galaxies from debiased vote fractions, as in Khan et al. (2019).

    Parameters
    ----------
    labels
        A table with spiral and elliptical vote-fraction columns.
    sample
        ``"hp"`` (high probability): spirals above ``spiral_threshold`` and
        ellipticals above ``elliptical_threshold``, everything else dropped.
        ``"fo"`` (full overlap): every galaxy, labelled by the larger fraction.
    spiral_threshold, elliptical_threshold
        Defaults 0.985 and 0.926 (``selection.*-threshold``).
    spiral_col, elliptical_col
        Column names; defaults ``p_spiral`` and ``p_elliptical``.

    Returns
    -------
    pandas.DataFrame
        The selected rows with a ``label`` column (``"spiral"``/``"elliptical"``)
        and ``label_prob``, the vote fraction of the chosen class.
    """
    c = config.resolve
    ts = float(c("selection.spiral-threshold", spiral_threshold))
    te = float(c("selection.elliptical-threshold", elliptical_threshold))
    sc = c("selection.spiral-column", spiral_col)
    ec = c("selection.elliptical-column", elliptical_col)
    for col in (sc, ec):
        if col not in labels.columns:
            raise ValueError(
                f"label table has no column {col!r}; columns: {', '.join(map(str, labels.columns))}"
            )
    ps = labels[sc].to_numpy(dtype=float)
    pe = labels[ec].to_numpy(dtype=float)
    if sample == "hp":
        spiral = ps > ts
        ell = (pe > te) & ~spiral
        keep = spiral | ell
    elif sample == "fo":
        spiral = ps > pe
        keep = np.isfinite(ps) & np.isfinite(pe) & (ps != pe)
    else:
        raise ValueError(f"sample must be 'hp' or 'fo', got {sample!r}")
    out = labels[keep].copy()
    out["label"] = np.where(spiral[keep], "spiral", "elliptical")
    out["label_prob"] = np.where(spiral[keep], ps[keep], pe[keep])
    return out.reset_index(drop=True)


def _unit_hash(values: np.ndarray, seed: int) -> np.ndarray:
    out = np.empty(len(values))
    for i, v in enumerate(values):
        h = hashlib.blake2b(f"{seed}:{v}".encode(), digest_size=8).digest()
        out[i] = int.from_bytes(h, "little") / 2.0**64
    return out


def assign_splits(
    objids: np.ndarray | pd.Series,
    *,
    validation: float | None = None,
    test: float | None = None,
    seed: int | None = None,
) -> np.ndarray:
    """Deterministic ``train``/``validation``/``test`` split from object ids.

    The split of an object depends only on its id and the seed, so adding
    objects later never moves existing ones between splits.

    Parameters
    ----------
    objids
        Object identifiers.
    validation, test
        Fractions (defaults ``train.validation-fraction``, ``train.test-fraction``).
    seed
        Changes the assignment (default ``train.seed``).
    """
    v = float(config.resolve("train.validation-fraction", validation))
    t = float(config.resolve("train.test-fraction", test))
    if not (0 <= v and 0 <= t and v + t < 1):
        raise ValueError(f"validation ({v}) and test ({t}) fractions must be >= 0 and sum below 1")
    u = _unit_hash(np.asarray(objids), int(config.resolve("train.seed", seed)))
    return np.where(u < t, "test", np.where(u < t + v, "validation", "train")).astype(object)


def label_sources(
    labels: pd.DataFrame,
    sources,
    *,
    sample: str = "hp",
    radius_arcsec: float | None = None,
    splits: bool = True,
    keep_unlabelled: bool = False,
    **selection: float,
) -> pd.DataFrame:
    """Carry Galaxy Zoo labels onto another survey's sources by position.

    The paper's step: select Galaxy Zoo galaxies (``sample`` "hp" or "fo"),
    crossmatch them to the target survey within ``radius_arcsec``, and give
    each matched target source the label.

    Parameters
    ----------
    labels
        Vote table with positions (``ra``, ``dec``) and vote fractions.
    sources
        Target table or path (read with :func:`catbuilder.sky.read_sources`).
    sample
        ``"hp"`` or ``"fo"``, see :func:`select_galaxy_zoo`.
    radius_arcsec
        Match radius (default ``crossmatch.radius-arcsec``).
    splits
        Add a deterministic ``split`` column (train/validation/test).
    keep_unlabelled
        Keep unmatched target sources too, with an empty label.
    **selection
        Threshold overrides for :func:`select_galaxy_zoo`.

    Returns
    -------
    pandas.DataFrame
        Target sources with ``label``, ``label_prob``, ``label_objid`` (the
        Galaxy Zoo object) and ``split`` (empty for unlabelled sources).
    """
    from catbuilder.sky.crossmatch import crossmatch
    from catbuilder.sky.tables import read_sources

    chosen = select_galaxy_zoo(labels, sample, **selection)
    target = read_sources(sources)
    res = crossmatch(target, chosen, radius_arcsec)
    out = target.copy()
    out["label"] = ""
    out["label_prob"] = np.nan
    out["label_objid"] = pd.Series([None] * len(out), dtype=object)
    li, ri = res.matches["left"].to_numpy(), res.matches["right"].to_numpy()
    out.loc[li, "label"] = chosen["label"].to_numpy()[ri]
    out.loc[li, "label_prob"] = chosen["label_prob"].to_numpy()[ri]
    ids = res.right["objid"].to_numpy()[ri]
    out.loc[li, "label_objid"] = pd.Series(ids, index=li, dtype=object)
    if not keep_unlabelled:
        out = out.loc[li].sort_index()
    if splits:  # labelled objects only: the others are not trained or scored on
        split = assign_splits(out["objid"].to_numpy())
        out["split"] = np.where(out["label"].to_numpy() != "", split, "").astype(object)
    return out.reset_index(drop=True)
