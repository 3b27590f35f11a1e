"""The classical backend: statmorph features on Dask, scikit-learn on top."""

import numpy as np
import pytest

from catbuilder.plugins import get_plugin, make_model


def _sersic_images(n_index, n=3, size=64, seed=0, noise=1.0):
    import galsim

    rng = np.random.default_rng(seed)
    out = np.empty((n, 3, size, size), np.float32)
    for k in range(n):
        for b, flux in enumerate((2000.0, 4000.0, 6000.0)):
            gal = galsim.Sersic(n=n_index, half_light_radius=2.0, flux=flux)
            psf = galsim.Moffat(beta=3, fwhm=0.9)
            img = galsim.Convolve(gal, psf).drawImage(nx=size, ny=size, scale=0.263).array
            out[k, b] = img + rng.normal(0, noise, img.shape)
    return out


def test_features_separate_concentrated_from_exponential_profiles():
    from catbuilder_morphology.features import feature_names, object_features

    names = feature_names(["g", "r", "i"])
    zp = np.array([30.0, 30.0, 30.0])
    f_disc = np.array([object_features(p, ["g", "r", "i"], zp) for p in _sersic_images(1.0)])
    f_bulge = np.array([object_features(p, ["g", "r", "i"], zp) for p in _sersic_images(4.0)])
    col = {n: i for i, n in enumerate(names)}
    assert (f_bulge[:, col["concentration"]] > f_disc[:, col["concentration"]] + 0.5).all()
    assert (f_bulge[:, col["gini"]] > f_disc[:, col["gini"]]).all()
    assert np.allclose(f_disc[:, col["sersic_n"]], 1.0, atol=0.3)
    assert (f_bulge[:, col["sersic_n"]] > f_disc[:, col["sersic_n"]]).all()
    # g-r from fluxes 2000 and 4000 at one zero point: 2.5 log10(2) = 0.753,
    # measured in the segment; with 1 ADU of noise a pixel, to ~0.1 mag
    assert np.allclose(f_disc[:, col["g_r"]], 0.753, atol=0.1)
    clean = _sersic_images(1.0, n=1, noise=0.01)[0]
    f_clean = object_features(clean, ["g", "r", "i"], zp)
    assert f_clean[col["g_r"]] == pytest.approx(0.753, abs=0.005)
    assert f_clean[col["r_i"]] == pytest.approx(2.5 * np.log10(1.5), abs=0.005)
    assert (f_disc[:, col["flag"]] < 4).all()


def test_failures_give_nan_features_and_flag_four():
    from catbuilder_morphology.features import feature_names, object_features

    names = feature_names(["g", "r", "i"])
    empty = np.random.default_rng(1).normal(0, 1, (3, 32, 32)).astype(np.float32)
    allnan = np.full((3, 32, 32), np.nan, np.float32)
    for px in (empty, allnan):
        f = object_features(px, ["g", "r", "i"], None)
        assert f[names.index("flag")] == 4 and np.isnan(f[names.index("gini")])


def test_embedder_runs_on_dask_over_a_stack(des_stack):
    emb = make_model("morphology.statmorph", kind="embedder").fit(des_stack)
    sub = des_stack.select(clean=True).isel(slice(0, 12))
    F = emb.transform(sub)
    assert F.shape == (12, len(emb.feature_names_out_))
    assert np.isfinite(F[:, list(emb.feature_names_out_).index("gini")]).mean() > 0.8


@pytest.mark.slow
def test_classifier_on_high_probability_labels(hp_stack, tmp_path):
    train = hp_stack.select(split="train", clean=True).isel(slice(0, 150))
    test = hp_stack.select(split="test", clean=True).isel(slice(0, 60))
    clf = make_model("morphology.gradient-boosting", n_estimators=200)
    clf.fit(train)
    assert list(clf.classes_) == ["elliptical", "spiral"]
    F = clf.features(test)
    pred = clf.predict(test, features=F)
    acc = (pred == test.objects()["label"].to_numpy()).mean()
    assert acc >= 0.8, acc
    path = clf.save(tmp_path / "m")
    again = get_plugin("morphology.gradient-boosting").load(str(path))
    np.testing.assert_array_equal(again.predict(test, features=F), pred)


def test_classifier_contract():
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    clf = make_model("morphology.random-forest")
    assert clone(clf).get_params()["model"] == "random-forest"
    with pytest.raises(NotFittedError):
        clf.predict_proba(np.zeros((1, 3, 16, 16)), features=np.zeros((1, 21)))
    with pytest.raises(ValueError, match="model must be"):
        make_model("morphology.random-forest").set_params(model="svm")._pipeline()
