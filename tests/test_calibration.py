"""Calibrated probabilities and ensembles: fitted by train, applied by predict,
shown by evaluate."""

import matplotlib.image as mpimg
import numpy as np
import pytest

from catbuilder.errors import InputWarning
from catbuilder.models.calibration import (
    Calibration,
    expected_calibration_error,
    fit_calibration,
)


def _overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three classes; right 75% of the time but always at ~0.97."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    pred = np.where(rng.random(n) < 0.75, y, (y + rng.integers(1, 3, n)) % 3)
    logits = rng.normal(0, 0.3, (n, 3))
    logits[np.arange(n), pred] += 4.0
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True), y


def test_temperature_scaling_calibrates_held_out_objects_without_changing_classes():
    p_fit, y_fit = _overconfident(3000, 0)
    p_new, y_new = _overconfident(3000, 1)
    cal = fit_calibration(p_fit, y_fit, "temperature")
    assert cal.temperature > 1.5 and cal.applied  # overconfident: softened
    assert cal.held_out_ece < 0.05 < cal.ece_before
    before = expected_calibration_error(y_new, p_new)
    after = expected_calibration_error(y_new, cal.apply(p_new))
    assert before > 0.15 and after < 0.02, (before, after)
    np.testing.assert_array_equal(cal.apply(p_new).argmax(1), p_new.argmax(1))
    np.testing.assert_allclose(cal.apply(p_new).sum(1), 1, atol=1e-6)
    again = Calibration.from_dict(cal.to_dict())  # as the manifest stores it
    np.testing.assert_array_equal(again.apply(p_new), cal.apply(p_new))


def test_a_map_that_would_not_help_on_held_out_objects_is_not_applied():
    rng = np.random.default_rng(3)
    p1 = rng.uniform(0.02, 0.98, 600)  # calibrated already: class 1 with probability p1
    y = (rng.random(600) < p1).astype(int)
    p = np.c_[1 - p1, p1]
    cal = fit_calibration(p, y, "isotonic")  # a step function fits the noise
    assert cal.ece_after < cal.ece_before <= cal.held_out_ece and not cal.applied
    np.testing.assert_array_equal(cal.apply(p), p.astype(np.float32))
    assert Calibration.from_dict(cal.to_dict()).applied is False


def test_isotonic_calibration_for_scores_that_are_no_softmax():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 4000)
    score = np.clip(0.5 + (2 * y - 1) * rng.uniform(0, 0.5, 4000) ** 2 * 2, 0, 1)  # too timid
    p = np.c_[1 - score, score]
    cal = fit_calibration(p[:2000], y[:2000], "isotonic")
    after = expected_calibration_error(y[2000:], cal.apply(p[2000:]))
    assert expected_calibration_error(y[2000:], p[2000:]) > 0.1 > 0.03 > after
    np.testing.assert_allclose(cal.apply(p).sum(1), 1, atol=1e-6)


def test_wrong_calibration_method_is_one_line():
    with pytest.raises(ValueError, match="unknown calibration method 'platt'; one of"):
        fit_calibration(np.eye(2), np.arange(2), "platt")
    assert fit_calibration(np.eye(2), np.arange(2), "none") is None


def test_a_trained_model_is_calibrated_on_validation_and_predict_applies_it(
    hp_stack, small_model, dask_client, tmp_path
):
    from catbuilder import build_catalog, evaluate, load_model, predict
    from catbuilder.models import read_manifest

    cal = read_manifest(small_model)["calibration"]
    n_val = len(hp_stack.select(split="validation", exclude=["off_footprint", "missing_band"]))
    assert cal["method"] == "temperature" and cal["n"] == n_val and not cal["tta"]
    assert cal["ece_after"] <= cal["ece_before"]
    preds = predict(hp_stack, small_model, output=tmp_path / "p.zarr", cluster=dask_client,
                    progress=False)  # fmt: skip
    assert preds.calibrated and preds.meta["parameters"]["calibration"] == cal
    model = load_model(small_model)
    raw = preds.probabilities(calibrated=False)
    np.testing.assert_allclose(preds.probabilities(), model.calibration_.apply(raw), atol=1e-6)
    cat = build_catalog(preds)
    assert {"raw_p_spiral", "raw_p_elliptical", "entropy"} <= set(cat.columns)
    assert "member_std" not in cat.columns  # one model
    p = cat[["p_elliptical", "p_spiral"]].to_numpy()
    np.testing.assert_allclose(cat["entropy"], -(p * np.log(p)).sum(1), rtol=1e-4, atol=1e-6)
    ev = evaluate(cat)
    m = ev.table().set_index(["group", "class"])
    for group in ("all", "test", "validation"):
        row = m.loc[(group, "all")]
        assert 0 <= row["ece"] <= 1 and 0 <= row["ece_uncalibrated"] <= 1
        assert 0 <= row["error_auroc_entropy"] <= 1 or np.isnan(row["error_auroc_entropy"])
    test = cat[cat["split"] == "test"]
    y = (test["label"] == "spiral").to_numpy().astype(int)
    raw_test = test[["raw_p_elliptical", "raw_p_spiral"]].to_numpy()
    assert m.loc[("test", "all"), "ece_uncalibrated"] == pytest.approx(
        expected_calibration_error(y, raw_test)
    )
    assert set(ev.reliability["probabilities"]) == {"calibrated", "uncalibrated"}
    assert "ECE" in ev.summary() and "uncalibrated" in ev.summary()
    png = [p for p in ev.plot(tmp_path / "plots") if p.name == "reliability.png"]
    assert png and mpimg.imread(png[0]).std() > 0.02
    with pytest.warns(InputWarning, match="calibrated on probabilities without test-time"):
        predict(hp_stack.isel(slice(0, 16)), small_model, output=tmp_path / "t.zarr",
                cluster=dask_client, tta=True, progress=False)  # fmt: skip


