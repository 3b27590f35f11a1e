"""The Keras plugin: architectures, the paper's stages, the estimator contract."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from catbuilder_keras.schedule import Stage, stages_from_config
from train_params import small_cnn_params

from catbuilder.plugins import get_plugin, make_model
from catbuilder.training import train

TINY = [
    {"name": "head", "epochs": 1, "learning-rate": 1e-4, "trainable-from": "head"},
    {"name": "top", "epochs": 1, "learning-rate": 1e-4, "trainable-from": "top"},
    {"name": "all", "epochs": 1, "learning-rate": 1e-5, "trainable-from": "all"},
]


def _labelled(stack, truth_survey):
    """Truth classes for the galaxies of a stack (stars dropped)."""
    truth = truth_survey.read_truth().set_index("truth_id")
    src = truth_survey["des-like"].read_sources().set_index("objid")
    y = truth.loc[src.loc[stack.objects()["objid"], "truth_id"], "cls"].to_numpy()
    keep = np.flatnonzero(y != "star")
    return stack.isel(keep), y[keep]


def test_xception_head_and_freezing_points_follow_the_paper():
    from catbuilder_keras.architectures import build_model, set_trainable

    model, base = build_model("xception", 71, 2)
    assert base.name == "xception" and len(base.layers) == 132
    emb = model.get_layer("embedding")
    assert emb.units == 1024 and emb.activation.__name__ == "relu"
    assert model.get_layer("dropout0").rate == 0.7
    assert model.get_layer("probabilities").units == 2
    assert model.output_shape == (None, 2)
    assert set_trainable(base, "xception", "head") == 0
    assert set_trainable(base, "xception", "top") == 132 - 40
    assert not base.layers[39].trainable and base.layers[40].trainable
    assert set_trainable(base, "xception", "all") == 132 - 2
    assert not base.layers[1].trainable and base.layers[2].trainable
    assert set_trainable(base, "xception", 100) == 32
    n_head = len(model.trainable_weights)
    set_trainable(base, "xception", "head")
    assert len(model.trainable_weights) < n_head


@pytest.mark.parametrize(
    "name,size",
    [("resnet50", 32), ("inceptionv3", 75), ("vgg16", 32), ("vgg19", 32), ("small-cnn", 32)],
)
def test_every_architecture_builds_with_the_head(name, size):
    from catbuilder_keras.architectures import build_model

    model, _base = build_model(name, size, 3)
    assert model.get_layer("embedding").units == 1024
    out = model.predict_on_batch(np.zeros((2, size, size, 3), np.float32))
    assert out.shape == (2, 3) and np.allclose(out.sum(axis=1), 1, atol=1e-5)


def test_too_small_inputs_and_unknown_architecture():
    from catbuilder_keras.architectures import build_model

    with pytest.raises(ValueError, match="at least 71 px"):
        build_model("xception", 64, 2)
    with pytest.raises(ValueError, match="unknown architecture 'alexnet'"):
        build_model("alexnet", 64, 2)


def test_imagenet_weights_are_never_downloaded(tmp_path, monkeypatch):
    from catbuilder_keras.architectures import build_model, resolve_weights

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(FileNotFoundError) as info:
        resolve_weights("xception", "imagenet")
    msg = str(info.value)
    assert "xception_weights_tf_dim_ordering_tf_kernels_notop.h5" in msg
    assert str(tmp_path / "keras" / "models") in msg and "never downloads" in msg
    # a user-supplied file in Keras's cache is used, as is an explicit path
    _, base = build_model("xception", 71, 2)
    cache = tmp_path / "keras" / "models"
    cache.mkdir(parents=True)
    f = cache / "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"
    base.save_weights(f)
    assert resolve_weights("xception", "imagenet") == str(f)
    _, loaded = build_model("xception", 71, 2, weights=str(f))
    np.testing.assert_array_equal(
        loaded.layers[1].get_weights()[0], base.layers[1].get_weights()[0]
    )
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        resolve_weights("xception", tmp_path / "nope.h5")


def test_xception_runs_the_three_stages(des_stack, mock_survey, tmp_path, monkeypatch):
    X, y = _labelled(des_stack, mock_survey)
    X, y = X.isel(slice(0, 24)), y[:24]
    # a weights file where Keras keeps ImageNet's (a random base's: no download here)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    from catbuilder_keras.architectures import build_model
    from catbuilder_keras.weights import cache_path

    _, base = build_model("xception", 71, 2)
    cache_path("xception").parent.mkdir(parents=True)
    base.save_weights(cache_path("xception"))
    est = make_model("keras.xception", input_size=71, stages=TINY, batch_size=8)
    assert est.get_params()["weights"] == "imagenet"  # transfer learning by default
    est.fit(X, y, validation_data=(X, y), checkpoint_dir=tmp_path / "ck")
    h = est.history_
    assert list(h["stage"]) == ["head", "top", "all"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr"} <= set(h.columns)
    assert np.allclose(h["lr"], [1e-4, 1e-4, 1e-5])
    proba = est.predict_proba(X)
    assert proba.shape == (24, 2) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert est.transform(X).shape == (24, 1024)
    state = json.loads((tmp_path / "ck" / "state.json").read_text())
    assert state["done"] and len(state["history"]) == 3


def test_estimator_follows_scikit_learn_conventions():
    from sklearn.base import clone
    from sklearn.utils.estimator_checks import (
        check_get_params_invariance,
        check_no_attributes_set_in_init,
        check_parameters_default_constructible,
        check_set_params,
    )

    est = make_model("keras.small-cnn", batch_size=4)
    name = type(est).__name__
    check_no_attributes_set_in_init(name, est)
    check_get_params_invariance(name, est)
    check_set_params(name, est)
    check_parameters_default_constructible(name, est)
    c = clone(est).set_params(dropout=0.5)
    assert c.get_params()["dropout"] == 0.5 and est.get_params()["dropout"] == 0.7
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        est.predict_proba(np.zeros((1, 3, 32, 32), np.float32))


def _red_and_blue() -> tuple[np.ndarray, np.ndarray]:
    """64 noisy 3-band 32 px cutouts: "red" objects are a blob bright in i, "blue" in g."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32] - 16
    blob = np.exp(-(xx**2 + yy**2) / 30.0)
    X = rng.normal(0, 1, (64, 3, 32, 32)).astype(np.float32)
    y = np.array(["red", "blue"] * 32)
    X[y == "red", 2] += 40 * blob
    X[y == "blue", 0] += 40 * blob
    return X, y


