"""Pipeline files: checked up front, run once, kept, resumed after a kill; the report."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from catbuilder.errors import CatbuilderError
from catbuilder.pipeline import Pipeline, PipelineFileError, load_spec

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "catbuilder.cli"]
ARTEFACTS = ROOT / "test-artefacts"
# the environment a user has (the test session sets TF_CPP_MIN_LOG_LEVEL=2)
USER_ENV = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


def small_pipeline(tmp_path: Path, **changes) -> Path:
    """The example pipeline file, made small: 160 mock objects, 3 epochs, one worker."""
    spec = yaml.safe_load((ROOT / "examples" / "pipeline.yaml").read_text())
    spec["mock"] = {"n-objects": 160, "seed": 3}
    spec["model"]["params"] = {"epochs": 3}
    spec["cluster"]["workers"] = 1
    spec["workdir"] = "run"
    for k, v in changes.items():
        spec[k] = v
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# -- the file is checked before anything runs -----------------------------------


@pytest.mark.parametrize(
    "edit, expected",
    [
        (("cutouts:", "cutout:"), r"unknown key 'cutout'; did you mean 'cutouts'\?"),
        (("  size: 64 ", "  sise: 64 "), r"'cutouts\.sise'\. Did you mean 'size'\?"),
        (("  method: tsne", "  method: tnse"), r"embeddings\.method: 'tnse' .* tsne, umap.*'tsne'"),
        (("[parquet, fits]", "[parquet, fit]"), r"catalog\.format: 'fit' .*did you mean 'fits'"),
        (("  kind: local ", "  kind: slrum "), r"cluster\.kind: 'slrum' .*local, slurm.*'slurm'"),
        (("  label-sample: hp", "  label-smaple: hp"), r"'inputs\.label-smaple'.*'label-sample'"),
        (("  seed: 7", "  seed: seven"), r"mock\.seed: 'seven' is not of type 'integer'"),
        (("  size: 64 ", '  size: "20 arcsecs" '), r"cutouts\.size: '20 arcsecs' is not allowed"),
    ],
)
def test_a_typo_gets_one_line_naming_the_key_and_the_nearest(tmp_path, edit, expected):
    text = (ROOT / "examples" / "pipeline.yaml").read_text()
    assert edit[0] in text
    path = tmp_path / "p.yaml"
    path.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(PipelineFileError, match=expected):
        load_spec(path)
    res = subprocess.run(
        [*CLI, "run", str(path), "--dry-run"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(expected, lines[0]), res.stderr
    assert lines[0].startswith(f"catbuilder run: error: {path}: ")
    assert not (tmp_path / "pipeline-run").exists()  # nothing ran


def test_broken_yaml_and_missing_inputs_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("inputs:\n  tiles: [x\n")
    with pytest.raises(PipelineFileError, match=r"not valid YAML at line 3"):
        load_spec(bad)
    none = tmp_path / "none.yaml"
    none.write_text("name: x\n")
    with pytest.raises(PipelineFileError, match="no 'inputs' section"):
        load_spec(none)
    with pytest.raises(PipelineFileError, match="no such pipeline file"):
        load_spec(tmp_path / "absent.yaml")


def test_dry_run_prints_the_plan_and_a_slurm_job_script(tmp_path):
    path = small_pipeline(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec["cluster"] = {
        "kind": "slurm",
        "workers": 2,
        "interface": "lo",
        "jobqueue": {"cores": 1, "memory": "2GB", "walltime": "00:30:00", "account": "astro"},
    }
    path.write_text(yaml.safe_dump(spec))
    res = subprocess.run(
        [*CLI, "run", str(path), "--dry-run"], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    for step in ("mock", "tiles", "labels", "cutouts", "train", "predict", "report"):
        assert re.search(rf"^\s+{step}\s+run\s+not run before", res.stdout, re.M), step
    assert "#SBATCH -A astro" in res.stdout and "#SBATCH -t 00:30:00" in res.stdout
    assert "distributed.cli.dask_worker" in res.stdout or "dask worker" in res.stdout
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"model": {"plugin": "keras.xcepton"}},
         r"model\.plugin: unknown plugin 'keras\.xcepton'; did you mean 'keras\.xception'\?"),
        ({"model": {"plugin": "keras.small-cnn", "params": {"epoch": 8}}},
         r"model\.params: keras\.small-cnn has no parameter 'epoch'; did you mean 'epochs'\?"),
        ({"cluster": {"kind": "slurm", "workers": 2}},
         r"cluster kind slurm needs cores and memory for each job"),
        ({"inputs": {"tiles": "nowhere/*.fits", "sources": "nowhere.parquet"}, "mock": None},
         r"inputs\.sources: .*nowhere\.parquet does not exist"),
    ],
)  # fmt: skip
def test_dry_run_checks_the_whole_run_in_one_line(tmp_path, capsys, change, expected):
    """What would fail hours into a run fails the dry run, and every run, at once."""
    from catbuilder.cli import main

    path = small_pipeline(tmp_path, **{k: v for k, v in change.items() if v is not None})
    if "mock" in change:
        spec = yaml.safe_load(path.read_text())
        spec.pop("mock")
        path.write_text(yaml.safe_dump(spec))
    for extra in (["--dry-run"], ["--no-progress"]):
        assert main(["run", str(path), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and re.search(expected, err), err
    assert not (tmp_path / "run").exists()  # nothing ran


def test_an_unwritable_workdir_stops_the_dry_run(tmp_path, capsys):
    from catbuilder.cli import main

    path = small_pipeline(tmp_path)
    assert main(["run", str(path), "--dry-run", "--workdir", "/proc/catbuilder-run"]) == 2
    assert "cannot be written" in capsys.readouterr().err


def test_paths_given_on_the_command_line_resolve_against_the_current_directory(
    tmp_path, monkeypatch
):
    """--workdir REL is where the shell is; a workdir written in the file is beside the file."""
    (tmp_path / "files").mkdir()
    path = small_pipeline(tmp_path / "files")  # its own workdir: "run"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_spec(path, workdir="out").workdir == elsewhere / "out"
    assert load_spec(path).workdir == tmp_path / "files" / "run"
    assert Pipeline.from_yaml(path, workdir="out").workdir == elsewhere / "out"


@pytest.mark.slow
def test_the_demo_writes_only_under_the_directory_given(tmp_path):
    """``catbuilder demo d`` from any directory: outputs in ./d, none in the package."""
    import catbuilder

    package = Path(catbuilder.__file__).parent
    before = sorted(
        str(p.relative_to(package)) for p in package.rglob("*") if "__pycache__" not in p.parts
    )
    res = subprocess.run(
        [*CLI, "demo", "d", "--n-objects", "120", "--epochs", "1", "--workers", "1",
         "--no-progress"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "d" / "report.html").is_file() and (
        tmp_path / "d" / "catalog.parquet"
    ).is_file()
    after = sorted(
        str(p.relative_to(package)) for p in package.rglob("*") if "__pycache__" not in p.parts
    )
    assert after == before


def test_workdir_with_someone_elses_files_is_refused_untouched(tmp_path):
    path = small_pipeline(tmp_path)
    wd = tmp_path / "run"
    wd.mkdir()
    (wd / "notes.txt").write_text("mine")
    with pytest.raises(CatbuilderError, match=r"holds files \(notes\.txt\) and no catbuilder"):
        Pipeline.from_yaml(path, progress=False).run()
    assert sorted(p.name for p in wd.iterdir()) == ["notes.txt"]


# -- a real run: killed midway, resumed, then nothing left to do -------------------


def _manifest(wd: Path) -> dict:
    try:
        return json.loads((wd / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}


def _run(path: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, "run", str(path), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=USER_ENV,
    )


def _stamps(wd: Path) -> dict:
    """mtime of every file a step wrote (not the manifest and log every run updates)."""
    skip = {wd / "manifest.json", wd / "run.log"}
    return {p: p.stat().st_mtime_ns for p in wd.rglob("*") if p.is_file() and p not in skip}


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    """``catbuilder run`` killed (SIGKILL, every process) while training, then run again."""
    tmp = tmp_path_factory.mktemp("pipeline")
    path = small_pipeline(tmp)
    wd = tmp / "run"
    proc = subprocess.Popen(
        [*CLI, "run", str(path), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env=USER_ENV,
    )
    deadline = time.time() + 600
    killed_in = None
    while time.time() < deadline and proc.poll() is None:
        steps = _manifest(wd).get("steps", {})
        if (steps.get("train") or {}).get("status") == "running":
            time.sleep(1.0)  # into the training
            killed_in = "train"
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    first_out = proc.stdout.read()
    assert killed_in == "train", f"never saw the train step running: {first_out[-2000:]}"
    before = _manifest(wd)["steps"]
    assert before["train"]["status"] == "running" and "catalog" not in before
    second = _run(path, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    stamp = _stamps(wd)
    third = _run(path, timeout=300)
    assert third.returncode == 0, third.stderr[-3000:]
    return {
        "path": path,
        "wd": wd,
        "before": before,
        "second": second,
        "third": third,
        "stamp": stamp,
    }


@pytest.mark.slow
def test_a_killed_run_finishes_on_rerun_and_a_third_run_does_nothing(resumed_run):
    wd = resumed_run["wd"]
    log = (wd / "run.log").read_text()
    # the second run kept what was complete and resumed the interrupted step
    second = log.split("run mock-des in")[2]
    for step in ("mock", "tiles", "labels", "cutouts"):
        assert f"{step}: skipped (complete, same parameters and inputs)" in second, step
    assert "train: resume (interrupted)" in second
    for step in ("predict", "catalog", "evaluate", "embeddings", "report"):
        assert f"{step}: run (not run before)" in second, step
    # the third did nothing at all: every step kept, no file touched
    third = log.split("run mock-des in")[3]
    assert third.count(": skipped (complete") == 10 and ": run (" not in third
    assert _stamps(wd) == resumed_run["stamp"]
    assert "kept" in resumed_run["third"].stdout
    for res in (resumed_run["second"], resumed_run["third"]):  # no TensorFlow C++ lines
        assert not re.search(r"cuInit|cuda_|absl|oneDNN|cpu_feature_guard", res.stderr), res.stderr
    # the result is complete: every source has its row, classified unless flagged
    import pandas as pd

    cat = pd.read_parquet(wd / "catalog.parquet")
    sources = pd.read_parquet(wd / "mock" / "des-like" / "sources.parquet")
    assert sorted(cat["objid"]) == sorted(sources["objid"])
    assert cat.loc[cat["flags"] == 0, "predicted"].notna().all()
    from astropy.table import Table

    assert len(Table.read(wd / "catalog.fits", hdu="CATALOG")) == len(cat)


@pytest.mark.slow
def test_manifest_records_inputs_parameters_versions_timings_outputs(resumed_run):
    m = _manifest(resumed_run["wd"])
    assert m["catbuilder"]["kind"] == "pipeline-manifest" and m["finished"]
    tiles = [k for k in m["inputs"] if k.endswith(".fits")]
    # the mock's tiles carry FITS checksums: known by their headers, not read whole
    assert tiles and all(m["inputs"][k]["fingerprint"].startswith("fits:") for k in tiles)
    assert m["pipeline"]["sections"]["model"]["params"] == {"epochs": 3}
    assert m["pipeline"]["configuration"]["cutouts"]["size"] == 64
    assert {"catbuilder", "numpy", "dask", "tensorflow"} <= set(m["versions"])
    for name, rec in m["steps"].items():
        assert rec["status"] == "complete" and rec["seconds"] >= 0, name
        for rel in rec["outputs"].values():
            assert (resumed_run["wd"] / rel).exists(), (name, rel)
    assert "accuracy" in m["steps"]["evaluate"]["summary"]


@pytest.mark.slow
def test_changed_parameters_rerun_only_what_depends_on_them(resumed_run):
    pipe = Pipeline.from_yaml(
        resumed_run["path"], overrides={"model": {"params": {"epochs": 4}}}, progress=False
    )
    plan = {p.name: p.action for p in pipe.plan()}
    assert plan == {
        "mock": "skip",
        "tiles": "skip",
        "labels": "skip",
        "cutouts": "skip",
        "train": "replace",
        "predict": "replace",
        "catalog": "replace",
        "evaluate": "replace",
        "embeddings": "replace",
        "report": "replace",
    }
    plan = {p.name: p.action for p in Pipeline.from_yaml(resumed_run["path"]).plan()}
    assert set(plan.values()) == {"skip"}


def _copy_of(resumed_run: dict, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the finished run (work directory and pipeline file) to change."""
    wd = tmp_path / "run"
    shutil.copytree(resumed_run["wd"], wd)
    path = tmp_path / "pipeline.yaml"
    shutil.copy(resumed_run["path"], path)
    return wd, path


