import subprocess
import sys
from pathlib import Path

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
        "--scheduler",
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