def test_small_cnn_on_arrays_save_and_load(tmp_path):
    X, y = _red_and_blue()
    est = make_model(
        "keras.small-cnn",
        input_size=32,
        batch_size=16,
        augment=False,
        stages=[{"name": "all", "epochs": 6, "learning-rate": 3e-3, "trainable-from": "all"}],
    )
    est.fit(X, y)
    assert list(est.classes_) == ["blue", "red"]
    assert (est.predict(X) == y).mean() > 0.9
    est.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "catbuilder-model.json").read_text())
    assert meta["plugin"] == "keras.small-cnn" and len(meta["weights_sha256"]) == 64
    assert meta["distribution"]["name"] == "catbuilder-keras"
    assert set(meta["files"]) == {"estimator.json", "model.weights.h5"}
    assert meta["versions"]["tensorflow"].startswith("2.18")
    again = get_plugin("keras.small-cnn").load(str(tmp_path / "m"))
    np.testing.assert_allclose(again.predict_proba(X), est.predict_proba(X), atol=1e-6)
    np.testing.assert_allclose(again.transform(X), est.transform(X), atol=1e-5)


def test_warm_start_fine_tunes_the_fitted_weights(hp_stack):
    from catbuilder.training.distributed import fit_distributed

    rng = np.random.default_rng(1)
    X = rng.normal(0, 1, (32, 3, 32, 32)).astype(np.float32)
    y = np.array(["a", "b"] * 16)
    X[y == "a", 1] += 3.0

    def stages(lr):
        return [{"name": "all", "epochs": 1, "learning-rate": lr, "trainable-from": "all"}]

    est = make_model("keras.small-cnn", input_size=32, batch_size=16, augment=False,
                     stages=stages(3e-3))  # fmt: skip
    est.fit(X, y)
    before = [w.numpy().copy() for w in est.model_.trainable_weights]

    def moved(other):  # trainable weights: batch norm's moving statistics follow the data
        after = [w.numpy() for w in other.model_.trainable_weights]
        return max(float(np.abs(a - b).max()) for a, b in zip(before, after))

    # a learning rate too small to move anything: a warm fit keeps the weights, a new one does not
    est.set_params(warm_start=True, stages=stages(1e-12))
    est.fit(X, y)
    assert moved(est) < 1e-6
    cold = make_model("keras.small-cnn", input_size=32, batch_size=16, augment=False,
                      stages=stages(1e-12), seed=1)  # fmt: skip
    assert moved(cold.fit(X, y)) > 1e-2
    with pytest.raises(ValueError, match="classes the model was fitted on"):
        est.fit(X, np.where(y == "a", "a", "c"))
    # ranks would start from new weights: refused before any cluster starts
    with pytest.raises(ValueError, match=r"a warm start .* trains in one process"):
        fit_distributed(est, hp_stack, cluster="local", workers=2)


