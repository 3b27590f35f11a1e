"""Horovod ranks on Dask workers: a real LocalCluster, real ranks over Gloo."""

import os
import signal
import time

import numpy as np
import pytest
from train_params import small_cnn_params

from catbuilder.training import train
from catbuilder.training.distributed import DistributedTrainingError, plan_ranks, shards

pytestmark = pytest.mark.horovod


def test_ranks_are_grouped_by_host():
    workers = [
        "tcp://10.0.0.2:4001",
        "tcp://10.0.0.1:4002",
        "tcp://10.0.0.1:4001",
        "tcp://10.0.0.2:4000",
        "tcp://10.0.0.3:4000",
    ]
    plan = plan_ranks(workers)
    assert [p.rank for p in plan] == [0, 1, 2, 3, 4]
    assert all(p.size == 5 for p in plan)
    by_host = {}
    for p in plan:
        by_host.setdefault(p.host, []).append(p)
    assert {h: len(ps) for h, ps in by_host.items()} == {
        "10.0.0.1": 2,
        "10.0.0.2": 2,
        "10.0.0.3": 1,
    }
    for _h, ps in by_host.items():
        assert [p.local_rank for p in ps] == list(range(len(ps)))
        assert all(p.local_size == len(ps) for p in ps)
    # cross rank: the index of the host among hosts with that local rank
    assert sorted(p.cross_rank for p in plan if p.local_rank == 0) == [0, 1, 2]
    assert {p.cross_size for p in plan if p.local_rank == 1} == {2}
    assert len({p.worker for p in plan}) == 5


