"""Observing regimes of the mock surveys: the default one and a hard one.

The default regime shows the paper's setting: galaxies out to z = 0.14,
labels for every galaxy of the overlap area, one PSF per band. The ``hard``
regime shows what a deep survey classifier meets: galaxies out to z = 0.22
(fainter, smaller, of lower surface brightness), a shallower depth (lower
S/N), a PSF that varies from tile to tile, more saturated stars, hot
columns, neighbours no source table lists, a few percent of wrong labels,
and labels only as deep as Galaxy Zoo's (SDSS main sample, r < 17.7).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["REGIMES", "Regime", "get_regime"]


@dataclass(frozen=True)
class Regime:
    """What makes a mock survey easy or hard, beyond its preset.

    Parameters
    ----------
    name
        ``"default"`` or ``"hard"``.
    z_max
        Redshift of the farthest galaxy (farther: fainter and smaller).
    depth_offset
        Magnitudes added to every preset's 5-sigma depth (negative: noisier).
    seeing_range
        Each tile's PSF FWHM is the preset's times a factor drawn uniformly
        from this range (per tile, the same in every band).
    bright_star_fraction
        Fraction of stars drawn between r = 12.5 and 16 (most saturate).
    hot_columns
        Hot columns per tile and band: pixels at up to the saturation level,
        with zero weight.
    uncatalogued_fraction
        Extra galaxies, as a fraction of the catalogued ones, drawn from the
        same population and placed next to a catalogued galaxy; they are
        rendered but no source table lists them (``catalogued`` is False in
        the truth).
    label_noise
        Fraction of labelled galaxies whose spiral and elliptical vote
        fractions are swapped (``flipped`` in the label table).
    label_mag_limit
        Galaxy Zoo labels only for galaxies brighter than this sdss-like r
        magnitude (``None``: every galaxy of the overlap area).
    blend_fraction
        Galaxies moved next to another catalogued galaxy (``None``: the
        ``synth.blend-fraction`` setting).
    """

    name: str
    z_max: float = 0.14
    depth_offset: float = 0.0
    seeing_range: tuple[float, float] = (1.0, 1.0)
    bright_star_fraction: float = 0.15
    hot_columns: int = 0
    uncatalogued_fraction: float = 0.0
    label_noise: float = 0.0
    label_mag_limit: float | None = None
    blend_fraction: float | None = None


REGIMES: dict[str, Regime] = {
    r.name: r
    for r in (
        Regime("default"),
        Regime(
            "hard",
            z_max=0.22,
            depth_offset=-0.7,
            seeing_range=(0.85, 1.6),
            bright_star_fraction=0.4,
            hot_columns=3,
            uncatalogued_fraction=0.3,
            label_noise=0.03,
            label_mag_limit=17.7,
            blend_fraction=0.12,
        ),
    )
}


def get_regime(name: str | Regime) -> Regime:
    """Return a regime by name (or pass one through).

    Raises
    ------
    ValueError
        For an unknown name, listing the known ones.
    """
    if isinstance(name, Regime):
        return name
    try:
        return REGIMES[name]
    except KeyError:
        raise ValueError(
            f"unknown mock regime {name!r}; known regimes: {', '.join(REGIMES)}"
        ) from None
