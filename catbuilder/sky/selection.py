"""Galaxy Zoo style label selection and deterministic train/validation/test splits."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np
import pandas as pd

from catbuilder import config

__all__ = ["assign_splits", "label_sources", "select_galaxy_zoo", "vote_columns"]


def vote_columns(
    labels: pd.DataFrame, spiral_col: str | None = None, elliptical_col: str | None = None
) -> tuple[str, str]:
    """The spiral and elliptical vote-fraction columns of a Galaxy Zoo table.

    Given names win; otherwise the first pair of ``selection.vote-columns``
    the table has (Galaxy Zoo 1, 2, DECaLS and DESI names as published).

    Raises
    ------
    ValueError
        Naming the pairs looked for and the table's columns.
    """
    c = config.resolve
    sc = c("selection.spiral-column", spiral_col)
    ec = c("selection.elliptical-column", elliptical_col)
    cols = [str(x) for x in labels.columns]
    for col in (sc, ec):
        if col is not None and col not in cols:
            raise ValueError(f"label table has no column {col!r}; columns: {', '.join(cols[:30])}")
    if sc is None or ec is None:
        for s_name, e_name in config.get("selection.vote-columns") or []:
            if (sc is None or sc == s_name) and (ec is None or ec == e_name):
                if s_name in cols and e_name in cols:
                    sc, ec = s_name, e_name
                    break
    if sc is None or ec is None:
        pairs = "; ".join(f"{a}/{b}" for a, b in config.get("selection.vote-columns") or [])
        raise ValueError(
            f"label table has no spiral/elliptical vote-fraction columns: looked for {pairs}; "
            f"name them with spiral_col= and elliptical_col= (or selection.vote-columns); "
            f"columns: {', '.join(cols[:30])}"
        )
    return sc, ec


def select_galaxy_zoo(
    labels: pd.DataFrame | str | os.PathLike[str],
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
        A Galaxy Zoo table (or its path) with spiral and elliptical
        vote-fraction columns: Galaxy Zoo 1 (``P_CS_DEBIASED``/``P_EL_DEBIASED``),
        Galaxy Zoo 2 (``t01_smooth_or_features_a02_features_or_disk_debiased``
        / ``..._a01_smooth_debiased``), GZ DECaLS / DESI
        (``smooth-or-featured_featured-or-disk_fraction`` / ``..._smooth_fraction``)
        and ``p_spiral``/``p_elliptical`` are recognised
        (``selection.vote-columns``). For GZ2 and later, "featured or disk"
        stands for spiral and "smooth" for elliptical.
    sample
        ``"hp"`` (high probability): spirals above ``spiral_threshold`` and
        ellipticals above ``elliptical_threshold``, everything else dropped.
        ``"fo"`` (full overlap): every galaxy, labelled by the larger fraction.
    spiral_threshold, elliptical_threshold
        Defaults 0.985 and 0.926 (``selection.*-threshold``).
    spiral_col, elliptical_col
        Column names, when the table's are not among the recognised ones.

    Returns
    -------
    pandas.DataFrame
        The selected rows with a ``label`` column (``"spiral"``/``"elliptical"``),
        ``label_prob``, the vote fraction of the chosen class, and
        ``label_votes``, the number of votes, where the table has a vote count.

    Examples
    --------
    >>> import pandas as pd
    >>> from catbuilder import select_galaxy_zoo
    >>> votes = pd.DataFrame({"objid": [1, 2, 3], "ra": [150.0, 150.1, 150.2],
    ...                       "dec": [2.0, 2.1, 2.2], "p_spiral": [0.99, 0.5, 0.01],
    ...                       "p_elliptical": [0.01, 0.5, 0.95]})
    >>> select_galaxy_zoo(votes)[["objid", "label", "label_prob"]]
       objid       label  label_prob
    0      1      spiral        0.99
    1      3  elliptical        0.95
    """
    c = config.resolve
    if not isinstance(labels, pd.DataFrame):
        from catbuilder.sky.tables import from_astropy, is_astropy_table, read_table

        labels = from_astropy(labels) if is_astropy_table(labels) else read_table(labels)
    ts = float(c("selection.spiral-threshold", spiral_threshold))
    te = float(c("selection.elliptical-threshold", elliptical_threshold))
    sc, ec = vote_columns(labels, spiral_col, elliptical_col)
    try:
        ps = pd.to_numeric(labels[sc], errors="raise").to_numpy(dtype=float)
        pe = pd.to_numeric(labels[ec], errors="raise").to_numpy(dtype=float)
    except (ValueError, TypeError) as err:
        raise ValueError(f"label table: vote fractions {sc}/{ec} are not numeric: {err}") from None
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
    votes = next((v for v in _VOTE_COUNTS if v in out.columns), None)
    if votes is not None:
        out["label_votes"] = pd.to_numeric(out[votes], errors="coerce").astype(np.float32)
    return out.reset_index(drop=True)