def test_augmentation_follows_the_paper():
    from catbuilder_keras.data import augmenter

    aug = augmenter(seed=1)
    kinds = [type(layer).__name__ for layer in aug.layers]
    assert kinds == ["RandomFlip", "RandomRotation", "RandomTranslation", "RandomZoom"]
    assert aug.layers[1].factor == pytest.approx(45 / 360)
    assert aug.layers[2].height_factor == 0.3 and aug.layers[3].height_factor == (-0.3, 0.3)
    x = np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
    out = aug(x, training=True).numpy()
    assert out.shape == x.shape and not np.allclose(out, x)
    assert out.min() >= -1 and out.max() <= 1
    np.testing.assert_array_equal(aug(x, training=False).numpy(), x)


def test_stage_schedule_is_data():
    s = Stage.from_dict({"name": "top", "epochs": 2, "learning-rate": 1e-4, "trainable-from": 40})
    assert s.trainable_from == 40 and s.to_dict()["learning_rate"] == 1e-4
    with pytest.raises(ValueError, match="unknown stage key"):
        Stage.from_dict({"name": "x", "epochs": 1, "learning-rate": 1, "freeze": 3})
    with pytest.raises(ValueError, match="trainable-from"):
        Stage.from_dict({"name": "x", "epochs": 1, "learning-rate": 1, "trainable-from": "x"})
    paper = stages_from_config()
    assert [(p.name, p.trainable_from) for p in paper] == [
        ("head", "head"),
        ("top", "top"),
        ("all", "all"),
    ]


_KILLABLE_FIT = textwrap.dedent(
    """
    import sys
    from catbuilder.stack import open_stack
    from catbuilder.training import train
    train(open_stack(sys.argv[1]), "keras.small-cnn", checkpoint_dir=sys.argv[2],
          params={"batch_size": 16, "input_size": 32, "early_stopping_patience": 100,
                  "stages": "whole-network", "epochs": int(sys.argv[3])})
    """
)


def _fit_until_killed(stack, ck, epochs, stop_after):
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE_FIT, str(stack.path), str(ck), str(epochs)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        state_path = ck / "state.json"
        if state_path.exists() and json.loads(state_path.read_text())["epoch"] >= stop_after:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return json.loads((ck / "state.json").read_text())


