"""Recursive self-training: rounds, pseudo-labels, seeds, resume."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from catbuilder.selftrain import self_train
from catbuilder.selftrain.policy import check_per_class, round_count, select_pseudo_labels

PARAMS = {"input_size": 32, "epochs": 1, "batch_size": 32}


def test_selection_is_class_balanced_and_most_confident_first():
    proba = np.array([[0.9, 0.1], [0.99, 0.01], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.95, 0.05]])
    idx, lab = select_pseudo_labels(proba, ["a", "b"], 5, None)
    assert sorted(idx[lab == 0].tolist()) == [1, 5] and sorted(idx[lab == 1].tolist()) == [2, 4]
    idx, lab = select_pseudo_labels(proba, ["a", "b"], 1, None)
    assert idx.tolist() == [1, 2]
    idx, _ = select_pseudo_labels(proba, ["a", "b"], 5, 0.75)  # b has one object above 0.75
    assert sorted(idx.tolist()) == [1, 2]


def test_spread_takes_objects_over_the_whole_confidence_range():
    from catbuilder.selftrain.strategies import check_strategies, spread_pseudo_labels

    conf = np.linspace(0.51, 0.99, 49)
    proba = np.concatenate([np.c_[conf, 1 - conf], np.c_[1 - conf, conf]])
    idx, lab = spread_pseudo_labels(proba, ["a", "b"], 5, None)
    got = proba[idx, lab]
    assert len(idx) == 10 and (lab == 0).sum() == 5
    assert got.max() == pytest.approx(0.99) and got.min() == pytest.approx(0.51)
    top, tlab = select_pseudo_labels(proba, ["a", "b"], 5, None)
    assert proba[top, tlab].min() > 0.9  # the paper's rule keeps only the easy end
    assert check_strategies("top") == ["top"]
    assert check_strategies(["spread", "control", "spread"]) == ["spread", "control"]
    with pytest.raises(ValueError, match="unknown selftrain strategy 'best'"):
        check_strategies(["top", "best"])


def test_per_class_is_a_count_or_a_fraction_of_the_pool():
    assert [check_per_class(v) for v in (300, "300", 2.0)] == [300, 300, 2]
    assert [check_per_class(v) for v in (0.4, "0.4", 1.0)] == [0.4, 0.4, 1.0]
    for bad in (0, -3, 0.0, 1.5, True, "many"):
        with pytest.raises(ValueError, match="per-class"):
            check_per_class(bad)
    # a count grows by itself each round; a fraction by its share of the pool, up to all of it
    assert [round_count(300, r, 5000, 2) for r in (1, 2)] == [300, 600]
    assert [round_count(0.4, r, 5000, 2) for r in (1, 2, 3)] == [1000, 2000, 2500]
    assert round_count(0.1, 1, 101, 2) == 6  # rounded up


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
        progress=False, extra_columns=["mag_r"],
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
    stamp = {p: p.stat().st_mtime_ns for p in out.glob("seed-*/**/round-*/model/*")}
    again = self_train(
        hp_stack, unlabelled, "keras.small-cnn", outdir=out, params=PARAMS, rounds=2,
        per_class=5, seeds=[0, 1],
    )  # fmt: skip
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp
    assert again.rounds["accuracy"].tolist() == r["accuracy"].tolist()
    # the public scoring helpers score as the rounds were scored
    from catbuilder.models.saved import load_model
    from catbuilder.selftrain import evaluation_set, score

    evalset = evaluation_set(unlabelled, res.classes)
    assert len(evalset) == r["n_eval"].iloc[0] == len(evaluation_set(unlabelled.path, res.classes))
    assert score(load_model(r["model"].iloc[0]), evalset, res.classes) == r["accuracy"].iloc[0]
    # a directory whose rounds were trained from scratch resumes as scratch and is
    # refused as fine-tune: its rounds would be taken for another run's
    marker = out / "catbuilder-selftrain.json"
    old = {**json.loads(marker.read_text()), "retrain": "scratch"}
    marker.write_text(json.dumps(old))
    with pytest.raises(ValueError, match="other settings"):
        self_train(
            hp_stack, unlabelled, "keras.small-cnn", outdir=out, params=PARAMS, rounds=2,
            per_class=5, seeds=[0, 1], retrain="fine-tune",
        )  # fmt: skip
    assert json.loads(marker.read_text()) == old  # the refusal wrote nothing
    self_train(
        hp_stack, unlabelled, "keras.small-cnn", outdir=out, params=PARAMS, rounds=2,
        per_class=5, seeds=[0, 1], retrain="scratch",
    )  # fmt: skip
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp
    assert json.loads(marker.read_text())["retrain"] == "scratch"


def test_fine_tune_starts_each_round_from_the_last_model(hp_stack, unlabelled, tmp_path):
    from catbuilder.models.saved import load_model

    out = tmp_path / "ft"
    res = self_train(
        hp_stack, unlabelled, "keras.small-cnn", outdir=out, params=PARAMS, rounds=1,
        per_class=5, seeds=[0], retrain="fine-tune",
    )  # fmt: skip
    assert res.rounds["round"].tolist() == [0, 1]
    assert json.loads((out / "catbuilder-selftrain.json").read_text())["retrain"] == "fine-tune"
    tuned = load_model(out / "seed-0" / "top" / "round-1" / "model")
    assert tuned.get_params()["warm_start"] is True
    # no pseudo-label reaches the threshold: the seed stops after round 0 and says why
    none = self_train(
        hp_stack, unlabelled, "keras.small-cnn", outdir=tmp_path / "none", params=PARAMS,
        rounds=2, per_class=5, seeds=[0], threshold=1.0,
    )  # fmt: skip
    assert none.rounds["round"].tolist() == [0]
    assert none.rounds["stopped"].tolist() == ["no object to add"]
    assert "seed 0 stopped after round 0: no object to add" in str(none)
    for bad, match in (("from-scratch", "'scratch' or 'fine-tune'"), ("fine-tune", "cannot fine")):
        with pytest.raises(ValueError, match=match):
            self_train(
                hp_stack, unlabelled, "morphology.random-forest", outdir=tmp_path / "no",
                rounds=1, seeds=[0], retrain=bad,
            )  # fmt: skip
    assert not (tmp_path / "no").exists()


def test_strategies_share_round_zero_and_differ_in_what_joins(hp_stack, unlabelled, tmp_path):
    from catbuilder.models.saved import load_model
    from catbuilder.selftrain.strategies import view_agreement

    out = tmp_path / "strategies"
    names = ["top", "spread", "agreement", "curriculum", "soft", "noisy-student", "control"]
    res = self_train(
        hp_stack, unlabelled, "keras.small-cnn", outdir=out, params=PARAMS, rounds=2,
        per_class=4, seeds=[0], strategy=names, student_params={"dropout": 0.9},
    )  # fmt: skip
    r = res.rounds.set_index(["strategy", "round"])
    assert res.strategies == names
    assert len(list(out.glob("seed-0/round-*"))) == 1  # round 0 trained once, for all
    assert r.xs(0, level="round")["accuracy"].nunique() == 1
    assert (r.loc[("control", 1), "n_added"], r.loc[("control", 2), "n_added"]) == (0, 0)
    for s in names[:-1]:
        assert r.loc[(s, 1), "n_added"] > 0 and (out / "seed-0" / s / "round-1" / "model").is_dir()
        tuned = load_model(out / "seed-0" / s / "round-1" / "model")
        assert (tuned.get_params()["dropout"] == 0.9) is (s == "noisy-student")
        assert tuned.get_params()["soft_labels"] is (s == "soft")
    added = res.added[res.added["round"] == 1]
    conf = added.groupby("strategy")["confidence"]
    assert conf.min()["spread"] < conf.min()["top"]
    # agreement: every pseudo-label is the class of all eight views of round 0's model
    objs = unlabelled.objects().reset_index(drop=True)
    chosen = added[added["strategy"] == "agreement"]
    pos = objs.index[objs["objid"].isin(chosen["objid"])].to_numpy()
    _, agree = view_agreement(
        load_model(out / "seed-0" / "round-0" / "model"), unlabelled.isel(pos)
    )
    assert agree.all()
    # curriculum: round 1 of 2 takes from the brighter half of the pool only
    cur = added[added["strategy"] == "curriculum"].merge(objs[["objid", "mag_r"]], on="objid")
    pool = objs[(objs["flags"] == 0) & (objs["split"] != "test")]
    assert cur["mag_r"].max() <= pool["mag_r"].median() + 1e-6
    t = res.against("control")
    assert set(t["strategy"]) == set(names) and {"gain", "gain_std"} <= set(t.columns)
    assert (t.loc[t["strategy"] == "control", "gain"] == 0).all()
    assert "against the control" in str(res)
    # another strategy joins a rerun of the same directory: nothing before is trained again
    stamp = {p: p.stat().st_mtime_ns for p in out.glob("seed-0/**/model/*")}
    more = self_train(
        hp_stack, unlabelled, "keras.small-cnn", outdir=out, params=PARAMS, rounds=2,
        per_class=4, seeds=[0], strategy=["top", "control"], student_params={"dropout": 0.9},
    )  # fmt: skip
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp
    assert (
        more.rounds["accuracy"].tolist()
        == res.rounds[res.rounds["strategy"].isin(["top", "control"])]["accuracy"].tolist()
    )
    with pytest.raises(ValueError, match="needs student parameters"):
        self_train(
            hp_stack, unlabelled, "keras.small-cnn", outdir=tmp_path / "c", params=PARAMS,
            seeds=[0], strategy="noisy-student",
        )  # fmt: skip
    with pytest.raises(ValueError, match="extra_columns=\\['mag_g'\\]"):
        self_train(
            hp_stack, unlabelled, "keras.small-cnn", outdir=tmp_path / "c", params=PARAMS,
            seeds=[0], strategy="curriculum", curriculum_column="mag_g",
        )  # fmt: skip
    assert not (tmp_path / "c").exists()


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
         "--params", json.dumps(PARAMS), "--rounds", "1", "--per-class", "0.02", "--seeds", "4",
         "--no-progress"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert "gain of round 1 over round 0" in res.stdout
    assert (
        tmp_path / "st" / "seed-4" / "top" / "round-1" / "model" / "catbuilder-model.json"
    ).exists()
    # a fraction of the pool: 2% of the pool's share of each class, balanced
    objs = unlabelled.objects()
    scored = (objs["split"] == "test") & objs["label"].isin(["elliptical", "spiral"])
    pool = int(((objs["flags"] == 0) & ~scored).sum())
    rounds = pd.read_csv(tmp_path / "st" / "rounds.csv").set_index("round")
    assert 0 < rounds.loc[1, "added_spiral"] == rounds.loc[1, "added_elliptical"]
    assert rounds.loc[1, "added_spiral"] <= np.ceil(0.02 * pool / 2)
    bad = subprocess.run(
        [sys.executable, "-m", "catbuilder.cli", "selftrain", str(hp_stack.path),
         str(unlabelled.path), "-o", str(tmp_path / "st2"), "--per-class", "1.5"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 2 and "a fraction of the pool" in bad.stderr
    assert not (tmp_path / "st2").exists()


@pytest.mark.slow
def test_the_self_training_example_runs_on_a_small_survey(mock_survey, tmp_path):
    """examples/self_training.py end to end, on the session's 120-object mock survey
    (the example reuses a survey made with the parameters it is given)."""
    import subprocess
    import sys
    from pathlib import Path

    work = tmp_path / "work"
    work.mkdir()
    (work / "survey").symlink_to(mock_survey.root)
    script = Path(__file__).parents[1] / "examples" / "self_training.py"
    res = subprocess.run(
        [sys.executable, str(script), str(work), "--n-objects", "120", "--seed", "7",
         "--seeds", "2", "--rounds", "1", "--epochs", "6", "--per-class", "0.5",
         "--truth", "unlabelled",
         "--retrain", "fine-tune", "--control"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert "round 1: gain" in res.stdout and "pseudo-labels that are the mock's true class" in (
        res.stdout
    )
    assert "control" in res.stdout and "A alone, fine-tuned as long" in res.stdout
    outdir = work / "selftrain-20arcsec-unlabelled-0.5-fine-tune"
    rounds = pd.read_csv(outdir / "rounds.csv")
    assert not list(outdir.rglob("*checkpoints"))  # the control's are gone with the rounds'
    # both seeds pseudo-label something and train round 1
    assert sorted(rounds["seed"].unique()) == [0, 1] and set(rounds["round"]) == {0, 1}
    assert (rounds.loc[rounds["round"] == 1, "n_added"] > 0).all()
    # scored: unlabelled galaxies of B, by the mock's class; no other B object has a label
    from catbuilder.sky import label_sources
    from catbuilder.stack import open_stack

    b = open_stack(work / "des-like-20arcsec-truth-unlabelled.zarr").objects()
    gz = set(label_sources(mock_survey.read_labels(), mock_survey["des-like"].sources)["objid"])
    cls = mock_survey["des-like"].read_sources().set_index("objid")["cls"]
    scored = b[b["split"] == "test"]
    assert len(scored) > 0 and not set(scored["objid"]) & gz
    assert (scored["label"].to_numpy() == cls.loc[scored["objid"]].to_numpy()).all()
    assert (b.loc[b["split"] != "test", "label"] == "").all()
    assert rounds["n_eval"].iloc[0] == (scored["flags"] == 0).sum()


@pytest.mark.slow
def test_the_hard_regime_and_strategy_examples_run_on_a_small_survey(tmp_path):
    """examples/hard_regime.py and examples/selftrain_strategies.py end to end, on one
    small hard-regime mock."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parents[1] / "examples"
    hard = subprocess.run(
        [sys.executable, str(root / "hard_regime.py"), str(tmp_path / "hard"), "--n-objects",
         "900", "--seeds", "1", "--epochs", "1"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert hard.returncode == 0, hard.stderr[-3000:]
    assert "hard regime:" in hard.stdout and "fo, soft, ensemble" in hard.stdout
    scores = pd.read_csv(tmp_path / "hard" / "scores.csv")
    assert set(scores["recipe"]) >= {"hp, one-hot", "fo, soft"}
    assert scores["accuracy"].between(0, 1).all()
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "survey").symlink_to(tmp_path / "hard" / "survey")
    res = subprocess.run(
        [sys.executable, str(root / "selftrain_strategies.py"), str(tmp_path / "strategies"),
         "--n-objects", "900", "--seeds", "2", "--rounds", "1", "--epochs", "1", "--pool", "60",
         "--workers", "1", "--strategies", "top,spread,control"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    rounds = pd.read_csv(tmp_path / "strategies" / "strategies" / "rounds.csv")
    assert set(rounds["strategy"]) == {"top", "spread", "control"}
    assert sorted(rounds["seed"].unique()) == [0, 1] and set(rounds["round"]) == {0, 1}
    assert "pseudo-labels that are the true class" in res.stdout