#: vote-count columns of Galaxy Zoo tables (GZ1 NVOTE, GZ2 total_votes, DECaLS/DESI),
#: carried as ``label_votes`` so soft-label training can weigh each label by them
_VOTE_COUNTS = (
    "n_votes",
    "NVOTE",
    "nvote",
    "total_votes",
    "t01_smooth_or_features_total_votes",
    "smooth-or-featured_total-votes",
)


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
    radius: float | str | Any | None = None,
    splits: bool = True,
    keep_unlabelled: bool = False,
    method: str = "auto",
    **selection: float,
) -> pd.DataFrame:
    """Carry Galaxy Zoo labels onto another survey's sources by position.

    The paper's step: select Galaxy Zoo galaxies (``sample`` "hp" or "fo"),
    crossmatch them to the target survey within ``radius``, and give
    each matched target source the label.

    Parameters
    ----------
    labels
        Galaxy Zoo table (or path) with positions and vote fractions, as
        published (see :func:`select_galaxy_zoo`; RA/Dec columns as
        :func:`catbuilder.sky.read_sources` finds them).
    sources
        Target table or path (read with :func:`catbuilder.sky.read_sources`),
        or a HATS catalog.
    sample
        ``"hp"`` or ``"fo"``, see :func:`select_galaxy_zoo`.
    radius
        Match radius: arcsec, ``"1 arcsec"`` or an astropy angle (default
        ``crossmatch.radius-arcsec``).
    splits
        Add a deterministic ``split`` column (train/validation/test).
    keep_unlabelled
        Keep unmatched target sources too, with an empty label.
    method
        ``"astropy"`` reads the sources into memory and matches them there
        (:func:`catbuilder.sky.crossmatch`); ``"lsdb"`` matches a HATS
        catalog of sources partition by partition, so that only the matched
        sources are ever held (it needs an id column, and no
        ``keep_unlabelled``). ``"auto"`` (default) takes lsdb for a HATS
        catalog when it and the labels hold at least
        ``crossmatch.lsdb-min-rows`` rows, else astropy.
    **selection
        Threshold overrides for :func:`select_galaxy_zoo`.

    Returns
    -------
    pandas.DataFrame
        Target sources with ``label``, ``label_prob``, ``label_votes`` (where
        the table counts votes), ``label_objid`` (the Galaxy Zoo object) and
        ``split`` (empty for unlabelled sources).

    Examples
    --------
    >>> from catbuilder import label_sources
    >>> labelled = label_sources("mock/galaxy_zoo.parquet",
    ...                          "mock/des-like/sources.parquet")  # doctest: +SKIP
    >>> labelled["label"].value_counts()  # doctest: +SKIP
    """
    from catbuilder.sky.crossmatch import crossmatch
    from catbuilder.sky.hats_catalogs import crossmatch_method
    from catbuilder.sky.tables import read_sources

    chosen = read_sources(select_galaxy_zoo(labels, sample, **selection), warn_no_id=False)
    if method == "auto":
        method = "astropy" if keep_unlabelled else crossmatch_method(sources, chosen)
    if method == "lsdb":
        target = _matched_with_lsdb(sources, chosen, radius, keep_unlabelled)
        li, ri = np.arange(len(target)), target.pop("label_row").to_numpy()
    elif method == "astropy":
        target = read_sources(sources)
        res = crossmatch(target, chosen, radius)
        li, ri = res.matches["left"].to_numpy(), res.matches["right"].to_numpy()
    else:
        raise ValueError(f"method must be auto, astropy or lsdb, got {method!r}")
    out = target.copy()
    out["label"] = ""
    out["label_prob"] = np.nan
    out.loc[li, "label"] = chosen["label"].to_numpy()[ri]
    out.loc[li, "label_prob"] = chosen["label_prob"].to_numpy()[ri]
    if "label_votes" in chosen:
        out["label_votes"] = np.nan
        out.loc[li, "label_votes"] = chosen["label_votes"].to_numpy()[ri]
    ids = chosen["objid"].to_numpy()[ri]
    if np.asarray(ids).dtype.kind in "iu":  # integer ids (SDSS OBJID): nullable, exact
        col = pd.array(np.zeros(len(out), dtype=np.int64), dtype="Int64")
        col[:] = pd.NA
        col[li] = ids
        out["label_objid"] = col
    else:
        out["label_objid"] = pd.Series([None] * len(out), dtype=object)
        out.loc[li, "label_objid"] = pd.Series(ids, index=li, dtype=object)
    if not keep_unlabelled:
        out = out.loc[li].sort_index()
    if splits:  # labelled objects only: the others are not trained or scored on
        split = assign_splits(out["objid"].to_numpy())
        out["split"] = np.where(out["label"].to_numpy() != "", split, "").astype(object)
    return out.reset_index(drop=True)


def _matched_with_lsdb(sources: Any, chosen: pd.DataFrame, radius: Any,
                       keep_unlabelled: bool) -> pd.DataFrame:  # fmt: skip
    """The sources of a HATS catalog with a chosen galaxy in the radius, standardised, and
    ``label_row`` (the galaxy's row in ``chosen``)."""
    from catbuilder.sky.geometry import angle_arcsec
    from catbuilder.sky.hats_catalogs import is_hats_catalog, nearest_within
    from catbuilder.sky.tables import read_sources, source_columns

    if keep_unlabelled:
        raise ValueError(
            "keep_unlabelled=True holds every source in memory: use method='astropy' (or 'auto')"
        )
    if not is_hats_catalog(sources):
        raise ValueError(f"method='lsdb' matches a HATS catalog of sources; {sources!r} is not one")
    r = angle_arcsec(config.resolve("crossmatch.radius-arcsec", radius), "radius")
    matched = nearest_within(sources, chosen, r)
    rows = matched.pop("other_row").to_numpy()
    matched = matched.drop(columns="sep_arcsec")
    if source_columns(matched.iloc[:0], None, None, None, str(sources))[2] is None:
        raise ValueError(
            f"{sources}: no id column (sources.id-columns); matched partition by partition, "
            "sources cannot be numbered by their row: add ids or use method='astropy'"
        )
    target = read_sources(matched)
    target["label_row"] = rows
    return target
