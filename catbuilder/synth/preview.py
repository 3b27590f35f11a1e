"""PNG previews of mock surveys, so a person can look at what was made."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["write_previews"]


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
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from astropy.nddata import Cutout2D
    from astropy.wcs import WCS

    from catbuilder.evaluation.plots import display_rgb, plot_tile, pyplot, scale_bar

    plt = pyplot()
    out_prefix = Path(out_prefix)
    bands = ["g", "r", "i"]
    data, zp = {}, []
    for band in bands:
        with fits.open(tile_paths[band]) as hdul:
            header = hdul[0].header
            data[band] = hdul[0].data.astype(np.float32)
            zp.append(float(header.get("MAGZERO", 22.5)))
    wcs = WCS(header)
    scale = float(header.get("PIXSCALE", 0.263))
    magzero = pd.DataFrame([dict(zip([f"magzero_{b}" for b in bands], zp))])
    # the preprocessing stretch, as in every other figure and in the model's input
    tile_png = plot_tile(
        np.stack([data[b] for b in bands]),
        magzero,
        bands,
        wcs,
        scale,
        out_prefix.parent / f"{out_prefix.name}_tile.png",
        title=f"{Path(survey_dir).name}: tile {header.get('TILENAME', '')} (RGB = i, r, g)",
    )
    written = [tile_png]

    in_tile = sources[sources["tile"] == header.get("TILENAME")]
    classes = [c for c in ("spiral", "elliptical", "star") if (in_tile["cls"] == c).any()]
    size_pix = round(cutout_arcsec / scale)
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
            cuts = np.stack(
                [
                    Cutout2D(data[b], pos, size_pix, wcs=wcs, mode="partial", fill_value=0.0).data
                    for b in bands
                ]
            )
            axes[row, col].imshow(display_rgb(cuts[None], magzero, bands)[0], origin="lower")
            scale_bar(axes[row, col], scale, size_pix)
            axes[row, col].set_title(f"true {cls}, r={obj['mag_r']:.1f}", fontsize=8)
    fig.suptitle(f"{Path(survey_dir).name}: brightest objects of each true class", fontsize=10)
    objects_png = out_prefix.parent / f"{out_prefix.name}_objects.png"
    fig.tight_layout()
    fig.savefig(objects_png, dpi=100)
    plt.close(fig)
    written.append(objects_png)
    return written
