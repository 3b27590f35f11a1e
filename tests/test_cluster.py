"""Clusters from configuration: worker environment and jobqueue job scripts."""

from __future__ import annotations

import os

import pytest

from catbuilder import config


def _env():
    return {k: os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_", "TF_NUM_INTRAOP_THREADS")}


@pytest.mark.parametrize("trim", [True, False])  # True first: its Nanny leaks the variable
def test_local_workers_get_threads_and_malloc_settings(trim):
    from distributed import Client

    from catbuilder.cluster import make_cluster

    with config.set({"cluster.trim-memory": trim}):
        cluster = make_cluster("local", 1, threads_per_worker=1)
    with cluster, Client(cluster) as client:
        client.wait_for_workers(1, timeout=60)
        (env,) = client.run(_env).values()
        addr = next(iter(client.scheduler_info()["workers"]))
    assert addr.startswith("tcp://127.0.0.1:")
    assert env["TF_NUM_INTRAOP_THREADS"] == "1"
    # dask's default (65536) pins glibc's mmap threshold: off unless asked for
    assert env["MALLOC_TRIM_THRESHOLD_"] == ("65536" if trim else None)


def test_jobqueue_script_carries_the_worker_environment():
    from catbuilder.cluster import make_cluster

    with config.set({"cluster.jobqueue": {"cores": 1, "memory": "1GB"}}):
        cluster = make_cluster("slurm", 0, threads_per_worker=1, interface="lo")
    with cluster:
        script = cluster.job_script()
    assert "export TF_NUM_INTRAOP_THREADS=1" in script
    assert "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON__MALLOC_TRIM_THRESHOLD_=None" in script
    assert "unset MALLOC_TRIM_THRESHOLD_" in script
    assert "#SBATCH" in script


def test_unknown_cluster_kind_lists_the_known_ones():
    from catbuilder.cluster import make_cluster

    with pytest.raises(ValueError, match="slurm"):
        make_cluster("kubernetes-ish", 1)
