import subprocess
import sys
import warnings
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest

from catbuilder import config, plugins
from catbuilder.plugins import (
    ModelPlugin,
    get_plugin,
    list_plugins,
    make_model,
    refresh_plugins,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_entry_points(monkeypatch):
    """Register only the entry points a test gives (as xarray's plugin tests do)."""
    registered: dict[str, list[EntryPoint]] = {}

    def fake(group):
        return registered.get(group, [])

    monkeypatch.setattr(plugins, "_entry_points", fake)
    refresh_plugins()
    yield registered
    monkeypatch.undo()
    refresh_plugins()


class GoodPlugin(ModelPlugin):
    description = "a test plugin"

    def create(self, **params):
        return ("model", params)


def _ep(name, value, group="catbuilder.classifiers"):
    return EntryPoint(name=name, value=value, group=group)


def test_installed_plugins_are_found():
    refresh_plugins()
    cls = list_plugins("classifier")
    assert {
        "keras.xception",
        "keras.small-cnn",
        "keras.resnet50",
        "keras.inceptionv3",
        "keras.vgg16",
        "keras.vgg19",
        "morphology.random-forest",
        "morphology.gradient-boosting",
    } <= set(cls)
    emb = list_plugins("embedder")
    assert {"keras.xception", "morphology.statmorph"} <= set(emb)
    x = cls["keras.xception"]
    assert x.input_size == 299 and x.can_embed and x.bands == ("g", "r", "i")
    assert "Xception" in repr(x)


def test_listing_plugins_imports_no_framework():
    code = (
        "import catbuilder, sys\nfrom catbuilder.plugins import describe\n"
        "rows = describe()\nassert len(rows) > 8\n"
        "print(' '.join(m for m in ('tensorflow', 'tf_keras', 'keras', 'horovod', 'torch',"
        " 'statmorph', 'galsim') if m in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ""


def test_unknown_name_lists_installed_and_how_to_install():
    with pytest.raises(ValueError) as info:
        get_plugin("keras.xceptoin")
    msg = str(info.value)
    assert "unknown classifier plugin 'keras.xceptoin'" in msg
    assert "keras.xception" in msg and "pip install" in msg
    with pytest.raises(ValueError, match="kind must be"):
        list_plugins("regressor")


def test_broken_duplicate_and_foreign_plugins_warn(fake_entry_points):
    mod = __name__
    fake_entry_points["catbuilder.classifiers"] = [
        _ep("good", f"{mod}:GoodPlugin"),
        _ep("good", f"{mod}:ModelPlugin"),
        _ep("broken", "catbuilder_no_such_module:Plugin"),
        _ep("foreign", "pathlib:Path"),
    ]
    with pytest.warns(RuntimeWarning) as rec:
        found = list_plugins("classifier")
    messages = " | ".join(str(w.message) for w in rec)
    assert "'broken'" in messages and "failed to load" in messages
    assert "two plugins are named 'good'" in messages
    assert "'foreign'" in messages and "not a catbuilder.plugins.ModelPlugin" in messages
    assert list(found) == ["good"]
    assert make_model("good", alpha=1) == ("model", {"alpha": 1})


def test_discovery_is_cached_refreshable_and_configurable(fake_entry_points):
    mod = __name__
    assert list_plugins() == {}
    fake_entry_points["catbuilder.classifiers"] = [_ep("good", f"{mod}:GoodPlugin")]
    assert list_plugins() == {}  # cached
    refresh_plugins()
    assert list(list_plugins()) == ["good"]
    with config.set({"plugins.disabled": ["good"]}):
        refresh_plugins()
        assert list_plugins() == {}
    refresh_plugins()


def test_cli_lists_plugins():
    res = subprocess.run(
        [sys.executable, "-m", "catbuilder.cli", "plugins"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert "classifiers:" in res.stdout and "embedders:" in res.stdout
    assert "keras.small-cnn" in res.stdout and "morphology.statmorph" in res.stdout


@pytest.fixture
def example_plugin(tmp_path):
    """pip-install the example third-party plugin into a directory on sys.path."""
    target = tmp_path / "site"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(ROOT / "examples" / "catbuilder-plugin-example"),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    sys.path.insert(0, str(target))
    refresh_plugins()
    yield target
    sys.path.remove(str(target))
    for name in [m for m in sys.modules if m.startswith("catbuilder_plugin_example")]:
        del sys.modules[name]
    refresh_plugins()


def test_example_third_party_plugin_works_through_the_registry(
    example_plugin, des_stack, mock_survey, tmp_path
):
    assert "example.colour-centroid" in list_plugins("classifier")
    assert "example.colour-centroid" in list_plugins("embedder")
    est = make_model("example.colour-centroid", radius=4)
    truth = mock_survey.read_truth().set_index("truth_id")
    src = mock_survey["des-like"].read_sources().set_index("objid")
    objid = des_stack.objects()["objid"]
    y = truth.loc[src.loc[objid, "truth_id"], "cls"].to_numpy()
    gal = np.flatnonzero((y != "star") & (des_stack.objects()["flags"].to_numpy() == 0))
    X = des_stack.isel(gal)
    est.fit(X, y[gal])
    assert list(est.classes_) == ["elliptical", "spiral"]
    assert est.transform(X).shape == (len(gal), 2)
    acc = (est.predict(X) == y[gal]).mean()
    assert acc > 0.7
    path = est.save(tmp_path / "m")
    again = get_plugin("example.colour-centroid").load(str(path))
    np.testing.assert_allclose(again.predict_proba(X), est.predict_proba(X), rtol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_plugin("example.colour-centroid")


def test_load_model_finds_the_plugin_that_saved_it(tmp_path):
    from catbuilder.plugins import load_model

    est = make_model("morphology.random-forest", n_estimators=5)
    F = np.random.default_rng(0).normal(size=(20, 21))
    est.fit(np.zeros((20, 3, 16, 16)), ["a", "b"] * 10, features=F)
    est.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    np.testing.assert_array_equal(again.predict(None, features=F), est.predict(None, features=F))
    with pytest.raises(FileNotFoundError, match="no saved model"):
        load_model(tmp_path)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "estimator.json").write_text('{"plugin": "nobody.model"}')
    with pytest.raises(ValueError, match=r"unknown classifier plugin 'nobody\.model'"):
        load_model(tmp_path / "x")
