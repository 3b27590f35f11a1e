"""Render one mock tile in every band with GalSim and write it as FITS.

Each band's file holds the science image (primary HDU, float32, sky
subtracted, ADU, TAN WCS), an inverse-variance ``WEIGHT`` extension (zero at
saturated pixels) and a ``PSF`` extension sampled at the pixel scale.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from catbuilder.synth.layout import TileSpec
from catbuilder.synth.population import COLOURS
from catbuilder.synth.presets import SurveyPreset

__all__ = ["render_tile", "spiral_disc_image"]

_PSF_BETA = 3.0
_PSF_STAMP = 25


def spiral_disc_image(
    hlr: float,
    n_arms: int,
    pitch_deg: float,
    strength: float,
    phase: float,
    npix: int = 64,
) -> tuple[np.ndarray, float]:
    """A face-on exponential disc modulated by logarithmic spiral arms.

    Parameters
    ----------
    hlr
        Half-light radius of the unmodulated disc in arcsec.
    n_arms, pitch_deg, strength, phase
        Number of arms, pitch angle, arm contrast (0..1) and rotation.
    npix
        Grid size; the grid spans +-4 half-light radii.

    Returns
    -------
    image, scale
        Normalised image (sum 1) and its pixel scale in arcsec.
    """
    scale = 8.0 * hlr / npix
    rs = hlr / 1.678
    c = (np.arange(npix) - (npix - 1) / 2.0) * scale
    x, y = np.meshgrid(c, c)
    r = np.hypot(x, y) + 1e-3 * scale
    theta = np.arctan2(y, x)
    wind = np.log(r / rs) / math.tan(math.radians(pitch_deg))
    arms = (0.5 * (1.0 + np.cos(n_arms * (theta - wind) - phase))) ** 3
    # arms fade into the centre, where the bulge dominates
    envelope = 1.0 - np.exp(-((r / (0.6 * rs)) ** 2))
    img = np.exp(-r / rs) * ((1.0 - strength) + 2.0 * strength * arms * envelope)
    img /= img.sum()
    return img.astype(np.float64), scale


def _stamp_size(row: pd.Series, fwhm: float, pixel_scale: float, bright: bool) -> int:
    if row["cls"] == "star":
        n = 96 if bright else 32
    else:
        n = int(2 * math.ceil(max(5.0 * row["hlr"], 2.5 * fwhm) / pixel_scale)) + 1
    return int(min(max(n, 25), 301)) | 1  # odd, so the centre is a pixel


class _Shapes:
    """Band-independent light profiles of the tile's objects, built once."""

    def __init__(self, objects: pd.DataFrame):
        import galsim

        self.galsim = galsim
        self.gsp = galsim.GSParams(folding_threshold=1e-2, maxk_threshold=2e-3)
        self.cache: dict[int, tuple] = {}
        self.objects = objects

    def components(self, row: pd.Series) -> tuple:
        tid = int(row["truth_id"])
        if tid in self.cache:
            return self.cache[tid]
        g = self.galsim
        shear = g.Shear(q=float(row["q"]), beta=float(row["pa"]) * g.degrees)
        if row["cls"] == "star":
            comps = (("point", g.DeltaFunction(flux=1.0, gsparams=self.gsp)),)
        elif row["cls"] == "elliptical":
            prof = g.Sersic(
                n=float(row["sersic_n"]),
                half_light_radius=float(row["hlr"]),
                trunc=8.0 * float(row["hlr"]),
                gsparams=self.gsp,
            ).shear(shear)
            comps = (("red", prof),)
        else:
            arr, scale = spiral_disc_image(
                float(row["hlr"]),
                int(row["n_arms"]),
                float(row["pitch"]),
                float(row["arm_strength"]),
                float(row["arm_phase"]),
            )
            disc = g.InterpolatedImage(
                g.Image(arr, scale=scale), flux=1.0, gsparams=self.gsp
            ).shear(shear)
            bulge = g.DeVaucouleurs(
                half_light_radius=float(row["bulge_hlr"]),
                trunc=8.0 * float(row["bulge_hlr"]),
                gsparams=self.gsp,
            ).shear(g.Shear(q=max(float(row["q"]), 0.7), beta=float(row["pa"]) * g.degrees))
            comps = (("red", bulge), ("blue", disc))
        self.cache[tid] = comps
        return comps


def _component_fluxes(row: pd.Series, band: str, preset: SurveyPreset) -> dict[str, float]:
    total = preset.flux(float(row[f"mag_{band}"]), band)
    if row["cls"] != "spiral":
        return {"point" if row["cls"] == "star" else "red": total}
    bt = float(row["bulge_frac"])
    wr = bt * 10 ** (-0.4 * COLOURS["red"][band])
    wb = (1 - bt) * 10 ** (-0.4 * COLOURS["blue"][band])
    return {"red": total * wr / (wr + wb), "blue": total * wb / (wr + wb)}


