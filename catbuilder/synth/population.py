"""The truth population of a mock survey: galaxies, stars, their sky positions.

Sizes and fluxes follow a redshift-like scaling: each galaxy gets an absolute
magnitude and a physical size, and a redshift ``z`` that sets its apparent
magnitude (luminosity distance) and angular size (angular-diameter distance),
so distant galaxies are fainter, smaller and of lower surface brightness.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from catbuilder.synth.layout import SkyLayout
from catbuilder.synth.regimes import Regime

__all__ = ["COLOURS", "make_population"]

# colours relative to r, per component
COLOURS: dict[str, dict[str, float]] = {
    "red": {"u": 2.55, "g": 0.78, "r": 0.0, "i": -0.40, "z": -0.75},  # ellipticals, bulges
    "blue": {"u": 1.30, "g": 0.42, "r": 0.0, "i": -0.20, "z": -0.36},  # discs
}

_Z_MIN, _Z_MAX = 0.02, 0.14


def _cosmology_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from astropy.cosmology import Planck18

    zg = np.linspace(0.005, 0.3, 300)
    dm = Planck18.distmod(zg).value
    kpc_per_arcsec = Planck18.kpc_proper_per_arcmin(zg).value / 60.0
    return zg, dm, kpc_per_arcsec


def _galaxies(
    rng: np.random.Generator, n: int, spiral_fraction: float, z_max: float = _Z_MAX
) -> pd.DataFrame:
    zg, dm_t, kpc_t = _cosmology_tables()
    is_spiral = rng.random(n) < spiral_fraction
    # volume-weighted redshifts between the limits
    u = rng.random(n)
    z = (_Z_MIN**3 + u * (z_max**3 - _Z_MIN**3)) ** (1 / 3)
    dm = np.interp(z, zg, dm_t)
    kpc = np.interp(z, zg, kpc_t)

    abs_r = np.where(is_spiral, rng.normal(-21.0, 0.7, n), rng.normal(-21.4, 0.7, n))
    mag_r = abs_r + dm + 2.5 * z  # a crude k-correction
    # sizes from a magnitude-size relation with scatter
    size_kpc = np.where(
        is_spiral,
        6.0 * 10 ** (-0.4 * (abs_r + 21.0) * 0.45) * rng.lognormal(0, 0.2, n),
        4.0 * 10 ** (-0.4 * (abs_r + 21.4) * 0.55) * rng.lognormal(0, 0.2, n),
    )
    hlr = np.clip(size_kpc / kpc, 0.6, 12.0)

    df = pd.DataFrame(
        {
            "cls": np.where(is_spiral, "spiral", "elliptical"),
            "z": z,
            "mag_r": mag_r,
            "hlr": hlr,
            # ellipticals are rounder; discs are seen at any inclination
            # q = cos(inclination) with random orientations for discs
            "q": np.where(is_spiral, np.clip(rng.random(n), 0.25, 1.0), rng.uniform(0.55, 1.0, n)),
            "pa": rng.uniform(0, 180, n),
            "sersic_n": np.where(is_spiral, 1.0, rng.uniform(3.0, 5.0, n)),
            "bulge_frac": np.where(is_spiral, rng.uniform(0.05, 0.35, n), 1.0),
            "bulge_hlr": np.where(is_spiral, hlr * rng.uniform(0.12, 0.25, n), hlr),
            "n_arms": np.where(is_spiral, rng.choice([2, 2, 2, 3], n), 0),
            "pitch": np.where(is_spiral, rng.uniform(12.0, 28.0, n), 0.0),
            "arm_strength": np.where(is_spiral, rng.uniform(0.5, 0.9, n), 0.0),
            "arm_phase": rng.uniform(0, 2 * np.pi, n),
        }
    )
    return df


def _stars(rng: np.random.Generator, n: int, bright_fraction: float = 0.15) -> pd.DataFrame:
    bright = rng.random(n) < bright_fraction
    mag_r = np.where(bright, rng.uniform(12.5, 16.0, n), rng.uniform(16.0, 21.5, n))
    return pd.DataFrame(
        {
            "cls": np.full(n, "star"),
            "z": 0.0,
            "mag_r": mag_r,
            "hlr": 0.0,
            "q": 1.0,
            "pa": 0.0,
            "sersic_n": 0.0,
            "bulge_frac": 0.0,
            "bulge_hlr": 0.0,
            "n_arms": 0,
            "pitch": 0.0,
            "arm_strength": 0.0,
            "arm_phase": 0.0,
            "star_gr": rng.uniform(-0.1, 1.4, n),
        }
    )


def _band_mags(df: pd.DataFrame, bands: tuple[str, ...]) -> None:
    red, blue = COLOURS["red"], COLOURS["blue"]
    f_r = 10 ** (-0.4 * df["mag_r"].to_numpy())
    bt = df["bulge_frac"].to_numpy()
    star = (df["cls"] == "star").to_numpy()
    gr = df.get("star_gr", pd.Series(0.0, index=df.index)).fillna(0.0).to_numpy()
    for b in bands:
        if b == "r":
            continue
        gal = -2.5 * np.log10(
            f_r * (bt * 10 ** (-0.4 * red[b]) + (1 - bt) * 10 ** (-0.4 * blue[b]))
        )
        # stellar locus, roughly: colours scale with g-r
        scale = {"u": 1.8, "g": 1.0, "i": -0.45, "z": -0.75}[b]
        off = {"u": 0.9, "g": 0.0, "i": 0.0, "z": 0.0}[b]
        st = df["mag_r"].to_numpy() + gr * scale + off
        df[f"mag_{b}"] = np.where(star, st, gal)


def make_population(
    layout: SkyLayout,
    n_objects: int,
    unlabelled_fraction: float,
    star_fraction: float,
    spiral_fraction: float,
    blend_fraction: float,
    seed: int,
    bands: tuple[str, ...] = ("u", "g", "r", "i", "z"),
    regime: Regime | None = None,
) -> pd.DataFrame:
    """Draw the truth table for a mock survey.

    Parameters
    ----------
    layout
        Where the areas are; objects are spread uniformly over them.
    n_objects
        Number of objects in all areas together (galaxies and stars).
    unlabelled_fraction
        Fraction of objects placed in the des-only area.
    star_fraction, spiral_fraction, blend_fraction
        Fractions of stars among objects, of spirals among galaxies, and of
        galaxies moved next to another galaxy (blends).
    seed
        The same seed gives the same table.
    bands
        Bands to give magnitudes in.
    regime
        Redshift limit, bright stars and uncatalogued neighbours (default:
        the ``default`` regime).

    Returns
    -------
    pandas.DataFrame
        One row per object: ``truth_id, area, ra, dec, cls, z, mag_<band>, hlr
        (arcsec), q, pa (deg), sersic_n, bulge_frac, bulge_hlr, n_arms, pitch,
        arm_strength, arm_phase, blend, catalogued`` (``blend`` is the truth_id
        of the neighbour the object was placed next to, or -1; objects with
        ``catalogued`` False are the regime's unlisted neighbours, numbered
        after the ``n_objects`` others).
    """
    regime = regime or Regime("default")
    if n_objects < 1:
        raise ValueError(f"n_objects must be at least 1, got {n_objects}")
    rng = np.random.default_rng(seed)
    n_star = round(n_objects * star_fraction)
    n_gal = n_objects - n_star
    df = pd.concat(
        [
            _galaxies(rng, n_gal, spiral_fraction, regime.z_max),
            _stars(rng, n_star, regime.bright_star_fraction),
        ],
        ignore_index=True,
    )
    df = df.iloc[rng.permutation(len(df))].reset_index(drop=True)
    _band_mags(df, tuple(dict.fromkeys(("g", "r", "i", *bands))))

    n_unl = round(n_objects * unlabelled_fraction) if "des-only" in layout.areas else 0
    area = np.array(["overlap"] * (n_objects - n_unl) + ["des-only"] * n_unl)
    x = np.empty(n_objects)
    y = np.empty(n_objects)
    for name in ("overlap", "des-only"):
        sel = area == name
        if not sel.any():
            continue
        a = layout.areas[name]
        x[sel] = rng.uniform(a.x0, a.x1, sel.sum())
        y[sel] = rng.uniform(a.y0, a.y1, sel.sum())

    # blends: move some galaxies next to another galaxy of the same area
    blend = np.full(n_objects, -1, dtype=np.int64)
    gal_idx = np.flatnonzero(df["cls"].to_numpy() != "star")
    n_blend = round(len(gal_idx) * blend_fraction)
    if n_blend and len(gal_idx) > 1:
        movers = rng.choice(gal_idx, n_blend, replace=False)
        for m in movers:
            same = gal_idx[(area[gal_idx] == area[m]) & (gal_idx != m) & (blend[gal_idx] < 0)]
            if len(same) == 0:
                continue
            host = rng.choice(same)
            sep = (df.at[m, "hlr"] + df.at[host, "hlr"]) * rng.uniform(0.8, 1.4)
            theta = rng.uniform(0, 2 * np.pi)
            x[m] = x[host] + sep * np.cos(theta)
            y[m] = y[host] + sep * np.sin(theta)
            blend[m] = host

    ra, dec = layout.to_sky(x, y)
    df.insert(0, "truth_id", np.arange(n_objects, dtype=np.int64))
    df.insert(1, "area", area)
    df.insert(2, "ra", ra)
    df.insert(3, "dec", dec)
    df["blend"] = blend
    df["catalogued"] = True
    df = df.drop(columns=[c for c in ("star_gr",) if c in df])
    extra = _uncatalogued(df, layout, x, y, gal_idx, spiral_fraction, seed, regime, bands)
    return pd.concat([df, extra], ignore_index=True) if len(extra) else df


def _uncatalogued(
    df: pd.DataFrame,
    layout: SkyLayout,
    x: np.ndarray,
    y: np.ndarray,
    gal_idx: np.ndarray,
    spiral_fraction: float,
    seed: int,
    regime: Regime,
    bands: tuple[str, ...],
) -> pd.DataFrame:
    """Galaxies next to catalogued ones that no source table lists (their own
    random stream, so the catalogued objects are those of the same seed)."""
    n = round(len(gal_idx) * regime.uncatalogued_fraction)
    if n == 0 or len(gal_idx) == 0:
        return df.iloc[:0]
    rng = np.random.default_rng([seed, 11])
    extra = _galaxies(rng, n, spiral_fraction, regime.z_max)
    _band_mags(extra, tuple(dict.fromkeys(("g", "r", "i", *bands))))
    host = rng.choice(gal_idx, n)
    sep = (extra["hlr"].to_numpy() + df["hlr"].to_numpy()[host]) * rng.uniform(0.8, 2.0, n)
    theta = rng.uniform(0, 2 * np.pi, n)
    ra, dec = layout.to_sky(x[host] + sep * np.cos(theta), y[host] + sep * np.sin(theta))
    extra.insert(0, "truth_id", np.arange(len(df), len(df) + n, dtype=np.int64))
    extra.insert(1, "area", df["area"].to_numpy()[host])
    extra.insert(2, "ra", ra)
    extra.insert(3, "dec", dec)
    extra["blend"] = df["truth_id"].to_numpy()[host]
    extra["catalogued"] = False
    return extra[df.columns]
