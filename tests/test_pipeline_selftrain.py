"""A pipeline file that self-trains across two surveys: one file, both surveys' inputs."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from catbuilder.errors import CatbuilderError
from catbuilder.pipeline import Pipeline


def _spec(tmp_path, **changes):
    spec = {
        "name": "selftrain",
        "workdir": "run",
        "mock": {"n-objects": 200, "seed": 3},
        "inputs": {  # the survey to classify: no labels of its own
            "tiles": "{mock}/des-like/tiles",
            "sources": "{mock}/des-like/sources.parquet",
        },
        "selftrain": {
            "labelled": {
                "tiles": "{mock}/sdss-like/tiles",
                "sources": "{mock}/sdss-like/sources.parquet",
                "labels": "{mock}/galaxy_zoo.parquet",
                "label-sample": "fo",
            },
            "rounds": 1,
            "per-class": 0.3,
            "strategy": ["top", "control"],
            "seeds": [0],
        },
        "model": {"plugin": "keras.small-cnn", "params": {"epochs": 1, "input_size": 32}},
        "embeddings": {"method": "tsne", "anomaly": False},
        "cutouts": {"size": 32},
        "cluster": {"kind": "local", "workers": 1},
        **changes,
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_a_selftrain_run_classifies_the_survey_with_the_self_trained_model(tmp_path):
    path = _spec(tmp_path)
    pipe = Pipeline.from_yaml(path, progress=False)
    plan = [p.name for p in pipe.plan()]
    assert "selftrain" in plan and "train" not in plan
    assert plan.index("cutouts") < plan.index("selftrain") < plan.index("predict")
    pipe.run()
    wd = tmp_path / "run"
    m = json.loads((wd / "manifest.json").read_text())
    rec = m["steps"]["selftrain"]
    assert rec["status"] == "complete"
    assert rec["outputs"]["model"] == "selftrain/seed-0/top/round-1/model"
    rounds = pd.read_csv(wd / "selftrain" / "rounds.csv")
    assert set(rounds["strategy"]) == {"top", "control"} and rounds["round"].max() == 1
    # the catalog of the survey of inputs, classified by self-training's model
    cat = pd.read_parquet(wd / "catalog.parquet")
    des = pd.read_parquet(wd / "mock" / "des-like" / "sources.parquet")
    assert set(cat["objid"]) == set(des["objid"]) and cat["predicted"].notna().mean() > 0.9
    html = (wd / "report.html").read_text()
    assert "Self-training" in html and "No training step" not in html
    assert "no objects with truth" in rec["summary"]  # the survey of inputs has no labels
    # a second run does nothing; a changed self-training setting reruns it and what follows
    plan = {p.name: p.action for p in Pipeline.from_yaml(path, progress=False).plan()}
    assert set(plan.values()) == {"skip"}, plan
    changed = Pipeline.from_yaml(
        path, overrides={"selftrain": {"per-class": 0.2}}, progress=False
    ).plan()
    acts = {p.name: p.action for p in changed}
    assert acts["selftrain"] == acts["predict"] == "replace"
    assert acts["cutouts"] == "skip"


def test_selftrain_sections_are_checked_before_anything_runs(tmp_path):
    bad = _spec(tmp_path, model={"saved": "somewhere"})
    with pytest.raises(CatbuilderError, match=r"model\.saved and selftrain"):
        Pipeline.from_yaml(bad, progress=False).run(dry_run=True)
    spec = yaml.safe_load(_spec(tmp_path).read_text())
    spec["selftrain"]["strategy"] = "best"
    (tmp_path / "p2.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(CatbuilderError, match=r"selftrain\.strategy"):
        Pipeline.from_yaml(tmp_path / "p2.yaml", progress=False)
    assert not (tmp_path / "run").exists()
