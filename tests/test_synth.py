import itertools

import numpy as np
import pandas as pd
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from catbuilder.synth import PRESETS, make_survey, open_survey
from catbuilder.synth.render import render_tile, spiral_disc_image


def _open(path):
    with fits.open(path) as hdul:
        return hdul[0].data.astype(np.float64), hdul[0].header, hdul["WEIGHT"].data


def test_files_are_survey_shaped(mock_survey):
    for name, files in mock_survey.surveys.items():
        paths = files.tile_paths()
        assert len(paths) == 3 * len(files.tiles)
        for band in "gri":
            data, hdr, weight = _open(files.tile_paths(band)[0])
            with fits.open(files.tile_paths(band)[0]) as hdul:
                assert hdul[0].data.dtype == np.dtype(">f4")
                assert hdul["PSF"].data.shape == (25, 25)
                assert abs(hdul["PSF"].data.sum() - 1) < 0.05
            assert hdr["BAND"] == band and hdr["SURVEY"] == name
            assert hdr["CTYPE1"] == "RA---TAN" and hdr["CTYPE2"] == "DEC--TAN"
            assert (
                abs(
                    WCS(hdr).proj_plane_pixel_scales()[0].to_value("arcsec")
                    - PRESETS[name].pixel_scale
                )
                < 1e-6
            )
            assert hdr["PSF_FWHM"] == PRESETS[name].seeing[band]
            # sky-subtracted background with the advertised noise
            bg = data[weight > 0]
            assert abs(np.median(bg)) < 0.2 * hdr["SKYSIGMA"]
            mad = 1.4826 * np.median(np.abs(bg - np.median(bg)))
            assert 0.8 < mad / hdr["SKYSIGMA"] < 1.3
            assert np.all(data <= hdr["SATURATE"] + 1e-3)
            assert weight.shape == data.shape and np.all(weight >= 0)


def test_des_like_is_deeper_and_sharper_than_sdss_like():
    sdss, des = PRESETS["sdss-like"], PRESETS["des-like"]
    assert des.depth["r"] - sdss.depth["r"] == pytest.approx(1.5)
    assert des.seeing["r"] < sdss.seeing["r"] and des.pixel_scale < sdss.pixel_scale


def _isolated_stars(files, truth, min_sep_arcsec=12.0):
    src = files.read_sources().merge(
        truth[["truth_id", "ra", "dec", "mag_r"]], on="truth_id", suffixes=("", "_true")
    )
    allpos = SkyCoord(truth["ra"], truth["dec"], unit="deg")
    stars = src[(src["cls"] == "star") & (src["mag_r_true"] < 20.0)]
    keep = []
    for _, s in stars.iterrows():
        sep = SkyCoord(s["ra_true"], s["dec_true"], unit="deg").separation(allpos).arcsec
        if np.sort(sep)[1] > min_sep_arcsec:
            keep.append(s)
    return pd.DataFrame(keep)


def test_wcs_places_objects_within_a_tenth_of_a_pixel(mock_survey):
    """Centroids of isolated stars sit where the WCS puts their true position."""
    truth = mock_survey.read_truth()
    n_checked = 0
    for files in mock_survey.surveys.values():
        for _, star in _isolated_stars(files, truth).iterrows():
            path = files.directory / "tiles" / f"{star['tile']}_r.fits"
            data, hdr, weight = _open(path)
            w = WCS(hdr)
            x, y = w.all_world2pix(star["ra_true"], star["dec_true"], 0)
            # round trip pixel -> sky -> pixel
            ra2, dec2 = w.all_pix2world(x, y, 0)
            x2, y2 = w.all_world2pix(ra2, dec2, 0)
            assert abs(x2 - x) < 1e-6 and abs(y2 - y) < 1e-6
            ix, iy = round(float(x)), round(float(y))
            r = 4
            if not (r <= ix < data.shape[1] - r and r <= iy < data.shape[0] - r):
                continue
            if (weight[iy - r : iy + r + 1, ix - r : ix + r + 1] == 0).any():
                continue  # saturated: the centroid is biased by the clipping
            win = data[iy - r : iy + r + 1, ix - r : ix + r + 1]
            win = np.clip(win, 0, None)
            yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
            cx = ix + (win * xx).sum() / win.sum()
            cy = iy + (win * yy).sum() / win.sum()
            assert abs(cx - x) < 0.1 and abs(cy - y) < 0.1, (star["truth_id"], cx - x, cy - y)
            n_checked += 1
    assert n_checked >= 3


