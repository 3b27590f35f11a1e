"""Surveys run by sky partition: the same objects, pixels and probabilities as one
stack, every object once, a killed driver resumed, bad input refused in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from catbuilder import read_catalog, run_survey
from catbuilder.errors import OutputExistsError
from catbuilder.survey.partition import align, parquet_files, partition_sources, read_partition

#: a mock survey covers a few arcminutes: fine pixels, small partitions
SMALL = {"partition_rows": 25, "highest_order": 13}


def _des(mock_survey):
    files = mock_survey["des-like"]
    return files.sources, files.directory / "tiles"


def test_align_partitions_as_hats_does():
    from hats.pixel_math import generate_alignment

    rng = np.random.default_rng(1)
    order = 5
    counts = np.zeros(12 * 4**order, np.int64)
    np.add.at(counts, rng.integers(0, 400, 3000), rng.integers(1, 20, 3000))  # a dense patch
    np.add.at(counts, rng.integers(0, len(counts), 300), rng.integers(1, 20, 300))
    theirs = generate_alignment(counts, highest_order=order, threshold=500)
    occupied = np.flatnonzero(counts)
    mine = align(occupied, counts[occupied], order, 500)
    assert (mine == np.array([theirs[p][:2] for p in occupied])).all()
    assert len({tuple(d) for d in mine}) > 20  # several orders and partitions


def test_partitioning_streams_batches_and_keeps_every_row_once(mock_survey, tmp_path):
    sources, _ = _des(mock_survey)
    table = pd.read_parquet(sources)
    parts = partition_sources(sources, tmp_path / "p", batch_rows=17, **SMALL)
    assert parts["n"].sum() == len(table) and (parts["n"] <= SMALL["partition_rows"]).all()
    assert len(parts) >= 4
    back = pd.concat([read_partition(tmp_path / "p", o, p) for o, p in
                      zip(parts["order"], parts["pixel"])])  # fmt: skip
    assert sorted(back["objid"]) == sorted(table["objid"])
    # within a partition, rows keep the table's order (batches are read in order)
    first = read_partition(tmp_path / "p", int(parts["order"][0]), int(parts["pixel"][0]))
    rows = table.reset_index().set_index("objid").loc[first["objid"], "index"].to_numpy()
    assert (np.diff(rows) > 0).all()


def test_a_hats_catalog_is_partitioned_by_its_rows_alone(mock_survey, tmp_path):
    from hats_tables import write_hats

    sources, _ = _des(mock_survey)
    hats = tmp_path / "hats"  # a collection: the catalog, its margin and a thumbnail
    table = write_hats(pd.read_parquet(sources), hats, as_collection=True)
    files = parquet_files(hats)
    assert len(files) >= 4 and all(f.name.startswith("Npix=") for f in files)
    rows = {"partition_rows": 500, "highest_order": 13}
    from_table = partition_sources(table, tmp_path / "a", **rows)
    from_hats = partition_sources(hats, tmp_path / "b", **rows)
    pd.testing.assert_frame_equal(from_table, from_hats)
    assert from_hats["n"].sum() == len(table)
    for o, p in zip(from_table["order"], from_table["pixel"]):
        a = read_partition(tmp_path / "a", o, p).sort_values("objid", ignore_index=True)
        b = read_partition(tmp_path / "b", o, p).sort_values("objid", ignore_index=True)
        pd.testing.assert_frame_equal(a, b[a.columns])


@pytest.fixture(scope="module")
def survey_run(mock_survey, small_model, tmp_path_factory):
    sources, tiles = _des(mock_survey)
    out = tmp_path_factory.mktemp("survey") / "run"
    run = run_survey(sources, tiles, small_model, out, size=32, chunk_objects=16,
                     cluster="sync", progress=False, **SMALL)  # fmt: skip
    return run


def test_partitioned_run_matches_one_stack(survey_run, des_stack, small_model, tmp_path):
    from catbuilder import build_catalog, predict

    run = survey_run
    whole = build_catalog(predict(des_stack, small_model, output=tmp_path / "p.zarr",
                                  cluster="sync", progress=False))  # fmt: skip
    cat = read_catalog(run.catalog_path)
    assert len(cat) == len(whole) == run.n_objects and cat["objid"].is_unique
    assert len(run.partitions) >= 4
    cat = cat.set_index("objid").loc[whole["objid"]]
    np.testing.assert_allclose(cat["p_spiral"], whole["p_spiral"], rtol=1e-5, atol=1e-6)
    assert (cat["flags"].to_numpy() == whole["flags"].to_numpy()).all()
    assert run.totals()["predicted"] == whole["predicted"].value_counts().to_dict()
    # every partition's pixels are those of the same objects in the one stack
    ids = des_stack.objects()["objid"].to_numpy()
    for order, pixel in zip(run.partitions["order"], run.partitions["pixel"]):
        part = run.stack(order, pixel)
        pos = pd.Index(ids).get_indexer(part.objects()["objid"])
        a, b = part.load(), des_stack.isel(pos).load()
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the HATS catalog says what it is
    props = (run.catalog_path / "hats.properties").read_text()
    assert f"hats_nrows={len(whole)}" in props and "catbuilder.model.weights_sha256" in props


def test_labelled_sources_give_the_confusion_without_the_catalog(hp_survey, small_model,
                                                                 tmp_path):  # fmt: skip
    from catbuilder.sky import label_sources

    table = label_sources(hp_survey.read_labels(), hp_survey["des-like"].sources).iloc[:150]
    run = run_survey(table, hp_survey["des-like"].directory / "tiles", small_model,
                     tmp_path / "run", size=32, cluster="sync", progress=False,
                     partition_rows=60, highest_order=13)  # fmt: skip
    conf = run.confusion()
    cat = read_catalog(run.catalog_path)
    lab = cat[cat["label"].notna()]
    assert conf.to_numpy().sum() == len(lab) > 20
    assert np.trace(conf.to_numpy()) == int((lab["label"] == lab["predicted"]).sum())


KILLED = """
import sys
from catbuilder import run_survey
if __name__ == "__main__":
    run_survey(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], size=32, chunk_objects=8,
               partition_rows=12, highest_order=13, cluster="local", workers=2,
               progress=False)