def render_tile(
    tile: TileSpec,
    objects: pd.DataFrame,
    preset: SurveyPreset,
    bands: tuple[str, ...],
    seed: int,
    outdir: str | Path,
    survey_index: int = 0,
    tile_index: int = 0,
    seeing_factor: float = 1.0,
    hot_columns: int = 0,
) -> dict:
    """Render ``objects`` onto one tile in every band and write the files.

    Parameters
    ----------
    tile
        Tile geometry.
    objects
        Truth rows of the objects whose light may fall on the tile.
    preset
        Observing conditions.
    bands
        Bands to render, one file each.
    seed, survey_index, tile_index
        Seed the noise of each (survey, tile, band) independently.
    outdir
        Directory for ``<tile>_<band>.fits``.
    seeing_factor
        This tile's PSF FWHM relative to the preset's (the zero point stays
        the preset's).
    hot_columns
        Columns per band set to up to the saturation level, with zero weight.

    Returns
    -------
    dict
        ``tile``, ``paths`` (per band) and ``n_saturated`` pixels per band.
    """
    import galsim
    from astropy.io import fits

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    wcs = tile.wcs()
    header = wcs.to_header()
    header.setdefault("PC1_2", 0.0)  # explicit zeros, for readers (GalSim) that need them
    header.setdefault("PC2_1", 0.0)
    gwcs = galsim.GSFitsWCS(header=header)
    ox, oy = wcs.all_world2pix(objects["ra"].to_numpy(), objects["dec"].to_numpy(), 1)
    shapes = _Shapes(objects)
    ps = preset.pixel_scale
    paths: dict[str, str] = {}
    n_sat: dict[str, int] = {}

    for bi, band in enumerate(bands):
        fwhm = preset.seeing[band] * seeing_factor
        psf = galsim.Moffat(beta=_PSF_BETA, fwhm=fwhm, gsparams=shapes.gsp)
        image = galsim.ImageF(tile.nx, tile.ny, wcs=gwcs)
        sat_flux = preset.flux(preset.saturation_mag, band)
        peak_frac = float(psf.drawImage(nx=_PSF_STAMP, ny=_PSF_STAMP, scale=ps).array.max())
        saturation = preset.sky_level(band) + sat_flux * peak_frac
        for k, (_, row) in enumerate(objects.iterrows()):
            pos = galsim.PositionD(float(ox[k]), float(oy[k]))
            bright = float(row[f"mag_{band}"]) < preset.saturation_mag + 2.0
            n = _stamp_size(row, fwhm, ps, bright)
            fluxes = _component_fluxes(row, band, preset)
            prof = galsim.Add([c.withFlux(fluxes[kind]) for kind, c in shapes.components(row)])
            final = galsim.Convolve(prof, psf, gsparams=shapes.gsp)
            stamp = final.drawImage(nx=n, ny=n, center=pos, wcs=gwcs.local(image_pos=pos))
            bounds = stamp.bounds & image.bounds
            if bounds.isDefined():
                image[bounds] += stamp[bounds]

        rng = np.random.default_rng([seed, survey_index, tile_index, bi])
        sky = preset.sky_level(band)
        signal = image.array.astype(np.float64)
        var_e = (sky + np.clip(signal, 0, None)) * preset.gain + preset.read_noise**2
        noisy = signal + rng.standard_normal(signal.shape) * np.sqrt(var_e) / preset.gain
        saturated = noisy + sky >= saturation
        noisy[saturated] = saturation - sky
        sky_var = (sky * preset.gain + preset.read_noise**2) / preset.gain**2
        weight = np.full(signal.shape, 1.0 / sky_var, dtype=np.float32)
        weight[saturated] = 0.0
        if hot_columns:
            cols = rng.choice(signal.shape[1], hot_columns, replace=False)
            level = (saturation - sky) * rng.uniform(0.2, 1.0, hot_columns)
            noisy[:, cols] = level
            weight[:, cols] = 0.0

        hdr = header.copy()
        hdr["BAND"] = (band, "filter band")
        hdr["FILTER"] = band
        hdr["SURVEY"] = (preset.name, "catbuilder mock survey preset")
        hdr["TILENAME"] = tile.name
        hdr["BUNIT"] = "adu"
        hdr["MAGZERO"] = (round(preset.zeropoint(band), 4), "mag of 1 ADU")
        hdr["GAIN"] = (preset.gain, "e-/ADU")
        hdr["RDNOISE"] = (preset.read_noise, "e-")
        hdr["SKYLEVEL"] = (round(sky, 4), "ADU/pixel, subtracted")
        hdr["SKYSIGMA"] = (round(math.sqrt(sky_var), 4), "ADU/pixel")
        hdr["SATURATE"] = (round(saturation - sky, 3), "ADU, after sky subtraction")
        hdr["PSF_FWHM"] = (round(fwhm, 4), "arcsec, Moffat beta=3")
        hdr["PIXSCALE"] = (ps, "arcsec/pixel")
        hdr["SYNSEED"] = (seed, "catbuilder.synth seed")
        primary = fits.PrimaryHDU(noisy.astype(np.float32), header=hdr)
        whdr = header.copy()
        whdr["EXTNAME"] = "WEIGHT"
        whdr["BUNIT"] = "1/adu**2"
        wext = fits.ImageHDU(weight, header=whdr, name="WEIGHT")
        psf_img = psf.drawImage(nx=_PSF_STAMP, ny=_PSF_STAMP, scale=ps).array.astype(np.float32)
        pext = fits.ImageHDU(psf_img, name="PSF")
        pext.header["PSF_FWHM"] = round(fwhm, 4)
        path = outdir / f"{tile.name}_{band}.fits"
        tmp = path.with_suffix(".fits.part")
        # with the FITS checksum keywords, as survey pipelines write them: a run
        # knows the tile by its headers (catbuilder.fingerprints)
        fits.HDUList([primary, wext, pext]).writeto(tmp, overwrite=True, checksum=True)
        tmp.replace(path)  # readers never see a half-written file
        paths[band] = str(path)
        n_sat[band] = int(saturated.sum())
    return {"tile": tile.name, "paths": paths, "n_saturated": n_sat}
