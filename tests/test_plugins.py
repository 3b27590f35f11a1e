import json
import os
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest

from catbuilder import config, plugins
from catbuilder.errors import OutputExistsError
from catbuilder.models import load_model
from catbuilder.plugins import (
    ModelPlugin,
    get_plugin,
    list_plugins,
    make_model,
    refresh_plugins,
)
from catbuilder.testing import check_plugin

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


def _ep(name, value, group="catbuilder.models"):
    return EntryPoint(name=name, value=value, group=group)


class EmbedOnly(ModelPlugin):
    description = "embeds only"
    capabilities = frozenset({"embed"})

    def create(self, **params):
        return ("embedder", params)


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
    assert {"keras.xception", "morphology.statmorph", "morphology.random-forest"} <= set(emb)
    assert "morphology.statmorph" not in cls  # capabilities, not groups, say what it does
    x = cls["keras.xception"]
    assert x.input_size == 299 and x.can_embed and x.bands == ("g", "r", "i")
    assert x.capabilities == {"classify", "embed", "distributed"}
    assert x.name == "keras.xception" and x.distribution == "catbuilder-keras"
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
        get_plugin("keras.xceptoin", "classifier")
    msg = str(info.value)
    assert "unknown classifier plugin 'keras.xceptoin'" in msg
    assert "keras.xception" in msg and "pip install" in msg
    with pytest.raises(ValueError, match="kind must be"):
        list_plugins("regressor")
    with pytest.raises(ValueError, match=r"'morphology\.statmorph' cannot classify"):
        get_plugin("morphology.statmorph", "classifier")


def test_broken_and_foreign_plugins_are_reported_where_used(fake_entry_points):
    mod = __name__
    fake_entry_points["catbuilder.models"] = [
        _ep("good", f"{mod}:GoodPlugin"),
        _ep("broken", "catbuilder_no_such_module:Plugin"),
        _ep("foreign", "pathlib:Path"),
    ]
    with pytest.warns(RuntimeWarning) as rec:
        found = list_plugins()
    messages = " | ".join(str(w.message) for w in rec)
    assert "'broken'" in messages and "failed to load" in messages
    assert "'foreign'" in messages and "not a catbuilder.plugins.ModelPlugin" in messages
    assert list(found) == ["good"]
    assert make_model("good", alpha=1) == ("model", {"alpha": 1})
    with pytest.raises(ValueError) as info:
        make_model("broken")
    msg = str(info.value)
    assert "plugin 'broken' (catbuilder_no_such_module:Plugin" in msg
    assert "failed to load: ModuleNotFoundError: No module named 'catbuilder_no_such_module'" in msg
    assert "unknown" not in msg


class _Dist:
    def __init__(self, name):
        self.name = name


def test_one_name_from_two_distributions_is_an_error_naming_both(fake_entry_points):
    mod = __name__
    a, b = _ep("twin", f"{mod}:GoodPlugin"), _ep("twin", f"{mod}:EmbedOnly")
    object.__setattr__(a, "dist", _Dist("lab-a"))
    object.__setattr__(b, "dist", _Dist("lab-b"))
    fake_entry_points["catbuilder.models"] = [a, b]
    with pytest.warns(RuntimeWarning, match="provided by 2 installed distributions"):
        assert "twin" not in list_plugins()
    with pytest.raises(
        ValueError, match=r"'twin' is provided by 2 installed distributions: .*lab-b and .*lab-a"
    ):
        get_plugin("twin")
    # a saved model records its distribution, which settles it
    assert get_plugin("twin", distribution="lab-b").capabilities == {"embed"}


def test_a_plugin_class_is_accepted_where_a_name_is():
    assert make_model(GoodPlugin, beta=2) == ("model", {"beta": 2})
    assert get_plugin(EmbedOnly()).capabilities == {"embed"}
    with pytest.raises(ValueError, match="cannot classify"):
        get_plugin(EmbedOnly, "classifier")


def test_discovery_is_cached_refreshable_and_configurable(fake_entry_points):
    mod = __name__
    assert list_plugins() == {}
    fake_entry_points["catbuilder.models"] = [_ep("good", f"{mod}:GoodPlugin")]
    assert list_plugins() == {}  # cached
    refresh_plugins()
    assert list(list_plugins()) == ["good"]
    with config.set({"plugins.disabled": ["good"]}):
        refresh_plugins()
        assert list_plugins() == {}
    refresh_plugins()