def test_training_resumes_from_the_last_checkpoint(hp_stack, tmp_path):
    ck = tmp_path / "ck"
    stopped = _fit_until_killed(hp_stack, ck, epochs=6, stop_after=2)
    assert not stopped["done"] and 2 <= stopped["epoch"] < 6
    n0 = stopped["epoch"]
    res = train(hp_stack, "keras.small-cnn", checkpoint_dir=ck, params=small_cnn_params(6))
    rows = res.history.to_dict(orient="records")
    # the epochs before the stop are the saved ones; training went on from there
    assert [r["epoch"] for r in rows] == list(range(1, 7))
    for saved, now in zip(stopped["history"], rows[:n0]):
        assert saved["seconds"] == now["seconds"] and saved["loss"] == now["loss"]
    assert json.loads((ck / "state.json").read_text())["done"]
    # calling it again on a finished run trains nothing and restores the model
    t = time.perf_counter()
    again = train(hp_stack, "keras.small-cnn", checkpoint_dir=ck, params=small_cnn_params(6))
    assert len(again.history) == 6 and time.perf_counter() - t < 30
    probe = hp_stack.isel(slice(0, 16))
    np.testing.assert_allclose(
        again.model.predict_proba(probe), res.model.predict_proba(probe), atol=1e-5
    )


def test_changed_schedule_starts_over(hp_stack, tmp_path):
    ck = tmp_path / "ck"
    train(hp_stack, "keras.small-cnn", checkpoint_dir=ck, params=small_cnn_params(1))
    with pytest.warns(RuntimeWarning, match="different model or data"):
        res = train(hp_stack, "keras.small-cnn", checkpoint_dir=ck, params=small_cnn_params(2))
    assert res.history["epoch"].tolist() == [1, 2]


def test_keras_settings_come_from_the_plugin_configuration():
    """The plugin's packaged YAML is merged into catbuilder's configuration."""
    from catbuilder import config

    assert config.get("keras.augment") == "paper"
    assert [s["name"] for s in config.get("keras.stages")] == ["head", "top", "all"]
    with config.set({"keras.stages": [{"name": "x", "epochs": 1, "learning-rate": 1e-3}]}):
        assert [s.name for s in stages_from_config()] == ["x"]
    with pytest.raises(config.ConfigKeyError, match="Did you mean 'augment'"):
        with config.set({"keras.augmnt": "rotations"}):
            pass
    env = get_plugin("keras.small-cnn").worker_env(3)
    assert env["TF_NUM_INTRAOP_THREADS"] == "3" and env["TF_USE_LEGACY_KERAS"] == "1"


def test_resize_in_model_gives_the_cpu_paths_probabilities():
    """keras.resize-in-model: cutouts go in at their own size and the model
    resizes them with the CPU path's bilinear weights; the same answers."""
    from catbuilder import config

    rng = np.random.default_rng(0)
    est = make_model(
        "keras.small-cnn",
        input_size=96,
        batch_size=8,
        augment=False,
        stages=[{"name": "head", "epochs": 1, "learning-rate": 1e-4, "trainable-from": "head"}],
    )
    X = rng.normal(10, 3, (48, 3, 40, 40)).astype(np.float32)
    est.fit(X[:16], ["elliptical", "spiral"] * 8)
    on_cpu, emb_cpu = est.predict_proba(X), est.transform(X)
    with config.set({"keras.resize-in-model": True}):
        in_model, emb_model = est.predict_proba(X), est.transform(X)
    assert set(est._fns) >= {(False, 40), (True, 40)}  # the resizing calls were used
    np.testing.assert_allclose(in_model, on_cpu, atol=1e-5)
    np.testing.assert_allclose(emb_model, emb_cpu, atol=1e-4, rtol=1e-4)


def test_schedules_have_names():
    from catbuilder_keras.schedule import Stage, stages_from_config

    assert stages_from_config("whole-network") == [Stage("all", 15, 1e-3, "all")]
    assert [s.trainable_from for s in stages_from_config("paper")] == ["head", "top", "all"]
    assert stages_from_config("paper") == stages_from_config(None)
    with pytest.raises(ValueError, match="unknown schedule 'two-stage': paper, whole-network"):
        stages_from_config("two-stage")
    small = make_model("keras.small-cnn", epochs=3)
    assert [(s.name, s.epochs) for s in small._stages()] == [("all", 3)]


