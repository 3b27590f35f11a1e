import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_asv_suite_is_discoverable_and_valid():
    asv = Path(sys.executable).with_name("asv")
    res = subprocess.run(
        [str(asv), "check", "--python=same"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "No problems found" in res.stdout


def _asv_env(home: Path) -> dict:
    """asv's machine file goes to a temporary HOME, not the user's."""
    import os

    home.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "HOME": str(home),
        "CATBUILDER_BENCH_QUICK": "1",
        "CATBUILDER_ASV_VENV": str(Path(sys.executable).parents[1]),
    }


def _asv(*args, cwd, env, timeout=900):
    asv = Path(sys.executable).with_name("asv")
    return subprocess.run(
        [str(asv), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
@pytest.mark.horovod  # the suite measures 2-rank training
def test_quick_asv_run_of_every_benchmark_does_not_crash(tmp_path):
    """What CI runs of asv: every benchmark once (quick parameters), none failing."""
    env = _asv_env(tmp_path / "home")
    tmp = tmp_path / "tmp"  # the temporary directory of asv and of every benchmark
    tmp.mkdir()
    env["TMPDIR"] = str(tmp)
    assert _asv("machine", "--yes", "--machine", "ci", cwd=ROOT, env=env).returncode == 0
    res = _asv("run", "--quick", "--python=same", "--machine", "ci", "--show-stderr",
               cwd=ROOT, env=env)  # fmt: skip
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    # asv's own lines ("[ 5.88%] ··· name   ok"), not the benchmarks' stderr ("····")
    ran = [line for line in res.stdout.splitlines()
           if line.startswith("[") and "··· " in line and "···· " not in line]  # fmt: skip
    names = {line.split("···")[1].split()[0] for line in ran if "Setting up" not in line}
    names = {n for n in names if not n.startswith("=")}  # not the result tables' rules
    assert len(names) >= 15, names  # every benchmark of the suite ran
    assert not [line for line in ran if line.split()[-1] == "failed"], out[-4000:]
    for headline in ("track_ratio_to_bare_predict", "track_scaling_efficiency",
                     "track_speedup_over_cutout2d_loop", "track_recall_at_10",
                     "time_crossmatch", "track_objects_per_second"):  # fmt: skip
        assert any(headline in n for n in names), headline
    # each run once left ~0.5 GB of tiles, stacks and models behind (a disk-full CI)
    left = [p for p in tmp.rglob("*") if p.is_file() and "dask-scratch-space" not in p.parts]
    assert not left, left[:10]


@pytest.mark.slow
def test_asv_continuous_reports_a_deliberately_slowed_commit(tmp_path):
    """asv builds each commit into its own environment: a commit that makes
    to_rgb 0.1 s slower is reported against its parent."""
    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    src = repo / "catbuilder" / "stack" / "preprocess.py"
    text = src.read_text()
    doc = '    """Turn cutouts into model inputs'
    end = text.index('"""', text.index(doc) + len(doc)) + 3
    src.write_text(text[:end] + "\n    import time\n\n    time.sleep(0.1)\n" + text[end:])
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    subprocess.run([*git, "commit", "-qam", "slow to_rgb"], cwd=repo, check=True)
    env = _asv_env(tmp_path / "home")
    assert _asv("machine", "--yes", "--machine", "ci", cwd=repo, env=env).returncode == 0
    res = _asv("continuous", "--factor", "1.5", "-b", "preprocess.ToRGB.time_to_rgb_256",
               "--machine", "ci", "HEAD~1", "HEAD", cwd=repo, env=env)  # fmt: skip
    out = res.stdout + res.stderr
    assert "PERFORMANCE DECREASED" in res.stdout, out[-4000:]
    assert res.returncode == 1
    rows = [r for r in res.stdout.splitlines() if "time_to_rgb_256(" in r and r.startswith("| +")]
    assert len(rows) == 2, out[-3000:]
    for row in rows:
        assert float(row.split("|")[4]) > 2.0, row  # ~40 ms -> ~140 ms


def test_the_performance_pages_figures_are_the_kept_script_outputs():
    """Every block of docs/performance.md is the output a benchmark script
    printed (benchmarks/results), as performance_figures.py copies it: none
    edited by hand, none missing, each stamped with its date and machine."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(
        "performance_figures", root / "benchmarks" / "scripts" / "performance_figures.py"
    )
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    page = (root / "docs" / "performance.md").read_text()
    for name, (script, *_) in figures.SCRIPTS.items():
        kept = (root / "benchmarks" / "results" / f"{name}.txt").read_text()
        assert kept.startswith(f"# {script} ") and "cores" in kept.splitlines()[0]
        assert f"<!-- figures:{name} -->" in page
        assert kept.strip() in page, name
    assert figures.update_page(page) == page