def test_no_validation_split_leaves_the_model_uncalibrated_and_says_so(hp_stack, tmp_path):
    from catbuilder import train

    sub = hp_stack.select(split="train").isel(slice(0, 64))
    params = {"batch_size": 32, "input_size": 32, "stages": "whole-network", "epochs": 1}
    with pytest.warns(InputWarning, match="not calibrated"):
        res = train(sub, "keras.small-cnn", params=params, validation=None,
                    checkpoint_dir=tmp_path / "ck")  # fmt: skip
    assert getattr(res.model, "calibration_", None) is None
    res = train(sub, "keras.small-cnn", params=params, validation=None, calibration="none",
                checkpoint_dir=tmp_path / "ck2")  # fmt: skip
    assert getattr(res.model, "calibration_", None) is None
    with pytest.raises(ValueError, match="unknown calibration method 'plat'"):
        train(sub, "keras.small-cnn", params=params, calibration="plat",
              checkpoint_dir=tmp_path / "ck3")  # fmt: skip


def test_an_ensemble_trains_on_workers_and_predicts_as_one_model(hp_stack, dask_client, tmp_path):
    from distributed import get_task_stream

    from catbuilder import build_catalog, evaluate, load_model, predict, train
    from catbuilder.models.ensemble import Ensemble

    params = {"batch_size": 32, "input_size": 32, "stages": "whole-network", "epochs": 1}
    with get_task_stream(dask_client) as ts:
        res = train(hp_stack, "keras.small-cnn", params=params, ensemble=2,
                    cluster=dask_client, checkpoint_dir=tmp_path / "ck",
                    output=tmp_path / "pair.model")  # fmt: skip
    on_workers = {t["key"] for t in ts.data}
    assert {"catbuilder-member-0", "catbuilder-member-1"} <= on_workers
    assert [m.seed for m in res.model.members_] == [0, 1]
    assert set(res.history["member"]) == {0, 1}
    model = load_model(tmp_path / "pair.model")
    assert isinstance(model, Ensemble) and len(model.members_) == 2
    assert model.calibration_.method == "temperature"
    one = hp_stack.isel(slice(0, 40))
    members = [m.predict_proba(one) for m in model.members_]
    assert not np.allclose(members[0], members[1])  # two seeds, two models
    np.testing.assert_allclose(model.predict_proba(one), np.mean(members, 0), atol=1e-6)
    preds = predict(one, tmp_path / "pair.model", output=tmp_path / "p.zarr",
                    cluster=dask_client, progress=False)  # fmt: skip
    np.testing.assert_allclose(preds.probabilities(calibrated=False), np.mean(members, 0),
                               atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(preds.member_std(), np.std(members, 0), atol=1e-5)
    np.testing.assert_allclose(preds.embeddings(), model.members_[0].transform(one), atol=1e-4)
    cat = build_catalog(preds)
    best = cat[["p_elliptical", "p_spiral"]].to_numpy().argmax(1)
    np.testing.assert_allclose(
        cat["member_std"], np.std(members, 0)[np.arange(len(one)), best], atol=1e-5
    )
    assert "error_auroc_member_std" in set(evaluate(cat).metrics["metric"])
    from catbuilder import save_model
    from catbuilder.errors import OutputExistsError

    stray = tmp_path / "pair.model" / "member-0" / "notes.txt"
    stray.write_text("not catbuilder's")
    with pytest.raises(OutputExistsError, match=r"member-0/notes\.txt"):
        save_model(model, tmp_path / "pair.model")
    assert len(load_model(tmp_path / "pair.model").members_) == 2  # left whole
    stray.unlink()
    scratch = tmp_path / "pair.model" / "scratch"  # an empty folder is someone's too
    scratch.mkdir()
    with pytest.raises(OutputExistsError, match="scratch"):
        save_model(model, tmp_path / "pair.model")
    assert len(load_model(tmp_path / "pair.model").members_) == 2
    scratch.rmdir()
    save_model(model, tmp_path / "pair.model")  # its own files: replaced
    assert len(load_model(tmp_path / "pair.model").members_) == 2


def test_an_ensemble_of_one_model_or_of_disagreeing_classes_is_an_error(hp_stack, tmp_path):
    from catbuilder import train
    from catbuilder.models.ensemble import Ensemble

    with pytest.raises(ValueError, match="ensemble must be a number of models, 1 or more; got 0"):
        train(hp_stack, "keras.small-cnn", ensemble=0, checkpoint_dir=tmp_path / "ck")

    class Fitted:
        def __init__(self, classes):
            self.classes_ = np.array(classes, dtype=object)

    with pytest.raises(ValueError, match="at least two fitted members"):
        Ensemble([Fitted(["a", "b"])]).fit()
    with pytest.raises(ValueError, match="must share their classes"):
        Ensemble([Fitted(["a", "b"]), Fitted(["a", "c"])]).fit()
