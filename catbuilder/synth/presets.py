"""Survey presets for the mock surveys: pixel scale, seeing, depth, sky."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["PRESETS", "SurveyPreset", "get_preset"]

ALL_BANDS = ("u", "g", "r", "i", "z")


@dataclass(frozen=True)
class SurveyPreset:
    """Observing conditions of a mock survey.

    Parameters
    ----------
    name
        Preset name, e.g. ``"des-like"``.
    pixel_scale
        Arcsec per pixel.
    seeing
        PSF FWHM in arcsec per band.
    depth
        5-sigma point-source limiting magnitude per band (in a 2 FWHM aperture);
        the zero point is derived from it, the sky brightness and the gain.
    sky_brightness
        Sky surface brightness in mag/arcsec^2 per band.
    saturation_mag
        Magnitude of a point source whose peak pixel reaches saturation.
    gain
        Electrons per ADU.
    read_noise
        Read noise in electrons.
    tile_scale
        Tile side relative to the configured ``synth.tile-arcmin``.
    astrometric_sigma
        Scatter of catalogued positions in arcsec (so that crossmatching
        between presets is a real match, not an identity).
    id_offset
        Added to the truth index to make this survey's object ids.
    areas
        Names of the sky areas the survey covers (``overlap``, ``des-only``).
    """

    name: str
    pixel_scale: float
    seeing: dict[str, float]
    depth: dict[str, float]
    sky_brightness: dict[str, float]
    saturation_mag: float
    gain: float
    read_noise: float
    tile_scale: float
    astrometric_sigma: float
    id_offset: int
    areas: tuple[str, ...] = field(default=("overlap",))

    def zeropoint(self, band: str) -> float:
        """Magnitude of a source giving 1 ADU in total, from the depth."""
        fwhm_pix = self.seeing[band] / self.pixel_scale
        area = math.pi * fwhm_pix**2  # aperture of radius 1 FWHM
        # 5 sigma: g*10^(-0.4(m5-zp)) = 5 sqrt(area * g * 10^(-0.4(sky-zp)) ps^2)
        # solve for zp:
        m5, sky, ps, g = self.depth[band], self.sky_brightness[band], self.pixel_scale, self.gain
        # let F = 10^(0.4 zp): g F 10^(-0.4 m5) = 5 sqrt(area g F 10^(-0.4 sky) ps^2)
        # => sqrt(F) = 5 sqrt(area g 10^(-0.4 sky) ps^2) / (g 10^(-0.4 m5))
        sqrt_f = 5.0 * math.sqrt(area * g * 10 ** (-0.4 * sky) * ps**2) / (g * 10 ** (-0.4 * m5))
        return 2.5 * math.log10(sqrt_f**2)

    def flux(self, mag: float, band: str) -> float:
        """Total ADU of a source of magnitude ``mag``."""
        return 10 ** (-0.4 * (mag - self.zeropoint(band)))

    def sky_level(self, band: str) -> float:
        """Sky in ADU per pixel."""
        return self.flux(self.sky_brightness[band], band) * self.pixel_scale**2


_SDSS = SurveyPreset(
    name="sdss-like",
    pixel_scale=0.396,
    seeing={"u": 1.55, "g": 1.45, "r": 1.40, "i": 1.35, "z": 1.35},
    depth={"u": 22.0, "g": 22.2, "r": 22.2, "i": 21.3, "z": 20.5},
    sky_brightness={"u": 22.1, "g": 21.8, "r": 20.9, "i": 20.2, "z": 18.9},
    saturation_mag=14.0,
    gain=4.7,
    read_noise=5.0,
    tile_scale=1.25,
    astrometric_sigma=0.08,
    id_offset=1237660000000000000,
    areas=("overlap",),
)

_DES = SurveyPreset(
    name="des-like",
    pixel_scale=0.263,
    seeing={"u": 1.05, "g": 0.95, "r": 0.90, "i": 0.88, "z": 0.85},
    depth={"u": 23.5, "g": 23.7, "r": 23.7, "i": 22.8, "z": 22.0},
    sky_brightness={"u": 22.3, "g": 22.0, "r": 21.1, "i": 20.4, "z": 19.1},
    saturation_mag=15.5,
    gain=6.0,
    read_noise=7.0,
    tile_scale=1.0,
    astrometric_sigma=0.04,
    id_offset=100000000,
    areas=("overlap", "des-only"),
)

PRESETS: dict[str, SurveyPreset] = {p.name: p for p in (_SDSS, _DES)}


def get_preset(name: str | SurveyPreset) -> SurveyPreset:
    """Return a preset by name (or pass one through).

    Raises
    ------
    ValueError
        For an unknown name, listing the known ones.
    """
    if isinstance(name, SurveyPreset):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown survey preset {name!r}; known presets: {', '.join(PRESETS)}"
        ) from None