def test_a_random_base_trains_whole_or_is_refused(tmp_path, monkeypatch):
    """weights=None with a schedule that freezes the base is refused in one line;
    with the whole-network schedule it trains."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    X = np.random.default_rng(0).normal(size=(8, 3, 71, 71)).astype(np.float32)
    y = ["spiral", "elliptical"] * 4
    frozen = make_model("keras.xception", weights=None, input_size=71, batch_size=4)
    with pytest.raises(
        ValueError,
        match=r"frozen random base in stage\(s\) head, top: use "
        r"weights='imagenet' \(catbuilder weights add keras\.xception FILE\)",
    ):
        frozen.fit(X, y)
    assert not hasattr(frozen, "model_")
    whole = make_model("keras.xception", weights=None, input_size=71, batch_size=4,
                       stages="whole-network", epochs=1)  # fmt: skip
    assert whole.fit(X, y).predict_proba(X).shape == (8, 2)
    with pytest.raises(FileNotFoundError, match=r"catbuilder weights add keras\.xception FILE"):
        make_model("keras.xception", input_size=71, stages="whole-network").fit(X, y)


def test_weights_add_checks_the_published_hash(tmp_path, monkeypatch):
    from catbuilder_keras import weights

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    fake = tmp_path / "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"
    fake.write_bytes(b"not the published file")
    with pytest.raises(
        ValueError,
        match=r"is not Keras's xception_weights.* published b0042744bf5b25fce3cb969f33bebb97",
    ):
        get_plugin("keras.xception").add_weights(str(fake))
    assert not weights.cache_path("xception").exists()
    # the published file is accepted (its hash made to be the published one here)
    monkeypatch.setitem(weights.FILES, "xception", (*weights.FILES["xception"][:2],
                        weights._md5(fake)))  # fmt: skip
    dst = get_plugin("keras.xception").add_weights(str(fake))
    assert (
        Path(dst) == weights.cache_path("xception") and Path(dst).read_bytes() == fake.read_bytes()
    )
    with pytest.raises(ValueError, match="small-cnn has no ImageNet weights"):
        get_plugin("keras.small-cnn").add_weights(str(fake))


def test_soft_targets_and_vote_weights_reach_the_network(fo_stack):
    from catbuilder_keras.data import make_dataset

    from catbuilder.models.estimator import mean_votes, soft_targets
    from catbuilder.stack.preprocess import Preprocessor

    classes = ["elliptical", "spiral"]
    ds = make_dataset(fo_stack, bands=fo_stack.bands, size=32, preprocessor=Preprocessor(),
                      batch_size=50, classes=classes, soft=True,
                      mean_votes=mean_votes(fo_stack))  # fmt: skip
    images, targets, weights = (np.concatenate(a) for a in zip(*ds.as_numpy_iterator()))
    t = fo_stack.objects()
    want = soft_targets(t["label"].to_numpy(), t, classes)
    np.testing.assert_allclose(targets, want, atol=1e-6)
    np.testing.assert_allclose(weights, t["label_votes"] / t["label_votes"].mean(), rtol=1e-5)
    assert images.shape == (len(fo_stack), 32, 32, 3)
    assert ((targets > 0) & (targets < 1)).any()  # soft, not one-hot


def test_backward_passes_make_one_update_per_group_of_batches():
    from catbuilder import config

    X, y = _red_and_blue()
    fitted = {}
    for passes in (1, 2):
        est = make_model(
            "keras.small-cnn",
            input_size=32,
            batch_size=8,
            augment=False,
            stages=[{"name": "all", "epochs": 8, "learning-rate": 3e-3, "trainable-from": "all"}],
        )
        with config.set({"train.backward-passes-per-step": passes}):
            est.fit(X, y)
        fitted[passes] = est
    # an update every batch, or one of the summed gradients of every 2 batches
    batches = int(fitted[1].model_.optimizer.iterations)
    assert batches >= 64 and int(fitted[2].model_.optimizer.iterations) == batches // 2
    assert (fitted[2].predict(X) == y).mean() > 0.9
    # the gradient sums are no weights of the model
    assert len(fitted[2].model_.weights) == len(fitted[1].model_.weights)
    with config.set({"train.backward-passes-per-step": 0}):
        with pytest.raises(ValueError, match="backward-passes-per-step must be >= 1"):
            make_model("keras.small-cnn", input_size=32, epochs=1).fit(X, y)
