"""PNG previews of mock surveys, so a person can look at what was made."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["rgb_image", "write_previews"]


def rgb_image(
    r: np.ndarray,
    g: np.ndarray,
    b: np.ndarray,
    noise: float | None = None,
    q: float = 8.0,
) -> np.ndarray:
    """Lupton et al. (2004) asinh colour composite as uint8 (ny, nx, 3).

    Parameters
    ----------
    r, g, b
        Images for the red, green and blue channels (the paper's i, r, g).
    noise
        Noise level used to set the stretch; estimated from the data if None.
    q
        Asinh softening parameter.
    """
    from astropy.visualization import make_lupton_rgb

    stack = np.stack([r, g, b]).astype(np.float64)
    stack = np.nan_to_num(stack, nan=0.0)
    if noise is None:
        med = np.median(stack)
        noise = 1.4826 * np.median(np.abs(stack - med)) or 1.0
    return make_lupton_rgb(*stack, minimum=-noise, stretch=10 * noise, Q=q)


def write_previews(
    survey_dir: str | Path,
    tile_paths: dict[str, str],
    sources: pd.DataFrame,
    out_prefix: str | Path,
    per_class: int = 4,
    cutout_arcsec: float = 20.0,
) -> list[Path]:
    """Write a tile composite and a gallery of objects per truth class.

    Parameters
    ----------
    survey_dir
        The survey's directory (only used for titles).
    tile_paths
        Band -> FITS path of one tile; needs g, r and i.
    sources
        The survey's source table (``ra, dec, cls`` and ``tile``).
    out_prefix
        Output path prefix: ``<prefix>_tile.png`` and ``<prefix>_objects.png``.
    per_class
        Objects shown per class.
    cutout_arcsec
        Side of each gallery cutout.

    Returns
    -------
    list of Path
        The files written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from astropy.nddata import Cutout2D
    from astropy.wcs import WCS

    out_prefix = Path(out_prefix)
    data = {}
    noise = 0.0
    for band in ("i", "r", "g"):
        with fits.open(tile_paths[band]) as hdul:
            header = hdul[0].header
            # calibrate to nanomaggies so the channels balance
            nmgy = 10 ** (-0.4 * (float(header.get("MAGZERO", 22.5)) - 22.5))
            data[band] = hdul[0].data.astype(np.float64) * nmgy
            noise = max(noise, float(header.get("SKYSIGMA", 1.0)) * nmgy)
    wcs = WCS(header)
    rgb = rgb_image(data["i"], data["r"], data["g"], noise=noise)

    written = []
    fig, ax = plt.subplots(figsize=(8, 8), dpi=100)
    ax.imshow(rgb, origin="lower")
    ax.set_title(f"{Path(survey_dir).name}: tile {header.get('TILENAME', '')} (i, r, g)")
    ax.set_axis_off()
    tile_png = out_prefix.parent / f"{out_prefix.name}_tile.png"
    fig.savefig(tile_png, bbox_inches="tight")
    plt.close(fig)
    written.append(tile_png)

    in_tile = sources[sources["tile"] == header.get("TILENAME")]
    classes = [c for c in ("spiral", "elliptical", "star") if (in_tile["cls"] == c).any()]
    size_pix = round(cutout_arcsec / float(header.get("PIXSCALE", 0.263)))
    fig, axes = plt.subplots(
        max(1, len(classes)),
        per_class,
        figsize=(2 * per_class, 2.1 * max(1, len(classes))),
        squeeze=False,
    )
    for ax in axes.ravel():
        ax.set_axis_off()
    for row, cls in enumerate(classes):
        chosen = in_tile[in_tile["cls"] == cls].sort_values("mag_r").head(per_class)
        for col, (_, obj) in enumerate(chosen.iterrows()):
            pos = SkyCoord(obj["ra"], obj["dec"], unit="deg")
            cuts = [
                Cutout2D(data[b], pos, size_pix, wcs=wcs, mode="partial", fill_value=0.0).data
                for b in ("i", "r", "g")
            ]
            axes[row, col].imshow(rgb_image(*cuts, noise=noise), origin="lower")
            axes[row, col].set_title(f"{cls} r={obj['mag_r']:.1f}", fontsize=8)
    objects_png = out_prefix.parent / f"{out_prefix.name}_objects.png"
    fig.tight_layout()
    fig.savefig(objects_png, dpi=100)
    plt.close(fig)
    written.append(objects_png)
    return written
