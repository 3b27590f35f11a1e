"""Sky layout of a mock survey: areas, the frame they are drawn in, tiles."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS

__all__ = ["Area", "SkyLayout", "TileSpec", "tan_wcs"]


def tan_wcs(ra: float, dec: float, scale_arcsec: float, nx: int, ny: int) -> WCS:
    """A north-up gnomonic (TAN) WCS centred on ``(ra, dec)``.

    Parameters
    ----------
    ra, dec
        Tangent point in degrees, at the centre of an ``nx`` x ``ny`` image.
    scale_arcsec
        Pixel scale in arcsec.
    """
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
    s = scale_arcsec / 3600.0
    w.wcs.cd = np.array([[-s, 0.0], [0.0, s]])
    w.wcs.radesys = "ICRS"
    w.wcs.equinox = 2000.0
    w.pixel_shape = (nx, ny)
    return w


@dataclass(frozen=True)
class Area:
    """A rectangle in the layout frame, in arcsec from the frame centre."""

    name: str
    x0: float
    x1: float
    y0: float
    y1: float

    @property
    def area_arcsec2(self) -> float:
        return (self.x1 - self.x0) * (self.y1 - self.y0)


@dataclass(frozen=True)
class TileSpec:
    """One tile of one survey: its name, sky centre and pixel grid."""

    name: str
    area: str
    ra: float
    dec: float
    nx: int
    ny: int
    pixel_scale: float

    def wcs(self) -> WCS:
        return tan_wcs(self.ra, self.dec, self.pixel_scale, self.nx, self.ny)


class SkyLayout:
    """Where the overlap area and the des-only area lie on the sky.

    The layout frame is a TAN projection with 1 arcsec units centred on
    ``center``; areas are rectangles in it. The overlap area is sized for
    ``n_overlap`` objects at ``objects_per_tile`` per ``tile_arcmin`` tile;
    the des-only area lies south of it, separated by a gap of one tile.
    """

    def __init__(
        self,
        center: tuple[float, float],
        n_overlap: int,
        n_unlabelled: int,
        tile_arcmin: float,
        objects_per_tile: float,
        tile_overlap_arcsec: float,
    ) -> None:
        self.center = (float(center[0]), float(center[1]))
        self.tile_arcsec = tile_arcmin * 60.0
        self.tile_overlap_arcsec = tile_overlap_arcsec
        self.frame = tan_wcs(self.center[0], self.center[1], 1.0, 1, 1)
        t = self.tile_arcsec
        areas = [self._rect("overlap", n_overlap, objects_per_tile, 0.0)]
        if n_unlabelled > 0:
            top = areas[0].y0 - t  # one empty tile between the areas
            areas.append(self._rect("des-only", n_unlabelled, objects_per_tile, top, below=True))
        self.areas = {a.name: a for a in areas}

    def _rect(self, name: str, n: int, density: float, y_ref: float, below: bool = False) -> Area:
        n_tiles = max(1.0, n / density)
        nx = max(1, math.ceil(math.sqrt(n_tiles)))
        ny = max(1, math.ceil(n_tiles / nx))
        # the side is a whole number of tile steps so both surveys tile it evenly
        w = nx * self.tile_arcsec
        h = ny * self.tile_arcsec
        if below:
            return Area(name, -w / 2, w / 2, y_ref - h, y_ref)
        return Area(name, -w / 2, w / 2, -h / 2, h / 2)

    def to_sky(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frame offsets (arcsec; x grows to the east) to RA, Dec in degrees."""
        # frame pixel 1 is the tangent point; RA grows to the left (CD1_1 < 0)
        ra, dec = self.frame.all_pix2world(-np.asarray(x) + 1.0, np.asarray(y) + 1.0, 1)
        return np.asarray(ra) % 360.0, np.asarray(dec)

    def to_frame(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """RA, Dec in degrees to frame offsets in arcsec."""
        px, py = self.frame.all_world2pix(np.asarray(ra), np.asarray(dec), 1)
        return -(np.asarray(px) - 1.0), np.asarray(py) - 1.0

    def tiles(
        self, survey: str, area_names: tuple[str, ...], pixel_scale: float, tile_scale: float
    ) -> list[TileSpec]:
        """Tile the named areas for one survey.

        Tiles are squares of ``tile_arcmin * tile_scale`` on a side, stepping by
        the side minus the configured overlap, so neighbouring tiles share a
        margin (objects there appear in two tiles).
        """
        side = self.tile_arcsec * tile_scale
        step = side - self.tile_overlap_arcsec
        npix = math.ceil(side / pixel_scale)
        out: list[TileSpec] = []
        for aname in area_names:
            if aname not in self.areas:
                continue
            a = self.areas[aname]
            nx = max(1, math.ceil((a.x1 - a.x0 - side) / step - 1e-9) + 1)
            ny = max(1, math.ceil((a.y1 - a.y0 - side) / step - 1e-9) + 1)
            # centre the grid on the area
            span_x = side + (nx - 1) * step
            span_y = side + (ny - 1) * step
            cx0 = (a.x0 + a.x1) / 2 - span_x / 2 + side / 2
            cy0 = (a.y0 + a.y1) / 2 - span_y / 2 + side / 2
            for j in range(ny):
                for i in range(nx):
                    cx, cy = cx0 + i * step, cy0 + j * step
                    ra, dec = self.to_sky(np.array([cx]), np.array([cy]))
                    tag = "O" if aname == "overlap" else "U"
                    name = f"{survey.split('-')[0].upper()}{tag}{j:03d}{i:03d}"
                    out.append(
                        TileSpec(name, aname, float(ra[0]), float(dec[0]), npix, npix, pixel_scale)
                    )
        return out
