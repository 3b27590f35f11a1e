"""Chunked inference on Dask workers, into Zarr; resumable."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from catbuilder.errors import IncompleteStoreError
from catbuilder.infer import open_predictions, predict
from catbuilder.models import load_model
from catbuilder.runtime import workers_now


def test_predictions_match_the_model_in_process(hp_stack, small_model, dask_client, tmp_path):
    p = predict(
        hp_stack, small_model, output=tmp_path / "p.zarr", cluster=dask_client, progress=False
    )
    assert len(p) == len(hp_stack) and p.classes == ["elliptical", "spiral"]
    proba = p.probabilities()
    assert np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    emb = p.embeddings()
    assert emb.shape == (len(hp_stack), 1024)
    model = load_model(small_model)
    raw = p.probabilities(calibrated=False)  # the model's own, beside the calibrated ones
    np.testing.assert_allclose(raw, model.predict_proba(hp_stack), atol=1e-5)
    np.testing.assert_allclose(proba, model.calibration_.apply(raw), atol=1e-6)
    np.testing.assert_allclose(emb[:32], model.transform(hp_stack.isel(slice(0, 32))), atol=1e-4)
    assert (p.ds["objid"].values == hp_stack.objects()["objid"].to_numpy()).all()
    meta = p.meta
    assert meta["model"]["plugin"] == "keras.small-cnn"
    assert len(meta["model"]["weights_sha256"]) == 64
    assert meta["stack"]["path"] == str(hp_stack.path.resolve())


def test_model_is_loaded_once_per_worker(hp_stack, small_model, dask_client, tmp_path):
    chunks = len(hp_stack) // hp_stack.meta["parameters"]["chunk_objects"]
    assert chunks >= 4
    predict(hp_stack, small_model, output=tmp_path / "p.zarr", cluster=dask_client, progress=False)

    def loaded():
        from catbuilder import infer

        return sorted(str(k[0]) for k in infer._MODELS)

    per_worker = dask_client.run(loaded)
    # every worker that ran tasks holds exactly one copy of the model (and perhaps
    # other tests' models: the cluster is the session's)
    copies = [v.count(str(small_model.resolve())) for v in per_worker.values()]
    assert max(copies) == 1, per_worker


def test_tta_and_selections(hp_stack, small_model, dask_client, tmp_path):
    sub = hp_stack.select(split="test")
    plain = predict(
        sub,
        small_model,
        output=tmp_path / "a.zarr",
        cluster=dask_client,
        embed=False,
        progress=False,
    )
    assert len(plain) == len(sub) and "embeddings" not in plain.ds
    assert (plain.ds["position"].values == sub.ds["object"].values).all()
    tta = predict(
        sub,
        small_model,
        output=tmp_path / "b.zarr",
        cluster=dask_client,
        embed=False,
        tta=True,
        progress=False,
    )
    a, b = plain.probabilities(), tta.probabilities()
    assert not np.allclose(a, b) and (np.argmax(a, 1) == np.argmax(b, 1)).mean() > 0.9


def test_other_arguments_do_not_overwrite(hp_stack, small_model, dask_client, tmp_path):
    out = tmp_path / "p.zarr"
    sub = hp_stack.isel(slice(0, 40))
    predict(sub, small_model, output=out, cluster=dask_client, progress=False)
    with pytest.raises(ValueError, match="other arguments"):
        predict(sub, small_model, output=out, cluster=dask_client, tta=True, progress=False)
    p = predict(
        sub, small_model, output=out, cluster=dask_client, tta=True, overwrite=True, progress=False
    )
    assert p.meta["parameters"]["tta"] is True


def _uninterrupted(hp_stack, small_model, client, path):
    """The reference: the same prediction, run once without interruption."""
    return predict(hp_stack, small_model, output=path, cluster=client, batch_size=8, progress=False)


def test_a_worker_killed_mid_run_changes_nothing(hp_stack, small_model, dask_client, tmp_path):
    ref = _uninterrupted(hp_stack, small_model, dask_client, tmp_path / "ref.zarr")
    pids = dask_client.run(os.getpid)
    victim = sorted(pids)[0]
    out = tmp_path / "p.zarr"

    def kill_midway():
        """Kill the victim while it runs a task, once some chunks are written."""
        import zarr

        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                w = zarr.open_group(str(out), mode="r", use_consolidated=False)["written"][:]
            except Exception:
                w = np.zeros(1, bool)
            busy = dask_client.processing().get(victim, ())
            if w.any() and not w.all() and any("predict" in str(k) for k in busy):
                os.kill(pids[victim], signal.SIGKILL)
                return
            time.sleep(0.01)

    threading.Thread(target=kill_midway, daemon=True).start()
    # one chunk per task and small batches: many short tasks, so the kill lands midway
    p = predict(
        hp_stack,
        small_model,
        output=out,
        cluster=dask_client,
        batch_size=8,
        chunks_per_task=1,
        progress=False,
    )
    assert victim not in workers_now(dask_client)  # it really died
    np.testing.assert_array_equal(p.probabilities(), ref.probabilities())
    np.testing.assert_array_equal(p.embeddings(), ref.embeddings())
    dask_client.wait_for_workers(2, timeout=120)


_STOPPED = textwrap.dedent(
    """
    import sys
    from catbuilder.infer import predict
    if __name__ == "__main__":
        predict(sys.argv[1], sys.argv[2], output=sys.argv[3], workers=1, batch_size=8,
                progress=False)
    """
)


def test_a_stopped_run_resumes_only_missing_chunks(hp_stack, small_model, dask_client, tmp_path):
    import zarr

    out = tmp_path / "p.zarr"
    script = tmp_path / "run.py"
    script.write_text(_STOPPED)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(hp_stack.path), str(small_model), str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    chunk = hp_stack.meta["parameters"]["chunk_objects"]
    deadline = time.time() + 240
    w = None
    while time.time() < deadline and proc.poll() is None:
        try:
            w = zarr.open_group(str(out), mode="r", use_consolidated=False)["written"][:]
            if 0 < w.sum() < len(w) - chunk:
                break
        except Exception:
            pass
        time.sleep(0.1)
    proc.kill()  # the client and its LocalCluster go with it
    proc.wait()
    w = zarr.open_group(str(out), mode="r", use_consolidated=False)["written"][:]
    assert 0 < w.sum() < len(w), "the run was not stopped midway"
    with pytest.raises(IncompleteStoreError):
        open_predictions(out)
    started = {i // chunk for i in np.flatnonzero(w)}
    done = sorted(started - {i // chunk for i in np.flatnonzero(~w)})
    files = {c: out / "probabilities" / "c" / str(c) / "0" for c in done}
    mtimes = {c: f.stat().st_mtime_ns for c, f in files.items()}
    p = predict(
        hp_stack, small_model, output=out, cluster=dask_client, batch_size=8, progress=False
    )
    assert {c: f.stat().st_mtime_ns for c, f in files.items()} == mtimes
    ref = _uninterrupted(hp_stack, small_model, dask_client, tmp_path / "ref.zarr")
    np.testing.assert_array_equal(p.probabilities(), ref.probabilities())


def _cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def test_workers_that_fill_the_machine_are_bound_one_core_each_then_freed(dask_client):
    """infer.bind-cores: auto binds when the host's workers use all its cores,
    each worker to a core of its own; the block's end gives the cores back."""
    from catbuilder.runtime.affinity import bind_workers

    allowed = _cores()
    workers = sorted(workers_now(dask_client))
    with bind_workers(dask_client, 1, "auto") as bound:
        now = dask_client.run(_cores)
    after = dask_client.run(_cores)
    if len(allowed) == 2:  # the two workers fill this machine (the CI's 2 cores)
        assert sorted(bound) == workers
        assert sorted(c for w in workers for c in now[w]) == allowed  # one core each
    else:  # spare cores: left free
        assert bound == {} and all(c == allowed for c in now.values())
    assert all(c == allowed for c in after.values())
    with bind_workers(dask_client, 1, True) as bound:  # always (enough cores for two)
        assert sorted(len(c) for c in dask_client.run(_cores).values()) == [1, 1]
    with bind_workers(dask_client, 1, False) as bound:
        assert bound == {} and all(c == allowed for c in dask_client.run(_cores).values())
    with bind_workers(dask_client, len(allowed), True) as bound:  # too few cores for both
        assert len(bound) == 1  # the first gets them all, the second is left as it was