def test_installed_plugins_helper_registers_and_restores():
    from catbuilder.testing import installed_plugins

    with installed_plugins({"only.me": GoodPlugin}):
        assert list(list_plugins()) == ["only.me"]
    assert "keras.small-cnn" in list_plugins()
    with installed_plugins({"also.me": GoodPlugin}, keep_installed=True):
        assert {"also.me", "keras.small-cnn"} <= set(list_plugins())


def test_cli_lists_plugins_with_capabilities():
    res = subprocess.run(
        [sys.executable, "-m", "catbuilder.cli", "plugins"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    lines = {line.split()[0]: line for line in res.stdout.splitlines() if line.strip()}
    assert "classify, distributed, embed]" in lines["keras.small-cnn"]
    assert lines["morphology.statmorph"].endswith("any size; embed]")


def _pip_target(source: Path, target: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr


@pytest.fixture
def on_path(monkeypatch):
    """Put a directory on sys.path and PYTHONPATH (Dask workers and CLI runs see it too)."""
    added = []

    def add(target: Path) -> None:
        monkeypatch.syspath_prepend(str(target))
        old = os.environ.get("PYTHONPATH")
        monkeypatch.setenv("PYTHONPATH", str(target) + (os.pathsep + old if old else ""))
        added.append(target)
        refresh_plugins()

    yield add
    monkeypatch.undo()
    for name in [m for m in sys.modules if m.startswith(("catbuilder_plugin_example", "pixel"))]:
        del sys.modules[name]
    refresh_plugins()


def test_example_third_party_plugin_works_through_the_registry(
    on_path, des_stack, mock_survey, tmp_path
):
    _pip_target(ROOT / "examples" / "catbuilder-plugin-example", tmp_path / "site")
    on_path(tmp_path / "site")
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
    again = load_model(path)
    np.testing.assert_allclose(again.predict_proba(X), est.predict_proba(X), rtol=1e-5)
    report = check_plugin("example.colour-centroid", workdir=tmp_path)
    assert set(report) >= {"discovery", "fit", "predict_proba", "save/load", "iter_predictions"}


def _docs_plugin(tmp_path: Path) -> Path:
    """Build the plugin that docs/plugins.md shows, from its code blocks alone."""
    import re

    text = (ROOT / "docs" / "plugins.md").read_text()
    pkg = tmp_path / "pixelforest-src"
    pkg.mkdir()
    for block in re.findall(r"```(?:python|toml)\n(# (\S+)\n.*?)```", text, flags=re.S):
        body, name = block
        (pkg / name).write_text(body.split("\n", 1)[1])
    assert sorted(p.name for p in pkg.iterdir()) == ["pixelforest.py", "pyproject.toml"]
    code = (pkg / "pixelforest.py").read_text().strip().splitlines()
    assert len(code) < 60, f"the documented plugin has {len(code)} lines"
    return pkg


@pytest.mark.slow
@pytest.mark.parametrize(
    ("source", "name", "params"),
    [
        ("docs", "pixelforest", {"n_estimators": 30}),
        ("example", "example.colour-centroid", {"radius": 4}),
    ],
)
def test_plugins_go_through_the_whole_cli(
    source, name, params, on_path, hp_stack, tmp_path, monkeypatch
):
    """pip install the docs' plugin (built from docs/plugins.md alone) or the
    example plugin; plugins, check_plugin, train, predict, evaluate and every
    file catalog writer, through the CLI, with no change to the core."""
    pkg = (
        _docs_plugin(tmp_path)
        if source == "docs"
        else ROOT / "examples" / "catbuilder-plugin-example"
    )
    _pip_target(pkg, tmp_path / "site")
    on_path(tmp_path / "site")
    monkeypatch.chdir(tmp_path)
    cli = [sys.executable, "-m", "catbuilder.cli"]

    def run(*args):
        res = subprocess.run(cli + [str(a) for a in args], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-2000:]
        return res.stdout

    listing = run("plugins")
    assert name in listing and "classify, embed" in listing
    report = check_plugin(name, params=params, workdir=tmp_path)
    assert float(report["predict_proba"].rsplit(" ", 1)[1]) >= 0.8
    run("train", hp_stack.path, "--model", name, "-o", "m.model", "--params", json.dumps(params))
    manifest = json.loads((tmp_path / "m.model" / "catbuilder-model.json").read_text())
    assert manifest["plugin"] == name and manifest["distribution"]["name"] in (
        "pixelforest",
        "catbuilder-plugin-example",
    )
    out = run("predict", hp_stack.path, "--model-dir", "m.model", "-o", "cat.parquet",
              "--workers", "1", "--no-progress", "--predictions", "p.zarr")  # fmt: skip
    assert f"{len(hp_stack)} objects -> cat.parquet" in out
    for catalog in ("cat.fits", "cat.vot"):
        run("predict", hp_stack.path, "--model-dir", "m.model", "-o", catalog, "--workers", "1",
            "--no-progress", "--predictions", "p.zarr")  # fmt: skip
    ev = run("evaluate", "cat.parquet", "-o", "metrics.csv")
    import pandas as pd

    metrics = pd.read_csv("metrics.csv")
    test_acc = metrics.query("group == 'test' and metric == 'accuracy'")["value"].iloc[0]
    assert test_acc > 0.8, ev
    from astropy.table import Table

    assert len(Table.read("cat.fits")) == len(Table.read("cat.vot")) == len(hp_stack)
    cat = pd.read_parquet("cat.parquet")
    assert cat["p_spiral"].notna().sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "params", "n"),
    [
        ("keras.small-cnn", {"epochs": 2, "batch_size": 8, "input_size": 32}, 40),
        ("morphology.random-forest", {"n_estimators": 20}, 20),
        ("morphology.statmorph", {}, 20),
    ],
)
def test_shipped_plugins_keep_the_contract(name, params, n, tmp_path):
    report = check_plugin(name, params=params, n_objects=n, workdir=tmp_path)
    assert "save/load" in report and "discovery" in report
    if name.startswith("keras"):
        assert report["distributed"] == "catbuilder_keras.distributed:rank_main"


def test_load_model_finds_the_plugin_that_saved_it(tmp_path):
    est = make_model("morphology.random-forest", n_estimators=5)
    F = np.random.default_rng(0).normal(size=(20, 21))
    est.fit(np.zeros((20, 3, 16, 16)), ["a", "b"] * 10, features=F)
    est.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    np.testing.assert_array_equal(again.predict(None, features=F), est.predict(None, features=F))
    with pytest.raises(FileNotFoundError, match="no saved model"):
        load_model(tmp_path)
    (tmp_path / "x").mkdir()  # a manifest naming a plugin that is not installed
    (tmp_path / "x" / "catbuilder-model.json").write_text('{"plugin": "nobody.model"}')
    with pytest.raises(ValueError, match=r"unknown plugin 'nobody\.model'"):
        load_model(tmp_path / "x")
    (tmp_path / "m" / "notes.txt").write_text("mine")  # save never clobbers foreign files
    with pytest.raises(OutputExistsError, match="does not list"):
        est.save(tmp_path / "m")
    assert (tmp_path / "m" / "notes.txt").read_text() == "mine"


def test_a_resave_removes_only_files_inside_the_model_directory(tmp_path):
    (tmp_path / "keep.txt").write_text("outside")
    est = make_model("morphology.random-forest", n_estimators=3)
    F = np.random.default_rng(0).normal(size=(10, 21))
    est.fit(np.zeros((10, 3, 8, 8)), ["a", "b"] * 5, features=F)
    est.save(tmp_path / "m")
    manifest = tmp_path / "m" / "catbuilder-model.json"
    m = json.loads(manifest.read_text())
    m["files"]["../keep.txt"] = "edited by hand"
    manifest.write_text(json.dumps(m))
    est.save(tmp_path / "m")
    assert (tmp_path / "keep.txt").read_text() == "outside"
    assert set(json.loads(manifest.read_text())["files"]) == {"estimator.joblib"}


@pytest.mark.parametrize("name", ["morphology.random-forest", "morphology.gradient-boosting"])
def test_a_cloned_model_saves_and_loads_with_its_plugin_name(name, tmp_path):
    """Nothing is stamped on the estimator: the registry finds its plugin again
    by class and fixed parameters, so sklearn's clone loses nothing."""
    from catbuilder_morphology.features import feature_names
    from sklearn.base import clone

    from catbuilder.models import read_manifest, save_model

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3, 16, 16)).astype(np.float32)
    y = np.array(["spiral", "elliptical"] * 20)
    features = rng.normal(size=(40, len(feature_names(["g", "r", "i"]))))
    est = clone(make_model(name)).fit(X, y, features=features)
    path = save_model(est, tmp_path / "m.model")
    manifest = read_manifest(path)
    assert manifest["plugin"] == name
    assert manifest["distribution"]["name"] == "catbuilder-morphology"
    assert manifest["embedding_dim"] == est.n_features_out_
    again = load_model(path)
    assert type(again) is type(est) and again.get_params() == est.get_params()
    refit = clone(again).fit(X, y, features=features)
    assert read_manifest(save_model(refit, tmp_path / "again.model"))["plugin"] == name
