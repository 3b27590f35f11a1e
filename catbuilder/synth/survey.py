"""Build a mock survey: population, tiles rendered on Dask, tables, previews."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from catbuilder import config
from catbuilder.synth.labels import galaxy_zoo_votes
from catbuilder.synth.layout import SkyLayout, TileSpec
from catbuilder.synth.population import make_population
from catbuilder.synth.presets import ALL_BANDS, PRESETS, SurveyPreset, get_preset
from catbuilder.synth.regimes import Regime, get_regime
from catbuilder.synth.render import render_tile

__all__ = ["MockSurvey", "SurveyFiles", "make_survey", "open_survey"]

_MARGIN_ARCSEC = 45.0  # light of objects this far outside a tile may fall on it


@dataclass
class SurveyFiles:
    """The files of one preset's survey."""

    preset: str
    directory: Path
    tiles: list[str]
    sources: Path

    def tile_paths(self, band: str | None = None) -> list[Path]:
        """FITS files of the survey, optionally of one band only."""
        files = sorted((self.directory / "tiles").glob("*.fits"))
        if band is not None:
            files = [f for f in files if f.stem.rsplit("_", 1)[-1] == band]
        return files

    def read_sources(self) -> pd.DataFrame:
        return _read_table(self.sources)


@dataclass
class MockSurvey:
    """What :func:`make_survey` wrote.

    Attributes
    ----------
    root
        Output directory.
    truth
        Path of the truth table (every object, its class and parameters).
    labels
        Path of the Galaxy-Zoo-like label table (galaxies of the overlap area,
        identified by sdss-like ``objid``).
    surveys
        Preset name -> :class:`SurveyFiles`.
    params
        The parameters the survey was made with.
    previews
        PNG files written with ``preview=True``.
    """

    root: Path
    truth: Path
    labels: Path
    surveys: dict[str, SurveyFiles]
    params: dict = field(default_factory=dict)
    previews: list[Path] = field(default_factory=list)

    def read_truth(self) -> pd.DataFrame:
        return pd.read_parquet(self.truth)

    def read_labels(self) -> pd.DataFrame:
        return pd.read_parquet(self.labels)

    def __getitem__(self, preset: str) -> SurveyFiles:
        try:
            return self.surveys[preset]
        except KeyError:
            raise KeyError(
                f"no {preset!r} survey in {self.root}; made: {', '.join(self.surveys)}"
            ) from None

    def summary(self) -> str:
        """A few lines saying what was made."""
        truth = self.read_truth()
        counts = truth["cls"].value_counts().to_dict()
        lines = [
            f"mock survey in {self.root} (seed {self.params.get('seed')})",
            f"  truth: {len(truth)} objects "
            + ", ".join(f"{counts.get(c, 0)} {c}s" for c in ("spiral", "elliptical", "star")),
            f"  labels: {len(self.read_labels())} Galaxy-Zoo-like vote rows -> {self.labels.name}",
        ]
        for name, s in self.surveys.items():
            n_src = len(s.read_sources())
            lines.append(
                f"  {name}: {len(s.tiles)} tiles x {len(self.params.get('bands', []))} bands, "
                f"{n_src} sources -> {s.directory}"
            )
        for p in self.previews:
            lines.append(f"  preview: {p}")
        return "\n".join(lines)


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    from astropy.table import Table

    return Table.read(path).to_pandas()