def test_a_workers_cpu_time_is_accounted_by_activity(hp_stack, small_model, dask_client, tmp_path):
    """catbuilder.runtime.thread_cpu: the read-ahead, model and Dask threads of a
    predicting worker each show up, and they add up to the process's CPU time."""
    from catbuilder.runtime import thread_cpu

    before = dask_client.run(thread_cpu.snapshot)
    predict(hp_stack, small_model, output=tmp_path / "p.zarr", cluster=dask_client, progress=False)
    after = dask_client.run(thread_cpu.snapshot)
    total = dict.fromkeys(thread_cpu.ACTIVITIES, 0.0)
    for w in after:
        for k, v in thread_cpu.difference(before[w], after[w]).items():
            total[k] += v
    assert total["read + preprocess"] > 0
    assert total["model: framework pools"] + total["model: task thread"] > 0
    assert total["Dask: event loop + helpers"] > 0
    spent = sum(after[w]["total"] - before[w]["total"] for w in after)
    assert sum(total.values()) == pytest.approx(spent, abs=0.05 * spent + 0.05)


def test_predict_starts_no_task_but_its_chunk_tasks(hp_stack, small_model, dask_client, tmp_path):
    """The output's shape (classes, embedding width) comes from the saved model's
    manifest: no task runs to ask a worker, only the chunk tasks run."""
    from distributed import get_task_stream

    from catbuilder.models import read_manifest

    manifest = read_manifest(small_model)
    assert manifest["classes"] == ["elliptical", "spiral"] and manifest["embedding_dim"] > 0
    with get_task_stream(dask_client) as stream:
        preds = predict(hp_stack, small_model, output=tmp_path / "p.zarr", cluster=dask_client,
                        progress=False)  # fmt: skip
    keys = [t["key"] for t in stream.data]
    assert keys, "no task ran"
    assert all(str(k).startswith("catbuilder-predict-") for k in keys), keys
    n_chunks = -(-len(hp_stack) // int(hp_stack.meta["parameters"]["chunk_objects"]))
    assert len(keys) <= n_chunks  # at most one task per output chunk, none besides
    assert preds.embeddings().shape[1] == manifest["embedding_dim"]


def test_a_worker_keeps_a_few_stacks_and_models_not_every_one_it_saw():
    """A worker that predicts a survey's partitions in turn opens a stack for
    each: the cache keeps the most recently used, so its memory stays flat."""
    from collections import OrderedDict

    from catbuilder.infer import _cached

    cache: OrderedDict = OrderedDict()
    made = []
    for key in ["a", "b", "c", "a", "d", "e", "a"]:
        _cached(cache, key, lambda k=key: made.append(k) or k.upper(), keep=3)
    assert list(cache) == ["d", "e", "a"] and cache["a"] == "A"
    assert made == ["a", "b", "c", "d", "e"]  # "a" stayed in use: opened once