def test_star_fluxes_match_truth_magnitudes(mock_survey):
    truth = mock_survey.read_truth()
    files = mock_survey["des-like"]
    measured = []
    for _, star in _isolated_stars(files, truth).iterrows():
        data, hdr, weight = _open(files.directory / "tiles" / f"{star['tile']}_r.fits")
        x, y = WCS(hdr).all_world2pix(star["ra_true"], star["dec_true"], 0)
        yy, xx = np.mgrid[: data.shape[0], : data.shape[1]]
        ap = np.hypot(xx - x, yy - y) < 4 * hdr["PSF_FWHM"] / hdr["PIXSCALE"]
        if (weight[ap] == 0).any() or not (
            10 < x < data.shape[1] - 10 and 10 < y < data.shape[0] - 10
        ):
            continue
        mag = hdr["MAGZERO"] - 2.5 * np.log10(data[ap].sum())
        measured.append(mag - star["mag_r_true"])
    assert len(measured) >= 2
    # a 4 FWHM aperture holds ~98% of a Moffat(beta=3): 0.02 mag faint
    assert np.all(np.abs(np.array(measured) - 0.02) < 0.1), measured


def test_counts_and_classes_match_truth(mock_survey):
    truth = mock_survey.read_truth()
    assert len(truth) == 120
    assert set(truth["cls"]) == {"spiral", "elliptical", "star"}
    assert (truth["cls"] == "star").sum() == 12
    des = mock_survey["des-like"].read_sources()
    sdss = mock_survey["sdss-like"].read_sources()
    for src in (des, sdss):
        assert src["objid"].is_unique and src["truth_id"].is_unique
        merged = src.merge(truth, on="truth_id", suffixes=("", "_t"))
        assert (merged["cls"] == merged["cls_t"]).all()
        assert {"objid", "ra", "dec", "mag_g", "mag_r", "mag_i", "cls"} <= set(src.columns)
    # des-like sees both areas, sdss-like only the overlap
    assert len(des) >= 0.97 * len(truth)
    assert set(truth.loc[truth["truth_id"].isin(sdss["truth_id"]), "area"]) == {"overlap"}
    assert (truth.loc[truth["truth_id"].isin(des["truth_id"]), "area"] == "des-only").sum() > 0


def test_presets_overlap_on_the_sky_and_crossmatch(mock_survey):
    des = mock_survey["des-like"].read_sources()
    sdss = mock_survey["sdss-like"].read_sources()
    c_s = SkyCoord(sdss["ra"], sdss["dec"], unit="deg")
    c_d = SkyCoord(des["ra"], des["dec"], unit="deg")
    idx, sep, _ = c_s.match_to_catalog_sky(c_d)
    ok = sep.arcsec < 1.0
    assert ok.mean() > 0.99
    # ids differ between surveys; the match is positional and correct
    assert not set(sdss["objid"]) & set(des["objid"])
    assert (sdss["truth_id"].to_numpy()[ok] == des["truth_id"].to_numpy()[idx[ok]]).all()


def test_galaxy_zoo_thresholds_select_a_clean_subset(mock_survey):
    labels = mock_survey.read_labels().merge(
        mock_survey.read_truth()[["truth_id", "cls"]], on="truth_id"
    )
    assert {"objid", "ra", "dec", "p_spiral", "p_elliptical", "n_votes"} <= set(labels.columns)
    assert labels["objid"].isin(mock_survey["sdss-like"].read_sources()["objid"]).all()
    assert (labels["cls"] != "star").all()
    hp = labels[(labels["p_spiral"] > 0.985) | (labels["p_elliptical"] > 0.926)]
    hp_cls = np.where(hp["p_spiral"] > 0.985, "spiral", "elliptical")
    assert len(hp) >= 10
    assert (hp_cls == hp["cls"]).mean() > 0.97
    fo_cls = np.where(labels["p_spiral"] > labels["p_elliptical"], "spiral", "elliptical")
    assert (fo_cls == labels["cls"]).mean() < (hp_cls == hp["cls"]).mean()
    assert ((labels["p_spiral"] + labels["p_elliptical"]) <= 1.0 + 1e-6).all()


