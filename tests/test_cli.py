import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "catbuilder.cli"]


def run(*args, cwd=None):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_synth_cli_writes_survey_and_previews(tmp_path):
    res = run(
        "synth",
        tmp_path / "s",
        "--preset",
        "des-like",
        "--n-objects",
        20,
        "--seed",
        1,
        "--preview",
        "--no-progress",
        "--cluster",
        "sync",
    )
    assert res.returncode == 0, res.stderr
    assert "des-like: 2 tiles x 3 bands, 20 sources" in res.stdout
    assert sorted(p.name for p in (tmp_path / "s").glob("preview_*.png")) == [
        "preview_des-like_objects.png",
        "preview_des-like_tile.png",
    ]
    assert len(list(Path(tmp_path / "s" / "des-like" / "tiles").glob("*.fits"))) == 6


def test_cli_reports_bad_input_without_traceback(tmp_path):
    res = run("synth", tmp_path, "--preset", "hsc-like", "--n-objects", 5)
    assert res.returncode == 2
    assert "unknown survey preset 'hsc-like'" in res.stderr
    assert "Traceback" not in res.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("catbuilder:\n  synth:\n    n_objets: 3\n")
    res = run("--config", bad, "synth", tmp_path / "x")
    assert res.returncode == 2 and "synth.n_objets" in res.stderr and "n-objects" in res.stderr


def test_tiles_cutouts_crossmatch_cli(mock_survey, tmp_path):
    des = mock_survey["des-like"]
    sdss = mock_survey["sdss-like"]
    res = run("tiles", des.directory / "tiles", "-o", tmp_path / "idx.parquet")
    assert res.returncode == 0, res.stderr
    assert "bands g,i,r" in res.stdout
    res = run(
        "cutouts",
        des.sources,
        tmp_path / "idx.parquet",
        "-o",
        tmp_path / "s.zarr",
        "--size",
        "24",
        "--bands",
        "g,r,i",
        "--no-progress",
        "--cluster",
        "sync",
    )
    assert res.returncode == 0, res.stderr
    assert f"{len(des.read_sources())} objects" in res.stdout and "24x24 px" in res.stdout
    res = run("crossmatch", sdss.sources, des.sources, "-o", tmp_path / "m.parquet")
    assert res.returncode == 0, res.stderr
    assert "left rows matched" in res.stdout
    import pandas as pd

    assert len(pd.read_parquet(tmp_path / "m.parquet")) == len(sdss.read_sources())
    res = run(
        "cutouts",
        des.sources,
        tmp_path / "idx.parquet",
        "-o",
        tmp_path / "s.zarr",
        "--size",
        "32",
        "--no-progress",
    )
    assert res.returncode == 2 and "overwrite" in res.stderr


def test_predict_and_evaluate_cli(hp_stack, small_model, tmp_path):
    res = run(
        "predict",
        hp_stack.path,
        "--model",
        small_model,
        "-o",
        tmp_path / "c.fits",
        "--predictions",
        tmp_path / "p.zarr",
        "--workers",
        "1",
        "--no-progress",
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"{len(hp_stack)} objects -> " in res.stdout
    res = run(
        "evaluate", tmp_path / "c.fits", "--plots", tmp_path / "plots", "-o", tmp_path / "m.csv"
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "accuracy" in res.stdout and (tmp_path / "plots" / "roc.png").exists()
    import pandas as pd

    assert {"group", "class", "metric", "value"} <= set(pd.read_csv(tmp_path / "m.csv"))


def test_demo_runs_end_to_end(tmp_path):
    """``catbuilder demo``: survey -> labels -> stack -> CNN -> catalog -> evaluation."""
    import pandas as pd

    out = tmp_path / "demo"
    res = run("demo", out, "--n-objects", 160, "--epochs", 3, "--workers", 1, "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "test split   accuracy" in res.stdout
    cat = pd.read_parquet(out / "catalog.parquet")
    sources = pd.read_parquet(out / "survey" / "des-like" / "sources.parquet")
    assert len(cat) == len(sources) and set(cat["objid"]) == set(sources["objid"])
    labelled = cat["label"] != ""
    assert labelled.any() and (~labelled).any()  # the unlabelled area is classified too
    ok = cat["predicted"] != ""
    assert ok.sum() > 0.9 * len(cat)
    assert set(cat.loc[ok, "predicted"]) <= {"elliptical", "spiral"}
    p = cat.loc[ok, ["p_elliptical", "p_spiral"]].sum(axis=1)
    assert (p - 1).abs().max() < 1e-4
    metrics = pd.read_csv(out / "metrics.csv")
    assert {"accuracy", "auc", "precision", "recall", "specificity", "f1"} <= set(metrics.columns)
    test = cat[(cat["split"] == "test") & ok]
    acc = metrics.query("`class` == 'all'")["accuracy"].iloc[0]
    assert acc == pytest.approx((test["label"] == test["predicted"]).mean())
    for name in ("roc", "confidence", "confusion", "gallery", "embeddings_tsne"):
        assert (out / "plots" / f"{name}.png").stat().st_size > 5000