def _write_table(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        from astropy.table import Table

        Table.from_pandas(df).write(path, overwrite=True)
    return path


def _tile_membership(
    tiles: list[TileSpec], ra: np.ndarray, dec: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each position: the most central tile containing it (-1: none).

    Returns the tile index and the distance in pixels to that tile's nearest
    edge.
    """
    best = np.full(len(ra), -1, dtype=np.int64)
    best_margin = np.full(len(ra), -np.inf)
    for k, t in enumerate(tiles):
        x, y = t.wcs().all_world2pix(ra, dec, 0)
        margin = np.minimum.reduce([x + 0.5, t.nx - 0.5 - x, y + 0.5, t.ny - 0.5 - y])
        better = margin > best_margin
        best[better] = k
        best_margin[better] = margin[better]
    best[best_margin < 0] = -1
    return best, best_margin


def _source_table(
    truth: pd.DataFrame,
    preset: SurveyPreset,
    tiles: list[TileSpec],
    bands: tuple[str, ...],
    seed: int,
) -> pd.DataFrame:
    pidx = list(PRESETS).index(preset.name) if preset.name in PRESETS else 99
    rng = np.random.default_rng([seed, 1000 + pidx])
    n = len(truth)
    # every object gets its jitter so a subset of presets gives the same numbers
    dra = rng.normal(0, preset.astrometric_sigma, n) / 3600.0
    ddec = rng.normal(0, preset.astrometric_sigma, n) / 3600.0
    mag_noise = rng.standard_normal((len(bands), n))
    ra = (truth["ra"].to_numpy() + dra / np.cos(np.radians(truth["dec"].to_numpy()))) % 360
    dec = truth["dec"].to_numpy() + ddec
    tile_idx, _ = _tile_membership(tiles, truth["ra"].to_numpy(), truth["dec"].to_numpy())
    seen = tile_idx >= 0
    out = pd.DataFrame(
        {
            "objid": (preset.id_offset + truth["truth_id"].to_numpy()).astype(np.int64),
            "ra": ra,
            "dec": dec,
        }
    )
    for b, noise in zip(bands, mag_noise):
        m = truth[f"mag_{b}"].to_numpy()
        snr = 5.0 * 10 ** (-0.4 * (m - preset.depth[b]))
        err = np.clip(1.0857 / snr, 0.001, 1.0)
        out[f"mag_{b}"] = (m + noise * err).astype(np.float32)
        out[f"magerr_{b}"] = err.astype(np.float32)
    out["cls"] = truth["cls"].to_numpy()
    out["truth_id"] = truth["truth_id"].to_numpy()
    out["tile"] = np.array([t.name for t in tiles] + [""], dtype=object)[tile_idx]
    return out[seen].reset_index(drop=True)


def make_survey(
    outdir: str | Path,
    presets: str | list[str] | tuple[str, ...] | None = None,
    n_objects: int | None = None,
    seed: int | None = None,
    *,
    bands: list[str] | tuple[str, ...] | None = None,
    center: tuple[float, float] | None = None,
    tile_arcmin: float | None = None,
    tile_overlap_arcsec: float | None = None,
    objects_per_tile: float | None = None,
    unlabelled_fraction: float | None = None,
    star_fraction: float | None = None,
    spiral_fraction: float | None = None,
    blend_fraction: float | None = None,
    regime: str | Regime | None = None,
    table_format: str = "parquet",
    cluster: Any = None,
    workers: int | None = None,
    progress: bool = True,
    preview: bool = False,
    reuse: bool = False,
) -> MockSurvey:
    """Make GalSim mock surveys of one sky: FITS tiles, source and label tables.

    The object population depends only on ``seed`` and the population
    parameters, not on which presets are rendered, so ``sdss-like`` and
    ``des-like`` surveys made with the same seed show the same galaxies in
    their overlap area and can be crossmatched. The ``des-like`` preset also
    covers an area outside the overlap (the unlabelled sample).

    Parameters
    ----------
    outdir
        Output directory (created). Layout: ``truth.parquet``,
        ``galaxy_zoo.parquet``, ``survey.json`` and per preset
        ``<preset>/tiles/<tile>_<band>.fits`` and ``<preset>/sources.parquet``.
    presets
        Preset name(s): ``"sdss-like"``, ``"des-like"``; default both.
    n_objects
        Objects (galaxies and stars) over all areas.
    seed
        Random seed; the same seed and parameters give identical files.
    bands
        Bands to render, from u, g, r, i, z.
    center, tile_arcmin, tile_overlap_arcsec, objects_per_tile
        Sky layout: overlap-area centre (RA, Dec in deg), tile side, margin
        shared by neighbouring tiles, object density.
    unlabelled_fraction, star_fraction, spiral_fraction, blend_fraction
        Population mix (the ``hard`` regime sets its own blend fraction).
    regime
        ``"default"`` or ``"hard"`` (:mod:`catbuilder.synth.regimes`): fainter
        and smaller galaxies, lower S/N, a PSF varying per tile, saturated
        stars, hot columns, uncatalogued neighbours, wrong labels and labels
        only to r < 17.7. Default ``synth.regime``.
    table_format
        ``"parquet"`` or ``"fits"`` for the source tables.
    cluster, workers
        Where tiles are rendered (see :func:`catbuilder.runtime.compute`);
        default: the active distributed client if any, else ``synth.cluster``,
        else a process pool.
    progress
        Show a progress bar over tiles.
    preview
        Also write PNG previews (a tile composite and a gallery of objects per
        class) for each preset.
    reuse
        Where ``outdir`` already holds a mock survey made with the same
        parameters (its ``survey.json``), open it instead of rendering it
        again; one made with other parameters is refused.

    Returns
    -------
    MockSurvey
        Paths and a :meth:`MockSurvey.summary`.

    Examples
    --------
    >>> from catbuilder.synth import make_survey
    >>> survey = make_survey("mock", n_objects=50, seed=1)  # doctest: +SKIP
    >>> survey["des-like"].tile_paths("r")  # doctest: +SKIP
    """
    import dask

    c = config.resolve
    presets = c("synth.presets", presets)
    presets = [presets] if isinstance(presets, str) else list(presets)
    regime = get_regime(c("synth.regime", regime))
    preset_objs = [_deeper(get_preset(p), regime.depth_offset) for p in presets]
    n_objects = int(c("synth.n-objects", n_objects))
    seed = int(c("synth.seed", seed))
    bands = tuple(c("synth.bands", bands))
    bad = [b for b in bands if b not in ALL_BANDS]
    if bad:
        raise ValueError(f"unknown band(s) {bad}; mock surveys have {', '.join(ALL_BANDS)}")
    if table_format not in ("parquet", "fits"):
        raise ValueError(f"table_format must be 'parquet' or 'fits', got {table_format!r}")
    params = {
        "presets": [p.name for p in preset_objs],
        "n_objects": n_objects,
        "seed": seed,
        "bands": list(bands),
        "center": list(c("synth.center", center)),
        "tile_arcmin": float(c("synth.tile-arcmin", tile_arcmin)),
        "tile_overlap_arcsec": float(c("synth.tile-overlap-arcsec", tile_overlap_arcsec)),
        "objects_per_tile": float(c("synth.objects-per-tile", objects_per_tile)),
        "unlabelled_fraction": float(c("synth.unlabelled-fraction", unlabelled_fraction)),
        "star_fraction": float(c("synth.star-fraction", star_fraction)),
        "spiral_fraction": float(c("synth.spiral-fraction", spiral_fraction)),
        "blend_fraction": float(
            c("synth.blend-fraction", blend_fraction)
            if regime.blend_fraction is None or blend_fraction is not None
            else regime.blend_fraction
        ),
        "regime": regime.name,
    }
    root = Path(outdir)
    if reuse and (root / "survey.json").is_file():
        return _reopen(root, params, table_format, preview)
    root.mkdir(parents=True, exist_ok=True)

    n_unl = round(n_objects * params["unlabelled_fraction"])
    layout = SkyLayout(
        tuple(params["center"]),
        n_objects - n_unl,
        n_unl,
        params["tile_arcmin"],
        params["objects_per_tile"],
        params["tile_overlap_arcsec"],
    )
    truth = make_population(
        layout,
        n_objects,
        params["unlabelled_fraction"],
        params["star_fraction"],
        params["spiral_fraction"],
        params["blend_fraction"],
        seed,
        bands=ALL_BANDS,
        regime=regime,
    )
    listed = truth[truth["catalogued"]]
    fx, fy = layout.to_frame(truth["ra"].to_numpy(), truth["dec"].to_numpy())

    tasks = []
    tiles_of: dict[str, list[TileSpec]] = {}
    for pidx, preset in enumerate(preset_objs):
        tiles = layout.tiles(preset.name, preset.areas, preset.pixel_scale, preset.tile_scale)
        tiles_of[preset.name] = tiles
        tile_dir = root / preset.name / "tiles"
        factors = _seeing_factors(regime, seed, pidx, len(tiles))
        for tidx, tile in enumerate(tiles):
            tx, ty = layout.to_frame(np.array([tile.ra]), np.array([tile.dec]))
            half = tile.nx * tile.pixel_scale / 2 + _MARGIN_ARCSEC
            near = (np.abs(fx - tx[0]) < half) & (np.abs(fy - ty[0]) < half)
            tasks.append(
                dask.delayed(render_tile, pure=False)(
                    tile,
                    truth[near],
                    preset,
                    bands,
                    seed,
                    tile_dir,
                    pidx,
                    tidx,
                    seeing_factor=factors[tidx],
                    hot_columns=regime.hot_columns,
                    dask_key_name=f"render-{preset.name}-{tile.name}",
                )
            )
    from catbuilder.runtime import compute

    where = cluster
    if where is None:
        from catbuilder.runtime import active_client

        where = None if active_client() is not None else config.get("synth.cluster", None)
    results = compute(
        tasks,
        cluster=where,
        workers=workers,
        progress=progress,
        desc="rendering tiles",
        unit="tile",
    )

    surveys: dict[str, SurveyFiles] = {}
    ext = ".parquet" if table_format == "parquet" else ".fits"
    for preset in preset_objs:
        src = _source_table(listed, preset, tiles_of[preset.name], bands, seed)
        path = _write_table(src, root / preset.name / f"sources{ext}")
        surveys[preset.name] = SurveyFiles(
            preset.name, root / preset.name, [t.name for t in tiles_of[preset.name]], path
        )

    # Galaxy-Zoo-like labels: galaxies of the SDSS-like footprint, with the
    # positions and ids an SDSS-like catalogue gives them
    sdss = _deeper(PRESETS["sdss-like"], regime.depth_offset)
    sdss_tiles = layout.tiles(sdss.name, sdss.areas, sdss.pixel_scale, sdss.tile_scale)
    sdss_src = _source_table(listed, sdss, sdss_tiles, ("r",), seed)
    if regime.label_mag_limit is not None:  # as deep as Galaxy Zoo's sample, by sdss-like r
        sdss_src = sdss_src[sdss_src["mag_r"] < regime.label_mag_limit]
    votes = galaxy_zoo_votes(
        listed[listed["area"] == "overlap"], sdss.seeing["r"], seed, label_noise=regime.label_noise
    )
    labels = sdss_src[["objid", "ra", "dec", "truth_id"]].merge(votes, on="truth_id")
    labels.to_parquet(root / "galaxy_zoo.parquet", index=False)
    truth.to_parquet(root / "truth.parquet", index=False)

    params["tiles"] = {k: len(v) for k, v in tiles_of.items()}
    params["n_saturated_pixels"] = int(sum(sum(r["n_saturated"].values()) for r in results))
    from catbuilder._version import __version__

    params["catbuilder_version"] = __version__
    (root / "survey.json").write_text(json.dumps(params, indent=2))
    survey = MockSurvey(root, root / "truth.parquet", root / "galaxy_zoo.parquet", surveys, params)
    if preview:
        _write_previews(survey)
    return survey


def _reopen(root: Path, params: dict, table_format: str, preview: bool) -> MockSurvey:
    """The survey in ``root``, if it was made with ``params`` (else OutputExistsError)."""
    from catbuilder.errors import OutputExistsError
    from catbuilder.zarr_store import describe_difference

    survey = open_survey(root)
    made = {k: survey.params.get(k) for k in params}
    made["table_format"] = "fits" if any(
        f.sources.suffix == ".fits" for f in survey.surveys.values()
    ) else "parquet"  # fmt: skip
    params = {**params, "table_format": table_format}
    if made != params:
        raise OutputExistsError(
            f"{root} holds a mock survey made with other parameters "
            f"({describe_difference(made, params)}): choose another directory"
        )
    if preview:
        _write_previews(survey)
    return survey


def _write_previews(survey: MockSurvey) -> None:
    """A tile composite and a gallery per class for each preset (g, r and i rendered)."""
    from catbuilder.synth.preview import write_previews

    if not {"g", "r", "i"} <= set(survey.params["bands"]):
        return
    for name, files in survey.surveys.items():
        src = files.read_sources()
        first = src["tile"].value_counts().index[0]
        paths = {b: str(files.directory / "tiles" / f"{first}_{b}.fits") for b in "gri"}
        survey.previews += write_previews(
            files.directory, paths, src, survey.root / f"preview_{name}"
        )


def _deeper(preset: SurveyPreset, offset: float) -> SurveyPreset:
    """``preset`` with ``offset`` magnitudes added to its depth in every band."""
    if offset == 0:
        return preset
    return dataclasses.replace(preset, depth={b: d + offset for b, d in preset.depth.items()})


def _seeing_factors(regime: Regime, seed: int, survey_index: int, n_tiles: int) -> list[float]:
    """Each tile's PSF FWHM relative to the preset's."""
    lo, hi = regime.seeing_range
    if lo == hi:
        return [float(lo)] * n_tiles
    rng = np.random.default_rng([seed, 5000 + survey_index])
    return [round(float(f), 4) for f in rng.uniform(lo, hi, n_tiles)]


def open_survey(root: str | Path) -> MockSurvey:
    """Reopen a mock survey written by :func:`make_survey`."""
    root = Path(root)
    meta = root / "survey.json"
    if not meta.exists():
        raise FileNotFoundError(f"{root} holds no mock survey (no survey.json)")
    params = json.loads(meta.read_text())
    surveys = {}
    for name in params["presets"]:
        d = root / name
        src = next(iter(sorted(d.glob("sources.*"))), d / "sources.parquet")
        tiles = sorted({p.stem.rsplit("_", 1)[0] for p in (d / "tiles").glob("*.fits")})
        surveys[name] = SurveyFiles(name, d, tiles, src)
    return MockSurvey(root, root / "truth.parquet", root / "galaxy_zoo.parquet", surveys, params)