"""


def _summaries(out: Path) -> list[Path]:
    """The partition summaries written so far under a run being written."""
    try:
        return list(out.glob("parts/**/summary.json"))
    except FileNotFoundError:  # a temporary folder renamed or removed while it was listed
        return []


@pytest.mark.slow
def test_a_killed_driver_resumes_with_every_object_once(mock_survey, small_model, survey_run,
                                                        tmp_path):  # fmt: skip
    sources, tiles = _des(mock_survey)
    out = tmp_path / "run"
    script = tmp_path / "child.py"
    script.write_text(KILLED)
    proc = subprocess.Popen([sys.executable, str(script), str(sources), str(tiles),
                             str(small_model), str(out)], start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while not _summaries(out):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended unkilled"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver, its scheduler and its workers
    proc.wait()
    parts = pd.read_parquet(out / "sources" / "partitions.parquet")
    done = len(_summaries(out))
    assert 0 < done < len(parts)
    assert not (out / "catalog" / "hats.properties").exists()

    kw = {"partition_rows": 12, "highest_order": 13, "cluster": "sync", "progress": False}
    run = run_survey(sources, tiles, small_model, out, size=32, chunk_objects=8, **kw)
    cat = read_catalog(run.catalog_path).set_index("objid")
    ref = read_catalog(survey_run.catalog_path).set_index("objid")
    assert cat.index.is_unique and sorted(cat.index) == sorted(ref.index)
    np.testing.assert_allclose(cat.loc[ref.index, "p_spiral"], ref["p_spiral"], rtol=1e-5,
                               atol=1e-6)  # fmt: skip
    pixels = {}
    for o, p in zip(run.partitions["order"], run.partitions["pixel"]):
        st = run.stack(o, p)
        assert st.meta["complete"]
        for oid, img in zip(st.objects()["objid"], np.asarray(st.load())):
            pixels[oid] = img
    for o, p in zip(survey_run.partitions["order"], survey_run.partitions["pixel"]):
        st = survey_run.stack(o, p)
        for oid, img in zip(st.objects()["objid"], np.asarray(st.load())):
            np.testing.assert_array_equal(pixels[oid], img)


def test_bad_input_is_refused_in_one_line(mock_survey, small_model, survey_run, tmp_path):
    sources, tiles = _des(mock_survey)
    table = pd.read_parquet(sources)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not a survey run"):
        run_survey(sources, tiles, small_model, theirs, cluster="sync", progress=False)
    assert (theirs / "notes.txt").read_text() == "mine"
    with pytest.raises(OutputExistsError, match=r"other arguments \(.*partition_rows"):
        run_survey(sources, tiles, small_model, survey_run.path, size=32, chunk_objects=16,
                   cluster="sync", progress=False, partition_rows=30, highest_order=13)  # fmt: skip
    nan = table.copy()
    nan.loc[3, "ra"] = np.nan
    with pytest.raises(ValueError, match=r"1 source\(s\) .* no position") as err:
        run_survey(nan, tiles, small_model, tmp_path / "nan", cluster="sync", progress=False)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"raise survey\.highest-order"):
        run_survey(table, tiles, small_model, tmp_path / "full", cluster="sync",
                   progress=False, partition_rows=10, highest_order=4)  # fmt: skip


def test_a_dry_run_plans_without_reading_a_pixel(mock_survey, small_model, tmp_path):
    from catbuilder.survey import SurveyPlan

    sources, tiles = _des(mock_survey)
    plan = run_survey(sources, tiles, small_model, tmp_path / "run", size=32, dry_run=True,
                      progress=False, **SMALL)  # fmt: skip
    assert isinstance(plan, SurveyPlan) and plan.n_objects == len(pd.read_parquet(sources))
    parts = pd.read_parquet(tmp_path / "run" / "sources" / "partitions.parquet")
    assert len(plan.tasks) == len(parts) and (plan.tasks["images"] > 0).all()
    assert (plan.tasks["stack_bytes"] == plan.tasks["n"] * 3 * 32 * 32 * 4).all()
    assert 1.0 <= plan.tasks["read_bytes"].sum() / plan.image_bytes < 20
    assert not (tmp_path / "run" / "parts").exists()  # nothing cut, nothing predicted
    text = plan.summary(cores_per_node=2)
    assert f"{plan.n_objects:,} objects in {len(parts)} partitions" in text
    hours = plan.n_objects * sum(plan.rates.values()) / 3.6e6
    assert plan.projection()["core_hours"] == pytest.approx(hours)


def test_the_survey_command_runs_and_plans(mock_survey, small_model, tmp_path, capsys):
    from catbuilder.cli import main

    sources, tiles = _des(mock_survey)
    args = ["survey", str(sources), str(tiles), "--model-dir", str(small_model), "--size", "32",
            "--partition-rows", "40", "--highest-order", "13", "--cluster", "sync",
            "--no-progress"]  # fmt: skip
    assert main([*args, "-o", str(tmp_path / "plan"), "--dry-run"]) == 0
    assert "partitions (tasks)" in capsys.readouterr().out
    assert main([*args, "-o", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    n = len(pd.read_parquet(sources))
    assert f"{n:,} objects in " in out and len(read_catalog(tmp_path / "run" / "catalog")) == n
