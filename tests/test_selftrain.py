"""Recursive self-training: rounds, pseudo-labels, seeds, resume."""

from __future__ import annotations

import numpy as np
import pytest

from catbuilder.selftrain import _select, self_train

PARAMS = {"input_size": 32, "epochs": 1, "batch_size": 32}


def test_selection_is_class_balanced_and_most_confident_first():
    proba = np.array([[0.9, 0.1], [0.99, 0.01], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.95, 0.05]])
    idx, lab = _select(proba, ["a", "b"], 5, None)
    assert sorted(idx[lab == 0].tolist()) == [1, 5] and sorted(idx[lab == 1].tolist()) == [2, 4]
    idx, lab = _select(proba, ["a", "b"], 1, None)
    assert idx.tolist() == [1, 2]
    idx, _ = _select(proba, ["a", "b"], 5, 0.75)  # b has one object above 0.75
    assert sorted(idx.tolist()) == [1, 2]


@pytest.fixture(scope="module")
def unlabelled(mock_survey, tmp_path_factory):
    """des-like objects with (hidden) truth: its test split scores each round."""
    from catbuilder.sky import label_sources
    from catbuilder.stack import build_stack

    table = label_sources(
        mock_survey.read_labels(), mock_survey["des-like"].sources, sample="fo",
        keep_unlabelled=True,
    )  # fmt: skip
    root = tmp_path_factory.mktemp("selftrain")
    return build_stack(
        table, mock_survey["des-like"].directory / "tiles", root / "b.zarr", size=64,
        progress=False,
    )  # fmt: skip


def test_rounds_add_pseudo_labels_never_from_the_evaluation_split(hp_stack, unlabelled, tmp_path):
    out = tmp_path / "st"
    res = self_train(
        hp_stack, unlabelled, "keras.small-cnn", outdir=out, params=PARAMS, rounds=2,
        per_class=5, seeds=[0, 1],
    )  # fmt: skip
    r = res.rounds
    assert sorted(r["seed"].unique()) == [0, 1] and set(r["round"]) <= {0, 1, 2}
    assert (r.loc[r["round"] == 0, "n_added"] == 0).all()
    first = r[r["round"] == 1]
    assert (first["added_elliptical"] == first["added_spiral"]).all()  # balanced
    assert (first["n_added"] <= 10).all() and (first["n_added"] > 0).all()
    objs = unlabelled.objects().set_index("objid")
    added = objs.loc[res.added["objid"]]
    assert (added["split"] != "test").all()  # never the evaluation objects
    assert (added["flags"] == 0).all()
    assert r["n_eval"].iloc[0] == ((objs["split"] == "test") & (objs["flags"] == 0)).sum()
    assert r["accuracy"].between(0, 1).all()
    assert {"rounds.csv", "added.parquet", "curves.csv"} <= {p.name for p in out.iterdir()}
    assert str(res).splitlines()[0].startswith("round")
    mean, spread = res.gain()
    assert np.isfinite(mean) and np.isfinite(spread)
    # a rerun resumes: every round's model is there, nothing is trained again
    stamp = {p: p.stat().st_mtime_ns for p in out.glob("seed-*/round-*/model/*")}
    again = self_train(
        hp_stack, unlabelled, "keras.small-cnn", outdir=out, params=PARAMS, rounds=2,
        per_class=5, seeds=[0, 1],
    )  # fmt: skip
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp
    assert again.rounds["accuracy"].tolist() == r["accuracy"].tolist()


def test_a_user_directory_is_refused(hp_stack, unlabelled, tmp_path):
    from catbuilder.errors import OutputExistsError

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not a self-training directory"):
        self_train(hp_stack, unlabelled, outdir=tmp_path / "mine", params=PARAMS, seeds=[0])
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"


def test_selftrain_cli(hp_stack, unlabelled, tmp_path):
    import json
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-m", "catbuilder.cli", "selftrain", str(hp_stack.path),
         str(unlabelled.path), "-o", str(tmp_path / "st"), "--model", "keras.small-cnn",
         "--params", json.dumps(PARAMS), "--rounds", "1", "--per-class", "3", "--seeds", "4",
         "--no-progress"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert "gain of round 1 over round 0" in res.stdout
    assert (tmp_path / "st" / "seed-4" / "round-1" / "model" / "catbuilder-model.json").exists()
