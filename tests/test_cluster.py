"""Clusters from configuration: worker environment and jobqueue job scripts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from catbuilder import config


def _env():
    return {k: os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_", "TF_NUM_INTRAOP_THREADS")}


def _profiling(dask_worker) -> bool:
    return "profile" in dask_worker.periodic_callbacks


# True first: its Nanny leaks the variable
@pytest.mark.parametrize("dask_defaults", [True, False])
def test_local_workers_get_threads_malloc_and_profiler_settings(dask_defaults):
    from distributed import Client

    from catbuilder.runtime import make_cluster, workers_now

    settings = {"cluster.trim-memory": dask_defaults, "cluster.worker-profile": dask_defaults}
    with config.set(settings):
        cluster = make_cluster("local", 1, threads_per_worker=1)
    with cluster, Client(cluster) as client:
        client.wait_for_workers(1, timeout=60)
        (env,) = client.run(_env).values()
        (profiling,) = client.run(_profiling).values()
        addr = next(iter(workers_now(client)))
    assert addr.startswith("tcp://127.0.0.1:")
    assert env["TF_NUM_INTRAOP_THREADS"] == "1"
    # dask's default (65536) pins glibc's mmap threshold: off unless asked for
    assert env["MALLOC_TRIM_THRESHOLD_"] == ("65536" if dask_defaults else None)
    # dask's profiler: off unless asked for (memory, docs/scale.md)
    assert profiling is dask_defaults


def test_jobqueue_script_carries_the_worker_environment():
    from catbuilder.runtime import make_cluster

    with config.set({"cluster.jobqueue": {"cores": 1, "memory": "1GB"}}):
        cluster = make_cluster("slurm", 0, threads_per_worker=1, interface="lo")
    with cluster:
        script = cluster.job_script()
    assert "export TF_NUM_INTRAOP_THREADS=1" in script
    assert "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON__MALLOC_TRIM_THRESHOLD_=None" in script
    assert "unset MALLOC_TRIM_THRESHOLD_" in script
    assert "export DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False" in script
    assert "#SBATCH" in script


def test_unknown_cluster_kind_lists_the_known_ones():
    from catbuilder.runtime import make_cluster

    with pytest.raises(ValueError, match="slurm"):
        make_cluster("kubernetes-ish", 1)


def _square(x):
    return x * x


def _encrypted_cluster_works():
    from catbuilder.runtime import compute, connect

    with connect("local", 1) as client:
        address = client.scheduler.address
        assert address.startswith("tls://127.0.0.1:")
        assert client.submit(_square, 7).result() == 49
        import dask

        assert compute([dask.delayed(_square)(3)], cluster=client, progress=False) == [9]
        import asyncio

        from distributed.comm import connect as comm_connect

        with pytest.raises(Exception, match=r"TLS|ssl|tls"):  # no TLS, no connection
            asyncio.run(comm_connect(address, timeout=3))
        with connect(address) as again:  # an address: the configured TLS is used
            assert again.submit(_square, 5).result() == 25


@pytest.mark.slow
def test_tls_with_a_temporary_certificate():
    with config.set({"cluster.security": "temporary"}):
        _encrypted_cluster_works()


@pytest.mark.slow
def test_tls_with_certificate_files(tmp_path):
    from distributed.security import Security

    tmp = Security.temporary()  # a self-signed CA/certificate, as a site would issue
    (tmp_path / "ca.pem").write_text(tmp.tls_ca_file)
    (tmp_path / "cert.pem").write_text(tmp.tls_client_cert)
    (tmp_path / "key.pem").write_text(tmp.tls_client_key)
    files = {k: str(tmp_path / f) for k, f in
             (("ca-file", "ca.pem"), ("cert", "cert.pem"), ("key", "key.pem"))}  # fmt: skip
    with config.set({"cluster.security": files}):
        _encrypted_cluster_works()


def test_tls_settings_that_cannot_work_are_one_line_errors(tmp_path):
    from catbuilder.runtime import security

    assert security() is None  # plain TCP by default
    with pytest.raises(ValueError, match="null, temporary or"):
        security("yes please")
    with pytest.raises(ValueError, match="exactly ca-file, cert and key; got ca-file"):
        security({"ca-file": "x"})
    with pytest.raises(ValueError, match="no such file"):
        security({"ca-file": str(tmp_path / "none.pem"), "cert": "a", "key": "b"})


def _slow_square(i: int) -> int:
    import time

    time.sleep(0.02)
    if i == 37:
        raise ValueError("task 37 fails")
    return i * i


def test_run_windowed_keeps_at_most_a_window_of_tasks_on_the_scheduler(dask_client):
    """Results in order; the scheduler holds about a window of tasks, never all
    of them; the first error is raised and cancels what is still running."""
    import threading
    import time

    from catbuilder.runtime import run_windowed

    def count(dask_scheduler):
        return len(dask_scheduler.tasks)

    seen, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            seen.append(dask_client.run_on_scheduler(count))
            time.sleep(0.005)

    def submit(idx):
        return [dask_client.submit(_slow_square, i, pure=False) for i in idx]

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        done = []
        got = run_windowed(dask_client, 30, submit, window=6, done=done.append)
    finally:
        stop.set()
        sampler.join()
    assert got == [i * i for i in range(30)] and sorted(done) == got
    # six running, plus the finished one being gathered (a quarter window) and a
    # release the scheduler has not yet acted on; submitting all at once: 30
    assert len(seen) > 10 and 0 < max(seen) <= 6 + 6 // 4 + 1
    with pytest.raises(ValueError, match="task 37 fails"):
        run_windowed(dask_client, 60, lambda idx: submit([i + 10 for i in idx]), window=6)
    deadline = time.time() + 10
    while dask_client.run_on_scheduler(count) and time.time() < deadline:
        time.sleep(0.05)
    assert dask_client.run_on_scheduler(count) == 0  # nothing left running


def test_workers_now_sees_every_worker_while_the_client_refreshes(dask_client):
    # The client's own periodic refresh rewrites its cached identity without
    # workers; with a 5 ms refresh, client.scheduler_info(n_workers=-1) missed
    # them in about 1 call of 40 here. workers_now asks the scheduler itself.
    import dask
    from distributed import Client

    from catbuilder.runtime import workers_now

    expected = set(dask_client.sync(dask_client.scheduler.identity, n_workers=-1)["workers"])
    with dask.config.set({"distributed.client.scheduler-info-interval": "5ms"}):
        with Client(dask_client.scheduler.address) as client:
            counts = [len(workers_now(client)) for _ in range(500)]
            assert set(workers_now(client)) == expected
    assert len(expected) == 2 and set(counts) == {2}


def test_each_worker_of_a_multi_gpu_node_gets_its_own_gpu():
    """Tested on CPU through the environment each worker receives: a node that
    shows two GPUs gives worker 0 the first and worker 1 the second."""
    import os

    from distributed import Client

    from catbuilder.runtime import connect, make_cluster
    from catbuilder.runtime.devices import gpu_for_slot, visible_gpus

    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert [gpu_for_slot(s, ["2", "3"]) for s in range(3)] == ["2", "3", "2"]
    assert gpu_for_slot(1, ["0"]) is None  # one GPU (or none): nothing to choose
    cluster = make_cluster("local", workers=2, env={"CUDA_VISIBLE_DEVICES": "2,3"})
    with cluster, Client(cluster) as given, connect(given, workers=2) as client:
        seen = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
        names = client.run(lambda dask_worker: dask_worker.name)
        assert sorted(seen.values()) == ["2", "3"]
        assert {names[a]: v for a, v in seen.items()} == {0: "2", 1: "3"}
        # the Keras plugin's workers grow GPU memory as needed
        grow = client.run(lambda: os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH"))
        assert set(grow.values()) == {"true"}


_TRIM = """
from catbuilder.runtime import release_freed_memory

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024

blocks = [bytearray(64 * 1024) for _ in range(4000)]  # 250 MiB of heap, freed below
last = blocks[-1]  # keeps the heap's top in use, so free() alone cannot shrink it
del blocks
before = rss()
print(release_freed_memory(), before, rss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_memory_goes_back_to_the_system():
    out = subprocess.run([sys.executable, "-c", _TRIM], capture_output=True, text=True, check=True)
    called, before, after = out.stdout.split()
    assert called == "True"
    assert float(before) - float(after) > 200  # MiB