def test_shards_follow_chunks_and_cover_everything_once():
    pos = np.arange(1000)
    parts = shards(pos, 3, 64)
    assert sorted(np.concatenate(parts).tolist()) == pos.tolist()
    assert [p[0] for p in parts] == [0, 64, 128]
    # a selection: ranks get whole store chunks, never a chunk shared
    sel = np.flatnonzero(np.random.default_rng(0).random(1000) < 0.7)
    parts = shards(sel, 3, 64)
    chunks = [set((p // 64).tolist()) for p in parts]
    assert not (chunks[0] & chunks[1]) and not (chunks[1] & chunks[2])
    assert sorted(np.concatenate(parts).tolist()) == sel.tolist()


@pytest.fixture(scope="module")
def local_cluster():
    from distributed import Client

    from catbuilder.runtime import make_cluster

    cluster = make_cluster("local", 2, threads_per_worker=1)
    client = Client(cluster)
    client.wait_for_workers(2, timeout=60)
    yield client
    client.close()
    cluster.close()


@pytest.mark.slow
def test_two_ranks_train_identical_weights(hp_stack, local_cluster, tmp_path):
    res = train(
        hp_stack,
        "keras.small-cnn",
        params=small_cnn_params(3),
        cluster=local_cluster,
        workers=2,
        checkpoint_dir=tmp_path / "ck",
    )
    ranks = res.model.ranks_
    assert [r["rank"] for r in ranks] == [0, 1] and {r["size"] for r in ranks} == {2}
    assert ranks[0]["weights_digest"] == ranks[1]["weights_digest"]
    metrics = ["loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    h0, h1 = ([{k: row[k] for k in metrics} for row in r["history"]] for r in ranks)
    assert h0 == h1  # epoch metrics are averaged over ranks
    # each rank read only its shard
    n_train = len(hp_stack.select(split="train", exclude=["off_footprint", "missing_band"]))
    assert (
        sum(r["n_shard"] for r in ranks) == n_train and max(r["n_shard"] for r in ranks) < n_train
    )
    h = res.history
    assert h["loss"].iloc[-1] < h["loss"].iloc[0]
    assert (h["samples_per_s"] > 0).all()
    # the learning rate warms up to lr x ranks (2 epochs, the paper's recipe)
    assert h["lr"].iloc[0] == pytest.approx(1e-3 * 1.5, rel=0.05)
    assert h["lr"].iloc[-1] == pytest.approx(2e-3, rel=1e-3)
    proba = res.model.predict_proba(hp_stack.isel(slice(0, 8)))
    assert proba.shape == (8, 2)
    assert (tmp_path / "ck" / "state.json").exists()
    # the same workers train again (horovod was shut down cleanly)
    again = train(
        hp_stack,
        "keras.small-cnn",
        params=small_cnn_params(1),
        cluster=local_cluster,
        workers=2,
        checkpoint_dir=tmp_path / "ck2",
    )
    assert again.model.ranks_[0]["weights_digest"] == again.model.ranks_[1]["weights_digest"]


def _corrupt_chunk_of_rank(stack, rank, size):
    """Overwrite, on disk, a chunk that only ``rank`` reads with garbage."""
    from catbuilder.training.api import split_for_training

    tr, _ = split_for_training(stack)
    chunk = stack.meta["parameters"]["chunk_objects"]
    mine = shards(tr.ds["object"].values, size, chunk)[rank]
    c = int(mine[0]) // chunk
    f = stack.path / "images" / "c" / str(c) / "0" / "0" / "0"
    f.write_bytes(b"\x00garbage" * 64)
    return c


@pytest.mark.slow
def test_a_rank_that_raises_ends_the_run_naming_it(hp_stack, local_cluster, tmp_path):
    import shutil

    from catbuilder.stack import open_stack

    copy = tmp_path / "broken.zarr"
    shutil.copytree(hp_stack.path, copy)
    _corrupt_chunk_of_rank(open_stack(copy), rank=1, size=2)
    t = time.monotonic()
    with pytest.raises(DistributedTrainingError, match=r"rank 1 \(worker tcp://127\.0\.0\.1"):
        train(
            open_stack(copy),
            "keras.small-cnn",
            params=small_cnn_params(2),
            cluster=local_cluster,
            workers=2,
            checkpoint_dir=tmp_path / "ck",
        )
    assert time.monotonic() - t < 240
    # the cluster is usable afterwards
    local_cluster.wait_for_workers(2, timeout=60)
    assert local_cluster.submit(sum, [1, 2], pure=False).result(timeout=60) == 3


def test_a_rank_that_ends_without_error_or_dead_worker_is_named(local_cluster):
    # e.g. a task the scheduler cancelled: the failure report names it
    # instead of failing itself
    from catbuilder.runtime import workers_now
    from catbuilder.training.distributed import _failure

    worker = sorted(workers_now(local_cluster))[0]
    fut = local_cluster.submit(time.sleep, 2, workers=[worker], pure=False)
    fut.cancel()
    deadline = time.time() + 30
    while fut.status != "cancelled" and time.time() < deadline:
        time.sleep(0.1)
    rank, why, err = _failure(local_cluster, {0: fut}, plan_ranks([worker]))
    assert (rank, err) == (0, None)
    assert why == f"(worker {worker}) ended without a result: its task is cancelled"


@pytest.mark.slow
def test_a_worker_that_dies_ends_the_run_and_training_resumes(hp_stack, local_cluster, tmp_path):
    import threading

    ck = tmp_path / "ck"
    pids = local_cluster.run(os.getpid)
    victim = sorted(pids)[1]  # rank 1's worker: plan_ranks sorts by address

    def kill_when_training():
        deadline = time.time() + 240
        while time.time() < deadline:
            if (ck / "state.json").exists():
                os.kill(pids[victim], signal.SIGKILL)
                return
            time.sleep(0.1)

    threading.Thread(target=kill_when_training, daemon=True).start()
    t = time.monotonic()
    with pytest.raises(DistributedTrainingError, match=r"rank 1 died: its worker"):
        train(
            hp_stack,
            "keras.small-cnn",
            params=small_cnn_params(6),
            cluster=local_cluster,
            workers=2,
            checkpoint_dir=ck,
        )
    assert time.monotonic() - t < 300
    import json

    stopped = json.loads((ck / "state.json").read_text())
    assert not stopped["done"] and stopped["epoch"] >= 1
    local_cluster.wait_for_workers(2, timeout=120)
    res = train(
        hp_stack,
        "keras.small-cnn",
        params=small_cnn_params(6),
        cluster=local_cluster,
        workers=2,
        checkpoint_dir=ck,
    )
    assert res.history["epoch"].tolist() == [1, 2, 3, 4, 5, 6]
    assert res.history.iloc[: stopped["epoch"]]["seconds"].tolist() == [
        r["seconds"] for r in stopped["history"]
    ]


def _affinity(payload):
    return sorted(os.sched_getaffinity(0))


def test_ranks_are_bound_to_their_own_cores():  # the project's machines have two cores
    from catbuilder.training.distributed import run_rank

    before = os.sched_getaffinity(0)
    cores = sorted(before)
    env = {"HOROVOD_LOCAL_RANK": "1"}
    got = run_rank("test_distributed:_affinity", env, {"bind_cores": True, "threads": 1})
    assert got == [cores[1]]
    assert os.sched_getaffinity(0) == before  # restored after the task
    unbound = run_rank("test_distributed:_affinity", env, {"bind_cores": False, "threads": 1})
    assert unbound == cores


@pytest.mark.slow
def test_two_ranks_with_backward_passes_update_alike(hp_stack, local_cluster, tmp_path):
    from catbuilder import config

    with config.set({"train.backward-passes-per-step": 2}):
        res = train(
            hp_stack,
            "keras.small-cnn",
            params=small_cnn_params(2),
            cluster=local_cluster,
            workers=2,
            checkpoint_dir=tmp_path / "ck",
        )
    ranks = res.model.ranks_
    # the summed gradients went through one allreduce: both ranks hold one model
    assert ranks[0]["weights_digest"] == ranks[1]["weights_digest"]
    assert res.history["loss"].iloc[-1] < res.history["loss"].iloc[0]
    zero = config.set({"train.backward-passes-per-step": 0})
    with zero, pytest.raises(ValueError, match="backward-passes"):
        train(hp_stack, "keras.small-cnn", params=small_cnn_params(1), cluster=local_cluster,
              workers=2, checkpoint_dir=tmp_path / "ck0")  # fmt: skip
