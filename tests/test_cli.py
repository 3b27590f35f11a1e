import re
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "catbuilder.cli"]


def run(*args, cwd=None, env=None):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env)


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
        "--model-dir",
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
    """``catbuilder demo``: the packaged pipeline file, mock survey -> ... -> report.html."""
    import pandas as pd

    out = tmp_path / "demo"
    res = run("demo", out, "--n-objects", 160, "--epochs", 3, "--workers", 1, "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    assert re.search(r"evaluate .* test split: n=\d+ accuracy 0\.\d+", res.stdout), res.stdout
    cat = pd.read_parquet(out / "catalog.parquet")
    sources = pd.read_parquet(out / "mock" / "des-like" / "sources.parquet")
    assert len(cat) == len(sources) and set(cat["objid"]) == set(sources["objid"])
    labelled = cat["label"].notna()
    assert labelled.any() and (~labelled).any()  # the unlabelled area is classified too
    ok = cat["predicted"].notna()
    assert ok.sum() > 0.9 * len(cat)
    assert set(cat.loc[ok, "predicted"]) <= {"elliptical", "spiral"}
    p = cat.loc[ok, ["p_elliptical", "p_spiral"]].sum(axis=1)
    assert (p - 1).abs().max() < 1e-4
    assert cat["anomaly_score"].notna().sum() == ok.sum()
    metrics = pd.read_csv(out / "metrics.csv")
    assert {"accuracy", "auc", "precision", "recall", "specificity", "f1"} <= set(metrics.columns)
    test = cat[(cat["split"] == "test") & ok]
    acc = metrics.query("group == 'test' and `class` == 'all'")["accuracy"].iloc[0]
    assert acc == pytest.approx((test["label"] == test["predicted"]).mean())
    for name in ("roc", "confidence", "confusion", "gallery"):
        assert (out / "plots" / "evaluation" / f"{name}.png").stat().st_size > 5000
    assert (out / "plots" / "embeddings" / "embedding_map.png").stat().st_size > 5000
    assert (out / "report.html").stat().st_size > 100_000
    again = run("demo", out, "--n-objects", 160, "--epochs", 3, "--workers", 1, "--no-progress")
    assert again.returncode == 0 and again.stdout.count(" kept ") == 10, again.stdout


def test_every_option_says_its_default_and_the_reference_is_current():
    from catbuilder.catalog.schema import reference_markdown as columns
    from catbuilder.cli import reference_markdown

    root = Path(__file__).resolve().parents[1]
    assert (root / "docs" / "cli.md").read_text() == reference_markdown(), (
        "docs/cli.md is stale: python -m catbuilder.cli --reference > docs/cli.md"
    )
    assert (root / "docs" / "catalog-columns.md").read_text() == columns()
    text = reference_markdown()
    assert "(default: 64; configuration" in text and "cutouts.chunk-objects)" in text
    assert "--radius RADIUS" in text and "--radius-arcsec" not in text and "--model-dir" in text
    # one meaning each: --model is a plugin name, --model-dir a saved model
    assert "model plugin name" in text.split("## catbuilder train")[1].split("## ")[0]
    predict = text.split("## catbuilder predict")[1].split("## ")[0]
    assert "--model MODEL" not in predict and "--model-dir" in predict
    for cmd in ("synth", "tiles", "cutouts", "crossmatch", "train", "predict", "demo", "run"):
        assert "--no-progress" in text.split(f"## catbuilder {cmd}")[1].split("## ")[0], cmd


TF_NOISE = ("cuda", "cuDNN", "cuBLAS", "absl", "E0000", "oneDNN", "cpu_feature_guard")


def test_keras_commands_print_no_tensorflow_start_up_lines(hp_stack, small_model, tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user has it
    env_args = ("predict", hp_stack.path, "--model-dir", small_model, "-o", tmp_path / "c.parquet")
    res = run(*env_args, "--workers", "1", "--no-progress", env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    noise = [ln for ln in res.stderr.splitlines() if any(w in ln for w in TF_NOISE)]
    assert noise == [], noise
    res = run("plugins", env=env)  # imports every plugin's estimator module: TensorFlow too
    assert res.returncode == 0 and not any(w in res.stderr for w in TF_NOISE), res.stderr


def test_tables_are_replaced_only_with_overwrite(mock_survey, tmp_path):
    tiles = mock_survey["des-like"].directory / "tiles"
    out = tmp_path / "idx.parquet"
    assert run("tiles", tiles, "-o", out, "--no-progress").returncode == 0
    res = run("tiles", tiles, "-o", out, "--no-progress")
    assert res.returncode == 2 and "add --overwrite to replace it" in res.stderr
    assert run("tiles", tiles, "-o", out, "--no-progress", "--overwrite").returncode == 0


def test_an_unguarded_script_stops_with_advice(tmp_path):
    """A script that starts workers at top level is re-run by each spawned worker:
    catbuilder stops it there with a message that says what to do."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from catbuilder.runtime import make_cluster\n"
        "cluster = make_cluster('local', 1)\n"
        "cluster.close()\n"
    )
    res = subprocess.run(
        [sys.executable, script], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert res.returncode != 0
    assert 'put the code that calls catbuilder under `if __name__ == "__main__":`' in res.stderr
    guarded = tmp_path / "guarded.py"
    guarded.write_text(
        "from catbuilder.runtime import make_cluster\n"
        "if __name__ == '__main__':\n"
        "    cluster = make_cluster('local', 1)\n"
        "    print(len(cluster.workers))\n"
        "    cluster.close()\n"
    )
    res = subprocess.run(
        [sys.executable, guarded], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert res.returncode == 0 and res.stdout.strip() == "1", res.stderr[-2000:]