def test_same_seed_same_pixels_other_seed_other_pixels(tmp_path):
    a = make_survey(
        tmp_path / "a", presets="des-like", n_objects=15, seed=5, cluster="sync", progress=False
    )
    b = make_survey(
        tmp_path / "b",
        presets="des-like",
        n_objects=15,
        seed=5,
        cluster="threads",
        progress=False,
    )
    c = make_survey(
        tmp_path / "c", presets="des-like", n_objects=15, seed=6, cluster="sync", progress=False
    )
    pa = a["des-like"].tile_paths("r")[0]
    pb = b["des-like"].tile_paths("r")[0]
    pc = c["des-like"].tile_paths("r")[0]
    assert np.array_equal(_open(pa)[0], _open(pb)[0])
    assert not np.array_equal(_open(pa)[0], _open(pc)[0])
    pd.testing.assert_frame_equal(a.read_truth(), b.read_truth())
    reopened = open_survey(tmp_path / "a")
    assert reopened.params["seed"] == 5 and list(reopened.surveys) == ["des-like"]


def test_a_survey_made_alike_is_reused_and_one_made_otherwise_refused(tmp_path):
    from catbuilder.errors import OutputExistsError

    kw = {"presets": "des-like", "n_objects": 15, "cluster": "sync", "progress": False}
    made = make_survey(tmp_path / "s", seed=5, reuse=True, **kw)
    files = sorted(p for p in (tmp_path / "s").rglob("*") if p.is_file())
    stamps = [p.stat().st_mtime_ns for p in files]
    again = make_survey(tmp_path / "s", seed=5, reuse=True, **kw)
    assert again.params == made.params and again.surveys == made.surveys
    assert [p.stat().st_mtime_ns for p in files] == stamps  # opened, nothing rendered
    with pytest.raises(OutputExistsError, match=r"other parameters .*seed: 5 != 6"):
        make_survey(tmp_path / "s", seed=6, reuse=True, **kw)
    with pytest.raises(OutputExistsError, match="table_format: 'parquet' != 'fits'"):
        make_survey(tmp_path / "s", seed=5, reuse=True, table_format="fits", **kw)
    assert [p.stat().st_mtime_ns for p in files] == stamps


def test_population_does_not_depend_on_presets_rendered(tmp_path):
    a = make_survey(
        tmp_path / "a", presets="sdss-like", n_objects=15, seed=5, cluster="sync", progress=False
    )
    b = make_survey(
        tmp_path / "b", presets="des-like", n_objects=15, seed=5, cluster="sync", progress=False
    )
    pd.testing.assert_frame_equal(a.read_truth(), b.read_truth())
    pd.testing.assert_frame_equal(a.read_labels(), b.read_labels())


def test_bright_star_saturates_and_gets_zero_weight(tmp_path):
    from catbuilder.synth.layout import TileSpec

    tile = TileSpec("T", "overlap", 20.0, 0.0, 101, 101, 0.263)
    row = {
        c: 0.0
        for c in (
            "z",
            "hlr",
            "q",
            "pa",
            "sersic_n",
            "bulge_frac",
            "bulge_hlr",
            "pitch",
            "arm_strength",
            "arm_phase",
        )
    }
    row.update(
        truth_id=0,
        cls="star",
        ra=20.0,
        dec=0.0,
        n_arms=0,
        q=1.0,
        **{f"mag_{b}": 12.0 for b in "gri"},
    )
    res = render_tile(tile, pd.DataFrame([row]), PRESETS["des-like"], ("r",), 1, tmp_path)
    data, hdr, weight = _open(res["paths"]["r"])
    assert res["n_saturated"]["r"] > 0
    sat = data >= hdr["SATURATE"] - 1e-3
    assert sat.sum() == res["n_saturated"]["r"]
    assert np.all(weight[sat] == 0) and np.all(weight[~sat] > 0)
    assert sat[50, 50]  # the star is at the tile centre


@pytest.mark.parametrize("n_arms", [2, 3])
def test_spiral_discs_have_n_fold_arms(n_arms):
    img, scale = spiral_disc_image(2.0, n_arms, 20.0, 0.8, 0.0, npix=128)
    assert img.sum() == pytest.approx(1.0)
    c = (np.arange(128) - 63.5) * scale
    x, y = np.meshgrid(c, c)
    r, th = np.hypot(x, y), np.arctan2(y, x)
    ring = (r > 1.5) & (r < 2.0)
    # azimuthal power spectrum of the ring: peak at m = n_arms
    bins = np.linspace(-np.pi, np.pi, 65)
    prof = np.array(
        [img[ring & (th >= lo) & (th < hi)].mean() for lo, hi in itertools.pairwise(bins)]
    )
    power = np.abs(np.fft.rfft(prof - prof.mean()))
    assert int(np.argmax(power[1:6])) + 1 == n_arms


