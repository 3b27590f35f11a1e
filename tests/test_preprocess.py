import numpy as np
import pytest

from catbuilder import config
from catbuilder.stack.preprocess import Preprocessor, resize, to_rgb


def _blob(n=4, size=32, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - size / 2
    gal = np.exp(-(x**2 + y**2) / 20.0)
    img = rng.normal(0, 1, (n, 3, size, size)).astype(np.float32)
    img += 100 * gal[None, None]
    return img


def test_output_shape_range_and_rgb_order():
    img = _blob()
    img[:, 2] *= 3  # band "i" is brightest
    out = to_rgb(img, ["g", "r", "i"], stretch="linear")
    assert out.shape == (4, 32, 32, 3) and out.dtype == np.float32
    assert out.min() >= -1 and out.max() <= 1 and out.max() == 1.0
    centre = out[:, 16, 16]
    assert (centre[:, 0] > centre[:, 1]).all()  # R is i (the paper's i, r, g mapping)
    gri = to_rgb(img, ["g", "r", "i"], rgb=["g", "r", "i"], stretch="linear")
    assert (gri[:, 16, 16, 2] > gri[:, 16, 16, 0]).all()


@pytest.mark.parametrize("stretch", ["asinh", "lupton", "linear"])
def test_stretches_keep_the_galaxy_bright_and_sky_low(stretch):
    out = to_rgb(_blob(), ["g", "r", "i"], stretch=stretch)
    assert out[:, 16, 16].mean() > 0.5
    assert np.median(out[:, :4, :4]) < -0.5


def test_asinh_lifts_faint_light_more_than_linear():
    img = _blob()
    a = to_rgb(img, ["g", "r", "i"], stretch="asinh")
    lin = to_rgb(img, ["g", "r", "i"], stretch="linear")
    ring = (slice(None), 16, 22)  # faint outskirts
    assert a[ring].mean() > lin[ring].mean()


def test_resize_nan_and_calibration():
    img = _blob()
    img[0, 0, :5, :5] = np.nan
    out = to_rgb(img, ["g", "r", "i"], size=64)
    assert out.shape == (4, 64, 64, 3) and np.isfinite(out).all()
    # zero points: a band 2.5 mag fainter in ADU terms gets scaled up 10x
    zp = np.array([[25.0, 25.0, 27.5]] * 4)
    flat = np.ones((4, 3, 8, 8), np.float32)
    cal = to_rgb(
        flat * np.array([1, 1, 10], np.float32)[None, :, None, None],
        ["g", "r", "i"],
        magzero=zp,
        stretch="linear",
        clip_percentile=100,
    )
    assert np.allclose(cal[..., 0], cal[..., 1])
    single = to_rgb(img[0], ["g", "r", "i"])
    assert single.shape == (32, 32, 3)


def test_config_drives_defaults_and_errors():
    img = _blob()
    with config.set({"preprocess.size": 16}):
        assert to_rgb(img, ["g", "r", "i"]).shape == (4, 16, 16, 3)
        assert Preprocessor().size == 16
    with pytest.raises(ValueError, match="unknown stretch"):
        to_rgb(img, ["g", "r", "i"], stretch="log")
    with pytest.raises(ValueError, match=r"RGB band\(s\) \['i'\]"):
        to_rgb(img[:, :2], ["g", "r"])


def test_preprocessor_on_stack_batches_and_lazily(des_stack):
    prep = Preprocessor(size=24)
    batch = next(des_stack.batches(8, transform=prep))
    assert batch.images.shape == (8, 24, 24, 3)
    lazy = prep.lazy(des_stack.images, des_stack.ds["magzero"])
    assert lazy.dims == ("object", "y", "x", "rgb") and lazy.shape[0] == len(des_stack)
    first = lazy.isel(object=slice(0, 8)).values
    np.testing.assert_allclose(first, batch.images, atol=1e-6)
    import pickle

    assert pickle.loads(pickle.dumps(prep)) == prep


@pytest.mark.parametrize(("side", "size"), [(64, 128), (64, 299), (100, 64), (1, 8)])
def test_resize_samples_like_scipy_zoom(side, size):
    from scipy.ndimage import zoom

    x = np.random.default_rng(side).uniform(0, 1, (3, 2, side, side)).astype(np.float32)
    got = resize(x, size)
    assert got.shape == (3, 2, size, size)
    np.testing.assert_allclose(got, zoom(x, (1, 1, size / side, size / side), order=1), atol=1e-5)


def test_preprocessing_never_changes_its_input():
    x = np.random.default_rng(3).normal(0, 1, (4, 3, 32, 32)).astype(np.float32)
    x[0, 0, 0, 0] = np.nan
    before = x.copy()
    to_rgb(x, ["g", "r", "i"], magzero=np.full((4, 3), 30.0), size=48)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("stretch", ["asinh", "lupton", "linear"])
def test_an_image_is_preprocessed_alike_alone_and_in_any_batch(stretch):
    """Its model input, and so its probabilities, never depend on its batchmates
    (an edge object's NaN once switched the whole batch's noise estimate)."""
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (24, 3, 32, 32)).astype(np.float32)
    x[::5, :, :6] = np.nan  # objects at a tile edge
    batch = to_rgb(x, ["g", "r", "i"], stretch=stretch)
    alone = np.stack([to_rgb(x[i : i + 1], ["g", "r", "i"], stretch=stretch)[0]
                      for i in range(len(x))])  # fmt: skip
    np.testing.assert_array_equal(batch, alone)