@pytest.mark.slow
def test_an_output_someone_edited_is_not_replaced(resumed_run, tmp_path):
    # a copy of the finished run whose metrics.csv a person edited
    wd, path = _copy_of(resumed_run, tmp_path)
    m = _manifest(wd)  # the copy's manifest names the copy's files by relative path
    assert m["steps"]["evaluate"]["outputs"]["metrics"] == "metrics.csv"
    (wd / "metrics.csv").write_text("my own notes\n")
    pipe = Pipeline.from_yaml(path, overrides={"evaluate": {"split": "validation"}}, progress=False)
    with pytest.raises(CatbuilderError, match=r"metrics\.csv changed since this run wrote it"):
        pipe.run()
    assert (wd / "metrics.csv").read_text() == "my own notes\n"


# -- the report ---------------------------------------------------------------------


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "chromium is not installed (scripts/install.sh installs Debian's package)"
    return exe


@pytest.mark.slow
@pytest.mark.browser
def test_report_renders_every_section_and_image_in_headless_chromium(resumed_run):
    from catbuilder.pipeline.report import SECTIONS

    report = resumed_run["wd"] / "report.html"
    assert report.stat().st_size > 100_000
    html = report.read_text()
    assert "src='http" not in html and 'src="http' not in html  # self-contained
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run(
        [_chromium(), *flags, "--virtual-time-budget=5000", "--dump-dom", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body, dom[:500]
    n = int(re.search(r'data-images="(\d+)"', body.group(1)).group(1))
    decoded = int(re.search(r'data-images-decoded="(\d+)"', body.group(1)).group(1))
    assert n >= 10 and decoded == n  # every image decoded in the browser
    for sid, heading in SECTIONS.items():
        part = re.search(rf"<section id=\"{sid}\"><h2>([^<]*)</h2>(.*?)</section>", dom, re.S)
        assert part, sid
        assert part.group(1) == heading.replace("&", "&amp;")
        assert 'class="missing"' not in part.group(2), f"section {sid} is empty"
    assert re.search(r"<td>test</td><td>\d+</td>", dom)  # the Table II rows
    ARTEFACTS.mkdir(exist_ok=True)
    shot = ARTEFACTS / "report.png"
    subprocess.run(
        [_chromium(), *flags, f"--screenshot={shot}", "--window-size=1200,9000", report.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    import numpy as np
    from PIL import Image

    img = Image.open(shot).convert("L")
    assert img.size == (1200, 9000)
    assert len(np.unique(np.asarray(img.resize((60, 450))))) > 50  # drawn, not a blank page


@pytest.mark.slow
def test_changing_catalog_formats_and_back_reuses_the_runs_own_files(resumed_run, tmp_path):
    wd, path = _copy_of(resumed_run, tmp_path)
    steps = ["tiles", "labels", "cutouts", "train", "predict", "catalog", "evaluate"]
    votable = Pipeline.from_yaml(
        path, overrides={"catalog": {"format": ["parquet", "votable"]}, "steps": steps},
        progress=False,
    ).run()  # fmt: skip
    assert votable.ran == ["catalog", "evaluate"]
    assert (wd / "catalog.vot").is_file() and (wd / "catalog.fits").is_file()  # kept, not ours now
    back = Pipeline.from_yaml(path, overrides={"steps": steps}, progress=False).run()
    assert back.ran == ["catalog", "evaluate"]  # catalog.fits was this run's: replaced
    from astropy.table import Table

    assert len(Table.read(wd / "catalog.fits", hdu="CATALOG")) == len(
        Table.read(wd / "catalog.vot")
    )