def test_previews_are_real_pictures(tmp_path):
    import matplotlib.image as mpimg

    s = make_survey(
        tmp_path,
        presets="des-like",
        n_objects=25,
        seed=2,
        cluster="sync",
        progress=False,
        preview=True,
    )
    assert len(s.previews) == 2
    for p in s.previews:
        img = mpimg.imread(p)
        assert img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 0.05


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"unknown survey preset 'hsc-like'.*des-like"):
        make_survey(tmp_path, presets="hsc-like", n_objects=10)
    with pytest.raises(ValueError, match="unknown band"):
        make_survey(tmp_path, n_objects=10, bands=("g", "y"))
    with pytest.raises(ValueError, match="n_objects"):
        make_survey(tmp_path, n_objects=0, cluster="sync", progress=False)


def test_hard_regime_makes_every_condition_it_names(mock_survey, tmp_path):
    """Fainter galaxies, lower S/N, a PSF per tile, hot columns, unlisted
    neighbours and labels only to r < 17.7, against the default regime's
    survey of the same seed."""
    from catbuilder.synth.presets import PRESETS
    from catbuilder.synth.regimes import REGIMES

    hard = make_survey(
        tmp_path / "hard", presets="des-like", n_objects=200, seed=7, regime="hard",
        progress=False,
    )  # fmt: skip
    rules = REGIMES["hard"]
    assert hard.params["regime"] == "hard" and mock_survey.params["regime"] == "default"
    truth, easy = hard.read_truth(), mock_survey.read_truth()
    gal, easy_gal = truth[truth["cls"] != "star"], easy[easy["cls"] != "star"]
    assert gal["mag_r"].median() > easy_gal["mag_r"].median() + 0.7
    assert gal["hlr"].median() < easy_gal["hlr"].median()
    # neighbours no table lists, each next to a listed galaxy
    unlisted = truth[~truth["catalogued"]]
    assert len(unlisted) == round(
        rules.uncatalogued_fraction * (truth["catalogued"] & (truth["cls"] != "star")).sum()
    )
    assert truth.set_index("truth_id").loc[unlisted["blend"], "catalogued"].all()
    sources = hard["des-like"].read_sources()
    assert not set(unlisted["truth_id"]) & set(sources["truth_id"])
    labels = hard.read_labels()
    assert not set(unlisted["truth_id"]) & set(labels["truth_id"])
    # labels only as deep as Galaxy Zoo's: fewer than the overlap's galaxies, all bright
    overlap = gal[(gal["area"] == "overlap") & gal["catalogued"]]
    assert 0 < len(labels) < len(overlap)
    assert truth.set_index("truth_id").loc[labels["truth_id"], "mag_r"].max() < 17.7 + 0.3
    # a PSF per tile, the same in every band's file of a tile, within the regime's range
    fwhm = {}
    for f in hard["des-like"].tile_paths():
        _, hdr, weight = _open(f)
        band = hdr["BAND"]
        fwhm.setdefault(hdr["TILENAME"], set()).add(
            hdr["PSF_FWHM"] / PRESETS["des-like"].seeing[band]
        )
        assert (weight == 0).all(axis=0).sum() >= rules.hot_columns  # hot columns, masked
        easy_hdr = _open(mock_survey["des-like"].tile_paths(band)[0])[1]
        # sky sigma over the flux of an r = 20 source: S/N lower by the depth offset
        noise, easy = (h["SKYSIGMA"] * 10 ** (0.4 * (20 - h["MAGZERO"])) for h in (hdr, easy_hdr))
        assert noise > 1.5 * easy
    factors = [round(next(iter(v)), 3) for v in fwhm.values()]
    assert all(len({round(x, 3) for x in v}) == 1 for v in fwhm.values())
    assert len(set(factors)) == len(factors) > 1
    assert all(rules.seeing_range[0] - 1e-3 <= f <= rules.seeing_range[1] + 1e-3 for f in factors)


def test_label_noise_swaps_the_vote_fractions_of_that_fraction(mock_survey):
    from catbuilder.synth.labels import galaxy_zoo_votes

    truth = mock_survey.read_truth()
    truth = pd.concat([truth] * 40, ignore_index=True).assign(truth_id=lambda d: d.index)
    clean = galaxy_zoo_votes(truth, 1.4, seed=3)
    noisy = galaxy_zoo_votes(truth, 1.4, seed=3, label_noise=0.05)
    flipped = noisy["flipped"].to_numpy()
    assert not clean["flipped"].any() and 0.03 < flipped.mean() < 0.07
    assert np.array_equal(noisy["p_spiral"][flipped], clean["p_elliptical"][flipped])
    assert np.array_equal(noisy["p_spiral"][~flipped], clean["p_spiral"][~flipped])
